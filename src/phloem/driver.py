"""Drives one run to its end: snapshot -> decide -> commit -> hand out -> wait for reports.

The loop owns no rules (the engine decides) and no SQL (the store commits); it only moves
facts between them and the executor, and it wakes on reports or on the engine's next timer,
never on a fixed poll.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from phloem.artifacts import ArtifactStore, decode_output
from phloem.artifacts.codec import from_stored_json
from phloem.dsl.refs import ArgSpec, Lit, Map, Param, Ref, Seq
from phloem.dsl.spec import PipelineSpec, TaskSpec
from phloem.engine import (
    TI,
    AttemptFinished,
    AttemptStarted,
    Capacity,
    Event,
    Snapshot,
    Transition,
    decide,
)
from phloem.executors import Executor, Report, Started
from phloem.records import RunRecord
from phloem.runner import Attempt, Out, OutList, Result, log_path
from phloem.states import ACTIVE_TASK_STATES, RunState, TaskState
from phloem.store import ArtifactRecord, ArtifactUse, SqlStore

log = logging.getLogger("phloem.driver")
S = TaskState


class Reporter(Protocol):
    def update(self, snap: Snapshot, now: float) -> None: ...
    def finish(self, snap: Snapshot, now: float) -> None: ...


@dataclass(frozen=True, slots=True)
class CallbackContext:
    """What ``on_success`` / ``on_failure`` / ``on_retry`` callbacks receive."""

    run_id: str
    pipeline: str
    task_id: str
    map_index: int | None
    try_number: int
    state: str
    error: str | None
    logical_date: str


class Driver:
    def __init__(
        self,
        store: SqlStore,
        executor: Executor,
        spec: PipelineSpec,
        run: RunRecord,
        artifacts: ArtifactStore,
        logs_dir: Path,
        reporter: Reporter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.executor = executor
        self.spec = spec
        self.run = run
        self.artifacts = artifacts
        self.logs_dir = logs_dir
        self.reporter = reporter
        self.clock = clock
        self._map_sources: dict[str, list[Any]] = {}
        self._pending_records: list[ArtifactRecord] = []
        self._pending_uses: list[ArtifactUse] = []

    # -- the loop --------------------------------------------------------------------------------

    def drive(self) -> Snapshot:
        snap = self._load()
        self._recover(snap)
        self.executor.start({self.spec.name: self.spec}, self.artifacts.root)
        pools_total = self.store.pools()
        events: list[Event] = []
        try:
            while True:
                now = self.clock()
                capacity = Capacity(self.executor.slots, pools_total or None)
                d = decide(snap, now, events, capacity)
                events = []
                if not d.empty:
                    snap = self._apply(snap, d.transitions, d.expansions, d.run_state, now)
                    for kill in d.kills:
                        self.executor.kill(kill.key[0], kill.key[1], kill.try_number, kill.reason)
                if snap.run_state.is_terminal:
                    break
                timeout = None if d.wake_at is None else max(0.0, d.wake_at - self.clock())
                if timeout is None and snap.active_count == 0:
                    # nothing runs and no timer is due: only a pool with no free slot can
                    # cause this; look again soon rather than sleep forever
                    timeout = 1.0
                events = self._events(self.executor.wait(timeout))
        except BaseException:
            self._interrupt(snap)
            raise
        finally:
            self.executor.shutdown()
        if self.reporter is not None:
            self.reporter.finish(snap, self.clock())
        return snap

    def _load(self) -> Snapshot:
        run = self.store.get_run(self.run.run_id)
        self.run = run
        return Snapshot.build(
            self.spec, run.run_id, run.state, run.params, self.store.load_instances(run.run_id)
        )

    def _recover(self, snap: Snapshot) -> None:
        """Attempts a previous driver handed out are gone with it: schedule them again."""
        stale = [snap.tis[k] for k in snap.keys_in(*ACTIVE_TASK_STATES)]
        if stale:
            now = self.clock()
            ts = [Transition(ti, replace(ti, state=S.SCHEDULED), "interrupted") for ti in stale]
            self._apply(snap, ts, (), None, now)

    def _interrupt(self, snap: Snapshot) -> None:
        """On Ctrl-C or a crash of the loop: leave the run resumable, nothing half-done."""
        try:
            self.executor.shutdown()
            stale = [snap.tis[k] for k in snap.keys_in(*ACTIVE_TASK_STATES)]
            if stale:
                ts = [Transition(ti, replace(ti, state=S.SCHEDULED), "interrupted") for ti in stale]
                self.store.commit(snap.run_id, ts, now=self.clock())
        except Exception:  # the original exception matters more
            log.exception("could not mark interrupted attempts of run %s", snap.run_id)

    def _apply(
        self,
        snap: Snapshot,
        transitions: Iterable[Transition],
        expansions: Iterable[Any],
        run_state: RunState | None,
        now: float,
    ) -> Snapshot:
        ts = list(transitions)
        applied = self.store.commit(
            snap.run_id,
            ts,
            expansions=list(expansions),
            run_state=(snap.run_state, run_state) if run_state else None,
            now=now,
            artifacts=self._pending_records,
            uses=self._pending_uses,
        )
        self._pending_records, self._pending_uses = [], []
        for e in applied.expansions:
            snap.apply_expansion(e, now)
        for t in applied.transitions:
            snap.apply_transition(t)
        if applied.run_state is not None:
            snap.run_state = applied.run_state
        if applied.lost:
            log.warning(
                "run %s: %d changes lost to another actor; reloading",
                snap.run_id,
                len(applied.lost),
            )
            snap = self._load()
        submitted = [t.new for t in applied.transitions if t.new.state is S.QUEUED]
        for ti in submitted:
            self.executor.submit(self._attempt(snap, snap.tis.get(ti.key, ti)))
        self._callbacks(applied.transitions)
        if self.reporter is not None:
            self.reporter.update(snap, now)
        return snap

    def _events(self, reports: list[Report]) -> list[Event]:
        out: list[Event] = []
        for r in reports:
            if isinstance(r, Started):
                out.append(AttemptStarted((r.task_id, r.map_index), r.try_number, r.at))
                continue
            assert isinstance(r, Result)
            out.append(_finished(r))
            for a in r.artifacts:
                self._pending_records.append(
                    ArtifactRecord(a.digest, a.serializer, a.type_name, a.size, a.key)
                )
                self._pending_uses.append(
                    ArtifactUse(a.digest, r.task_id, r.map_index, "output", r.try_number)
                )
            for digest in dict.fromkeys(r.inputs):
                self._pending_uses.append(
                    ArtifactUse(digest, r.task_id, r.map_index, "input", r.try_number)
                )
        return out

    # -- attempts --------------------------------------------------------------------------------

    def _attempt(self, snap: Snapshot, ti: TI) -> Attempt:
        t = self.spec.tasks[ti.task_id]
        args = tuple(self._value(snap, a) for a in t.args)
        kwargs = {k: self._value(snap, v) for k, v in t.kwargs}
        if t.expand is not None:
            kwargs.update(self._mapped_kwargs(snap, t, ti.map_index))
        run = self.run
        return Attempt(
            run_id=run.run_id,
            pipeline=self.spec.name,
            task_id=ti.task_id,
            map_index=ti.map_index,
            try_number=ti.try_number,
            args=args,
            kwargs=kwargs,
            logical_date=run.logical_date,
            data_interval_start=run.data_interval_start,
            data_interval_end=run.data_interval_end,
            params=run.params,
            log_path=log_path(self.logs_dir, run.run_id, ti.task_id, ti.map_index, ti.try_number),
            first_started_at=ti.first_started_at or self.clock(),
            timeout=t.options.timeout,
            source=run.source,
            store_url=self.store.url,
        )

    def _value(self, snap: Snapshot, a: ArgSpec) -> Any:
        if isinstance(a, Lit):
            return a.value
        if isinstance(a, Param):
            return snap.params.get(a.name)
        if isinstance(a, Ref):
            up = self.spec.tasks[a.task_id]
            if up.is_mapped:
                return OutList(tuple(_out(ti) for ti in snap.instances(a.task_id)), a.path)
            return Out(_out(snap.tis[(a.task_id, -1)]), a.path)
        if isinstance(a, Seq):
            items = [self._value(snap, i) for i in a.items]
            return tuple(items) if a.kind == "tuple" else items
        assert isinstance(a, Map)
        return {k: self._value(snap, v) for k, v in a.items}

    def _mapped_kwargs(self, snap: Snapshot, t: TaskSpec, map_index: int) -> dict[str, Any]:
        assert t.expand is not None
        sources = [(name, self._map_source(snap, arg)) for name, arg in t.expand]
        sizes = [len(src) for _, src in sources]
        # cross product, the first keyword varying slowest (as itertools.product)
        idx = map_index
        picks: list[int] = []
        for size in reversed(sizes):
            picks.append(idx % size)
            idx //= size
        picks.reverse()
        return {name: src[i] for (name, src), i in zip(sources, picks, strict=True)}

    def _map_source(self, snap: Snapshot, arg: ArgSpec) -> Any:
        if isinstance(arg, Lit):
            return arg.value
        if isinstance(arg, Param):
            return snap.params[arg.name]
        assert isinstance(arg, Ref)
        up = self.spec.tasks[arg.task_id]
        if up.is_mapped:
            return [Out(_out(ti)) for ti in snap.instances(arg.task_id)]
        cached = self._map_sources.get(arg.task_id)
        if cached is None:
            stored = snap.tis[(arg.task_id, -1)].output
            cached = (
                []
                if stored is None
                else list(
                    decode_output(from_stored_json(stored), self.artifacts)  # type: ignore[call-overload]
                )
            )
            self._map_sources[arg.task_id] = cached
        return cached

    # -- callbacks -------------------------------------------------------------------------------

    def _callbacks(self, transitions: Iterable[Transition]) -> None:
        for t in transitions:
            opts = self.spec.tasks[t.new.task_id].options
            state = t.new.state
            fn = (
                opts.on_success
                if state is S.SUCCESS
                else opts.on_failure
                if state is S.FAILED
                else opts.on_retry
                if state is S.UP_FOR_RETRY
                else None
            )
            if fn is None or t.old.state is state:
                continue
            ctx = CallbackContext(
                run_id=self.run.run_id,
                pipeline=self.spec.name,
                task_id=t.new.task_id,
                map_index=t.new.map_index if t.new.map_index >= 0 else None,
                try_number=t.new.try_number,
                state=state.value,
                error=t.new.error,
                logical_date=self.run.logical_date,
            )
            try:
                fn(ctx)
            except Exception:
                log.exception("callback %s of task %s raised; ignored", fn, t.new.task_id)


def _out(ti: TI) -> str | None:
    return ti.output if ti.state in (S.SUCCESS, S.CACHED) else None


def _finished(r: Result) -> AttemptFinished:
    return AttemptFinished(
        key=(r.task_id, r.map_index),
        try_number=r.try_number,
        outcome=r.outcome,
        at=r.ended_at,
        output=r.output,
        map_length=r.map_length,
        follow=r.follow,
        error=r.error,
        retryable=r.retryable,
    )


__all__ = ["CallbackContext", "Driver", "Reporter"]
