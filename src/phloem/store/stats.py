"""What monitoring reads from the store (``store.stats``): the history of state changes in
the order they were written, and the state of things now.

Counters are computed from the ``events`` table, which every process that drives runs writes
to, so a reader in another process (the server's ``/metrics``) counts what every scheduler
did: it reads the events after the last one it saw (``events_after``), joined with their run's
pipeline and their attempt's times, and adds them up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, func, select

from phloem.store import schema as s
from phloem.store.attempt_leases import db_clock
from phloem.store.engine import Database, write_transaction
from phloem.store.resilience import resilient
from phloem.store.writes import insert_new


@dataclass(frozen=True, slots=True)
class EventStat:
    id: int
    pipeline: str
    is_run: bool  # a run's change (else a task instance's)
    new_state: str
    at: float
    queued_at: float | None  # the attempt's, for a task instance's change
    started_at: float | None
    ended_at: float | None
    task_id: str | None = None
    #: what the attempt cost, when its executor measured it (see ``AttemptUsage``)
    cpu_seconds: float | None = None
    peak_rss: int | None = None
    gpu_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Now:
    """Things as they are: runs and attempts running, and the oldest live heartbeat."""

    runs_running: dict[str, int]  # by pipeline
    runs_queued: dict[str, int]
    attempts_running: int
    oldest_heartbeat_age: float | None  # seconds, by the database's clock


@dataclass(frozen=True, slots=True)
class ProcessStat:
    """What one process published about itself (``publish``)."""

    holder: str
    role: str
    loop: list[tuple[float, int]]  # cumulative (upper bound, count), ending with +Inf
    loop_sum: float
    waited_out: int
    updated_at: float


@resilient
class StoreStats:
    def __init__(self, store: Database) -> None:
        self.store = store
        self.engine = store.engine
        self._clock = db_clock(store.engine.dialect.name)

    @property
    def outage_timeout(self) -> float:
        return self.store.outage_timeout

    def events_after(self, after_id: int, limit: int = 50_000, settled_before: float | None = None
                     ) -> list[EventStat]:  # fmt: skip
        """Up to ``limit`` events after ``after_id``, in id order; with ``settled_before``
        only those written before then (a transaction that took an earlier id but commits
        later is then counted too)."""
        e, r, a = s.events, s.runs, s.attempts
        q = (
            select(
                e.c.id, r.c.pipeline, e.c.task_id, e.c.new_state, e.c.at,
                a.c.queued_at, a.c.started_at, a.c.ended_at,
                a.c.cpu_seconds, a.c.peak_rss, a.c.gpu_seconds,
            )
            .select_from(
                e.join(r, r.c.run_id == e.c.run_id).outerjoin(
                    a,
                    and_(
                        a.c.run_id == e.c.run_id,
                        a.c.task_id == e.c.task_id,
                        a.c.map_index == e.c.map_index,
                        a.c.try_number == e.c.try_number,
                    ),
                )
            )
            .where(e.c.id > after_id)
            .order_by(e.c.id)
            .limit(limit)
        )
        if settled_before is not None:
            q = q.where(e.c.at < settled_before)
        with self.engine.connect() as conn:
            return [
                EventStat(i, p, t is None, st, at, qa, sa, ea, t, cpu, rss, gpu)
                for i, p, t, st, at, qa, sa, ea, cpu, rss, gpu in conn.execute(q)
            ]

    def now(self) -> Now:
        r, ti, a = s.runs, s.task_instances, s.attempts
        with self.engine.connect() as conn:
            by_state: dict[str, dict[str, int]] = {"running": {}, "queued": {}}
            q = (
                select(r.c.state, r.c.pipeline, func.count())
                .where(r.c.state.in_(["running", "queued"]))
                .group_by(r.c.state, r.c.pipeline)
            )
            for state, pipeline, n in conn.execute(q):
                by_state[state][pipeline] = int(n)
            running = conn.execute(
                select(func.count()).select_from(ti).where(ti.c.state == "running")
            ).scalar_one()
            oldest = conn.execute(
                select(self._clock - func.min(a.c.heartbeat_at)).where(
                    a.c.state == "running", a.c.heartbeat_at.is_not(None)
                )
            ).scalar()
        return Now(
            by_state["running"],
            by_state["queued"],
            int(running),
            None if oldest is None else max(0.0, float(oldest)),
        )


    def publish(
        self,
        holder: str,
        role: str,
        loop: Sequence[tuple[float, int]],
        loop_sum: float,
        waited_out: int,
        now: float,
    ) -> None:
        """Keep this process's own figures in the store (one row per process, replaced)."""
        p = s.process_stats
        row = {
            "holder": holder,
            "role": role,
            "loop": json.dumps(
                {"buckets": [[_bound(b), n] for b, n in loop], "sum": loop_sum}
            ),
            "waited_out": waited_out,
            "updated_at": now,
        }
        with write_transaction(self.engine) as conn:
            done = conn.execute(p.update().where(p.c.holder == holder).values(row)).rowcount
            if not done:
                conn.execute(insert_new(self.engine.dialect.name, p).values(row))

    def published(self, since: float) -> list[ProcessStat]:
        """What processes published since ``since`` (those gone longer are left out)."""
        p = s.process_stats
        q = select(p).where(p.c.updated_at >= since).order_by(p.c.holder)
        with self.engine.connect() as conn:
            rows = list(conn.execute(q))
        out = []
        for r in rows:
            loop = json.loads(r.loop)
            buckets = [(float(b), int(n)) for b, n in loop["buckets"]]
            total = float(loop["sum"])
            out.append(ProcessStat(r.holder, r.role, buckets, total, r.waited_out, r.updated_at))
        return out


def _bound(b: float) -> str:
    return "+Inf" if b == float("inf") else repr(b)


__all__ = ["EventStat", "Now", "ProcessStat", "StoreStats"]
