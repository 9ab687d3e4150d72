"""Attempt leases: where an attempt runs, its heartbeat renews its lease; a driver that takes
a run over waits for the leases of the attempts it inherits to expire before retrying them.

Every heartbeat is a compare-and-set on (attempt, try number, still active, run still owned by
the attempt's driver), written with the database's clock, so a worker learns at its next beat
that its attempt is no longer current, and expiry never depends on two machines' clocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Float, and_, bindparam, cast, exists, func, literal, select

from phloem.store import schema as s
from phloem.store.engine import Database, write_transaction
from phloem.store.resilience import resilient, single_try
from phloem.store.types import AttemptKey, AttemptLease, Beat

#: attempt and task-instance states in which an attempt may still run
_LIVE = ("queued", "running")


@resilient
class AttemptLeases:
    """The SQL store's attempt leases (``store.attempt_leases``)."""

    def __init__(self, store: Database) -> None:
        self.store = store
        self.engine = store.engine
        self.dialect = store.engine.dialect.name
        self._now = db_clock(self.dialect)
        a, ti = s.attempts, s.task_instances
        self._beat = (
            a.update()
            .where(
                a.c.run_id == bindparam("b_run"),
                a.c.task_id == bindparam("b_task"),
                a.c.map_index == bindparam("b_map"),
                a.c.try_number == bindparam("b_try"),
                a.c.state.in_(_LIVE),
                exists().where(
                    and_(
                        ti.c.run_id == a.c.run_id,
                        ti.c.task_id == a.c.task_id,
                        ti.c.map_index == a.c.map_index,
                        ti.c.try_number == a.c.try_number,
                        ti.c.state.in_(_LIVE),
                    )
                ),
            )
            .values(heartbeat_at=self._now)
        )

    @property
    def outage_timeout(self) -> float:
        return self.store.outage_timeout

    @single_try
    def beat(self, beats: Sequence[Beat]) -> set[Beat]:
        """Renew these attempts' leases in one transaction; returns the beats written. A beat
        not written means its attempt is no longer current (another try, another state, or
        its run has another owner): whoever runs it must stop it.

        Tried once: the caller keeps time and decides what a failure means."""
        if not beats:
            return set()
        r = s.runs
        written: set[Beat] = set()
        with write_transaction(self.engine) as conn:
            leased = sorted({b.run_id for b in beats if b.owner is not None})
            owners: dict[str, Any] = {}
            if leased:
                q = select(r.c.run_id, r.c.owner).where(r.c.run_id.in_(leased))
                if self.dialect == "postgresql":
                    # a takeover (an UPDATE of the run) waits for this beat's commit, so a
                    # successor that reads the heartbeats after taking the run sees this one
                    q = q.with_for_update(read=True)
                owners = dict(conn.execute(q).all())
            for b in beats:
                if b.owner is not None and owners.get(b.run_id) != b.owner:
                    continue
                res = conn.execute(
                    self._beat,
                    {
                        "b_run": b.run_id,
                        "b_task": b.task_id,
                        "b_map": b.map_index,
                        "b_try": b.try_number,
                    },
                )
                if res.rowcount == 1:
                    written.add(b)
        return written

    def heartbeats(
        self, run_id: str, keys: Iterable[AttemptKey] | None = None
    ) -> tuple[float, dict[AttemptKey, AttemptLease]]:
        """The database's clock now, and the lease of each of the run's attempts that may
        still run: its last heartbeat, and which driver handed it out."""
        a = s.attempts
        q = select(a.c.task_id, a.c.map_index, a.c.try_number, a.c.heartbeat_at, a.c.worker).where(
            a.c.run_id == run_id, a.c.state.in_(_LIVE)
        )
        wanted = set(keys) if keys is not None else None
        with self.engine.connect() as conn:
            now = float(conn.execute(select(self._now)).scalar_one())
            rows = conn.execute(q).all()
        out = {
            (t, m, n): AttemptLease(float(hb) if hb is not None else None, holder)
            for t, m, n, hb, holder in rows
            if wanted is None or (t, m, n) in wanted
        }
        return now, out


def db_clock(dialect: str) -> Any:
    """Seconds since the epoch by the database server's clock (one clock for every machine
    that compares heartbeats)."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", func.clock_timestamp()), Float)
    # SQLite lives on one machine: its clock is this machine's
    return (func.julianday(literal("now")) - 2440587.5) * 86400.0


__all__ = ["AttemptKey", "AttemptLeases", "Beat", "db_clock"]
