"""One run being driven: its snapshot, the decisions committed for it, its attempts.

A session owns no rules (the engine decides) and no SQL (the store commits); it moves facts
between them and hands out attempts. ``Loop`` multiplexes sessions over one executor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from phloem.artifacts import ArtifactStore
from phloem.caching import CacheMode, uses_cache
from phloem.driver.inputs import Inputs
from phloem.driver.orphans import Orphans
from phloem.dsl.options import Resources, TaskOptions
from phloem.dsl.params import typed_params
from phloem.dsl.spec import PipelineSpec
from phloem.effects import AttemptEffects
from phloem.engine import (
    RUN_RETRY,
    TI,
    AttemptFinished,
    AttemptStarted,
    Decision,
    Draft,
    Event,
    Expansion,
    Grant,
    Key,
    Kill,
    Snapshot,
    Transition,
    cached,
    draft,
    finish,
)
from phloem.engine.retry import attempt_memory
from phloem.errors import ParamError
from phloem.executors import Report, Started
from phloem.records import RunRecord
from phloem.runner import Attempt, Result, log_path
from phloem.runner.failures import OUT_OF_MEMORY
from phloem.states import ACTIVE_TASK_STATES, AttemptOutcome, RunState, TaskState
from phloem.store import Applied, ArtifactRecord, ArtifactUse, Commit, Store

if TYPE_CHECKING:
    from phloem.alerting import Alerting
    from phloem.caching import RunCache, Versions
    from phloem.store.read_types import EventRow

log = logging.getLogger("phloem.driver")
S = TaskState

#: automatic batches: once this many instances of a mapped task have ended, the mean time they
#: took decides how many go to a worker together, so that a batch holds about
#: ``AUTO_BATCH_SECONDS`` of work, at most ``AUTO_BATCH_MAX`` instances, and every slot still
#: gets a share of what is ready
AUTO_BATCH_AFTER = 4
AUTO_BATCH_SECONDS = 0.05
AUTO_BATCH_MAX = 100


class Reporter(Protocol):
    def update(self, snap: Snapshot, now: float, changed: Collection[str] | None = None) -> None:
        """After each applied decision; ``changed``: the tasks whose instances it changed
        (None: any may have), so a reporter need not look at every task on every turn. A
        reporter whose ``update`` takes only ``(snap, now)`` is called that way."""

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


@dataclass(frozen=True, slots=True)
class RunCallbackContext:
    """What a pipeline's ``on_success`` / ``on_failure`` callbacks receive, once per run end."""

    run_id: str
    pipeline: str
    state: str
    logical_date: str
    #: the tasks that failed (or could not run because an upstream failed), with their errors
    failed: dict[str, str | None]


@dataclass(slots=True)
class Step:
    """What one turn of a session asks of the executor."""

    submits: list[Attempt] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    wake_at: float | None = None


class RunSession:
    def __init__(
        self,
        store: Store,
        spec: PipelineSpec,
        run: RunRecord,
        artifacts: ArtifactStore,
        logs_dir: Path,
        reporter: Reporter | None = None,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
        lease_ttl: float = 30.0,
        cache_mode: CacheMode = CacheMode.USE,
        cache_versions: Versions | None = None,
        alerts: Alerting | None = None,
    ) -> None:
        self.store = store
        self.spec = spec
        self.run = run
        #: the lease this session's commits are fenced by (None: no lease, e.g. a test)
        self.owner = owner if owner is not None else run.owner
        self.lease_ttl = lease_ttl
        self.fenced = False
        #: the run's lease was given back as it ended (by the loop's lease keeper)
        self.released = False
        self.artifacts = artifacts
        self.logs_dir = logs_dir
        self.reporter = reporter
        self._report_changed = reporter is not None and _takes_changed(reporter)
        self.clock = clock
        self.params = _typed_params(spec, run)
        self.inputs = Inputs(spec, artifacts, self.params)
        #: the task cache, when some task caches and the run uses it (only then is the
        #: cache's machinery imported)
        self.cache: RunCache | None = None
        if uses_cache(spec, cache_mode):
            from phloem.caching.lookup import RunCache

            self.cache = RunCache(
                store, spec, run, artifacts, self.inputs, cache_mode, cache_versions
            )
        self._asset_outputs = {
            t.task_id: t.options.outputs for t in spec.tasks.values() if t.options.outputs
        }
        #: what attempts of tasks that ask for more than the default need (executors that place
        #: work, Ray, honour it; attempts of the others carry nothing)
        self._resources = {
            t.task_id: t.options.resources
            for t in spec.tasks.values()
            if t.options.resources != Resources()
        }
        self.snap: Snapshot = self._load()
        self._events: list[Event] = []
        self._planned: list[Event] = []
        self._submitted: set[tuple[Key, int]] = set()  # attempts handed to the executor
        self._records: list[ArtifactRecord] = []
        self._uses: list[ArtifactUse] = []
        self._effects: list[AttemptEffects] = []
        #: per mapped task that may batch on its own: (instances ended, seconds they took)
        self._took: dict[str, tuple[int, float]] = {}
        #: the batch sizes of the last plan (task -> instances per batch)
        self._batch: Mapping[str, int] = {}
        #: attempts heartbeat (and inherited ones are waited for) when other processes share
        #: the store and the run is leased; an in-memory store lives in this process only
        self._leases = (
            store.attempt_leases if self.owner is not None and store.capabilities.shared else None
        )
        self._orphans = Orphans()
        #: the run's alert rules, checked as its changes commit (None: its pipeline has none)
        self._watch = alerts.watch(spec, self.run) if alerts is not None else None
        #: what commits applied that the task callbacks and the reporter have yet to hear of
        #: (``settle``, once the turn's attempts are out)
        self._unsettled: list[Applied] = []

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def done(self) -> bool:
        return self.snap.run_state.is_terminal

    @property
    def active(self) -> int:
        return self.snap.active_count

    def _load(self) -> Snapshot:
        run = self.store.get_run(self.run.run_id)
        self.run = run
        tis = self.store.load_instances(run.run_id)
        have = {ti.task_id for ti in tis}
        missing = [t for t in self.spec.tasks.values() if t.task_id not in have]
        if missing and not run.state.is_terminal:
            # the pipeline's code gained tasks since the run began: they join the run (tasks
            # it lost are left out of the snapshot), as a scheduler re-reading the file would
            pools = {t.task_id: (t.options.pool, t.options.pool_slots) for t in missing}
            fresh = [TI(task_id=t.task_id) for t in missing]
            self.store.add_instances(run.run_id, fresh, pools)
            tis = [*tis, *fresh]
        snap = Snapshot.build(self.spec, run.run_id, run.state, run.params, tis)
        snap.started_at = run.started_at if run.state is RunState.RUNNING else None
        if self.spec.retries:
            snap.run_retries = _run_retries(self.store.events(run.run_id))
        return snap

    def ended_elsewhere(self) -> list[Kill]:
        """Another process ended the run (``phloem cancel``): take in what the store holds
        now, and return the kills of the attempts handed out that may no longer run."""
        out = {k: self.snap.tis[k].try_number for k in self.snap.keys_in(*ACTIVE_TASK_STATES)}
        self._events = []  # what those attempts report changes nothing now
        self.snap = self._load()
        kills = []
        for key, try_number in out.items():
            ti = self.snap.tis.get(key)
            if ti is not None and ti.state in ACTIVE_TASK_STATES and ti.try_number == try_number:
                continue
            reason = ti.error if ti is not None and ti.error else "the run ended elsewhere"
            kills.append(Kill(key, try_number, reason))
        return kills

    def recover(self) -> None:
        """Schedule again the attempts a driver that is gone handed out. One that may still
        run where that driver sent it is retried only once its heartbeat expired."""
        stale = [self.snap.tis[k] for k in self.snap.keys_in(*ACTIVE_TASK_STATES)]
        if stale:
            if self._leases is not None:
                self._orphans.watch(self._leases, self.run_id, stale, self.lease_ttl, self.clock())
            ts = [Transition(ti, replace(ti, state=S.SCHEDULED), "interrupted") for ti in stale]
            self._apply(ts, (), None, self.clock())

    def interrupt(self) -> None:
        """Leave the run resumable: nothing claims to run once its driver stopped."""
        if self.fenced:
            return  # not ours any more: the new owner decides
        stale = [self.snap.tis[k] for k in self.snap.keys_in(*ACTIVE_TASK_STATES)]
        if stale:
            ts = [Transition(ti, replace(ti, state=S.SCHEDULED), "interrupted") for ti in stale]
            req = Commit(self.run_id, tuple(ts), owner=self.owner, lease_ttl=self.lease_ttl)
            self.store.commit_many([req], now=self.clock())

    def report(self, r: Report) -> None:
        if isinstance(r, Started):
            self._events.append(AttemptStarted((r.task_id, r.map_index), r.try_number, r.at))
            return
        self._events.append(_finished(r))
        if r.map_index >= 0 and r.outcome is AttemptOutcome.SUCCESS:
            opts = self.spec.tasks[r.task_id].options if r.task_id in self.spec.tasks else None
            if opts is not None and opts.batch_size is None and opts.sensor is None:
                n, spent = self._took.get(r.task_id, (0, 0.0))
                self._took[r.task_id] = (n + 1, spent + max(0.0, r.ended_at - r.started_at))
        for a in r.artifacts:
            self._records.append(ArtifactRecord(a.digest, a.serializer, a.type_name, a.size, a.key))
            self._uses.append(ArtifactUse(a.digest, r.task_id, r.map_index, "output", r.try_number))
        for digest in dict.fromkeys(r.inputs):
            self._uses.append(ArtifactUse(digest, r.task_id, r.map_index, "input", r.try_number))
        if r.effects:
            self._effects.append(AttemptEffects(r.task_id, r.map_index, r.try_number, r.effects))

    def draft(self, now: float) -> Draft:
        """Draft a decision from the reports received so far; the loop then grants it
        capacity (``allocate``) and ``plan`` finishes it."""
        events, self._events = self._events, []
        self._planned = events  # given back by ``restore`` if the commit fails
        d = draft(self.snap, now, events)
        if self.cache is not None:
            # ready instances of caching tasks are looked up (one query per round); hits
            # become cached and may make their downstream ready, looked up in the next round
            for _ in range(len(self.spec.tasks) + 1):
                hits = self.cache.lookup(d, now)
                if not hits:
                    break
                cached(d, hits, now)
        return d

    def batching(self, d: Draft, slots: int, batches: bool = True) -> None:
        """Choose the draft's batch sizes before it asks for slots: the tasks' ``batch_size``,
        and for mapped tasks that leave it to phloem, as many instances as make a batch of
        about ``AUTO_BATCH_SECONDS`` (tiny instances then cost one message and one slot per
        batch, not each), no more than share what is ready among ``slots``. An executor that
        does not take batches (``batches`` false) gets every attempt on its own slot."""
        if not batches:
            d.batch = {}
        elif self._took:
            chosen = dict(d.batch)
            for task_id, (n, spent) in self._took.items():
                if n < AUTO_BATCH_AFTER:
                    continue
                size = AUTO_BATCH_MAX if spent <= 0 else int(AUTO_BATCH_SECONDS * n / spent)
                ready = d.w.counts(task_id)[S.SCHEDULED]
                size = min(size, AUTO_BATCH_MAX, ready // max(1, slots))
                if size > 1:
                    chosen[task_id] = size
            d.batch = chosen
        self._batch = d.batch

    def plan(self, drafted: Draft, grant: Grant, now: float) -> tuple[Decision, Commit | None]:
        """Finish the draft within ``grant``; the store applies the result (possibly together
        with other runs' decisions, in one transaction) before ``absorb``."""
        d = finish(drafted, now, grant)
        c = self.cache
        if (
            d.empty
            and not self._records
            and not self._uses
            and not self._effects
            and not (c and c.checks)
        ):
            return d, None
        req = Commit(
            self.run_id,
            d.transitions,
            d.expansions,
            (self.snap.run_state, d.run_state) if d.run_state else None,
            tuple(self._records),
            tuple(self._uses) + (tuple(c.uses) if c else ()),
            self._asset_outputs,
            tuple(self._effects),
            self.owner,
            self.lease_ttl,
            cache_entries=tuple(c.entries(d.transitions)) if c else (),
            cache_checks=tuple(c.checks_for(d.transitions)) if c else (),
        )
        return d, req

    def restore(self, req: Commit | None) -> None:
        """The commit of the last plan failed: decide again from the same reports (artifact
        records stay pending until a commit applies them)."""
        self._events = [*self._planned, *self._events]
        self._planned = []
        if self.cache is not None:
            self.cache.restore()

    def absorb(self, d: Decision, applied: Applied | None, now: float) -> Step:
        """Take in what the store applied; returns the attempts to hand out and kills."""
        self._planned = []
        if applied is not None:
            self._records, self._uses, self._effects = [], [], []
            if self.cache is not None:
                self.cache.applied(applied.transitions)
            if applied.fenced:
                self.fenced = True  # another driver owns the run now: hand nothing out
                return Step()
        step = Step(kills=list(d.kills), wake_at=d.wake_at)
        if applied is not None:
            step.submits = self._absorb(applied, now)
        if len(self._orphans):
            step.submits += self._orphans.release(now, self._still_queued)
            held = self._orphans.wake_at
            if held is not None:
                step.wake_at = held if step.wake_at is None else min(step.wake_at, held)
        if self._watch is not None:
            timer = self._watch.tick(self.snap.run_state, self.snap.started_at, now)
            if timer is not None:
                step.wake_at = timer if step.wake_at is None else min(step.wake_at, timer)
        return step

    def settle(self, now: float) -> None:
        """Tell the task callbacks and the reporter what the commits since the last call
        applied. Called after the attempts those commits queued were handed out: a slow
        callback or progress line never holds up the tasks after it."""
        unsettled, self._unsettled = self._unsettled, []
        for applied in unsettled:
            self._callbacks(applied.transitions)
            if self.reporter is not None:
                if not self._report_changed:
                    self.reporter.update(self.snap, now)
                elif applied.lost:  # reloaded: anything may have changed
                    self.reporter.update(self.snap, now, None)
                else:
                    changed = {t.new.task_id for t in applied.transitions}
                    changed.update(e.placeholder.task_id for e in applied.expansions)
                    self.reporter.update(self.snap, now, changed)
        if self.done and self.reporter is not None:  # the turn it ended in: the loop lets go
            self.reporter.finish(self.snap, now)

    def _apply(
        self,
        transitions: Sequence[Transition],
        expansions: Sequence[Expansion],
        run_state: RunState | None,
        now: float,
    ) -> list[Attempt]:
        snap = self.snap
        req = Commit(
            snap.run_id,
            tuple(transitions),
            tuple(expansions),
            (snap.run_state, run_state) if run_state else None,
            owner=self.owner,
            lease_ttl=self.lease_ttl,
        )
        applied = self.store.commit_many([req], now=now)[0]
        if applied.fenced:
            self.fenced = True
            return []
        attempts = self._absorb(applied, now)
        self.settle(now)
        return attempts

    def _absorb(self, applied: Applied, now: float) -> list[Attempt]:
        snap = self.snap
        for e in applied.expansions:
            snap.apply_expansion(e, now)
        retried: dict[str, str | None] | None = None
        for t in applied.transitions:
            snap.apply_transition(t)
            if (t.reason or "").startswith(RUN_RETRY):
                retried = {} if retried is None else retried
                if t.old.state is S.FAILED:
                    retried[_label(t.old)] = t.old.error
            if t.new.state is S.SUCCESS:
                self.inputs.forget(t.new.task_id)
        if retried is not None:  # counted by the change's reason, whatever was reset
            snap.run_retries += 1
            self._run_callback(RunState.FAILED, self.spec.on_retry, retried)
        started_at = snap.started_at
        if applied.run_state is not None:
            snap.run_state = applied.run_state
            if applied.run_state is RunState.RUNNING:
                snap.started_at = now  # as the store recorded it, for the run's timeout
            if applied.run_state.is_terminal:
                state = applied.run_state
                self._run_callback(
                    state,
                    self.spec.on_success if state is RunState.SUCCESS else self.spec.on_failure,
                )
        if self._watch is not None:
            ended = applied.run_state is not None and applied.run_state.is_terminal
            self._watch.changed(
                applied.transitions,
                applied.run_state,
                self._failed() if ended else {},
                started_at if started_at is not None else self.run.started_at,
                now,
            )
        if applied.lost:
            log.warning(
                "run %s: %d changes lost to another actor; reloading",
                snap.run_id,
                len(applied.lost),
            )
            self.snap = snap = self._load()
        attempts = [
            self._attempt(snap.tis.get(t.new.key, t.new), now)
            for t in applied.transitions
            if t.new.state is S.QUEUED and snap.tis.get(t.new.key, t.new).state is S.QUEUED
        ]
        if applied.lost:
            # a commit whose acknowledgement was lost may have queued attempts that were
            # never handed out: nobody else drives this run (fencing), so hand them out now
            attempts += [
                self._attempt(snap.tis[k], now)
                for k in snap.keys_in(S.QUEUED)
                if (k, snap.tis[k].try_number) not in self._submitted
                and all(a.key != k for a in attempts)
            ]
        self._submitted.update((a.key, a.try_number) for a in attempts)
        attempts = self._orphans.gate(attempts, now)
        self._unsettled.append(applied)
        return attempts

    def _still_queued(self, a: Attempt) -> bool:
        ti = self.snap.tis.get(a.key)
        return ti is not None and ti.state is S.QUEUED and ti.try_number == a.try_number

    def _attempt(self, ti: TI, now: float) -> Attempt:
        t = self.spec.tasks[ti.task_id]
        args, kwargs = self.inputs.arguments(self.snap, ti)
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
            params=self.params,
            log_path=log_path(self.logs_dir, run.run_id, ti.task_id, ti.map_index, ti.try_number),
            first_started_at=ti.first_started_at or self.clock(),
            timeout=self._attempt_timeout(t.options.timeout),
            source=run.source,
            code_hash=run.code_hash,
            store_url=self.store.shared_url,
            run_type=str(run.run_type),
            owner=self.owner,
            # the commit that queued it (at ``now``) extended the run's lease
            lease_from=now,
            heartbeat_ttl=self.lease_ttl if self._leases is not None else None,
            memory_limit=self._memory_limit(t.options, ti),
            resources=self._resources.get(ti.task_id),
            batch=self._batch.get(ti.task_id, 1),
        )

    def _memory_limit(self, options: TaskOptions, ti: TI) -> int | None:
        """The task's memory, grown after tries of this instance that ran out of it (read
        back from their attempts, so a successor driver grows it the same way)."""
        if not options.resources.memory:
            return None
        ran_out: list[int] = []
        if options.retry_memory_factor is not None and ti.try_number > 1:
            ran_out = [
                a.memory_limit
                for a in self.store.attempts(self.run_id, ti.task_id)
                if a.map_index == ti.map_index
                and a.memory_limit
                and (a.error or "").startswith(OUT_OF_MEMORY)
            ]
        return attempt_memory(options, ran_out)

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

    def _attempt_timeout(self, own: float | None) -> float | None:
        """The task's timeout, cut to what is left of the run's: an executor that cannot be
        told to stop an attempt (inline) still ends it at the run's deadline."""
        limit, started = self.spec.timeout, self.snap.started_at
        if limit is None:
            return own
        left = max(0.001, (started if started is not None else self.clock()) + limit - self.clock())
        return left if own is None else min(own, left)

    def _failed(self) -> dict[str, str | None]:
        """The tasks that failed (or could not run because an upstream failed), with errors."""
        return {
            _label(self.snap.tis[k]): self.snap.tis[k].error
            for k in self.snap.keys_in(S.FAILED, S.UPSTREAM_FAILED)
        }

    def _run_callback(
        self,
        state: RunState,
        fn: Callable[..., Any] | None,
        failed: dict[str, str | None] | None = None,
    ) -> None:
        if fn is None:
            return
        if failed is None:
            failed = self._failed()
        ctx = RunCallbackContext(
            self.run.run_id, self.spec.name, state.value, self.run.logical_date, failed
        )
        try:
            fn(ctx)
        except Exception:
            log.exception("callback %s of pipeline %s raised; ignored", fn, self.spec.name)


def _takes_changed(reporter: Reporter) -> bool:
    """Whether ``reporter.update`` accepts the tasks that changed (a third argument)."""
    import inspect

    try:
        params = inspect.signature(reporter.update).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params) or (
        sum(p.kind in positional for p in params) >= 3
    )


def _label(ti: TI) -> str:
    return ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"


def _run_retries(events: Iterable[EventRow]) -> int:
    """How many run retries the store's history records (``run retry N`` reasons)."""
    numbers = {
        e.reason.removeprefix(RUN_RETRY).strip()
        for e in events
        if e.reason is not None and e.reason.startswith(RUN_RETRY)
    }
    return len(numbers)


def _typed_params(spec: PipelineSpec, run: RunRecord) -> dict[str, Any]:
    """The run's stored parameters as their declared types; as stored when the pipeline's
    code no longer accepts them (its parameter types changed since the run began)."""
    try:
        return typed_params(spec, run.params)
    except ParamError as exc:
        log.warning("run %s keeps its parameters as stored: %s", run.run_id, exc)
        return dict(run.params)


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


__all__ = ["CallbackContext", "RunCallbackContext", "Reporter", "RunSession", "Step"]
