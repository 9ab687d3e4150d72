"""Listings for people and programs (the REST API, the CLI): runs filtered and paged, a run's
task instances paged, assets and their events paged.

Pages are keyset pages, never OFFSET: each page ends with an opaque cursor naming the last row
it holds, and the next page starts strictly after that row. So a page costs the same on the
thousandth page as on the first, and rows created while someone pages never shift or repeat
what the next page holds. A cursor is only meaningful to the listing that made it; a cursor
that was altered or made by another listing is refused with a message.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import func, select, tuple_, union_all

from phloem.errors import BadCursor, PhloemError, RunNotFound
from phloem.records import TI, RunRecord, iso_utc
from phloem.states import RunState, RunType, TaskState
from phloem.store import schema as s
from phloem.store.engine import Database
from phloem.store.resilience import resilient
from phloem.store.rows import run_record, ti_record

T = TypeVar("T")

#: a logical-date range with at most this many runs is read by its index and sorted
NARROW = 20_000
#: the most rows one page may hold (a request for more is refused, not trimmed silently)
MAX_PAGE = 1000
#: pipelines per statement of ``recent_runs`` (SQLite allows 500 terms in a compound select)
RECENT_CHUNK = 200


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; ``next_cursor`` asks for the page after it (None: the last)."""

    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs a listing holds; every field given narrows it (all empty: every run)."""

    pipeline: str | None = None
    states: tuple[RunState, ...] = ()
    #: what started them (schedule, manual trigger, backfill, asset, another run)
    run_types: tuple[RunType, ...] = ()
    #: logical dates from this one on (ISO 8601; included)
    logical_from: str | None = None
    #: logical dates up to this one (ISO 8601; included)
    logical_to: str | None = None


@dataclass(frozen=True, slots=True)
class AssetInfo:
    """An asset as its events tell of it."""

    name: str
    events: int
    last_event_id: int
    last_event_at: float


@dataclass(frozen=True, slots=True)
class AssetEvent:
    """One update of an asset, by the task of the run that produced it."""

    id: int
    asset: str
    run_id: str | None
    task_id: str | None
    at: float
    #: what the task said of it (``phloem.emit(..., metadata=...)``)
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TaskCount:
    """How many instances of a task of a run are in one state."""

    task_id: str
    state: TaskState
    count: int
    mapped: bool


@dataclass(frozen=True, slots=True)
class InstanceFilter:
    """Which task instances of a run a listing holds."""

    task_id: str | None = None
    states: tuple[TaskState, ...] = field(default=())


def encode_cursor(kind: str, key: Sequence[Any]) -> str:
    raw = json.dumps([kind, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str, shape: Sequence[type]) -> list[Any]:
    """The key a cursor of listing ``kind`` names; BadCursor if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        data = None
    ok = (
        isinstance(data, list)
        and len(data) == len(shape) + 1
        and data[0] == kind
        and all(
            isinstance(v, t) and not isinstance(v, bool)
            for v, t in zip(data[1:], shape, strict=True)
        )
    )
    if not ok:
        raise BadCursor(
            f"the cursor {cursor[:40]!r} was not made by this listing of {kind}; pass the "
            "next_cursor of the page before it unchanged, or leave it out for the first page"
        )
    assert isinstance(data, list)
    return data[1:]


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise PhloemError(
            f"page size {limit} is out of range: ask for 1 to {MAX_PAGE} rows per page and "
            "follow next_cursor for more"
        )
    return limit


@resilient
class Listing:
    """The SQL store's listings (``store.listing``)."""

    def __init__(self, store: Database) -> None:
        self.store = store
        self.engine = store.engine

    @property
    def outage_timeout(self) -> float:
        return self.store.outage_timeout

    def runs(
        self, where: RunFilter = RunFilter(), *, limit: int = 50, cursor: str | None = None
    ) -> Page[RunRecord]:
        """Runs newest first (by creation; ties by run id)."""
        check_limit(limit)
        r = s.runs
        q = select(r).limit(limit + 1)
        if where.pipeline is not None:
            q = q.where(r.c.pipeline == where.pipeline)
        if where.states:
            q = q.where(r.c.state.in_(sorted({st.value for st in where.states})))
        if where.run_types:
            q = q.where(r.c.run_type.in_(sorted({t.value for t in where.run_types})))
        dated = []
        if where.logical_from is not None:
            dated.append(r.c.logical_date >= iso_utc(where.logical_from))
        if where.logical_to is not None:
            dated.append(r.c.logical_date <= iso_utc(where.logical_to))
        q = q.where(*dated)
        if cursor is not None:
            created, run_id = decode_cursor("runs", cursor, (float, str))
            q = q.where(tuple_(r.c.created_at, r.c.run_id) < tuple_(float(created), run_id))
        with self.engine.connect() as conn:
            newest: Any = r.c.created_at
            if dated and self._few(conn, dated):
                # logical dates follow creation times, which planners do not know: walking
                # the runs newest first would pass most of them before the range; a narrow
                # range is read by its own index and sorted instead
                newest = r.c.created_at + 0
            q = q.order_by(newest.desc(), r.c.run_id.desc())
            rows = conn.execute(q).mappings().all()
        items = [run_record(row) for row in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            last = items[-1]
            nxt = encode_cursor("runs", [float(last.created_at), last.run_id])
        return Page(items, nxt)

    def recent_runs(
        self, pipelines: Sequence[str], per_pipeline: int = 25
    ) -> dict[str, list[RunRecord]]:
        """Each pipeline's newest runs: one UNION ALL of index-ordered, limited selects per
        chunk of pipelines (each reads only its own rows, through ix_runs_pipeline_created)."""
        check_limit(per_pipeline)
        r = s.runs
        out: dict[str, list[RunRecord]] = {p: [] for p in pipelines}
        names = list(out)
        with self.engine.connect() as conn:
            for i in range(0, len(names), RECENT_CHUNK):
                parts = [
                    select(r)
                    .where(r.c.pipeline == name)
                    .order_by(r.c.created_at.desc(), r.c.run_id.desc())
                    .limit(per_pipeline)
                    .subquery()
                    .select()
                    for name in names[i : i + RECENT_CHUNK]
                ]
                q = parts[0] if len(parts) == 1 else union_all(*parts)
                for row in conn.execute(q).mappings():
                    out[row["pipeline"]].append(run_record(row))
        for runs in out.values():
            runs.sort(key=lambda run: (run.created_at, run.run_id), reverse=True)
        return out

    @staticmethod
    def _few(conn: Any, dated: list[Any]) -> bool:
        """Whether at most NARROW runs match the logical-date conditions (counted through
        the logical-date index, never past NARROW + 1 rows)."""
        r = s.runs
        some = select(r.c.logical_date).where(*dated).limit(NARROW + 1).subquery()
        return int(conn.execute(select(func.count()).select_from(some)).scalar_one()) <= NARROW

    def instances(
        self,
        run_id: str,
        where: InstanceFilter = InstanceFilter(),
        *,
        limit: int = 500,
        cursor: str | None = None,
    ) -> Page[TI]:
        """A run's task instances by task id, then map index (RunNotFound if no such run)."""
        check_limit(limit)
        ti = s.task_instances
        q = (
            select(ti)
            .where(ti.c.run_id == run_id)
            .order_by(ti.c.task_id, ti.c.map_index)
            .limit(limit + 1)
        )
        if where.task_id is not None:
            q = q.where(ti.c.task_id == where.task_id)
        if where.states:
            q = q.where(ti.c.state.in_(sorted({st.value for st in where.states})))
        if cursor is not None:
            task_id, map_index = decode_cursor("instances", cursor, (str, int))
            q = q.where(tuple_(ti.c.task_id, ti.c.map_index) > tuple_(task_id, map_index))
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
            if not rows:
                exists = conn.execute(
                    select(s.runs.c.run_id).where(s.runs.c.run_id == run_id)
                ).first()
                if exists is None:
                    raise RunNotFound(f"no run '{run_id}'", run=run_id)
        items = [ti_record(row) for row in rows[:limit]]
        nxt = None
        if len(rows) > limit:
            nxt = encode_cursor("instances", [items[-1].task_id, items[-1].map_index])
        return Page(items, nxt)

    def task_counts(self, run_id: str) -> list[TaskCount]:
        """Per task of a run and state, how many instances are in it (one grouped query: a
        run with thousands of mapped instances is summarized without reading them)."""
        ti = s.task_instances
        q = (
            select(ti.c.task_id, ti.c.state, func.count(), func.max(ti.c.map_index))
            .where(ti.c.run_id == run_id)
            .group_by(ti.c.task_id, ti.c.state)
        )
        with self.engine.connect() as conn:
            return [
                TaskCount(task_id, TaskState(state), int(n), int(top) >= 0)
                for task_id, state, n, top in conn.execute(q)
            ]

    def task_counts_of(self, run_ids: Sequence[str]) -> dict[str, list[TaskCount]]:
        """``task_counts`` of several runs in one grouped query (a grid of 25 runs x 200
        tasks reads 5,000 small rows instead of 25 runs' whole task instances)."""
        ti = s.task_instances
        out: dict[str, list[TaskCount]] = {r: [] for r in run_ids}
        if not out:
            return out
        q = (
            select(ti.c.run_id, ti.c.task_id, ti.c.state, func.count(), func.max(ti.c.map_index))
            .where(ti.c.run_id.in_(list(out)))
            .group_by(ti.c.run_id, ti.c.task_id, ti.c.state)
        )
        states = {st.value: st for st in TaskState}
        with self.engine.connect() as conn:
            for run_id, task_id, state, n, top in conn.execute(q):
                out[run_id].append(TaskCount(task_id, states[state], int(n), int(top) >= 0))
        return out

    def assets(self) -> list[AssetInfo]:
        """Every asset that has events, by name."""
        ev = s.asset_events
        q = (
            select(ev.c.asset, func.count(), func.max(ev.c.id), func.max(ev.c.at))
            .group_by(ev.c.asset)
            .order_by(ev.c.asset)
        )
        with self.engine.connect() as conn:
            return [AssetInfo(a, int(n), int(i), float(at)) for a, n, i, at in conn.execute(q)]

    def asset_events(
        self, asset: str | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[AssetEvent]:
        """Asset events newest first (of ``asset`` only, if given)."""
        check_limit(limit)
        ev = s.asset_events
        q = select(ev).order_by(ev.c.id.desc()).limit(limit + 1)
        if asset is not None:
            q = q.where(ev.c.asset == asset)
        if cursor is not None:
            (last,) = decode_cursor("asset events", cursor, (int,))
            q = q.where(ev.c.id < last)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        items = [
            AssetEvent(
                r.id, r.asset, r.run_id, r.task_id, r.at,
                None if r._mapping["metadata"] is None else json.loads(r._mapping["metadata"]),
            )
            for r in rows[:limit]
        ]
        nxt = encode_cursor("asset events", [items[-1].id]) if len(rows) > limit else None
        return Page(items, nxt)


__all__ = [
    "MAX_PAGE",
    "AssetEvent",
    "AssetInfo",
    "InstanceFilter",
    "Listing",
    "Page",
    "RunFilter",
    "TaskCount",
    "check_limit",
]
