"""Ready work and handing it out: what a drafted run asks ``allocate`` for, and queueing
within the grant it got back."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from itertools import islice

from phloem.engine.allocate import Ask, Demand, Grant
from phloem.engine.model import Key
from phloem.engine.work import Work
from phloem.states import TaskState

S = TaskState


class Draft:
    """A run's decision before it is given capacity (``decide.draft`` makes it). ``demand``
    tells ``allocate`` what the run holds and has ready; ``decide.finish`` completes it within
    a grant."""

    __slots__ = ("_ranked", "batch", "closed", "ready", "w", "wake")

    def __init__(self, w: Work, wake: list[float], closed: bool = False) -> None:
        self.w = w
        self.wake = wake
        self.closed = closed
        #: scheduled instances, in the order they became ready
        self.ready = _Ready(w, closed)
        self._ranked: list[Key] | None = None
        #: task -> instances per batch (> 1): up to that many instances of the task take one
        #: slot together (the snapshot's ``batch_size`` options; a driver may add its own
        #: choices for tiny tasks before ``demand``)
        self.batch: Mapping[str, int] = w.snap.batch

    def units(self, task_id: str, n: int) -> int:
        """The slots ``n`` instances of ``task_id`` take."""
        b = self.batch.get(task_id)
        return n if not b else -(-n // b)

    def refresh(self) -> None:
        """Read the ready instances again (facts applied to the draft changed them)."""
        self.ready = _Ready(self.w, self.closed)
        self._ranked = None

    def demand(
        self, pooled: bool, *, created_at: float = 0.0, backfill_since: float | None = None
    ) -> Demand:
        """What this run holds once the draft applies, and what it has ready. ``pooled``: some
        pool has a size, so pool slots are counted and ready work is asked for in rank order."""
        w = self.w
        tasks = w.snap.spec.tasks
        active = w.keys_in(S.QUEUED, S.RUNNING)
        held_pools: dict[str, int] = {}
        held = len(active)
        if pooled or self.batch:
            per_task = Counter(key[0] for key in active)
            held = 0
            for task_id, n in per_task.items():
                units = self.units(task_id, n)
                held += units
                if pooled:
                    opts = tasks[task_id].options
                    held_pools[opts.pool] = held_pools.get(opts.pool, 0) + units * opts.pool_slots
        return Demand(
            run_id=w.snap.run_id,
            held=held,
            held_pools=held_pools,
            asks=self._asks(pooled),
            limit=w.snap.spec.max_active_tasks,
            priority=self._top_priority(),
            created_at=created_at,
            backfill_since=backfill_since,
        )

    def _asks(self, pooled: bool) -> tuple[Ask, ...]:
        if not self.ready:
            return ()
        if not pooled:
            return (Ask(self._ready_units()),)
        tasks = self.w.snap.spec.tasks
        asks: list[Ask] = []
        pool, slots, count = "", 0, 0
        batch = self.batch
        seen: dict[str, int] = {}
        for key in self.ranked():
            b = batch.get(key[0])
            if b:
                i = seen.get(key[0], 0)
                seen[key[0]] = i + 1
                if i % b:
                    continue  # it rides in the batch of one before it
            opts = tasks[key[0]].options
            if opts.pool != pool or opts.pool_slots != slots:
                if count:
                    asks.append(Ask(count, pool, slots))
                pool, slots, count = opts.pool, opts.pool_slots, 0
            count += 1
        asks.append(Ask(count, pool, slots))
        return tuple(asks)

    def _ready_units(self) -> int:
        """The slots every ready instance would take: O(tasks that batch), not O(ready)."""
        n = len(self.ready)
        for task_id in self.batch:
            ready = self.w.counts(task_id)[S.SCHEDULED]
            n -= ready - self.units(task_id, ready)
        return n

    def _top_priority(self) -> int:
        """The highest priority among ready instances (0 when none is ready)."""
        if not self.ready:
            return 0
        tasks = self.w.snap.spec.tasks
        if self.w.snap.uniform_priority:
            return tasks[self.ready.head(1)[0][0]].options.priority
        if self._ranked is not None:
            return tasks[self._ranked[0][0]].options.priority
        return max(tasks[k[0]].options.priority for k in self.ready)

    def ranked(self) -> list[Key]:
        """Ready instances by rank: highest priority first, then definition order, then map
        index."""
        if self._ranked is None:
            self._ranked = sorted(self.ready, key=self._rank)
        return self._ranked

    def _rank(self, k: Key) -> tuple[int, int, int]:
        t = self.w.snap.spec.tasks[k[0]]
        return (-t.options.priority, t.index, k[1])

    def order(self, n: int, pooled: bool) -> Iterable[Key]:
        """The ready instances to look at when ``n`` may start."""
        if pooled:
            return self.ranked()  # pools may reject some, so look at all
        if self.w.snap.uniform_priority:
            return self.ready.head(n)  # first come, first served
        if len(self.ready) <= n:
            return self.ranked()
        return heapq.nsmallest(n, self.ready, key=self._rank)


class _Ready:
    """The scheduled instances in the order they became ready (the snapshot's index corrected
    by the overlay, as ``keys_in`` lists them), counted and read from the front without
    listing them all: a wide run has tens of thousands ready and hands out a few per turn."""

    __slots__ = ("_base", "_gone", "_len", "_new")

    def __init__(self, w: Work, closed: bool = False) -> None:
        base = {} if closed else w.snap.by_state[S.SCHEDULED]
        changed = {} if closed else w.changed
        self._base = base
        self._gone = {k for k in changed if k in base}
        self._new = [k for k, ti in changed.items() if ti.state is S.SCHEDULED]
        self._len = len(base) - len(self._gone) + len(self._new)

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Key]:
        gone = self._gone
        for k in self._base:
            if k not in gone:
                yield k
        yield from self._new

    def head(self, n: int) -> list[Key]:
        """The first ``n`` (O(n) plus the keys this decision moved, not O(all))."""
        return list(islice(self, n))


def queue(w: Work, now: float, d: Draft, grant: Grant) -> None:
    """Queue ready instances in order while the grant lasts, skipping those whose pool's
    share of the grant is spent."""
    free = grant.slots
    if free <= 0 or not d.ready:
        return
    tasks = w.snap.spec.tasks
    budget = dict(grant.pools) if grant.pools is not None else None
    batch = d.batch
    #: per task, how many more instances the batch it was last given a slot for may take
    room: dict[str, int] = {}
    wanted = free * max(batch.values()) if batch else free
    for key in d.order(wanted, budget is not None):
        task_id = key[0]
        if room.get(task_id):
            room[task_id] -= 1  # rides in a batch that has its slot
        else:
            if free <= 0:
                if any(room.values()):
                    continue
                break
            opts = tasks[task_id].options
            if budget is not None and opts.pool in budget:
                if budget[opts.pool] < opts.pool_slots:
                    continue
                budget[opts.pool] -= opts.pool_slots
            free -= 1
            b = batch.get(task_id)
            if b:
                room[task_id] = b - 1
        ti = w.get(key)
        w.set(
            replace(
                ti,
                state=S.QUEUED,
                try_number=ti.try_number + 1,
                queued_at=now,
                started_at=None,
                ended_at=None,
                next_try_at=None,
                first_started_at=ti.first_started_at if ti.first_started_at is not None else now,
            )
        )


__all__ = ["Draft", "queue"]
