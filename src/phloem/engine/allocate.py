"""Share capacity among runs: ``allocate(demands, capacity, now) -> {run_id: Grant}``.

Pure, like ``decide``, and the one place where slots and pool slots are counted. Every run's
decision is drafted first (reports taken in, timers, trigger rules: see ``decide.draft``), so
what each run holds and what it has ready to start are known; ``allocate`` then hands out what
is free, run by run in order of urgency, and each run's draft is finished within its grant.

The order: backfill runs yield to every other run until they have waited ``patience``
seconds; after that they rank as any other run, so they are not starved. Then the run with the
most urgent ready task first, then the oldest run. A run gets no more than it has ready and no
more than its own limit (``max_active_tasks``), so a run at its limits leaves the slots to the
others. Pools count every run's attempts, including attempts of runs that other schedulers
drive (``Capacity.held_elsewhere``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from phloem.engine.model import Capacity

#: a backfill run that waited this long for a slot ranks as any other run, so it never starves
BACKFILL_PATIENCE = 60.0


@dataclass(frozen=True, slots=True)
class Ask:
    """``count`` ready instances, each needing one slot and ``pool_slots`` of ``pool``."""

    count: int
    pool: str = "default"
    pool_slots: int = 1


@dataclass(frozen=True, slots=True)
class Demand:
    """What one run holds and wants this turn, and how urgent it is.

    ``asks`` are in the order the run would start them (its most urgent first); a run gets a
    prefix of them, skipping those whose pool is full."""

    run_id: str
    held: int = 0
    held_pools: Mapping[str, int] = field(default_factory=dict)
    asks: tuple[Ask, ...] = ()
    #: the run's own limit on attempts in flight (``max_active_tasks``), None: none
    limit: int | None = None
    #: the priority of its most urgent ready task
    priority: int = 0
    created_at: float = 0.0
    #: a backfill run: since when it has been waiting to be driven (None: not a backfill)
    backfill_since: float | None = None

    @property
    def ready(self) -> int:
        return sum(a.count for a in self.asks)


@dataclass(frozen=True, slots=True)
class Grant:
    """What one run may start this turn: ``slots`` attempts, and at most ``pools[name]`` slots
    of each pool named (pools not named have no size). ``pools`` is None when no pool has a
    size at all."""

    slots: int = 0
    pools: Mapping[str, int] | None = None


def allocate(
    demands: Sequence[Demand],
    capacity: Capacity,
    now: float,
    patience: float = BACKFILL_PATIENCE,
) -> dict[str, Grant]:
    """Grant each run what it may start now; see the module docstring for the order."""
    free = capacity.slots - sum(d.held for d in demands)
    pools = _pools_free(demands, capacity)
    grants: dict[str, Grant] = {}
    for d in sorted(demands, key=lambda d: rank(d, now, patience)):
        room = free if d.limit is None else min(free, d.limit - d.held)
        grant = _fill(d.asks, room, pools)
        free -= grant.slots
        grants[d.run_id] = grant
    return grants


def rank(d: Demand, now: float, patience: float = BACKFILL_PATIENCE) -> tuple[bool, int, float]:
    """Sort key: patient backfills last, then the most urgent ready task, then the oldest."""
    waiting = d.backfill_since is not None and now - d.backfill_since < patience
    return (waiting, -d.priority, d.created_at)


def _pools_free(demands: Sequence[Demand], capacity: Capacity) -> dict[str, int] | None:
    """Pool slots nobody holds: each pool's size less what every run holds in it."""
    if capacity.pools is None:
        return None
    free = dict(capacity.pools)
    for name, n in (capacity.held_elsewhere or {}).items():
        if name in free:
            free[name] -= n
    for d in demands:
        for name, n in d.held_pools.items():
            if name in free:
                free[name] -= n
    return free


def _fill(asks: Sequence[Ask], room: int, pools: dict[str, int] | None) -> Grant:
    """Take from ``asks`` in order while ``room`` lasts, skipping what a full pool cannot
    hold; what is taken comes off ``pools``."""
    taken = 0
    budget: dict[str, int] | None = None if pools is None else {}
    for ask in asks:
        if taken >= room:
            break
        n = min(ask.count, room - taken)
        if pools is not None and budget is not None and ask.pool in pools:
            left = pools[ask.pool]
            n = min(n, max(0, left) // ask.pool_slots)
            pools[ask.pool] = left - n * ask.pool_slots
            budget[ask.pool] = budget.get(ask.pool, 0) + n * ask.pool_slots
        taken += n
    return Grant(taken, budget)


__all__ = ["BACKFILL_PATIENCE", "Ask", "Demand", "Grant", "allocate", "rank"]
