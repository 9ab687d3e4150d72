"""Shared test support for the engine: a simulated run with a fake clock, trigger-rule oracles,
and hypothesis strategies for random pipelines.

``Sim`` plays the driver's part without any I/O: it calls ``decide`` with the events a test
feeds it, applies each decision to the snapshot (expansions, then transitions, then the run
state) and checks on every step what must always hold: each transition starts from the
instance as it is and is allowed by ``states.TASK_TRANSITIONS``, a task is only scheduled when
its trigger rule says RUN, and the run never holds more active instances than its capacity.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

import phloem
from phloem.dsl import Pipeline, PipelineSpec, resolve_params
from phloem.dsl.refs import Lit, Param, Ref
from phloem.engine import (
    RUN_RETRY,
    TI,
    AttemptFinished,
    AttemptStarted,
    CacheHit,
    Capacity,
    Decision,
    Draft,
    Event,
    Grant,
    Kill,
    Snapshot,
    Transition,
    Verdict,
    allocate,
    cached,
    decide,
    draft,
    evaluate,
    finish,
)
from phloem.states import (
    ACTIVE_TASK_STATES,
    SUCCESS_STATES,
    TASK_TRANSITIONS,
    AttemptOutcome,
    RunState,
    TaskState,
    TriggerRule,
    run_transition_allowed,
)

S = TaskState
#: the cache hits a driver finds for a draft's ready instances
HitsFor = Callable[[Draft], Sequence[CacheHit]]
FAILURE_STATES = frozenset({S.FAILED, S.UPSTREAM_FAILED})

# -- oracles -------------------------------------------------------------------------------------


def upstream_counts(snap: Snapshot, task_id: str) -> tuple[Counter[TaskState], int]:
    """States of every instance of ``task_id``'s upstream tasks, counted from the instances
    themselves (not from the snapshot's indexes)."""
    ups = set(snap.spec.tasks[task_id].upstream)
    counts: Counter[TaskState] = Counter()
    total = 0
    for ti in snap.tis.values():
        if ti.task_id in ups:
            counts[ti.state] += 1
            total += 1
    return counts, total


def descendants(spec: PipelineSpec, task_id: str) -> set[str]:
    out: set[str] = set()
    todo = [task_id]
    while todo:
        for d in spec.tasks[todo.pop()].downstream:
            if d not in out:
                out.add(d)
                todo.append(d)
    return out


def branch_decision(snap: Snapshot, task_id: str) -> str | None:
    """What the branches directly upstream of ``task_id`` decided about it: "skipped" (one
    decided and did not choose it, nor any task it comes after), "after_chosen" (not chosen,
    but it comes after a chosen task: as in Airflow, its trigger rule decides), or None."""
    spec = snap.spec
    found = None
    for up in spec.tasks[task_id].upstream:
        if not spec.tasks[up].is_branch:
            continue
        b = snap.tis.get((up, -1))
        chosen = b.follow if b is not None and b.state in SUCCESS_STATES else None
        if chosen is None or task_id in chosen:
            continue
        if any(task_id in descendants(spec, c) for c in chosen):
            found = "after_chosen"
        else:
            return "skipped"
    return found


def rule_verdict(snap: Snapshot, task_id: str) -> Verdict:
    """What the task's trigger rule says about its upstream instances as they are now."""
    counts, total = upstream_counts(snap, task_id)
    return evaluate(snap.spec.tasks[task_id].options.trigger_rule, counts, total)


def may_run(snap: Snapshot, task_id: str) -> str | None:
    """None if ``task_id`` may be scheduled now, else why not."""
    if branch_decision(snap, task_id) == "skipped":
        return "a branch upstream did not choose it"
    v = rule_verdict(snap, task_id)
    if v is not Verdict.RUN:
        counts, total = upstream_counts(snap, task_id)
        return f"its trigger rule says {v.value} on {dict(counts)} of {total}"
    for up in snap.spec.tasks[task_id].data_upstream:
        if any(not ti.state.is_terminal for ti in snap.instances(up)):
            return f"the task '{up}' whose output it reads has not ended"
    return None


def map_outcome(snap: Snapshot, task_id: str) -> TaskState | int:
    """How a mapped task whose trigger rule says RUN expands: a count, or the state its
    placeholder ends in (its source failed, was skipped, or did not return a list)."""
    t = snap.spec.tasks[task_id]
    assert t.expand is not None
    count = 1
    for _, arg in t.expand:
        if isinstance(arg, Lit):
            n: int | None = len(arg.value)
        elif isinstance(arg, Param):
            value = snap.params.get(arg.name)
            n = len(value) if isinstance(value, (list, tuple)) else None
        else:
            assert isinstance(arg, Ref)
            insts = snap.instances(arg.task_id)
            if any(ti.state in FAILURE_STATES for ti in insts):
                return S.UPSTREAM_FAILED
            if any(ti.state not in SUCCESS_STATES for ti in insts):
                return S.SKIPPED
            n = len(insts) if snap.spec.tasks[arg.task_id].is_mapped else insts[0].map_length
        if n is None:
            return S.FAILED
        count *= n
    return count


def label(key: tuple[str, int]) -> str:
    return key[0] if key[1] < 0 else f"{key[0]}[{key[1]}]"


# -- the simulated driver -----------------------------------------------------------------------


class _Everything(dict[str, None]):
    """Every task marked, and none ever settled: each draft looks at every task."""

    def pop(self, *args: Any) -> None:
        return None


@dataclass
class Sim:
    """One run decided by the engine on a fake clock; see the module docstring."""

    snap: Snapshot
    now: float = 1000.0
    capacity: Capacity = field(default_factory=Capacity)
    pool_sizes: dict[str, int] | None = None
    history: list[tuple[float, Transition]] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    scheduled_at: dict[tuple[str, int], float] = field(default_factory=dict)
    #: check the run's capacity after each step (off when a test starts it over its limits)
    limits: bool = True

    @classmethod
    def of(
        cls,
        pipe: Pipeline | PipelineSpec,
        *,
        params: dict[str, Any] | None = None,
        run_id: str = "run-1",
        now: float = 1000.0,
        slots: int = 1_000_000,
        pools: dict[str, int] | None = None,
    ) -> Sim:
        spec = pipe.spec if isinstance(pipe, Pipeline) else pipe
        values = resolve_params(spec, params)
        instances = [TI(task_id=t) for t in spec.tasks]
        snap = Snapshot.build(spec, run_id, RunState.QUEUED, values, instances)
        return cls(snap, now=now, capacity=Capacity(slots), pool_sizes=pools)

    # -- reading ---------------------------------------------------------------------------------

    @property
    def spec(self) -> PipelineSpec:
        return self.snap.spec

    def ti(self, task_id: str, map_index: int = -1) -> TI:
        return self.snap.tis[(task_id, map_index)]

    def state(self, task_id: str, map_index: int = -1) -> TaskState:
        return self.ti(task_id, map_index).state

    def states(self) -> dict[str, str]:
        return {label(k): ti.state.value for k, ti in sorted(self.snap.tis.items())}

    def keys_in(self, *states: TaskState) -> list[tuple[str, int]]:
        return sorted(self.snap.keys_in(*states))

    @property
    def active(self) -> int:
        return sum(1 for ti in self.snap.tis.values() if ti.state in ACTIVE_TASK_STATES)

    @property
    def run_state(self) -> RunState:
        return self.snap.run_state

    # -- events ----------------------------------------------------------------------------------

    def started(self, task_id: str, map_index: int = -1, *, at: float | None = None) -> Event:
        ti = self.ti(task_id, map_index)
        return AttemptStarted(ti.key, ti.try_number, self.now if at is None else at)

    def finished(
        self,
        task_id: str,
        outcome: AttemptOutcome | str = AttemptOutcome.SUCCESS,
        map_index: int = -1,
        *,
        at: float | None = None,
        try_number: int | None = None,
        **kw: Any,
    ) -> Event:
        ti = self.ti(task_id, map_index)
        tn = ti.try_number if try_number is None else try_number
        at = self.now if at is None else at
        return AttemptFinished(ti.key, tn, AttemptOutcome(outcome), at, **kw)

    def run_attempt(
        self,
        task_id: str,
        outcome: AttemptOutcome | str = AttemptOutcome.SUCCESS,
        map_index: int = -1,
        **kw: Any,
    ) -> Decision:
        """Report that the current attempt of an instance started and ended now."""
        return self.step(
            self.started(task_id, map_index), self.finished(task_id, outcome, map_index, **kw)
        )

    # -- deciding --------------------------------------------------------------------------------

    def step(
        self, *events: Event, at: float | None = None, hits: HitsFor | None = None
    ) -> Decision:
        """Decide and apply; ``hits`` (given the draft) are the cache hits a driver finds for
        its ready instances it did not look up yet, applied before the draft is finished."""
        if at is not None:
            assert at >= self.now, "the fake clock only moves forward"
            self.now = at
        cap = Capacity(self.capacity.slots, self.pool_sizes)
        # the same decision as one that looks at every pending task: a snapshot that remembers
        # no task as waiting (a copy sharing the instances, with every task marked for good)
        everything = copy.copy(self.snap)
        everything._dirty = _Everything.fromkeys(self.spec.tasks)
        if hits is None:
            full = decide(everything, self.now, events, cap)
            d = decide(self.snap, self.now, events, cap)
        else:
            rounds: list[Sequence[CacheHit]] = []

            def look_up(dr: Draft, n: int) -> Sequence[CacheHit]:
                rounds.append(hits(dr))
                return rounds[-1]

            d = self._decide(self.snap, events, cap, look_up)
            # the same hits, round by round
            full = self._decide(everything, events, cap, lambda _, n: rounds[n])
        assert d == full, f"a draft that looked at the marked tasks only decided {d}, not {full}"
        self.apply(d)
        return d

    def _decide(
        self,
        snap: Snapshot,
        events: Sequence[Event],
        cap: Capacity,
        hits: Callable[[Draft, int], Sequence[CacheHit]],
    ) -> Decision:
        """``decide`` as a driver with a cache does it: draft; rounds of cache hits for what is
        ready (each may make more ready), until a round finds none; allocate; finish."""
        d = draft(snap, self.now, events)
        for n in range(len(self.spec.tasks) + 1):
            found = hits(d, n)
            if not found:
                break
            cached(d, found, self.now)
        if not d.ready:
            return finish(d, self.now, Grant())
        grant = allocate([d.demand(cap.pools is not None)], cap, self.now)[snap.run_id]
        return finish(d, self.now, grant)

    def apply(self, d: Decision) -> None:
        snap = self.snap
        for e in d.expansions:
            ph = e.placeholder
            assert snap.tis.get(ph.key) == ph, f"expansion of a stale placeholder {ph}"
            assert ph.state is S.PENDING, f"expanded {label(ph.key)} from {ph.state}"
            assert e.count >= 0
            snap.apply_expansion(e, self.now)
        for t in d.transitions:
            cur = snap.tis.get(t.key)
            assert cur == t.old, f"transition of {label(t.key)} from {t.old}, but it is {cur}"
            assert t.new.key == t.old.key
            assert t.new.state in TASK_TRANSITIONS[t.old.state], (
                f"{label(t.key)}: {t.old.state} -> {t.new.state} is not an allowed transition"
            )
            if t.old.state is S.PENDING and t.new.state is S.SCHEDULED:
                why = may_run(snap, t.key[0])
                assert why is None, f"{label(t.key)} scheduled although {why}"
                self.scheduled_at[t.key] = self.now
            if t.new.state is S.QUEUED:
                assert t.new.try_number == t.old.try_number + 1
            else:
                assert t.new.try_number == t.old.try_number
            snap.apply_transition(t)
            self.history.append((self.now, t))
        retried = any((t.reason or "").startswith(RUN_RETRY) for t in d.transitions)
        for e in d.expansions:
            if retried:
                break  # a run retry reset (after the expansion) upstream tasks that had failed
            # the upstream states that allowed the expansion are final for this step
            why = may_run(snap, e.placeholder.task_id)
            assert why is None, f"{e.placeholder.task_id} expanded although {why}"
        self.kills.extend(d.kills)
        if d.run_state is not None:
            assert run_transition_allowed(snap.run_state, d.run_state)
            snap.run_state = d.run_state
        if self.limits:
            self.check_capacity()
        self.check_tallies()

    def check_capacity(self) -> None:
        active = [ti for ti in self.snap.tis.values() if ti.state in ACTIVE_TASK_STATES]
        assert len(active) <= self.capacity.slots, f"{len(active)} active > capacity"
        limit = self.spec.max_active_tasks
        assert limit is None or len(active) <= limit, f"{len(active)} active > max_active_tasks"
        if self.pool_sizes:
            used: Counter[str] = Counter()
            for ti in active:
                opts = self.spec.tasks[ti.task_id].options
                used[opts.pool] += opts.pool_slots
            for pool, size in self.pool_sizes.items():
                assert used[pool] <= size, f"pool {pool}: {used[pool]} slots used of {size}"

    def check_tallies(self) -> None:
        """The snapshot's incremental fan-in tallies agree with a count from scratch."""
        snap = self.snap
        for task_id, t in self.spec.tasks.items():
            counts, total = upstream_counts(snap, task_id)
            tallied = +snap.upstream.counts(task_id)  # unary plus drops zero counts
            assert tallied == counts, f"{task_id}: tallied {dict(tallied)} != {dict(counts)}"
            assert snap.upstream.total[task_id] == total, f"{task_id}: total {total}"
            reads = set(t.data_upstream)
            unfinished = sum(
                1 for ti in snap.tis.values() if ti.task_id in reads and not ti.state.is_terminal
            )
            assert snap.upstream.data_unfinished[task_id] == unfinished, task_id

    def transitions_of(self, task_id: str, map_index: int = -1) -> list[tuple[str, str]]:
        return [
            (t.old.state.value, t.new.state.value)
            for _, t in self.history
            if t.key == (task_id, map_index)
        ]


# -- random pipelines ---------------------------------------------------------------------------

RULES = tuple(TriggerRule)


@dataclass(frozen=True)
class TaskPlan:
    name: str
    kind: str  # "task" | "branch" | "sensor"
    rule: TriggerRule
    data_ups: tuple[int, ...]
    order_ups: tuple[int, ...]
    retries: int = 0
    retry_delay: float = 0.0
    retry_backoff: float = 1.0
    retry_jitter: float = 0.0
    max_retry_delay: float | None = None
    timeout: float | None = None
    expand_lit: tuple[int, ...] | None = None  # map over this literal list
    expand_ref: int | None = None  # or over the output of this earlier task
    pool: str = "default"
    pool_slots: int = 1
    priority: int = 0
    poke_interval: float = 5.0
    sensor_timeout: float = 30.0
    soft_fail: bool = False

    @property
    def mapped(self) -> bool:
        return self.expand_lit is not None or self.expand_ref is not None


@dataclass(frozen=True)
class DagPlan:
    tasks: tuple[TaskPlan, ...]
    slots: int
    pool_size: int
    max_active_tasks: int | None
    #: the pipeline's own retries (a run about to fail runs its failed tasks again)
    run_retries: int = 0
    run_retry_delay: float = 0.0

    @property
    def map_sources(self) -> frozenset[str]:
        return frozenset(
            self.tasks[t.expand_ref].name for t in self.tasks if t.expand_ref is not None
        )


@st.composite
def task_plans(draw: st.DrawFn, index: int, earlier: tuple[TaskPlan, ...]) -> TaskPlan:
    ups = sorted(draw(st.sets(st.integers(0, index - 1), max_size=3))) if index else []
    data = tuple(u for u in ups if draw(st.booleans()))
    order = tuple(u for u in ups if u not in data)
    kind = draw(st.sampled_from(("task", "task", "task", "branch", "sensor")))
    expand_lit = expand_ref = None
    if kind != "branch" and draw(st.integers(0, 3)) == 0:
        sources = [i for i, t in enumerate(earlier) if t.kind != "branch"]
        if sources and draw(st.booleans()):
            expand_ref = draw(st.sampled_from(sources))
        else:
            expand_lit = tuple(range(draw(st.integers(0, 3))))
    pooled = draw(st.booleans())
    return TaskPlan(
        name=f"t{index}",
        kind=kind,
        rule=draw(st.sampled_from(RULES)),
        data_ups=data,
        order_ups=order,
        retries=draw(st.integers(0, 2)),
        retry_delay=draw(st.sampled_from((0.0, 1.0, 5.0))),
        retry_backoff=draw(st.sampled_from((1.0, 2.0))),
        retry_jitter=draw(st.sampled_from((0.0, 0.0, 0.5))),
        max_retry_delay=draw(st.sampled_from((None, 3.0))),
        timeout=draw(st.one_of(st.none(), st.sampled_from((4.0, 12.0)))),
        expand_lit=expand_lit,
        expand_ref=expand_ref,
        pool="p" if pooled else "default",
        pool_slots=draw(st.integers(1, 2)) if pooled else 1,
        priority=draw(st.sampled_from((0, 0, 1, 5))),
        poke_interval=draw(st.sampled_from((1.0, 4.0))),
        sensor_timeout=draw(st.sampled_from((5.0, 20.0))),
        soft_fail=draw(st.booleans()),
    )


@st.composite
def dag_plans(draw: st.DrawFn, max_tasks: int = 8, run_retries: bool = False) -> DagPlan:
    """A random pipeline: edges only from lower to higher index, random trigger rules, some
    branches and sensors, some tasks mapped over literal lists or over an earlier output;
    with ``run_retries``, the pipeline's own retries too."""
    n = draw(st.integers(1, max_tasks))
    tasks: tuple[TaskPlan, ...] = ()
    for i in range(n):
        tasks = (*tasks, draw(task_plans(i, tasks)))
    return DagPlan(
        tasks=tasks,
        slots=draw(st.integers(1, 4)),
        pool_size=draw(st.integers(2, 3)),
        max_active_tasks=draw(st.one_of(st.none(), st.integers(1, 3))),
        run_retries=draw(st.integers(0, 2)) if run_retries else 0,
        run_retry_delay=draw(st.sampled_from((0.0, 5.0))) if run_retries else 0.0,
    )


def _work(**kwargs: Any) -> None:
    return None


def _task(tp: TaskPlan) -> phloem.Task[Any, Any]:
    opts: dict[str, Any] = {
        "name": tp.name,
        "trigger_rule": tp.rule,
        "retries": tp.retries,
        "retry_delay": tp.retry_delay,
        "retry_backoff": tp.retry_backoff,
        "retry_jitter": tp.retry_jitter,
        "max_retry_delay": tp.max_retry_delay,
        "pool": tp.pool,
        "pool_slots": tp.pool_slots,
        "priority": tp.priority,
    }
    if tp.kind == "sensor":
        return phloem.sensor(
            poke_interval=tp.poke_interval,
            timeout=tp.sensor_timeout,
            mode="reschedule",
            soft_fail=tp.soft_fail,
            **opts,
        )(_work)
    if tp.timeout is not None:
        opts["timeout"] = tp.timeout
    if tp.kind == "branch":
        return phloem.task.branch(**opts)(_work)  # type: ignore[no-any-return]
    return phloem.task(**opts)(_work)


def build_pipeline(plan: DagPlan) -> Pipeline:
    tasks = [_task(tp) for tp in plan.tasks]

    def body() -> None:
        refs: list[phloem.TaskRef] = []
        for tp, t in zip(plan.tasks, tasks, strict=True):
            data = {f"u{j}": refs[j] for j in tp.data_ups}
            if tp.expand_lit is not None:
                ref = t.partial(**data).expand(x=list(tp.expand_lit))
            elif tp.expand_ref is not None:
                ref = t.partial(**data).expand(x=refs[tp.expand_ref])
            else:
                ref = t(**data)
            for j in tp.order_ups:
                refs[j] >> ref
            refs.append(ref)

    return phloem.pipeline(  # type: ignore[no-any-return]
        body,
        name="random_dag",
        max_active_tasks=plan.max_active_tasks,
        retries=plan.run_retries,
        retry_delay=plan.run_retry_delay,
    )


def terminal_states(tis: Iterable[TI]) -> bool:
    return all(ti.state.is_terminal for ti in tis)


# -- runs sharing one capacity (engine.allocate) --------------------------------------------------

POOLS = ("default", "p", "q")
HELD_STATES = (S.PENDING, S.SCHEDULED, S.SCHEDULED, S.RUNNING, S.SUCCESS)


@dataclass(frozen=True)
class RunPlan:
    """One run of a flat pipeline (no edges, so its pending tasks are ready at once), with its
    instances in random states: running ones hold slots, scheduled and pending ones want them."""

    tasks: tuple[TaskPlan, ...]
    states: tuple[TaskState, ...]
    max_active_tasks: int | None
    backfill: bool
    created_at: float
    waited: float  # seconds since the driver took the run


@dataclass(frozen=True)
class SharePlan:
    """Several runs competing for one executor, a parallelism limit and pools, some of whose
    slots runs driven elsewhere hold."""

    runs: tuple[RunPlan, ...]
    slots: int
    pools: dict[str, int] | None
    held_elsewhere: dict[str, int]


@st.composite
def run_plans(draw: st.DrawFn, patience: float = 60.0) -> RunPlan:
    n = draw(st.integers(1, 6))
    tasks = tuple(
        TaskPlan(
            name=f"t{i}",
            kind="task",
            rule=TriggerRule.ALL_SUCCESS,
            data_ups=(),
            order_ups=(),
            pool=draw(st.sampled_from(POOLS)),
            pool_slots=draw(st.integers(1, 2)),
            priority=draw(st.sampled_from((0, 0, 1, 5))),
        )
        for i in range(n)
    )
    return RunPlan(
        tasks=tasks,
        states=tuple(draw(st.sampled_from(HELD_STATES)) for _ in tasks),
        max_active_tasks=draw(st.one_of(st.none(), st.integers(1, 4))),
        backfill=draw(st.booleans()),
        created_at=float(draw(st.integers(0, 5))),
        waited=draw(st.sampled_from((0.0, patience / 2, patience, patience * 2))),
    )


@st.composite
def share_plans(draw: st.DrawFn, max_runs: int = 5) -> SharePlan:
    runs = tuple(draw(st.lists(run_plans(), min_size=1, max_size=max_runs)))
    sized = draw(st.sets(st.sampled_from(POOLS)))
    pools = {p: draw(st.integers(0, 5)) for p in sorted(sized)}
    return SharePlan(
        runs=runs,
        slots=draw(st.integers(0, 8)),
        pools=pools if pools or draw(st.booleans()) else None,
        held_elsewhere={p: draw(st.integers(0, 2)) for p in pools if draw(st.booleans())},
    )


def run_snapshot(plan: RunPlan, run_id: str, now: float) -> Snapshot:
    pipe = build_pipeline(DagPlan(plan.tasks, 1, 1, plan.max_active_tasks))
    tis = []
    for tp, state in zip(plan.tasks, plan.states, strict=True):
        if state is S.RUNNING:
            tis.append(
                TI(tp.name, state=state, try_number=1, queued_at=now - 2, started_at=now - 1)
            )
        else:
            tis.append(TI(tp.name, state=state))
    return Snapshot.build(pipe.spec, run_id, RunState.RUNNING, {}, tis)
