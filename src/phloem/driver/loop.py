"""Drive many runs over one executor: collect, decide, commit, hand out, wait for reports.

Each turn drafts every run's decision, lets the engine share the free capacity among them
(``engine.allocate``: executor slots, a global parallelism limit, pools, priorities, backfill
patience), finishes each decision within its grant, commits them all in one transaction, and
hands the attempts to the executor. The loop wakes on a report or on the earliest timer any
run asked for, never on a fixed poll.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from phloem.driver.ended import EndWatch
from phloem.driver.leases import LeaseKeeper
from phloem.driver.session import RunSession
from phloem.driver.timings import Durations
from phloem.engine import BACKFILL_PATIENCE, Capacity, Decision, Demand, Draft, allocate
from phloem.executors import Executor, Started
from phloem.runner import Result
from phloem.states import ACTIVE_TASK_STATES, RunType
from phloem.store import Applied, Commit

log = logging.getLogger("phloem.driver")

#: how long a run that failed in the driver is left alone before it is tried again
BROKEN_BACKOFF = 60.0

A = TypeVar("A")
B = TypeVar("B")
Plan = tuple[Decision, Commit | None]
Outcome = tuple[Decision, Applied | None]


class Loop:
    def __init__(
        self,
        executor: Executor,
        *,
        pools: Mapping[str, int] | None = None,
        parallelism: int | None = None,
        keeper: LeaseKeeper | None = None,
        clock: Callable[[], float] = time.time,
        isolate: bool = False,
        durations: Durations | None = None,
        winds_down: bool = False,
    ) -> None:
        self.executor = executor
        self.keeper = keeper
        #: runs other processes can reach (leased ones) may be cancelled from there
        self.ends = EndWatch(keeper.catalog) if keeper is not None else None
        self.isolate = isolate
        #: the executor is shut down once this loop's runs end (a ``Driver``'s loop): its idle
        #: workers are told to stop as the commit that ends the last run goes to the store,
        #: so they exit while it commits rather than after
        self.winds_down = winds_down
        #: runs that failed in the driver, and until when to leave them alone
        self.broken: dict[str, float] = {}
        self.parallelism = parallelism
        self.clock = clock
        self.sessions: dict[str, RunSession] = {}
        self._pools = dict(pools or {})
        #: pool slots held by attempts of runs this loop does not drive (other schedulers)
        self._held_elsewhere: dict[str, int] = {}
        self._added: dict[str, float] = {}
        self._finished: list[RunSession] = []
        #: how long each turn worked, waiting excluded (for monitoring)
        self.durations = durations if durations is not None else Durations()

    # -- what the loop drives, and with what ---------------------------------------------------

    def add(self, session: RunSession, *, recover: bool = True) -> None:
        if recover:
            session.recover()
        self.sessions[session.run_id] = session
        self._added[session.run_id] = self.clock()
        if self.keeper is not None:
            try:
                self.keeper.track(self.sessions)
            except BaseException:
                self.sessions.pop(session.run_id, None)
                self._added.pop(session.run_id, None)
                raise

    def drop(self, run_id: str) -> RunSession | None:
        """Stop driving a run (its attempts in flight are killed and rescheduled)."""
        s = self._forget(run_id)
        if s is not None:
            s.interrupt()
        return s

    def abandon(self, run_id: str) -> None:
        """Stop driving a run whose lease went to another driver: kill our attempts of it
        but leave its state alone (the new owner decides)."""
        s = self._forget(run_id)
        if s is None:
            return
        for key in s.snap.keys_in(*ACTIVE_TASK_STATES):
            ti = s.snap.tis[key]
            self.executor.kill(run_id, key[0], key[1], ti.try_number, "lease lost")

    def rest(self, run_id: str, seconds: float = BROKEN_BACKOFF) -> None:
        """Leave a run alone for a while (it failed in the driver); see ``resting``."""
        self.broken[run_id] = self.clock() + seconds

    def resting(self, now: float) -> set[str]:
        """Runs still left alone at ``now`` (those whose time is up are forgotten)."""
        self.broken = {r: t for r, t in self.broken.items() if t > now}
        return set(self.broken)

    def set_pools(
        self, sizes: Mapping[str, int], held_elsewhere: Mapping[str, int] | None = None
    ) -> None:
        """Pool sizes, and the pool slots that attempts of runs other drivers drive hold."""
        self._pools = dict(sizes)
        self._held_elsewhere = dict(held_elsewhere or {})

    def take_finished(self) -> list[RunSession]:
        """The sessions whose runs ended since the last call."""
        out, self._finished = self._finished, []
        return out

    @property
    def slots(self) -> int:
        n = self.executor.slots
        return min(n, self.parallelism) if self.parallelism is not None else n

    @property
    def capacity(self) -> Capacity:
        return Capacity(self.slots, self._pools or None, self._held_elsewhere)

    # -- one turn ---------------------------------------------------------------------------------

    def turn(self, max_wait: float | None = None, waker: Sequence[Any] = ()) -> float | None:
        """Decide every run once, commit, hand out what was decided, then wait for reports (at
        most ``max_wait`` seconds). Returns the earliest timer any run asked for."""
        now = self.clock()
        began = time.monotonic()
        self._let_go_of_lost()
        self._stop_ended_elsewhere()
        drafts = self._each(((s, now) for s in list(self.sessions.values())), RunSession.draft)
        grants = allocate([self._demand(s, d) for s, d in drafts], self.capacity, now)
        plans = self._each(drafts, lambda s, d: s.plan(d, grants[s.run_id], now))
        if self.winds_down and _all_end(plans):
            wind_down = getattr(self.executor, "wind_down", None)
            if wind_down is not None:
                wind_down()
        outcomes = self._commit(plans, now)
        if self.keeper is not None:  # each applied commit extended its run's lease from ``now``
            self.keeper.confirm(
                (s.run_id for s, (_, a) in outcomes if a is not None and not a.fenced), began
            )
        wakes = self._each(outcomes, lambda s, o: self._hand_out(s, o, now))
        hand_over = getattr(self.executor, "hand_over", None)
        if hand_over is not None:
            hand_over()  # the attempts start while the callbacks and the reporter run
        self._each(outcomes, lambda s, _: s.settle(now))
        if self.keeper is not None:
            self.keeper.track(self.sessions)
        next_wake = min((w for _, w in wakes if w is not None), default=None)
        self.durations.observe(max(0.0, self.clock() - now))
        self._wait(next_wake, max_wait, waker)
        return next_wake

    def run_until_idle(self) -> None:
        while self.sessions:
            self.turn()

    def _each(
        self, items: Iterable[tuple[RunSession, A]], fn: Callable[[RunSession, A], B]
    ) -> list[tuple[RunSession, B]]:
        """``fn`` for each run. With ``isolate`` (a scheduler) a run that raises is let go and
        left alone for a while, so one bad run never stops the others."""
        out = []
        for s, arg in items:
            try:
                out.append((s, fn(s, arg)))
            except Exception:
                if not self.isolate:
                    raise
                self._broken(s)
        return out

    def _demand(self, s: RunSession, d: Draft) -> Demand:
        backfill = self._added[s.run_id] if s.run.run_type is RunType.BACKFILL else None
        s.batching(d, self.slots, getattr(self.executor, "batches", False))
        return d.demand(bool(self._pools), created_at=s.run.created_at, backfill_since=backfill)

    def _commit(
        self, plans: list[tuple[RunSession, Plan]], now: float
    ) -> list[tuple[RunSession, Outcome]]:
        """One transaction for the whole turn (the sessions share one store). If it fails,
        each run's decision is committed on its own, so a run whose decision cannot be
        committed is let go and the others go on."""
        requests = [req for _, (_, req) in plans if req is not None]
        if not requests:
            return [(s, (d, None)) for s, (d, _) in plans]
        try:
            applied = iter(plans[0][0].store.commit_many(requests, now=now))
        except Exception:
            for s, (_, req) in plans:  # nothing was applied: decide again from the same facts
                s.restore(req)
            if not self.isolate:
                raise
            return self._each(plans, lambda s, p: self._commit_alone(s, p, now))
        return [(s, (d, next(applied) if req is not None else None)) for s, (d, req) in plans]

    def _commit_alone(self, s: RunSession, plan: Plan, now: float) -> Outcome:
        d, req = plan
        return d, (s.store.commit_many([req], now=now)[0] if req is not None else None)

    def _hand_out(self, s: RunSession, outcome: Outcome, now: float) -> float | None:
        """Take in what the store applied and hand its attempts and kills to the executor.
        Returns the run's next timer."""
        step = s.absorb(*outcome, now)
        if s.fenced:
            log.warning("run %s is driven elsewhere now; letting go", s.run_id)
            self.abandon(s.run_id)
            return None
        for kill in step.kills:
            self.executor.kill(s.run_id, kill.key[0], kill.key[1], kill.try_number, kill.reason)
        for attempt in step.submits:
            self.executor.submit(attempt)
        if s.done:
            self._forget(s.run_id)
            self._finished.append(s)
            if self.keeper is not None:
                s.released = self.keeper.release([s.run_id])
        return step.wake_at

    def _wait(self, next_wake: float | None, max_wait: float | None, waker: Sequence[Any]) -> None:
        if not self.sessions:
            if max_wait:  # nothing to drive: sleep (no spinning), but wake for new work
                self.executor.wait(max_wait, waker)
            return
        timeout = None if next_wake is None else max(0.0, next_wake - self.clock())
        if max_wait is not None:
            timeout = max_wait if timeout is None else min(timeout, max_wait)
        if timeout is None and not any(s.active for s in self.sessions.values()):
            timeout = 1.0  # nothing runs and no timer: only a full pool does this; look again
        if self.ends is not None:  # wake to look for runs cancelled elsewhere
            due = self.ends.due_in()
            timeout = due if timeout is None else min(timeout, due)
        self._route(self.executor.wait(timeout, waker))

    def _route(self, reports: list[Started | Result]) -> None:
        for r in reports:
            s = self.sessions.get(r.run_id)
            if s is not None:
                s.report(r)

    # -- letting go -------------------------------------------------------------------------------

    def _let_go_of_lost(self) -> None:
        if self.keeper is None:
            return
        for run_id in self.keeper.take_lost():
            log.warning("lost the lease of run %s: another driver has it; letting go", run_id)
            self.abandon(run_id)

    def _stop_ended_elsewhere(self) -> None:
        """Stop the attempts of runs another process ended (cancelled) now, not at their next
        heartbeat, and let the runs go in this turn, as ended (a run waiting for a retry's
        delay or a sensor's next look too, not only when its timer comes)."""
        if self.ends is None:
            return
        ended = ((self.sessions[r], None) for r in self.ends.ended(self.sessions))
        for s, kills in self._each(ended, lambda s, _: s.ended_elsewhere()):
            log.info("run %s was ended by another process; stopping its attempts", s.run_id)
            for k in kills:
                self.executor.kill(s.run_id, k.key[0], k.key[1], k.try_number, k.reason)

    def _broken(self, s: RunSession) -> None:
        log.exception(
            "run %s of %s failed in the driver; letting it go for %.0fs",
            s.run_id,
            s.spec.name,
            BROKEN_BACKOFF,
        )
        self.rest(s.run_id)
        self.abandon(s.run_id)
        if self.keeper is not None:
            self.keeper.release([s.run_id])

    def _forget(self, run_id: str) -> RunSession | None:
        self._added.pop(run_id, None)
        return self.sessions.pop(run_id, None)


def _all_end(plans: list[tuple[RunSession, Plan]]) -> bool:
    """Whether these decisions end every run they are for."""
    return bool(plans) and all(
        d.run_state is not None and d.run_state.is_terminal for _, (d, _) in plans
    )


__all__ = ["BACKFILL_PATIENCE", "BROKEN_BACKOFF", "Loop"]
