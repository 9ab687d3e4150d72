"""Runs and task instances as JSON-able dicts and summary rows (no I/O, no rich)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from phloem.records import TI, RunRecord
from phloem.states import TaskState

if TYPE_CHECKING:
    from phloem.store.read_types import AttemptRow

#: How a mapped task's instance states are listed, most telling first.
_STATE_ORDER = (
    TaskState.FAILED,
    TaskState.UPSTREAM_FAILED,
    TaskState.UP_FOR_RETRY,
    TaskState.RUNNING,
    TaskState.QUEUED,
    TaskState.SCHEDULED,
    TaskState.UP_FOR_RESCHEDULE,
    TaskState.PENDING,
    TaskState.SUCCESS,
    TaskState.CACHED,
    TaskState.SKIPPED,
)


def iso(ts: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds")


def one_line(text: str | None) -> str | None:
    if text is None:
        return None
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " ".join(lines) if lines else None


def duration(ti: TI) -> float | None:
    if ti.started_at is None or ti.ended_at is None:
        return None
    return max(0.0, ti.ended_at - ti.started_at)


def ordered(tis: Iterable[TI], order: Sequence[str] | None) -> list[TI]:
    """Instances in the pipeline's topological order (unknown tasks last), else by task id."""
    rank = {t: i for i, t in enumerate(order or ())}
    last = len(rank)
    return sorted(tis, key=lambda ti: (rank.get(ti.task_id, last), ti.task_id, ti.map_index))


def run_dict(run: RunRecord) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "state": run.state.value,
        "logical_date": run.logical_date,
        "params": run.params,
        "started_at": iso(run.started_at),
        "ended_at": iso(run.ended_at),
        "code_version": run.code_hash,
        "run_type": run.run_type,
        "triggered_by": run.triggered_by,
    }


def task_dict(ti: TI) -> dict[str, Any]:
    d = duration(ti)
    return {
        "task_id": ti.task_id,
        "map_index": ti.map_index if ti.map_index >= 0 else None,
        "state": ti.state.value,
        "try_number": ti.try_number,
        "started_at": iso(ti.started_at),
        "ended_at": iso(ti.ended_at),
        "duration_s": None if d is None else round(d, 6),
        "error": one_line(ti.error),
    }


def run_with_tasks(
    run: RunRecord,
    tis: Iterable[TI],
    order: Sequence[str] | None,
    attempts: Iterable[AttemptRow] | None = None,
) -> dict[str, Any]:
    """The run and its tasks; with ``attempts``, every attempt of each task too."""
    out = run_dict(run)
    out["tasks"] = [task_dict(ti) for ti in ordered(tis, order)]
    if attempts is not None:
        by_key: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for a in attempts:
            by_key.setdefault((a.task_id, a.map_index), []).append(attempt_dict(a))
        for task in out["tasks"]:
            key = (task["task_id"], -1 if task["map_index"] is None else task["map_index"])
            task["attempts"] = by_key.get(key, [])
    return out


def attempt_dict(a: AttemptRow) -> dict[str, Any]:
    return {
        "try": a.try_number,
        "state": a.state,
        "queued_at": iso(a.queued_at),
        "started_at": iso(a.started_at),
        "ended_at": iso(a.ended_at),
        "error": one_line(a.error),
        "worker": a.worker,
        "cpu_seconds": a.cpu_seconds,
        "peak_rss": a.peak_rss,
        "memory_limit": a.memory_limit,
        "gpu_seconds": a.gpu_seconds,
    }


def label(task_id: str, map_index: int) -> str:
    return f"{task_id}[{map_index}]" if map_index >= 0 else task_id


def counts_text(counts: Counter[TaskState] | dict[TaskState, int]) -> str:
    """``"9998 success, 2 failed"``: the non-zero states, most telling first."""
    parts = [f"{counts[s]} {s.value}" for s in _STATE_ORDER if counts.get(s, 0) > 0]
    return ", ".join(parts) or "none"


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a summary table: an unmapped task, or all instances of a mapped task."""

    task: str
    state: str
    tries: int
    duration: float | None
    mapped: int | None = None  # instance count of a mapped task
    cpu_seconds: float | None = None  # over every attempt, where measured
    peak_rss: int | None = None  # the largest of its attempts', bytes
    gpu_seconds: float | None = None  # reserved, over every attempt that held a GPU (Ray)


def summary_rows(
    tis: Iterable[TI],
    order: Sequence[str] | None,
    attempts: Iterable[AttemptRow] | None = None,
) -> list[Row]:
    """One row per task; with ``attempts``, what its attempts cost."""
    cost: dict[str, tuple[float | None, int | None, float | None]] = {}
    for a in attempts or ():
        cpu, peak, gpu = cost.get(a.task_id, (None, None, None))
        if a.cpu_seconds is not None:
            cpu = (cpu or 0.0) + a.cpu_seconds
        if a.peak_rss is not None:
            peak = max(peak or 0, a.peak_rss)
        if a.gpu_seconds:
            gpu = (gpu or 0.0) + a.gpu_seconds
        cost[a.task_id] = (cpu, peak, gpu)
    rows = _rows(tis, order)
    if not cost:
        return rows
    none = (None, None, None)
    return [
        replace(r, cpu_seconds=c[0], peak_rss=c[1], gpu_seconds=c[2])
        for r, c in ((r, cost.get(r.task, none)) for r in rows)
    ]


#: The end of ``phloem run`` lists at most this many tasks: rich lays a table out at about a
#: millisecond a row, so a 2,000-task chain's full table took longer to print than to run, and
#: nobody reads it. ``phloem runs show`` lists every task.
RUN_END_ROWS = 25

_SUCCEEDED = frozenset({TaskState.SUCCESS, TaskState.CACHED})


def run_end_rows(
    rows: Sequence[Row], tis: Iterable[TI], run_id: str, limit: int = RUN_END_ROWS
) -> tuple[list[Row], str | None]:
    """The rows the end of a run shows, and the line that counts the others (None if none is
    left out): the tasks that did not all succeed come first, then the first tasks in
    pipeline order fill the room; the rows shown keep pipeline order."""
    if len(rows) <= limit:
        return list(rows), None
    troubled = {ti.task_id for ti in tis if ti.state not in _SUCCEEDED}
    picked = [i for i, r in enumerate(rows) if r.task in troubled][:limit]
    room = limit - len(picked)
    chosen = set(picked)
    for i in range(len(rows)):
        if room <= 0:
            break
        if i not in chosen:
            chosen.add(i)
            room -= 1
    hidden = [r for i, r in enumerate(rows) if i not in chosen]
    fine = sum(1 for r in hidden if r.task not in troubled)
    how = "all succeeded" if fine == len(hidden) else f"{fine} of them succeeded"
    line = f"... and {len(hidden)} more tasks, {how} (phloem runs show {run_id} lists every task)"
    return [rows[i] for i in sorted(chosen)], line


def _rows(tis: Iterable[TI], order: Sequence[str] | None) -> list[Row]:
    groups: dict[str, list[TI]] = {}
    for ti in ordered(tis, order):
        groups.setdefault(ti.task_id, []).append(ti)
    rows = []
    for task_id, items in groups.items():
        if len(items) == 1 and items[0].map_index < 0:
            ti = items[0]
            rows.append(Row(task_id, ti.state.value, ti.try_number, duration(ti)))
            continue
        counts = Counter(ti.state for ti in items)
        starts = [ti.started_at for ti in items if ti.started_at is not None]
        ends = [ti.ended_at for ti in items if ti.ended_at is not None]
        span = max(ends) - min(starts) if starts and ends else None
        rows.append(
            Row(
                task_id,
                counts_text(counts),
                sum(ti.try_number for ti in items),
                None if span is None else max(0.0, span),
                len(items),
            )
        )
    return rows


def failures(tis: Iterable[TI], order: Sequence[str] | None) -> list[tuple[str, str]]:
    """(instance label, one-line error) of the failed instances, in pipeline order."""
    return [
        (label(ti.task_id, ti.map_index), one_line(ti.error) or "(no message)")
        for ti in ordered(tis, order)
        if ti.state is TaskState.FAILED
    ]


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"
