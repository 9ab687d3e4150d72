"""The model registry's tables: versions, aliases, the history of alias moves, decisions.

A version registered from a task is allocated at once (the task needs its number) as
*pending*, tied to the attempt that registered it; it becomes *ready* (listed, loadable) only
when that attempt succeeds, in the same transaction as its success (``ModelVersionReady``, an
attempt effect). A retry of the same task instance takes the pending versions of its earlier
tries over, so a task that fails and then succeeds leaves one usable version, not two.

Version numbers are unique per name by the primary key: two registrations racing on
PostgreSQL compute the same next number, one insert waits for the other and fails, and is
retried with the next number.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError

from phloem.effects import (
    AttemptEffects,
    Effect,
    ModelAliasMoved,
    ModelDecided,
    ModelVersionReady,
)
from phloem.errors import ModelNotFound, StoreError
from phloem.store import schema as s
from phloem.store.engine import Database, write_transaction
from phloem.store.resilience import resilient
from phloem.store.rows import insert_new
from phloem.store.types import ArtifactRecord

READY = "ready"
PENDING = "pending"

#: the attempt that registers a version: (run_id, task_id, map_index, try_number)
Owner = tuple[str, str, int, int]

_V = s.model_versions


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One registered version of a model, with what made it."""

    name: str
    version: int
    status: str  # "ready" | "pending" (its attempt has not succeeded)
    artifact: ArtifactRecord
    metrics: dict[str, float]
    params: dict[str, Any]
    tags: dict[str, Any]
    eval_digest: str | None
    description: str | None
    run_id: str | None
    task_id: str | None
    map_index: int | None
    try_number: int | None
    registered_by: str
    created_at: float
    ready_at: float | None
    aliases: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> bool:
        return self.status == READY

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True, slots=True)
class ModelSummary:
    name: str
    latest: int | None  # the newest ready version
    versions: int  # how many are ready
    aliases: dict[str, int]
    updated_at: float


@dataclass(frozen=True, slots=True)
class AliasMove:
    """One move of an alias, as the history keeps it."""

    name: str
    alias: str
    version: int
    previous: int | None
    at: float
    who: str
    reason: str | None
    run_id: str | None = None
    task_id: str | None = None
    kind: str = "set"  # "set" | "rollback"


@dataclass(frozen=True, slots=True)
class DecisionRow:
    name: str
    decision: dict[str, Any]
    at: float
    run_id: str | None
    task_id: str | None


def _version(row: Any, artifact: ArtifactRecord, aliases: tuple[str, ...]) -> ModelVersion:
    return ModelVersion(
        row.name,
        row.version,
        row.status,
        artifact,
        json.loads(row.metrics),
        json.loads(row.params),
        json.loads(row.tags),
        row.eval_digest,
        row.description,
        row.run_id,
        row.task_id,
        row.map_index,
        row.try_number,
        row.registered_by,
        row.created_at,
        row.ready_at,
        aliases,
    )


def _artifact(r: Any) -> ArtifactRecord:
    return ArtifactRecord(r.digest, r.serializer, r.type_name, r.size, r.key)


def _insert_new(conn: Connection, table: Any) -> Any:
    return insert_new(conn.dialect.name, table)


# -- writers shared by direct calls and attempt effects ---------------------------------------


def record_artifacts(conn: Connection, artifacts: Sequence[ArtifactRecord], now: float) -> None:
    rows = {
        a.digest: {
            "digest": a.digest,
            "serializer": a.serializer,
            "type_name": a.type_name,
            "size": a.size,
            "key": a.key,
            "created_at": now,
        }
        for a in artifacts
    }
    if rows:
        conn.execute(_insert_new(conn, s.artifacts), list(rows.values()))


def mark_ready(
    conn: Connection, run_id: str, a: AttemptEffects, e: ModelVersionReady, now: float
) -> None:
    """The attempt that registered ``e.version`` succeeded: the version becomes usable, and
    its model and evaluation data enter the attempt's lineage."""
    res = conn.execute(
        _V.update()
        .where(
            _V.c.name == e.name,
            _V.c.version == e.version,
            _V.c.status == PENDING,
            _V.c.run_id == run_id,
            _V.c.task_id == a.task_id,
            _V.c.map_index == a.map_index,
            _V.c.try_number == a.try_number,
        )
        .values(status=READY, ready_at=now)
    )
    if res.rowcount == 1 and e.uses:
        _uses(conn, run_id, a, e.uses, now)


def _uses(
    conn: Connection,
    run_id: str,
    a: AttemptEffects,
    uses: Sequence[tuple[str, str]],
    now: float,
) -> None:
    rows = [
        {
            "digest": digest,
            "run_id": run_id,
            "task_id": a.task_id,
            "map_index": a.map_index,
            "role": role,
            "try_number": a.try_number,
            "at": now,
        }
        for digest, role in dict.fromkeys(uses)
    ]
    conn.execute(_insert_new(conn, s.artifact_uses), rows)


def move_alias(
    conn: Connection,
    name: str,
    alias: str,
    version: int,
    *,
    reason: str | None,
    who: str,
    at: float,
    run_id: str | None = None,
    task_id: str | None = None,
    kind: str = "set",
) -> AliasMove | None:
    """Point ``alias`` at ``version`` (a ready one; else nothing moves and None is returned)
    and append the move to the history."""
    ready = conn.execute(
        select(_V.c.version).where(
            _V.c.name == name, _V.c.version == version, _V.c.status == READY
        )
    ).first()
    if ready is None:
        return None
    al = s.model_aliases
    previous = conn.execute(
        select(al.c.version).where(al.c.name == name, al.c.alias == alias)
    ).scalar()
    if previous is None:
        conn.execute(al.insert().values(name=name, alias=alias, version=version, moved_at=at))
    else:
        conn.execute(
            al.update()
            .where(al.c.name == name, al.c.alias == alias)
            .values(version=version, moved_at=at)
        )
    move = AliasMove(name, alias, version, previous, at, who, reason, run_id, task_id, kind)
    conn.execute(
        s.model_alias_moves.insert().values(
            name=name,
            alias=alias,
            version=version,
            previous=previous,
            kind=kind,
            at=at,
            who=who,
            reason=reason,
            run_id=run_id,
            task_id=task_id,
        )
    )
    return move


def insert_decision(
    conn: Connection,
    name: str,
    decision: str,
    at: float,
    run_id: str | None = None,
    task_id: str | None = None,
) -> None:
    conn.execute(
        s.model_decisions.insert().values(
            name=name, decision=decision, at=at, run_id=run_id, task_id=task_id
        )
    )


def write_effects(
    conn: Connection,
    run_id: str,
    items: Sequence[tuple[AttemptEffects, Effect]],
    now: float,
) -> None:
    """The registry's attempt effects of one commit, in the order they were recorded."""
    for a, e in items:
        if isinstance(e, ModelVersionReady):
            mark_ready(conn, run_id, a, e, now)
        elif isinstance(e, ModelAliasMoved):
            move_alias(
                conn, e.name, e.alias, e.version, reason=e.reason, who=e.who, at=e.at,
                run_id=run_id, task_id=a.task_id,
            )
        elif isinstance(e, ModelDecided):
            insert_decision(conn, e.name, e.decision, e.at, run_id, a.task_id)
        else:
            raise TypeError(f"not a model registry effect: {type(e).__name__}")


# -- the sub-port ---------------------------------------------------------------------------------


@resilient
class Models:
    """The model registry kept in one store (``store.models``)."""

    def __init__(self, store: Database) -> None:
        self.store = store

    @property
    def outage_timeout(self) -> float:
        return self.store.outage_timeout

    # -- writes

    def allocate(
        self,
        name: str,
        artifact: ArtifactRecord,
        *,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
        tags: Mapping[str, Any],
        eval_digest: str | None,
        description: str | None,
        owner: Owner | None,
        who: str,
        now: float,
        artifacts: Sequence[ArtifactRecord] = (),
    ) -> int:
        """A new version of ``name``: ready at once without ``owner``, else pending until
        that attempt succeeds (a pending version of an earlier try of the same task instance
        is taken over). ``artifacts``: other records to keep (the evaluation data)."""
        values: dict[str, Any] = {
            "status": PENDING if owner else READY,
            "digest": artifact.digest,
            "metrics": json.dumps(dict(metrics), allow_nan=True),
            "params": json.dumps(dict(params), default=str),
            "tags": json.dumps(dict(tags), default=str),
            "eval_digest": eval_digest,
            "description": description,
            "registered_by": who,
            "created_at": now,
            "ready_at": None if owner else now,
        }
        if owner is not None:
            values.update(
                run_id=owner[0], task_id=owner[1], map_index=owner[2], try_number=owner[3]
            )
        for _ in range(50):
            try:
                with write_transaction(self.store.engine) as conn:
                    record_artifacts(conn, [artifact, *artifacts], now)
                    taken = self._take_over(conn, name, owner, values) if owner else None
                    if taken is not None:
                        return taken
                    latest = conn.execute(
                        select(func.max(_V.c.version)).where(_V.c.name == name)
                    ).scalar()
                    version = (latest or 0) + 1
                    conn.execute(_V.insert().values(name=name, version=version, **values))
                    return version
            except IntegrityError:
                continue  # another registration took this number: take the next one
        raise StoreError(f"could not allocate a version of model '{name}' (50 tries)")

    def _take_over(
        self, conn: Connection, name: str, owner: Owner, values: dict[str, Any]
    ) -> int | None:
        run_id, task_id, map_index, try_number = owner
        row = conn.execute(
            select(_V.c.version, _V.c.try_number)
            .where(
                _V.c.name == name,
                _V.c.status == PENDING,
                _V.c.run_id == run_id,
                _V.c.task_id == task_id,
                _V.c.map_index == map_index,
                _V.c.try_number < try_number,
            )
            .order_by(_V.c.version)
            .limit(1)
        ).first()
        if row is None:
            return None
        res = conn.execute(
            _V.update()
            .where(
                _V.c.name == name,
                _V.c.version == row.version,
                _V.c.status == PENDING,
                _V.c.try_number == row.try_number,
            )
            .values(**values)
        )
        return int(row.version) if res.rowcount == 1 else None

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        *,
        reason: str | None,
        who: str,
        now: float,
        kind: str = "set",
    ) -> AliasMove:
        """Move ``alias`` to ``version`` now (outside a task) and record the move."""
        with write_transaction(self.store.engine) as conn:
            move = move_alias(
                conn, name, alias, version, reason=reason, who=who, at=now, kind=kind
            )
        if move is None:
            self.version(name, version, ready=True)  # raises, naming what exists
            raise ModelNotFound(f"version {version} of model '{name}' is not usable")
        return move

    def record_decision(self, name: str, decision: str, now: float) -> None:
        with write_transaction(self.store.engine) as conn:
            insert_decision(conn, name, decision, now)

    # -- reads

    def names(self) -> list[ModelSummary]:
        q = (
            select(
                _V.c.name,
                func.max(_V.c.version),
                func.count(),
                func.max(_V.c.ready_at),
            )
            .where(_V.c.status == READY)
            .group_by(_V.c.name)
            .order_by(_V.c.name)
        )
        al = s.model_aliases
        with self.store.engine.connect() as conn:
            rows = list(conn.execute(q))
            aliases: dict[str, dict[str, int]] = {}
            for r in conn.execute(select(al).order_by(al.c.alias)):
                aliases.setdefault(r.name, {})[r.alias] = r.version
        return [
            ModelSummary(name, latest, count, aliases.get(name, {}), at)
            for name, latest, count, at in rows
        ]

    def versions(self, name: str, *, include_pending: bool = False) -> list[ModelVersion]:
        """The versions of ``name``, oldest first (ready ones only unless asked)."""
        q = select(_V, s.artifacts).join(s.artifacts, s.artifacts.c.digest == _V.c.digest)
        q = q.where(_V.c.name == name).order_by(_V.c.version)
        if not include_pending:
            q = q.where(_V.c.status == READY)
        with self.store.engine.connect() as conn:
            rows = list(conn.execute(q))
            by_version = self._aliases_by_version(conn, name)
        return [_version(r, _artifact(r), by_version.get(r.version, ())) for r in rows]

    def registered_by(self, run_id: str, task_id: str, map_index: int) -> list[ModelVersion]:
        """The usable versions one task instance registered, by name and version (a task's
        page shows them beside its output)."""
        q = select(_V, s.artifacts).join(s.artifacts, s.artifacts.c.digest == _V.c.digest)
        q = q.where(_V.c.run_id == run_id, _V.c.task_id == task_id, _V.c.status == READY)
        with self.store.engine.connect() as conn:
            rows = [r for r in conn.execute(q.order_by(_V.c.name, _V.c.version))
                    if r.map_index in (map_index, None)]  # fmt: skip
            names = {r.name for r in rows}
            aliases = {name: self._aliases_by_version(conn, name) for name in names}
        return [_version(r, _artifact(r), aliases[r.name].get(r.version, ())) for r in rows]

    def version(self, name: str, version: int, *, ready: bool = False) -> ModelVersion:
        """Version ``version`` of ``name``; ModelNotFound (listing what exists) if there is
        none, or with ``ready`` if its attempt has not succeeded."""
        q = select(_V, s.artifacts).join(s.artifacts, s.artifacts.c.digest == _V.c.digest)
        q = q.where(_V.c.name == name, _V.c.version == version)
        with self.store.engine.connect() as conn:
            row = conn.execute(q).first()
            by_version = self._aliases_by_version(conn, name) if row is not None else {}
        if row is None or (ready and row.status != READY):
            raise self._not_found(name, version, None if row is None else row)
        return _version(row, _artifact(row), by_version.get(version, ()))

    def latest(self, name: str) -> ModelVersion:
        with self.store.engine.connect() as conn:
            v = conn.execute(
                select(func.max(_V.c.version)).where(_V.c.name == name, _V.c.status == READY)
            ).scalar()
        if v is None:
            raise self._not_found(name, None, None)
        return self.version(name, int(v))

    def aliases(self, name: str) -> dict[str, int]:
        al = s.model_aliases
        with self.store.engine.connect() as conn:
            return {
                r.alias: r.version
                for r in conn.execute(select(al).where(al.c.name == name).order_by(al.c.alias))
            }

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of ``name``'s aliases (or of one), oldest first."""
        m = s.model_alias_moves
        q = select(m).where(m.c.name == name).order_by(m.c.id)
        if alias is not None:
            q = q.where(m.c.alias == alias)
        with self.store.engine.connect() as conn:
            return [
                AliasMove(
                    r.name, r.alias, r.version, r.previous, r.at, r.who, r.reason, r.run_id,
                    r.task_id, r.kind,
                )
                for r in conn.execute(q)
            ]

    def decisions(self, name: str) -> list[DecisionRow]:
        d = s.model_decisions
        q = select(d).where(d.c.name == name).order_by(d.c.id)
        with self.store.engine.connect() as conn:
            return [
                DecisionRow(r.name, json.loads(r.decision), r.at, r.run_id, r.task_id)
                for r in conn.execute(q)
            ]

    def _aliases_by_version(self, conn: Connection, name: str) -> dict[int, tuple[str, ...]]:
        al = s.model_aliases
        out: dict[int, tuple[str, ...]] = {}
        for r in conn.execute(select(al).where(al.c.name == name).order_by(al.c.alias)):
            out[r.version] = (*out.get(r.version, ()), r.alias)
        return out

    def _not_found(self, name: str, version: int | None, row: Any) -> ModelNotFound:
        if row is not None:
            where = f"run {row.run_id} task {row.task_id} try {row.try_number}"
            return ModelNotFound(
                f"version {version} of model '{name}' cannot be used: the attempt that "
                f"registered it ({where}) has not succeeded (it failed, or still runs); "
                f"`phloem models show {name}` lists the usable versions",
                model=name,
            )
        known = [m.name for m in self.names()]
        if name not in known:
            listed = ", ".join(known[:20]) or "none yet"
            return ModelNotFound(
                f"no model named '{name}' in the registry (models: {listed}); register one "
                "with phloem.models.register",
                model=name,
            )
        versions = [v.version for v in self.versions(name)]
        return ModelNotFound(
            f"model '{name}' has no version {version} (versions: "
            f"{_ranges(versions)}); `phloem models show {name}` lists them",
            model=name,
        )


def _ranges(numbers: Sequence[int]) -> str:
    """``1-4, 7`` for [1, 2, 3, 4, 7]."""
    out: list[str] = []
    for n in numbers:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out) or "none"


__all__ = [
    "PENDING",
    "READY",
    "AliasMove",
    "DecisionRow",
    "ModelSummary",
    "ModelVersion",
    "Models",
    "Owner",
    "insert_decision",
    "mark_ready",
    "move_alias",
    "write_effects",
]
