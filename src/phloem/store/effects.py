"""Writing attempt effects (``phloem.effects``) inside a commit's transaction.

An attempt's effects land only if the change that ends that very attempt (its task instance
leaving ``queued``/``running`` at that try) is among the changes this commit applied: a
zombie's or a superseded attempt's effects find no such change and are dropped, and a commit
retried after a failure writes them once, with the change. Rows of one kind are inserted in
one statement per commit, not one per effect; kinds that must read before they write (a
watermark's compare-and-set) or write several tables have a writer of their own, given all
their effects of the commit at once. The model registry's kinds share one writer, so they land
in the order they were recorded (an alias moved to the version registered just before finds
it ready).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

from sqlalchemy import Connection, Table

from phloem.effects import (
    ArtifactRecorded,
    AssetEmitted,
    AttemptEffects,
    AttemptUsage,
    Effect,
    MetricLogged,
    ModelAliasMoved,
    ModelDecided,
    ModelVersionReady,
    OutputMetadataKept,
    ParamLogged,
    WatermarkAdvanced,
)
from phloem.states import ACTIVE_TASK_STATES, TaskState
from phloem.store import schema as s
from phloem.store.rows import attempt_update, insert_new
from phloem.store.types import Applied

#: the identity of an attempt: (task_id, map_index, try_number)
AttemptId = tuple[str, int, int]

#: effect kind -> (table, row) for kinds that are plain inserts
RowOf = Callable[[str, AttemptEffects, Any, float], dict[str, Any]]


def _metric_row(run_id: str, a: AttemptEffects, e: MetricLogged, now: float) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "task_id": a.task_id,
        "map_index": a.map_index,
        "try_number": a.try_number,
        "key": e.key,
        "value": None if math.isnan(e.value) else e.value,
        "step": e.step,
        "at": e.at,
    }


def _param_row(run_id: str, a: AttemptEffects, e: ParamLogged, now: float) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "task_id": a.task_id,
        "map_index": a.map_index,
        "try_number": a.try_number,
        "key": e.key,
        "value": e.value,
    }


def _output_metadata_row(
    run_id: str, a: AttemptEffects, e: OutputMetadataKept, now: float
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "task_id": a.task_id,
        "map_index": a.map_index,
        "try_number": a.try_number,
        "path": e.path,
        "digest": e.digest,
        "metadata": e.metadata,
        "at": now,
    }


def _asset_row(run_id: str, a: AttemptEffects, e: AssetEmitted, now: float) -> dict[str, Any]:
    return {
        "asset": e.asset,
        "run_id": run_id,
        "task_id": a.task_id,
        "at": now,
        "metadata": e.metadata,
    }


_ROWS: dict[type[Effect], tuple[Table, RowOf, tuple[str, ...] | None]] = {
    # (table, row, unique columns: a later row with the same values replaces an earlier one)
    MetricLogged: (s.metrics, _metric_row, None),
    ParamLogged: (s.logged_params, _param_row, ("task_id", "map_index", "try_number", "key")),
    OutputMetadataKept: (
        s.output_metadata,
        _output_metadata_row,
        ("task_id", "map_index", "try_number", "path"),
    ),
    AssetEmitted: (s.asset_events, _asset_row, None),
}


def _write_artifacts(
    conn: Connection,
    run_id: str,
    items: Sequence[tuple[AttemptEffects, ArtifactRecorded]],
    now: float,
) -> None:
    """Artifacts a task stored besides its output: their record (once per content) and their
    use by the task, with its role, for lineage."""
    dialect = conn.dialect.name
    records = {
        e.digest: {
            "digest": e.digest,
            "serializer": e.serializer,
            "type_name": e.type_name,
            "size": e.size,
            "key": e.key,
            "created_at": now,
        }
        for _, e in items
    }
    conn.execute(insert_new(dialect, s.artifacts), list(records.values()))
    uses = {
        (e.digest, a.task_id, a.map_index, e.role): {
            "digest": e.digest,
            "run_id": run_id,
            "task_id": a.task_id,
            "map_index": a.map_index,
            "role": e.role,
            "try_number": a.try_number,
            "at": now,
        }
        for a, e in items
    }
    conn.execute(insert_new(dialect, s.artifact_uses), list(uses.values()))


#: the attempt columns an ``AttemptUsage`` fills: one per field, named as the field, so a field
#: added to the effect is written everywhere usage is (alone here, or with the attempt's end in
#: ``Writer.record_attempts``) or fails at import, never dropped silently
USAGE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(AttemptUsage))
_missing = [c for c in USAGE_COLUMNS if c not in s.attempts.c]
if _missing:
    raise ImportError(
        f"AttemptUsage has fields {_missing} that are not columns of the attempts table: "
        "add the columns (schema.py and a migration) or rename the fields"
    )


def usage_values(e: AttemptUsage) -> dict[str, Any]:
    """The bind parameters of ``USAGE_COLUMNS`` (``u_<column>``) for one usage."""
    return {f"u_{c}": getattr(e, c) for c in USAGE_COLUMNS}


def usage_binds() -> dict[str, str]:
    """column -> bind parameter name, for building a statement that writes usage."""
    return {c: f"u_{c}" for c in USAGE_COLUMNS}


def usages(pending: Sequence[AttemptEffects]) -> dict[AttemptId, AttemptUsage]:
    """The usage each attempt recorded (the last, if it recorded several), by attempt."""
    return {
        (a.task_id, a.map_index, a.try_number): e
        for a in pending
        for e in a.effects
        if isinstance(e, AttemptUsage)
    }


_USAGE_UPDATE = attempt_update(**usage_binds())


def _write_usage(
    conn: Connection,
    run_id: str,
    items: Sequence[tuple[AttemptEffects, AttemptUsage]],
    now: float,
) -> None:
    """What each attempt cost goes on its own row, in one statement for the commit."""
    conn.execute(
        _USAGE_UPDATE,
        [
            {
                "b_run": run_id,
                "b_task": at.task_id,
                "b_map": at.map_index,
                "b_try": at.try_number,
                **usage_values(e),
            }
            for at, e in items
        ],
    )


def _write_advances(
    conn: Connection, run_id: str, items: Sequence[tuple[AttemptEffects, Any]], now: float
) -> None:
    # imported here: only a run whose tasks advance a watermark needs that module
    from phloem.store.watermarks import write_advances

    write_advances(conn, run_id, items, now)


def _write_models(
    conn: Connection, run_id: str, items: Sequence[tuple[AttemptEffects, Any]], now: float
) -> None:
    # imported here: only a run whose tasks register models loads the model registry
    from phloem.store.models import write_effects as write_model_effects

    write_model_effects(conn, run_id, items, now)


#: kind -> writer of all the commit's effects of that kind, in the order they were recorded
ConnWriter = Callable[[Connection, str, Sequence[tuple[AttemptEffects, Any]], float], None]

_WRITERS: dict[type[Effect], ConnWriter] = {
    WatermarkAdvanced: _write_advances,
    ArtifactRecorded: _write_artifacts,
    AttemptUsage: _write_usage,
    ModelVersionReady: _write_models,
}

#: kinds written by the writer of another kind, together and in the order they were recorded
_SHARED: dict[type[Effect], type[Effect]] = {
    ModelAliasMoved: ModelVersionReady,
    ModelDecided: ModelVersionReady,
}


def ended_attempts(applied: Applied) -> dict[AttemptId, TaskState]:
    """The attempts whose end this commit applied, and the state each instance went to."""
    return {
        (t.old.task_id, t.old.map_index, t.old.try_number): t.new.state
        for t in applied.transitions
        if t.old.state in ACTIVE_TASK_STATES and t.new.state not in ACTIVE_TASK_STATES
    }


def landing(
    applied: Applied, pending: Sequence[AttemptEffects]
) -> list[tuple[AttemptEffects, Effect]]:
    """The effects to write for this commit, in the order they were recorded."""
    if not pending:
        return []
    ended = ended_attempts(applied)
    out: list[tuple[AttemptEffects, Effect]] = []
    for a in pending:
        state = ended.get((a.task_id, a.map_index, a.try_number))
        if state is None:
            continue
        succeeded = state is TaskState.SUCCESS
        out.extend((a, e) for e in a.effects if succeeded or not e.on_success_only)
    return out


def write_effects(
    conn: Connection,
    run_id: str,
    applied: Applied,
    pending: Sequence[AttemptEffects],
    now: float,
    usage_written: frozenset[AttemptId] | set[AttemptId] = frozenset(),
) -> None:
    """Write the effects of the attempts this commit ended (see the module docstring);
    ``usage_written``: attempts whose usage the update of their end wrote already."""
    batches: dict[type[Effect], list[dict[str, Any]]] = {}
    grouped: dict[type[Effect], list[tuple[AttemptEffects, Effect]]] = {}
    for a, e in landing(applied, pending):
        kind = _SHARED.get(type(e), type(e))
        if kind is AttemptUsage and (a.task_id, a.map_index, a.try_number) in usage_written:
            continue
        if kind in _WRITERS:
            grouped.setdefault(kind, []).append((a, e))
            continue
        if kind not in _ROWS:
            raise TypeError(f"phloem cannot store an effect of kind {kind.__name__}")
        _, row_of, _ = _ROWS[kind]
        batches.setdefault(kind, []).append(row_of(run_id, a, e, now))
    for kind, rows in batches.items():
        table, _, unique = _ROWS[kind]
        if unique is not None:
            rows = list({tuple(r[c] for c in unique): r for r in rows}.values())
        conn.execute(table.insert(), rows)
    for kind, items in grouped.items():
        _WRITERS[kind](conn, run_id, items, now)


__all__ = [
    "USAGE_COLUMNS",
    "ended_attempts",
    "landing",
    "usage_binds",
    "usage_values",
    "usages",
    "write_effects",
]
