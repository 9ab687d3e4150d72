"""Drive many runs over one executor: step each session, hand out attempts, wait for reports.

The loop wakes on a report or on the earliest timer any session asked for, never on a fixed
poll. Capacity is shared: executor slots, a global parallelism limit and pools count every
session's attempts, and backfill runs go after other runs unless they have waited too long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from phloem.driver.leases import LeaseKeeper
from phloem.driver.session import RunSession, pool_usage
from phloem.engine import Capacity
from phloem.executors import Executor, Started
from phloem.runner import Result
from phloem.states import ACTIVE_TASK_STATES
from phloem.store import Applied, Commit

log = logging.getLogger("phloem.driver")

#: a backfill run that waited this long for a slot goes first, so it never starves
BACKFILL_PATIENCE = 60.0
#: how long a run that failed in the driver is left alone before it is tried again
BROKEN_BACKOFF = 60.0


class Loop:
    def __init__(
        self,
        executor: Executor,
        *,
        pools: dict[str, int] | None = None,
        parallelism: int | None = None,
        keeper: LeaseKeeper | None = None,
        clock: Callable[[], float] = time.time,
        isolate: bool = False,
    ) -> None:
        self.executor = executor
        self.keeper = keeper
        self.isolate = isolate
        #: runs that failed in the driver, and until when to leave them alone
        self.broken: dict[str, float] = {}
        self.pools = dict(pools or {})
        self.parallelism = parallelism
        self.clock = clock
        self.sessions: dict[str, RunSession] = {}
        #: pool slots held by attempts of runs this loop does not drive (other schedulers)
        self.external_pools: dict[str, int] = {}
        self._added: dict[str, float] = {}
        self.finished: list[RunSession] = []

    def add(self, session: RunSession, *, recover: bool = True) -> None:
        if recover:
            session.recover()
        self.sessions[session.run_id] = session
        self._added[session.run_id] = self.clock()
        if self.keeper is not None:
            self.keeper.track(self.sessions)

    def drop(self, run_id: str) -> RunSession | None:
        """Stop driving a run (its attempts in flight are killed and rescheduled)."""
        s = self.sessions.pop(run_id, None)
        self._added.pop(run_id, None)
        if s is not None:
            s.interrupt()
        return s

    def _broken(self, s: RunSession) -> None:
        """A run whose decision or hand-out raised: with ``isolate`` (a scheduler) it is let
        go and left alone for a while, so one bad run never stops the others."""
        log.exception(
            "run %s of %s failed in the driver; letting it go for %.0fs",
            s.run_id,
            s.spec.name,
            BROKEN_BACKOFF,
        )
        self.broken[s.run_id] = self.clock() + BROKEN_BACKOFF
        self.abandon(s.run_id)
        if self.keeper is not None:
            self.keeper.release([s.run_id])

    def abandon(self, run_id: str) -> None:
        """Stop driving a run whose lease went to another driver: kill our attempts of it
        but leave its state alone (the new owner decides)."""
        s = self.sessions.pop(run_id, None)
        self._added.pop(run_id, None)
        if s is None:
            return
        for key in s.snap.keys_in(*ACTIVE_TASK_STATES):
            ti = s.snap.tis[key]
            self.executor.kill(run_id, key[0], key[1], ti.try_number, "lease lost")

    @property
    def slots(self) -> int:
        n = self.executor.slots
        return min(n, self.parallelism) if self.parallelism is not None else n

    def _order(self, now: float) -> list[RunSession]:
        def key(s: RunSession) -> tuple[bool, int, float]:
            waited = now - self._added[s.run_id]
            late = s.run.run_type == "backfill" and waited < BACKFILL_PATIENCE
            return (late, -s.top_priority(), s.run.created_at)

        return sorted(self.sessions.values(), key=key)

    def turn(self, max_wait: float | None = None, waker: Sequence[Any] = ()) -> float | None:
        """Step every session once, hand out what they decided, then wait for reports (at
        most ``max_wait`` seconds). Returns the earliest timer any session asked for."""
        now = self.clock()
        if self.keeper is not None:
            for run_id in self.keeper.take_lost():
                log.warning("lost the lease of run %s: another driver has it; letting go", run_id)
                self.abandon(run_id)
        wake: list[float] = []
        active = sum(s.active for s in self.sessions.values())
        used = pool_usage(self.sessions.values())
        for name, n in self.external_pools.items():  # held by runs other drivers drive
            used[name] = used.get(name, 0) + n
        plans = []
        for s in self._order(now):
            own_active = s.active
            own_pools = pool_usage([s])
            free_pools = {
                name: size - used.get(name, 0) + own_pools.get(name, 0)
                for name, size in self.pools.items()
            }
            cap = Capacity(self.slots - (active - own_active), free_pools or None)
            try:
                d, req = s.plan(now, cap)
            except Exception:
                if not self.isolate:
                    raise
                self._broken(s)
                continue
            plans.append((s, d, req))
            # what later sessions may use depends on what this one just took
            held, held_pools = s.held(d)
            active += held - own_active
            for name in set(held_pools) | set(own_pools):
                used[name] = used.get(name, 0) - own_pools.get(name, 0) + held_pools.get(name, 0)
        requests = [req for _, _, req in plans if req is not None]
        try:
            applied_all: list[Applied | None] = (
                list(self._commit(requests, now)) if requests else []
            )
        except Exception:
            for s, _, req in plans:  # nothing was applied: decide again from the same facts
                s.restore(req)
            if not self.isolate:
                raise
            applied_all = self._commit_each(plans, now)  # find the run that cannot commit
        results = iter(applied_all)
        for s, d, req in plans:
            applied = next(results) if req is not None else None
            if req is not None and applied is None:
                self._broken(s)
                continue
            try:
                step = s.absorb(d, applied, now)
            except Exception:
                if not self.isolate:
                    raise
                self._broken(s)
                continue
            if s.fenced:
                log.warning("run %s is driven elsewhere now; letting go", s.run_id)
                self.abandon(s.run_id)
                continue
            try:
                for kill in step.kills:
                    self.executor.kill(
                        s.run_id, kill.key[0], kill.key[1], kill.try_number, kill.reason
                    )
                for attempt in step.submits:
                    self.executor.submit(attempt)
            except Exception:
                if not self.isolate:
                    raise
                self._broken(s)
                continue
            if step.wake_at is not None:
                wake.append(step.wake_at)
            if s.done:
                self.sessions.pop(s.run_id)
                self._added.pop(s.run_id, None)
                self.finished.append(s)
                if self.keeper is not None:
                    self.keeper.release([s.run_id])
        if self.keeper is not None:
            self.keeper.track(self.sessions)
        next_wake = min(wake) if wake else None
        if not self.sessions:
            if max_wait:  # nothing to drive: sleep (no spinning), but wake for new work
                self.executor.wait(max_wait, waker)
            return next_wake
        timeout = None if next_wake is None else max(0.0, next_wake - self.clock())
        if max_wait is not None:
            timeout = max_wait if timeout is None else min(timeout, max_wait)
        if timeout is None and not any(s.active for s in self.sessions.values()):
            timeout = 1.0  # nothing runs and no timer: only a full pool does this; look again
        self._route(self.executor.wait(timeout, waker))
        return next_wake

    def _commit_each(
        self, plans: list[tuple[RunSession, Any, Commit | None]], now: float
    ) -> list[Applied | None]:
        """After a failed shared commit: each run's decision on its own; None for a run
        whose decision cannot be committed (it is let go, the others go on)."""
        out: list[Applied | None] = []
        for s, _, req in plans:
            if req is None:
                continue
            try:
                out.append(s.store.commit_many([req], now=now)[0])
            except Exception:
                out.append(None)
        return out

    def _commit(self, requests: list[Commit], now: float) -> list[Applied]:
        """One transaction for the whole turn; the sessions share one store."""
        store = next(iter(self.sessions.values())).store
        return store.commit_many(requests, now=now)

    def _route(self, reports: list[Started | Result]) -> None:
        for r in reports:
            s = self.sessions.get(r.run_id)
            if s is not None:
                s.report(r)

    def run_until_idle(self) -> None:
        while self.sessions:
            self.turn()
