"""Progress of a run while it is driven: a live display on a terminal, plain lines otherwise.

Both are :class:`phloem.driver.Reporter` implementations. The driver calls ``update`` after each
committed decision, so the work done there is bounded by the number of tasks of the pipeline,
never by the number of mapped instances: a mapped task is followed through its state counts, and
only its first few failures are named.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from phloem.cli.views import counts_text, human_duration, label, one_line
from phloem.records import Key
from phloem.states import TaskState

if TYPE_CHECKING:
    from phloem.dsl.spec import TaskSpec
    from phloem.engine import Snapshot

S = TaskState

#: Failures of one mapped task named one by one before the rest are left to the summary.
MAPPED_FAILURES_NAMED = 5
#: Seconds between two progress lines of one mapped task.
MAPPED_LINE_INTERVAL = 2.0

_WORDS = {
    S.RUNNING: "started",
    S.SUCCESS: "success",
    S.FAILED: "failed",
    S.UP_FOR_RETRY: "retry",
    S.SKIPPED: "skipped",
    S.UPSTREAM_FAILED: "upstream_failed",
    S.CACHED: "cached",
}
_NOISY = {S.FAILED, S.UP_FOR_RETRY}


class ChangeTracker:
    """Turns successive snapshots into the lines worth printing."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.t0 = clock()
        self._seen: dict[Key, tuple[S, int]] = {}
        self._mapped_counts: dict[str, tuple[tuple[S, int], ...]] = {}
        self._mapped_line_at: dict[str, float] = {}
        self._mapped_state: dict[str, str] = {}  # "" -> "expanded" -> "done"
        self._named: dict[str, set[tuple[Key, int]]] = {}
        self._named_keys: dict[str, set[Key]] = {}
        self._bad: dict[str, tuple[int, int]] = {}
        self._first = True

    def changes(
        self,
        snap: Snapshot,
        now: float,
        *,
        only_failures: bool = False,
        tasks: Collection[str] | None = None,
    ) -> list[str]:
        """The lines for what changed since the last call. ``tasks``: only these tasks'
        instances changed (None: look at every task), so a turn costs what it changed, not
        the size of the pipeline."""
        lines: list[str] = []
        first, self._first = self._first, False
        spec = snap.spec.tasks
        looked_at: Iterable[tuple[str, TaskSpec]]
        if first or tasks is None:
            looked_at = spec.items()
        else:
            ids = sorted((t for t in tasks if t in spec), key=lambda t: spec[t].index)
            looked_at = [(t, spec[t]) for t in ids]
        for task_id, t in looked_at:
            if t.is_mapped:
                self._mapped(snap, task_id, now, first, only_failures, lines)
                continue
            ti = snap.tis.get((task_id, -1))
            if ti is None:
                continue
            mark = (ti.state, ti.try_number)
            if self._seen.get(ti.key) == mark:
                continue
            self._seen[ti.key] = mark
            if ti.state.is_terminal and (ti.ended_at or now) < self.t0:
                continue  # settled before this drive began (a resumed run)
            if only_failures and ti.state not in _NOISY:
                continue
            line = _line(task_id, ti.state, ti.try_number, ti.error, ti)
            if line:
                lines.append(line)
        return lines

    def _mapped(
        self,
        snap: Snapshot,
        task_id: str,
        now: float,
        first: bool,
        only_failures: bool,
        lines: list[str],
    ) -> None:
        counts = snap.counts[task_id]
        indexes = snap.indexes[task_id]
        expanded = bool(indexes) and indexes[-1] >= 0
        n = len(indexes)
        phase = self._mapped_state.get(task_id, "")
        done = expanded and all(counts[s] == 0 for s in S if not s.is_terminal)
        if not expanded:
            ph = snap.tis.get((task_id, -1))
            if ph is not None and ph.state.is_terminal and phase != "done":
                self._mapped_state[task_id] = "done"
                if not first and not only_failures:
                    lines.append(f"{ph.state.value:<10} {task_id}: no instances")
            return
        if phase == "" and not (first and done):
            if not only_failures:
                lines.append(f"{'mapped':<10} {task_id}: {n} instances")
            phase = self._mapped_state[task_id] = "expanded"
        self._name_failures(snap, task_id, counts, lines)
        key = tuple((s, c) for s, c in counts.items() if c)
        if self._mapped_counts.get(task_id) == key:
            return
        self._mapped_counts[task_id] = key
        if done:
            if phase != "done":
                self._mapped_state[task_id] = "done"
                if not (first or only_failures):
                    lines.append(f"{'done':<10} {task_id} (x{n}): {counts_text(counts)}")
            return
        self._mapped_state[task_id] = "expanded"
        if only_failures or now - self._mapped_line_at.get(task_id, 0.0) < MAPPED_LINE_INTERVAL:
            return
        self._mapped_line_at[task_id] = now
        finished = sum(counts[s] for s in S if s.is_terminal)
        lines.append(f"{'progress':<10} {task_id}: {finished}/{n} done ({counts_text(counts)})")

    def _name_failures(self, snap: Snapshot, task_id: str, counts: Any, lines: list[str]) -> None:
        named = self._named.setdefault(task_id, set())
        keys = self._named_keys.setdefault(task_id, set())
        bad = (counts[S.FAILED], counts[S.UP_FOR_RETRY])
        if len(keys) > MAPPED_FAILURES_NAMED or self._bad.get(task_id, (0, 0)) == bad:
            return
        self._bad[task_id] = bad
        for state in (S.FAILED, S.UP_FOR_RETRY):
            for key in snap.by_state[state]:
                if key[0] != task_id:
                    continue
                ti = snap.tis[key]
                mark = (key, ti.try_number)
                if mark in named or (ti.ended_at or 0.0) < self.t0:
                    continue
                if key not in keys and len(keys) == MAPPED_FAILURES_NAMED:
                    keys.add(("", -1))  # over the limit: name no more
                    lines.append(f"{'':<10} (further failures of {task_id} are in the summary)")
                    return
                named.add(mark)
                keys.add(key)
                line = _line(label(*key), state, ti.try_number, ti.error, ti)
                if line:
                    lines.append(line)


def _line(name: str, state: S, try_number: int, error: str | None, ti: Any) -> str | None:
    word = _WORDS.get(state)
    if word is None:
        return None
    text = f"{word:<10} {name}"
    if state is S.RUNNING:
        return text + (f" (try {try_number})" if try_number > 1 else "")
    if state in (S.SUCCESS, S.CACHED):
        if ti.started_at is not None and ti.ended_at is not None:
            text += f" ({human_duration(ti.ended_at - ti.started_at)})"
        return text
    if state is S.UP_FOR_RETRY:
        when = ""
        if ti.next_try_at is not None and ti.ended_at is not None:
            when = f"; next try in {human_duration(max(0.0, ti.next_try_at - ti.ended_at))}"
        return f"{text}: try {try_number} failed: {one_line(error) or '(no message)'}{when}"
    if state is S.FAILED:
        return f"{text}: {one_line(error) or '(no message)'}"
    return text


class LineReporter:
    """Plain lines for logs and pipes: one per change that matters, mapped tasks summarized."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.tracker = ChangeTracker()
        self._started = False

    def __enter__(self) -> LineReporter:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, snap: Snapshot, now: float, changed: Collection[str] | None = None) -> None:
        if not self._started:
            self._started = True
            self.write(f"run {snap.run_id} of {snap.spec.name}: {len(snap.spec.tasks)} tasks")
        for line in self.tracker.changes(snap, now, tasks=changed):
            self.write(line)

    def finish(self, snap: Snapshot, now: float) -> None:
        self.update(snap, now)


class LiveReporter:
    """A live panel (state counts, running tasks, elapsed time) on a terminal; failures and
    retries are printed above it as they happen."""

    REFRESH_PER_SECOND = 8
    RUNNING_SHOWN = 6

    def __init__(self, console: Any) -> None:
        self.console = console
        self.tracker = ChangeTracker()
        self._view: tuple[str, str, dict[S, int], list[str], int, int] | None = None
        self._live: Any = None
        self._last = 0.0

    def __enter__(self) -> LiveReporter:
        from rich.live import Live

        self._live = Live(
            self,
            console=self.console,
            refresh_per_second=self.REFRESH_PER_SECOND,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def update(self, snap: Snapshot, now: float, changed: Collection[str] | None = None) -> None:
        for line in self.tracker.changes(snap, now, only_failures=True, tasks=changed):
            self.console.print(line, markup=False, highlight=False)
        if now - self._last < 1.0 / self.REFRESH_PER_SECOND and not snap.run_state.is_terminal:
            return
        self._last = now
        counts = {s: len(snap.by_state[s]) for s in S if snap.by_state[s]}
        running = [label(*k) for k in list(snap.by_state[S.RUNNING])[: self.RUNNING_SHOWN]]
        total = len(snap.tis)
        done = sum(n for s, n in counts.items() if s.is_terminal)
        self._view = (snap.spec.name, snap.run_id, counts, running, done, total)

    def finish(self, snap: Snapshot, now: float) -> None:
        self.update(snap, now)
        self.__exit__()

    def __rich__(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        elapsed = human_duration(time.time() - self.tracker.t0)
        if self._view is None:
            return Text(f"starting ... {elapsed}")
        name, run_id, counts, running, done, total = self._view
        line = Table.grid(padding=(0, 1))
        line.add_row(
            ProgressBar(total=max(total, 1), completed=done, width=30),
            Text(f"{done}/{total} done  {elapsed}"),
        )
        more = counts.get(S.RUNNING, 0) - len(running)
        return Group(
            Text.assemble((name, "bold"), f"  {run_id}"),
            line,
            Text(counts_text(counts), overflow="ellipsis", no_wrap=True),
            Text(
                "running: "
                + (", ".join(running) or "-")
                + (f" (+{more} more)" if more > 0 else ""),
                style="cyan",
                overflow="ellipsis",
                no_wrap=True,
            ),
        )
