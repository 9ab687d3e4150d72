"""The cache's tables: entries (one per key, written in the same transaction as the success
that produced them) and checks (what the cache said about each task instance). Domain terms
only; SQL stays in here."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select

from phloem.states import TaskState
from phloem.store import schema as s
from phloem.store.cache_records import CacheCheck, CacheEntry
from phloem.store.engine import Database, write_transaction
from phloem.store.resilience import resilient
from phloem.store.types import Applied, Commit

_E = s.cache_entries
_C = s.cache_checks
#: built once: statement construction costs more than running it on the hot path
_FIND = select(_E).where(_E.c.key.in_(bindparam("keys", expanding=True)))
_UPSERTS: dict[str, Any] = {}
_INSERTS: dict[str, Any] = {}
_CHECK_VALUES = ("pipeline", "key", "outcome", "reason", "parts", "source_run", "at")
#: keys per IN (...) query: well under every driver's bound-parameter limit
_BATCH = 500


@resilient
class SqlCache:
    """Reads and clears cache entries; entries and checks are written with a commit."""

    def __init__(self, store: Database) -> None:
        self.store = store
        self.engine = store.engine

    @property
    def outage_timeout(self) -> float:
        return self.store.outage_timeout

    def find(self, keys: Collection[str]) -> dict[str, CacheEntry]:
        """The entries of ``keys`` that exist (one query per 500 keys)."""
        out: dict[str, CacheEntry] = {}
        if not keys:
            return out
        ordered = sorted(set(keys))
        with self.engine.connect() as conn:
            for i in range(0, len(ordered), _BATCH):
                for r in conn.execute(_FIND, {"keys": ordered[i : i + _BATCH]}):
                    out[r.key] = _entry(r)
        return out

    def tasks_with_entries(self, pipeline: str) -> set[str]:
        """The tasks of ``pipeline`` that have at least one entry."""
        q = select(_E.c.task_id).where(_E.c.pipeline == pipeline).distinct()
        with self.engine.connect() as conn:
            return set(conn.execute(q).scalars())

    def entries(
        self,
        pipeline: str | None = None,
        task_id: str | None = None,
        *,
        before: float | None = None,
        limit: int | None = None,
    ) -> list[CacheEntry]:
        """Entries, newest first, of ``pipeline`` and ``task_id`` when given (``before``: made
        before that time)."""
        q = select(_E).order_by(_E.c.created_at.desc(), _E.c.key)
        if pipeline is not None:
            q = q.where(_E.c.pipeline == pipeline)
        if task_id is not None:
            q = q.where(_E.c.task_id == task_id)
        if before is not None:
            q = q.where(_E.c.created_at < before)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(q)]

    def clear(self, pipeline: str | None = None, task_id: str | None = None) -> int:
        """Delete entries (of ``pipeline`` / ``task_id`` when given); returns how many."""
        q = delete(_E)
        if pipeline is not None:
            q = q.where(_E.c.pipeline == pipeline)
        if task_id is not None:
            q = q.where(_E.c.task_id == task_id)
        with write_transaction(self.engine) as conn:
            return int(conn.execute(q).rowcount or 0)

    def check(self, run_id: str, task_id: str, map_index: int = -1) -> CacheCheck | None:
        """What the cache said about one task instance, if it was asked."""
        q = select(_C).where(
            _C.c.run_id == run_id, _C.c.task_id == task_id, _C.c.map_index == map_index
        )
        with self.engine.connect() as conn:
            r = conn.execute(q).first()
            if r is not None:
                return _check(r)
            # a plain miss that succeeded is recorded by the entry it wrote
            e = conn.execute(
                select(_E).where(
                    _E.c.run_id == run_id, _E.c.task_id == task_id, _E.c.map_index == map_index
                )
            ).first()
        if e is None:
            return None
        return CacheCheck(
            run_id, task_id, map_index, e.pipeline, e.key, "miss", None, e.parts, None, e.created_at
        )

    def checks(self, run_id: str) -> list[CacheCheck]:
        """What the cache said about the run's instances (plain misses that succeeded are
        read from the entries they wrote)."""
        q = select(_C).where(_C.c.run_id == run_id)
        with self.engine.connect() as conn:
            out = {(r.task_id, r.map_index): _check(r) for r in conn.execute(q)}
            for e in conn.execute(select(_E).where(_E.c.run_id == run_id)):
                out.setdefault(
                    (e.task_id, e.map_index),
                    CacheCheck(
                        run_id,
                        e.task_id,
                        e.map_index,
                        e.pipeline,
                        e.key,
                        "miss",
                        None,
                        e.parts,
                        None,
                        e.created_at,
                    ),
                )
        return [out[k] for k in sorted(out)]


def write_cache(conn: Connection, dialect: str, r: Commit, applied: Applied, now: float) -> None:
    """Inside a commit: the checks, and the entries whose instance's success was applied by
    this commit (an entry never outlives a success that lost its compare-and-set)."""
    if r.cache_checks:
        rows = {(c.task_id, c.map_index): _check_row(c) for c in r.cache_checks}
        # a check made again (the instance was retried or the run resumed) replaces the last
        conn.execute(_upsert_check(dialect), list(rows.values()))
    if not r.cache_entries:
        return
    won = {
        t.key
        for t in applied.transitions
        if t.new.state is TaskState.SUCCESS and t.old.state is not TaskState.SUCCESS
    }
    entries = [e for e in r.cache_entries if (e.task_id, e.map_index) in won]
    if not entries:
        return
    stale = [e.key for e in entries if e.replace]
    if stale:
        conn.execute(_E.delete().where(_E.c.key.in_(stale)))
    conn.execute(_insert_new(dialect), [_entry_row(e, now) for e in entries])


def _upsert_check(dialect: str) -> Any:
    stmt = _UPSERTS.get(dialect)
    if stmt is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        ins = insert(_C)
        stmt = ins.on_conflict_do_update(
            index_elements=["run_id", "task_id", "map_index"],
            set_={c: ins.excluded[c] for c in _CHECK_VALUES},
        )
        _UPSERTS[dialect] = stmt
    return stmt


def _insert_new(dialect: str) -> Any:
    stmt = _INSERTS.get(dialect)
    if stmt is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        stmt = _INSERTS[dialect] = insert(_E).on_conflict_do_nothing()
    return stmt


def _entry_row(e: CacheEntry, now: float) -> dict[str, Any]:
    return {
        "key": e.key,
        "pipeline": e.pipeline,
        "task_id": e.task_id,
        "run_id": e.run_id,
        "map_index": e.map_index,
        "output": e.output,
        "map_length": e.map_length,
        "follow": None if e.follow is None else json.dumps(list(e.follow)),
        "parts": e.parts,
        "created_at": now,
    }


def _check_row(c: CacheCheck) -> dict[str, Any]:
    return {
        "run_id": c.run_id,
        "task_id": c.task_id,
        "map_index": c.map_index,
        "pipeline": c.pipeline,
        "key": c.key,
        "outcome": c.outcome,
        "reason": c.reason,
        "parts": c.parts,
        "source_run": c.source_run,
        "at": c.at,
    }


def _entry(r: Any) -> CacheEntry:
    return CacheEntry(
        key=r.key,
        pipeline=r.pipeline,
        task_id=r.task_id,
        run_id=r.run_id,
        map_index=r.map_index,
        output=r.output,
        map_length=r.map_length,
        follow=None if r.follow is None else tuple(json.loads(r.follow)),
        parts=r.parts,
        created_at=r.created_at,
    )


def _check(r: Any) -> CacheCheck:
    return CacheCheck(
        run_id=r.run_id,
        task_id=r.task_id,
        map_index=r.map_index,
        pipeline=r.pipeline,
        key=r.key,
        outcome=r.outcome,
        reason=r.reason,
        parts=r.parts,
        source_run=r.source_run,
        at=r.at,
    )


__all__ = ["SqlCache", "write_cache"]
