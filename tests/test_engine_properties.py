"""Property tests: random pipelines, outcomes, clocks and capacities driven through decide().

Every step is checked by ``strategies.Sim`` (allowed transitions, trigger rules at the moment a
task is scheduled, capacity); every finished run is checked here (it ends, its instances are
terminal, final states agree with the trigger rules, the run state agrees with its leaves).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from phloem.engine import (
    RUN_RETRY,
    AttemptFinished,
    AttemptStarted,
    CacheHit,
    Draft,
    Event,
    Snapshot,
    Verdict,
)
from phloem.states import AttemptOutcome, RunState, TaskState, TriggerRule
from strategies import (
    FAILURE_STATES,
    DagPlan,
    Sim,
    TaskPlan,
    branch_decision,
    build_pipeline,
    dag_plans,
    label,
    map_outcome,
    rule_verdict,
    terminal_states,
    upstream_counts,
)

S = TaskState
MAX_STEPS = 5000
PROPS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class FakeExecutor:
    """Runs attempts on the simulated clock: each starts after a short delay and ends with a
    random outcome. Some starts go unreported, some reports arrive twice, a timed-out attempt
    still reports (late), and a started attempt's report may be lost (its timeout ends it)."""

    def __init__(
        self, sim: Sim, plan: DagPlan, rnd: random.Random, only_success: bool = False
    ) -> None:
        self.only_success = only_success
        self.sim = sim
        self.plan = {tp.name: tp for tp in plan.tasks}
        self.sources = plan.map_sources
        self.rnd = rnd
        self.queue: list[tuple[float, int, Event]] = []
        self.seq = 0

    def push(self, at: float, ev: Event) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, ev))

    def finished(self, task_id: str, key: tuple[str, int], try_number: int, end: float) -> Event:
        rnd = self.rnd
        tp = self.plan[task_id]
        spec = self.sim.spec.tasks[task_id]
        r = 0.5 if self.only_success else rnd.random()  # 0.5: a success, for any kind
        if tp.kind == "sensor":
            if r < 0.45:
                return AttemptFinished(key, try_number, AttemptOutcome.RESCHEDULE, end)
            if r < 0.5:
                return AttemptFinished(key, try_number, AttemptOutcome.SENSOR_TIMEOUT, end)
        if r < 0.65:
            follow = None
            if tp.kind == "branch":
                follow = tuple(d for d in spec.downstream if rnd.random() < 0.5)
            length = None
            if task_id in self.sources and not spec.is_mapped:
                choices = (0, 1, 2, 3) if self.only_success else (0, 1, 2, 3, 3, None)
                length = rnd.choice(choices)
            return AttemptFinished(
                key,
                try_number,
                AttemptOutcome.SUCCESS,
                end,
                output=f"{label(key)}#{try_number}",
                map_length=length,
                follow=follow,
            )
        if r < 0.9:
            return AttemptFinished(
                key,
                try_number,
                AttemptOutcome.FAILED,
                end,
                error="boom",
                retryable=rnd.random() < 0.85,
            )
        return AttemptFinished(key, try_number, AttemptOutcome.SKIP, end)


DURATIONS = (0.0, 1.0, 3.0, 7.0, 15.0)


def _time_limit(ex: FakeExecutor, task_id: str) -> float | None:
    """How long an attempt of ``task_id`` may run before the engine stops it: a sensor's poke
    by the sensor's deadline, any other task by its timeout."""
    opts = ex.sim.spec.tasks[task_id].options
    return opts.sensor.timeout if opts.sensor is not None else opts.timeout


def _submit(ex: FakeExecutor, key: tuple[str, int], try_number: int) -> None:
    rnd, now = ex.rnd, ex.sim.now
    start = now + rnd.choice((0.0, 0.0, 1.0))
    durations = DURATIONS
    if ex.only_success:
        # a success must end before the engine's deadline, or the engine rightly fails it
        limit = _time_limit(ex, key[0])
        durations = tuple(d for d in DURATIONS if limit is None or d < limit)
    end = start + rnd.choice(durations)
    announced = ex.only_success or rnd.random() < 0.9  # else only the end is reported
    if announced:
        ex.push(start, AttemptStarted(key, try_number, start))
    ev = ex.finished(key[0], key, try_number, end)
    # a report may be lost once the attempt started: then its timeout must end it (the engine
    # times attempts from their start; a queued attempt's owner is the executor)
    timeout = ex.sim.spec.tasks[key[0]].options.timeout
    if timeout is None or not announced or ex.only_success or rnd.random() < 0.9:
        ex.push(end, ev)  # else the report is lost: the timeout ends the attempt
    if rnd.random() < 0.1:
        ex.push(end + rnd.choice((0.0, 2.0)), ev)  # the same report twice


def drive(
    plan: DagPlan,
    rnd: random.Random,
    only_success: bool = False,
    reload: bool = False,
    cache: bool = False,
) -> Sim:
    """Run ``plan`` to its end, jumping the clock to the next report or engine timer. With
    ``reload``, the snapshot is sometimes built again from its instances between turns (as a
    driver that recovers the run, or reloads it, does); with ``cache``, some ready instances
    are found in the cache (ready tasks and branches)."""
    pipe = build_pipeline(plan)
    sim = Sim.of(pipe, slots=plan.slots, pools={"p": plan.pool_size}, now=0.0)
    ex = FakeExecutor(sim, plan, rnd, only_success)
    events: list[Event] = []
    for _ in range(MAX_STEPS):
        d = sim.step(*events, hits=_hits(ex) if cache else None)
        events = []
        if any((t.reason or "").startswith(RUN_RETRY) for t in d.transitions):
            sim.snap.run_retries += 1  # as the session counts them
        if sim.run_state.is_terminal:
            return sim
        if reload and rnd.random() < 0.2:
            sim.snap = _rebuilt(sim.snap)
        for t in d.transitions:
            if t.new.state is S.QUEUED:
                _submit(ex, t.key, t.new.try_number)
        times = [at for at, _, _ in ex.queue[:1]]
        if d.wake_at is not None:
            times.append(d.wake_at)
        if not times and not d.empty:
            continue  # nothing to wait for, but something changed: the driver looks again
        if not times:
            raise AssertionError(
                f"stuck: nothing to wait for at t={sim.now}, states {sim.states()}"
            )
        sim.now = max(sim.now, min(times))
        while ex.queue and ex.queue[0][0] <= sim.now:
            _, _, ev = heapq.heappop(ex.queue)
            events.append(ev)
    raise AssertionError(f"no end after {MAX_STEPS} steps: {sim.states()}")


def _hits(ex: FakeExecutor) -> Callable[[Draft], list[CacheHit]]:
    """Cache hits for about half of a draft's ready instances of tasks and branches (a
    branch's hit follows a random choice, a mapped task's source has a random length)."""

    seen: set[tuple[str, int]] = set()  # looked up in an earlier round of this draft

    def hits(d: Draft) -> list[CacheHit]:
        found = []
        for key in [k for k in d.ready if k not in seen]:
            seen.add(key)
            tp = ex.plan[key[0]]
            if tp.kind == "sensor" or ex.rnd.random() >= 0.5:
                continue
            spec = ex.sim.spec.tasks[key[0]]
            follow = None
            if tp.kind == "branch":
                follow = tuple(t for t in spec.downstream if ex.rnd.random() < 0.5)
            length = None
            if key[0] in ex.sources and not spec.is_mapped:
                length = ex.rnd.choice((0, 1, 2, 3))
            found.append(CacheHit(key, f"{label(key)}@cache", length, follow))
        return found

    return hits


def _rebuilt(snap: Snapshot) -> Snapshot:
    again = Snapshot.build(snap.spec, snap.run_id, snap.run_state, snap.params, snap.tis.values())
    again.started_at, again.run_retries = snap.started_at, snap.run_retries
    return again


def _ends_by_rule(sim: Sim, task_id: str, verdict: Verdict) -> set[TaskState]:
    """The states a task that never ran may end in, by its trigger rule and its mapping."""
    t = sim.spec.tasks[task_id]
    if verdict is Verdict.SKIP:
        return {S.SKIPPED}
    if verdict is Verdict.UPSTREAM_FAILED:
        counts, _ = upstream_counts(sim.snap, task_id)
        if t.options.trigger_rule is TriggerRule.ALL_SUCCESS and counts[S.SKIPPED]:
            return {S.UPSTREAM_FAILED, S.SKIPPED}  # a skip seen first decides it (as Airflow)
        return {S.UPSTREAM_FAILED}
    if t.is_mapped:  # the rule said run: its placeholder ended without expanding
        expected = map_outcome(sim.snap, task_id)
        if expected == 0:
            return {S.SKIPPED}
        if isinstance(expected, TaskState):
            return {expected}
    return set()  # it should have run


def _final_state_agrees(sim: Sim, task_id: str) -> None:
    snap = sim.snap
    t = sim.spec.tasks[task_id]
    insts = snap.instances(task_id)
    states = {ti.state for ti in insts}
    verdict = rule_verdict(snap, task_id)
    counts, _ = upstream_counts(snap, task_id)
    where = f"{task_id} ({t.options.trigger_rule}, upstream {dict(counts)}): {sim.states()}"
    assert verdict is not Verdict.WAIT, where
    ran = [ti for ti in insts if ti.try_number > 0]
    if ran:
        # it was scheduled when its rule said run (checked by Sim); early verdicts are final
        assert verdict is Verdict.RUN, where
        assert len(ran) == len(insts), where
        assert states <= {S.SUCCESS, S.FAILED, S.SKIPPED}, where
        return
    not_chosen = branch_decision(snap, task_id) == "skipped"
    if not_chosen and states == {S.SKIPPED}:
        return  # a branch that ended after it expanded skips its instances that had not run
    assert len(insts) == 1 and insts[0].map_index == -1, where
    allowed = _ends_by_rule(sim, task_id, verdict)
    if not_chosen:
        # a branch that did not choose it skips it, unless its rule or mapping decided first
        allowed.add(S.SKIPPED)
    if any(up in _unfailed(sim) for up in t.upstream):
        # decided upstream_failed before a branch turned that upstream into skipped, as Airflow
        # leaves it (the branch's skip reaches its direct downstream tasks only)
        allowed.add(S.UPSTREAM_FAILED)
    assert len(states) == 1 and states <= allowed, where


def _unfailed(sim: Sim) -> set[str]:
    """Tasks a branch moved from upstream_failed to skipped when it ended."""
    return {
        t.key[0]
        for _, t in sim.history
        if t.old.state is S.UPSTREAM_FAILED and t.new.state is S.SKIPPED
    }


def _check_finished_run(sim: Sim, plan: DagPlan) -> None:
    snap = sim.snap
    assert sim.run_state in (RunState.SUCCESS, RunState.FAILED)
    assert all(ti.state.is_terminal for ti in snap.tis.values()), sim.states()
    for task_id in sim.spec.tasks:
        _final_state_agrees(sim, task_id)
    leaf_failed = any(
        ti.state in FAILURE_STATES for leaf in sim.spec.leaves for ti in snap.instances(leaf)
    )
    assert (sim.run_state is RunState.FAILED) == leaf_failed, sim.states()
    plans = {tp.name: tp for tp in plan.tasks}
    for ti in snap.tis.values():
        # reschedules do not count; beyond them, at most 1 + retries attempts
        assert ti.try_number - ti.retry_base <= plans[ti.task_id].retries + 1, label(ti.key)
    # a retry waits its backoff from the failure: min(cap, delay * backoff ** (n - 1)), less
    # up to its jitter
    for _, t in sim.history:
        if t.new.state is S.UP_FOR_RETRY:
            opts = sim.spec.tasks[t.key[0]].options
            n = t.new.try_number - t.new.retry_base
            full = opts.retry_delay * opts.retry_backoff ** (n - 1)
            if opts.max_retry_delay is not None:
                full = min(full, opts.max_retry_delay)
            assert t.new.next_try_at is not None and t.new.ended_at is not None
            waited = t.new.next_try_at - t.new.ended_at
            assert full * (1 - opts.retry_jitter) - 1e-9 <= waited <= full + 1e-9, (t, full)


@PROPS
@given(plan=dag_plans(), rnd=st.randoms(use_true_random=False))
def test_random_runs_end_consistently(plan: DagPlan, rnd: random.Random) -> None:
    sim = drive(plan, rnd)
    _check_finished_run(sim, plan)


@PROPS
@given(plan=dag_plans(max_tasks=5), rnd=st.randoms(use_true_random=False))
def test_same_inputs_same_run(plan: DagPlan, rnd: random.Random) -> None:
    """decide is deterministic: the same pipeline and reports give the same history."""
    seed = rnd.getrandbits(32)
    a = drive(plan, random.Random(seed))
    b = drive(plan, random.Random(seed))
    assert [(at, t.old, t.new) for at, t in a.history] == [
        (at, t.old, t.new) for at, t in b.history
    ]
    assert a.run_state is b.run_state


_SHORT_SENSOR = DagPlan(
    tasks=(
        TaskPlan("t0", "sensor", TriggerRule.ALL_SUCCESS, (), (), sensor_timeout=5.0),
        TaskPlan("t1", "task", TriggerRule.ALL_SUCCESS, (0,), (), timeout=4.0),
    ),
    slots=1,
    pool_size=2,
    max_active_tasks=None,
)


@settings(max_examples=40, deadline=None)
@given(plan=dag_plans(max_tasks=6), rnd=st.randoms(use_true_random=False))
# a sensor whose deadline is shorter than most pokes, and a task with a short timeout
@example(plan=_SHORT_SENSOR, rnd=random.Random(3))
@example(plan=_SHORT_SENSOR, rnd=random.Random(11))
def test_without_failures_nothing_fails(plan: DagPlan, rnd: random.Random) -> None:
    """Only successes, each short enough for its timeout or its sensor's deadline: no instance
    fails, the run succeeds."""
    sim = drive(plan, rnd, only_success=True)
    _check_finished_run(sim, plan)
    assert not [ti for ti in sim.snap.tis.values() if ti.state in FAILURE_STATES], sim.states()
    assert sim.run_state is RunState.SUCCESS
    for ti in sim.snap.tis.values():
        assert ti.try_number - ti.retry_base <= 1


@PROPS
@given(plan=dag_plans(run_retries=True), rnd=st.randoms(use_true_random=False), cache=st.booleans())
def test_run_retries_cache_hits_and_reloaded_snapshots(
    plan: DagPlan, rnd: random.Random, cache: bool
) -> None:
    """Run retries put failed tasks back to pending (some after a delay), cache hits end
    ready instances within a draft, and the snapshot is built again now and then: every turn
    still decides what a look at every pending task decides (``Sim`` checks each), and the
    run ends."""
    sim = drive(plan, rnd, reload=True, cache=cache)
    assert sim.run_state in (RunState.SUCCESS, RunState.FAILED)
    assert terminal_states(sim.snap.tis.values()), sim.states()
    assert sim.snap.run_retries <= plan.run_retries
