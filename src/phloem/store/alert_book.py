"""Alert rules kept in the store (``phloem alerts add``) and alert deliveries.

A delivery is one alert on one channel. Recording it is an insert that a unique key on
(rule, run, subject, channel) makes idempotent, so every process that sees the same run end
may record it and it exists once. Sending it is a claim (a short lease, taken with ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL, a compare-and-set everywhere) followed by a fenced
``finish``: two schedulers never send the same record at once, and a sender that dies
mid-send leaves it to another once its claim expires.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, or_, select

from phloem.store import schema as s
from phloem.store.engine import Database, write_transaction
from phloem.store.resilience import resilient
from phloem.store.rows import unindexed
from phloem.store.writes import insert_new

if TYPE_CHECKING:
    from phloem.store.deliveries import Delivery, NewDelivery

PENDING, SENT, FAILED = "pending", "sent", "failed"


@dataclass(frozen=True, slots=True)
class StoredRule:
    """A rule added with ``phloem alerts add``."""

    id: int
    pipeline: str
    kind: str
    options: dict[str, Any]
    channels: list[tuple[str, str]]  # (kind, target)
    created_at: float


_NEW_FIELDS: tuple[str, ...] = ("rule_id", "pipeline", "run_id", "subject", "channel", "kind")
_NEW_FIELDS += ("target", "rule", "title", "body")


def _delivery(row: Any) -> Delivery:
    from phloem.store.deliveries import delivery_from_row

    return delivery_from_row(row)


@resilient
class AlertBook:
    """The SQL store's alert rules and deliveries (``store.alerts``)."""

    def __init__(self, store: Database) -> None:
        self.store = store
        self.engine = store.engine
        self.dialect = store.engine.dialect.name

    @property
    def outage_timeout(self) -> float:
        return self.store.outage_timeout

    # -- rules ----------------------------------------------------------------------------------

    def add_rule(
        self,
        pipeline: str,
        kind: str,
        options: dict[str, Any],
        channels: Sequence[tuple[str, str]],
        now: float,
    ) -> int:
        row = {
            "pipeline": pipeline,
            "kind": kind,
            "options": json.dumps(options, sort_keys=True),
            "channels": json.dumps([list(c) for c in channels]),
            "created_at": now,
        }
        with write_transaction(self.engine) as conn:
            res = conn.execute(s.alert_rules.insert().values(row))
            key = res.inserted_primary_key
            assert key is not None
            return int(key[0])

    def rules(self, pipeline: str | None = None) -> list[StoredRule]:
        r = s.alert_rules
        q = select(r).order_by(r.c.id)
        if pipeline is not None:
            q = q.where(r.c.pipeline == pipeline)
        with self.engine.connect() as conn:
            return [
                StoredRule(
                    x.id,
                    x.pipeline,
                    x.kind,
                    json.loads(x.options),
                    [(k, t) for k, t in json.loads(x.channels)],
                    x.created_at,
                )
                for x in conn.execute(q)
            ]

    def remove_rule(self, rule_id: int) -> bool:
        with write_transaction(self.engine) as conn:
            res = conn.execute(s.alert_rules.delete().where(s.alert_rules.c.id == rule_id))
            return bool(res.rowcount)

    # -- deliveries -----------------------------------------------------------------------------

    def record(self, deliveries: Sequence[NewDelivery], now: float) -> int:
        """Record these deliveries in one transaction; those recorded before (by this or any
        process) are left as they are. Returns how many are new."""
        if not deliveries:
            return 0
        rows = [
            {
                **{k: getattr(d, k) for k in _NEW_FIELDS},
                "payload": json.dumps(d.payload, default=str),
                "state": PENDING,
                "tries": 0,
                "next_try_at": now,
                "created_at": now,
            }
            for d in deliveries
        ]
        stmt = insert_new(self.dialect, s.alert_deliveries)
        new = 0
        with write_transaction(self.engine) as conn:
            for row in rows:  # a handful per run end: rowcount tells which were new
                new += conn.execute(stmt, row).rowcount or 0
        return new

    def claim(
        self,
        holder: str,
        now: float,
        ttl: float,
        limit: int = 20,
        callables: Collection[str] = (),
    ) -> list[Delivery]:
        """Take up to ``limit`` pending deliveries that are due and not claimed by another
        sender (or whose claim expired), for ``ttl`` seconds. ``call`` deliveries are taken
        only if their callable is in ``callables`` (known to this process)."""
        d = s.alert_deliveries
        q = (
            select(d)
            .where(
                d.c.state == PENDING,
                d.c.next_try_at <= now,
                or_(d.c.claim_expires_at.is_(None), d.c.claim_expires_at < now),
                or_(d.c.kind != "call", d.c.target.in_(list(callables))),
            )
            .order_by(d.c.id)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            q = q.with_for_update(skip_locked=True)
        with write_transaction(self.engine) as conn:
            rows = list(conn.execute(q))
            if not rows:
                return []
            ids = [r.id for r in rows]
            conn.execute(
                d.update()
                .where(d.c.id.in_(ids))
                .values(claimed_by=holder, claim_expires_at=now + ttl)
            )
        return [_delivery(r) for r in rows]

    def finish(
        self,
        delivery_id: int,
        holder: str,
        now: float,
        *,
        sent: bool,
        error: str | None = None,
        retry_at: float | None = None,
    ) -> bool:
        """What became of a claimed delivery: sent, to be tried again at ``retry_at``, or
        failed for good (neither). Fenced by the claim: False if another sender has it now."""
        d = s.alert_deliveries
        values: dict[str, Any] = {
            "tries": d.c.tries + 1,
            "claimed_by": None,
            "claim_expires_at": None,
        }
        if error is not None or not sent:  # a success keeps the last error, for history
            values["last_error"] = error
        if sent:
            values.update(state=SENT, sent_at=now)
        elif retry_at is not None:
            values.update(next_try_at=retry_at)
        else:
            values.update(state=FAILED)
        with write_transaction(self.engine) as conn:
            res = conn.execute(
                d.update()
                .where(
                    d.c.id == delivery_id,
                    d.c.claimed_by == holder,
                    unindexed(d.c.state) == PENDING,
                )
                .values(values)
            )
            return bool(res.rowcount)

    def history(
        self, pipeline: str | None = None, limit: int = 50, run_id: str | None = None
    ) -> list[Delivery]:
        """Deliveries, newest first."""
        d = s.alert_deliveries
        q = select(d).order_by(d.c.id.desc()).limit(limit)
        if pipeline is not None:
            q = q.where(d.c.pipeline == pipeline)
        if run_id is not None:
            q = q.where(d.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [_delivery(r) for r in conn.execute(q)]

    def next_due(self, now: float, callables: Collection[str] = ()) -> float | None:
        """When the earliest pending delivery this process can send is due (its claim, if
        any, runs out then at the earliest); None: nothing pending."""
        d = s.alert_deliveries
        later = func.max if self.dialect == "sqlite" else func.greatest  # of two values
        q = select(
            func.min(later(d.c.next_try_at, func.coalesce(d.c.claim_expires_at, 0.0)))
        ).where(
            d.c.state == PENDING,
            or_(d.c.kind != "call", d.c.target.in_(list(callables))),
        )
        with self.engine.connect() as conn:
            v = conn.execute(q).scalar()
        return None if v is None else float(v)

    def counts(self) -> dict[tuple[str, str], int]:
        """How many deliveries there are by (channel kind, state)."""
        d = s.alert_deliveries
        q = select(d.c.kind, d.c.state, func.count()).group_by(d.c.kind, d.c.state)
        with self.engine.connect() as conn:
            return {(k, st): int(n) for k, st, n in conn.execute(q)}

    def recorded(self, run_id: str, rule_ids: Collection[str]) -> set[str]:
        """Which of these rules have a delivery recorded for the run."""
        d = s.alert_deliveries
        q = select(d.c.rule_id).where(and_(d.c.run_id == run_id, d.c.rule_id.in_(rule_ids)))
        with self.engine.connect() as conn:
            return set(conn.execute(q).scalars())


def __getattr__(name: str) -> Any:
    """``Delivery`` and ``NewDelivery``, from store/deliveries.py where they are defined (a
    run that only reads the rules does not build them)."""
    if name in ("Delivery", "NewDelivery"):
        from phloem.store import deliveries

        return getattr(deliveries, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["FAILED", "PENDING", "SENT", "AlertBook", "Delivery", "NewDelivery", "StoredRule"]
