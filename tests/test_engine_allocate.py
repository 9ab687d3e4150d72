"""Property tests for ``allocate``: several runs drafted, given capacity, and finished, as the
driver does each turn (``strategies.share_plans`` makes the runs, pools and capacities).

What must hold whatever the runs: no pool over its size, the executor's slots and each run's
limit never exceeded, every run starts exactly what it was granted, nothing usable left idle,
runs served in order (patient backfills last, then the most urgent ready task, then the
oldest run), a backfill that waited past its patience ranked like any run, and a run at its
limits blocking nobody.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

from hypothesis import HealthCheck, given, settings

from phloem.engine import (
    BACKFILL_PATIENCE,
    Ask,
    Capacity,
    Decision,
    Demand,
    Grant,
    Snapshot,
    allocate,
    draft,
    finish,
)
from phloem.states import ACTIVE_TASK_STATES, TaskState
from strategies import RunPlan, SharePlan, Sim, run_snapshot, share_plans

S = TaskState
NOW = 10_000.0
PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Turn:
    plan: SharePlan
    before: dict[str, Snapshot]
    demands: list[Demand]
    grants: dict[str, Grant]
    decisions: dict[str, Decision]
    after: dict[str, Snapshot]

    @property
    def capacity(self) -> Capacity:
        return Capacity(self.plan.slots, self.plan.pools, self.plan.held_elsewhere)


def demand_meta(rp: RunPlan) -> dict[str, float | None]:
    return {
        "created_at": rp.created_at,
        "backfill_since": NOW - rp.waited if rp.backfill else None,
    }


def one_turn(plan: SharePlan) -> Turn:
    """Draft every run, allocate, finish each within its grant and apply it (``Sim.apply``
    checks every transition)."""
    before = {f"r{i}": run_snapshot(rp, f"r{i}", NOW) for i, rp in enumerate(plan.runs)}
    after = {f"r{i}": run_snapshot(rp, f"r{i}", NOW) for i, rp in enumerate(plan.runs)}
    drafts = {r: draft(snap, NOW) for r, snap in after.items()}
    pooled = plan.pools is not None
    demands = [
        drafts[f"r{i}"].demand(pooled, **demand_meta(rp))  # type: ignore[arg-type]
        for i, rp in enumerate(plan.runs)
    ]
    cap = Capacity(plan.slots, plan.pools, plan.held_elsewhere)
    grants = allocate(demands, cap, NOW)
    decisions = {}
    for r, d in drafts.items():
        decisions[r] = finish(d, NOW, grants[r])
        Sim(after[r], now=NOW, limits=False).apply(decisions[r])
    return Turn(plan, before, demands, grants, decisions, after)


def active(snap: Snapshot) -> list[tuple[str, int]]:
    return [k for k, ti in snap.tis.items() if ti.state in ACTIVE_TASK_STATES]


def pool_use(snaps: dict[str, Snapshot]) -> Counter[str]:
    used: Counter[str] = Counter()
    for snap in snaps.values():
        for key in active(snap):
            opts = snap.spec.tasks[key[0]].options
            used[opts.pool] += opts.pool_slots
    return used


def total_active(snaps: dict[str, Snapshot]) -> int:
    return sum(len(active(s)) for s in snaps.values())


def yielding(d: Demand) -> bool:
    return d.backfill_since is not None and NOW - d.backfill_since < BACKFILL_PATIENCE


def served_before(i: Demand, j: Demand) -> bool:
    """The order runs are served in, written down independently of ``allocate``."""
    if yielding(i) != yielding(j):
        return yielding(j)
    if i.priority != j.priority:
        return i.priority > j.priority
    return i.created_at < j.created_at


def without_asks(demands: list[Demand], run_id: str) -> list[Demand]:
    return [replace(d, asks=()) if d.run_id == run_id else d for d in demands]


# -- limits --------------------------------------------------------------------------------------


@PROPS
@given(plan=share_plans())
def test_no_pool_is_ever_over_its_size(plan: SharePlan) -> None:
    t = one_turn(plan)
    before, after = pool_use(t.before), pool_use(t.after)
    for pool, size in (plan.pools or {}).items():
        elsewhere = plan.held_elsewhere.get(pool, 0)
        # a pool already over its size (it shrank) only shrinks further
        assert after[pool] + elsewhere <= max(size, before[pool] + elsewhere), (
            f"pool {pool}: {after[pool]} + {elsewhere} elsewhere of {size}"
        )


@PROPS
@given(plan=share_plans())
def test_slots_and_run_limits_are_never_exceeded(plan: SharePlan) -> None:
    t = one_turn(plan)
    assert total_active(t.after) <= max(plan.slots, total_active(t.before))
    for r, snap in t.after.items():
        limit = snap.spec.max_active_tasks
        if limit is not None:
            assert len(active(snap)) <= max(limit, len(active(t.before[r])))


@PROPS
@given(plan=share_plans())
def test_each_run_starts_exactly_its_grant(plan: SharePlan) -> None:
    t = one_turn(plan)
    for r, d in t.decisions.items():
        queued = [x for x in d.transitions if x.new.state is S.QUEUED]
        assert len(queued) == t.grants[r].slots, r


@PROPS
@given(plan=share_plans())
def test_nothing_usable_is_left_idle(plan: SharePlan) -> None:
    """An instance still waiting after the turn could not have started: the executor is
    full, its run is at its limit, or its pool has too few free slots."""
    t = one_turn(plan)
    free = plan.slots - total_active(t.after)
    used = pool_use(t.after)
    for r, snap in t.after.items():
        limit = snap.spec.max_active_tasks
        at_limit = limit is not None and len(active(snap)) >= limit
        for key in snap.keys_in(S.SCHEDULED):
            opts = snap.spec.tasks[key[0]].options
            pool_full = (
                plan.pools is not None
                and opts.pool in plan.pools
                and (
                    plan.pools[opts.pool] - used[opts.pool] - plan.held_elsewhere.get(opts.pool, 0)
                    < opts.pool_slots
                )
            )
            assert free <= 0 or at_limit or pool_full, f"{r} left {key} waiting"


# -- order ---------------------------------------------------------------------------------------


@PROPS
@given(plan=share_plans())
def test_a_run_is_never_served_after_a_run_that_ranks_below_it(plan: SharePlan) -> None:
    """Runs served later take only what earlier ones left: taking a later run's wishes away
    changes nothing for the runs served before it."""
    t = one_turn(plan)
    for j in t.demands:
        if not j.asks:
            continue
        alone = allocate(without_asks(t.demands, j.run_id), t.capacity, NOW)
        for i in t.demands:
            if i.run_id != j.run_id and served_before(i, j):
                assert alone[i.run_id] == t.grants[i.run_id], (i, j)


@PROPS
@given(plan=share_plans())
def test_patient_backfills_yield_to_every_other_run(plan: SharePlan) -> None:
    t = one_turn(plan)
    for b in t.demands:
        if not yielding(b):
            continue
        alone = allocate(without_asks(t.demands, b.run_id), t.capacity, NOW)
        for d in t.demands:
            if not yielding(d):
                assert alone[d.run_id] == t.grants[d.run_id]


@PROPS
@given(plan=share_plans())
def test_a_backfill_past_its_patience_ranks_as_any_run(plan: SharePlan) -> None:
    t = one_turn(plan)
    plain = [replace(d, backfill_since=None) if not yielding(d) else d for d in t.demands]
    assert allocate(plain, t.capacity, NOW) == t.grants


@PROPS
@given(plan=share_plans())
def test_a_run_at_its_limits_blocks_nobody(plan: SharePlan) -> None:
    t = one_turn(plan)
    for d in t.demands:
        if d.limit is not None and d.held >= d.limit:
            assert t.grants[d.run_id].slots == 0
            assert allocate(without_asks(t.demands, d.run_id), t.capacity, NOW) == t.grants


def test_a_backfill_is_served_once_its_patience_runs_out_however_busy() -> None:
    """One slot, and a new scheduled run wanting it every ten seconds: the backfill waits
    while it is patient, then gets the slot at its first chance."""
    since = NOW
    backfill = Demand("backfill", asks=(Ask(1),), created_at=0.0, backfill_since=since)
    served_at = None
    for step in range(20):
        now = since + 10 * step
        fresh = Demand(f"s{step}", created_at=now, asks=(Ask(1),))
        grants = allocate([backfill, fresh], Capacity(1), now)
        if grants["backfill"].slots:
            served_at = now
            break
        assert grants[f"s{step}"].slots == 1
    assert served_at == since + BACKFILL_PATIENCE
