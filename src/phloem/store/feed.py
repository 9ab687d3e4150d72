"""The history as a feed: every state change (runs and task instances) in commit order, read
after a position, for the server's event stream.

Positions are the ``events`` table's autoincrement ids. A reader asks for the rows after the
last id it gave out; the query is a range scan on the primary key (or on (run_id, id) when
one run is followed), so following the feed costs one indexed query per poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import func, select

from phloem.store import schema as s
from phloem.store.engine import Database
from phloem.store.resilience import resilient


@dataclass(frozen=True, slots=True)
class FeedEvent:
    id: int
    run_id: str
    pipeline: str
    task_id: str | None  # None: the run itself changed state
    map_index: int | None
    try_number: int | None
    old_state: str | None
    new_state: str
    at: float
    reason: str | None


@resilient
class EventFeed:
    def __init__(self, store: Database) -> None:
        self.store = store
        self.engine = store.engine

    @property
    def outage_timeout(self) -> float:
        return self.store.outage_timeout

    def last_id(self) -> int:
        """The id of the newest event (0: none yet)."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(s.events.c.id))).scalar() or 0)

    def ids_after(self, after_id: int, limit: int = 500) -> list[int]:
        """The ids above ``after_id`` visible now, in order (an index-only scan)."""
        e = s.events
        q = select(e.c.id).where(e.c.id > after_id).order_by(e.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [int(i) for i in conn.execute(q).scalars()]

    def after(
        self,
        after_id: int,
        *,
        upto: int | None = None,
        run_id: str | None = None,
        pipeline: str | None = None,
        limit: int = 500,
    ) -> list[FeedEvent]:
        """Events with an id above ``after_id`` (and at most ``upto``), oldest first, at most
        ``limit``; only those of ``run_id`` and of runs of ``pipeline`` when given."""
        e, r = s.events, s.runs
        q = (
            select(e, r.c.pipeline)
            .join(r, r.c.run_id == e.c.run_id)
            .where(e.c.id > after_id)
            .order_by(e.c.id)
            .limit(limit)
        )
        if upto is not None:
            q = q.where(e.c.id <= upto)
        if run_id is not None:
            q = q.where(e.c.run_id == run_id)
        if pipeline is not None:
            q = q.where(r.c.pipeline == pipeline)
        with self.engine.connect() as conn:
            return [
                FeedEvent(
                    row.id,
                    row.run_id,
                    row.pipeline,
                    row.task_id,
                    row.map_index,
                    row.try_number,
                    row.old_state,
                    row.new_state,
                    row.at,
                    row.reason,
                )
                for row in conn.execute(q).all()
            ]


class _Positions(Protocol):
    """What a follower reads of the feed (``EventFeed`` of the store port)."""

    def ids_after(self, after_id: int, limit: int = 500) -> list[int]: ...
    def after(
        self,
        after_id: int,
        *,
        upto: int | None = None,
        run_id: str | None = None,
        pipeline: str | None = None,
        limit: int = 500,
    ) -> list[FeedEvent]: ...


class Follower:
    """Follows the feed from a position, giving each committed event once, in id order.

    Ids are handed out when a row is inserted, not when its transaction commits: on
    PostgreSQL a transaction holding id 10 may commit after one holding id 11. So the follower
    never moves past a gap in the ids it can see until the gap fills or ``gap_wait`` seconds
    have passed (an id whose transaction rolled back never appears). On SQLite, where writes
    are serial, gaps are rare and short-lived.
    """

    def __init__(
        self,
        feed: _Positions,
        after: int,
        *,
        run_id: str | None = None,
        pipeline: str | None = None,
        gap_wait: float = 5.0,
        batch: int = 500,
    ) -> None:
        self.feed = feed
        self.position = after
        self.run_id = run_id
        self.pipeline = pipeline
        self.gap_wait = gap_wait
        self.batch = batch
        self._gap_seen: tuple[int, float] | None = None  # (first missing id, when first seen)

    def poll(self, now: float) -> tuple[list[FeedEvent], bool]:
        """The next events (possibly none) and whether more are waiting already."""
        ids = self.feed.ids_after(self.position, self.batch)
        if not ids:
            return [], False
        horizon = self.position
        for i in ids:
            if i != horizon + 1:
                missing = horizon + 1
                if self._gap_seen is None or self._gap_seen[0] != missing:
                    self._gap_seen = (missing, now)
                if now - self._gap_seen[1] < self.gap_wait:
                    break  # wait for the transaction that holds it to commit (or not)
                self._gap_seen = None  # waited long enough: that id will never come
            horizon = i
        if horizon == self.position:
            return [], False
        rows = self.feed.after(
            self.position,
            upto=horizon,
            run_id=self.run_id,
            pipeline=self.pipeline,
            limit=self.batch,
        )
        full = len(rows) == self.batch
        if full:
            horizon = rows[-1].id
        self.position = horizon
        return rows, full or (len(ids) == self.batch and horizon == ids[-1])


__all__ = ["EventFeed", "FeedEvent", "Follower"]
