"""Mapping between domain records and table rows."""

from __future__ import annotations

import json
from typing import Any

from phloem.records import TI, RunRecord
from phloem.states import RunState, RunType, TaskState

TI_VALUE_COLUMNS = (
    "state",
    "try_number",
    "retry_base",
    "next_try_at",
    "queued_at",
    "started_at",
    "ended_at",
    "first_started_at",
    "map_length",
    "follow",
    "output",
    "error",
)


def ti_values(ti: TI) -> dict[str, Any]:
    return {
        "v_state": ti.state.value,
        "v_try_number": ti.try_number,
        "v_retry_base": ti.retry_base,
        "v_next_try_at": ti.next_try_at,
        "v_queued_at": ti.queued_at,
        "v_started_at": ti.started_at,
        "v_ended_at": ti.ended_at,
        "v_first_started_at": ti.first_started_at,
        "v_map_length": ti.map_length,
        "v_follow": None if ti.follow is None else json.dumps(list(ti.follow)),
        "v_output": ti.output,
        "v_error": ti.error,
    }


def ti_row(run_id: str, ti: TI) -> dict[str, Any]:
    row = {k[2:]: v for k, v in ti_values(ti).items()}
    row.update(run_id=run_id, task_id=ti.task_id, map_index=ti.map_index)
    return row


def ti_record(row: Any) -> TI:
    return TI(
        task_id=row["task_id"],
        map_index=row["map_index"],
        state=TaskState(row["state"]),
        try_number=row["try_number"],
        retry_base=row["retry_base"],
        next_try_at=row["next_try_at"],
        queued_at=row["queued_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        first_started_at=row["first_started_at"],
        map_length=row["map_length"],
        follow=None if row["follow"] is None else tuple(json.loads(row["follow"])),
        output=row["output"],
        error=row["error"],
    )


def run_row(run: RunRecord, lease_until: float | None = None) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "state": run.state.value,
        "logical_date": run.logical_date,
        "data_interval_start": run.data_interval_start,
        "data_interval_end": run.data_interval_end,
        "params": json.dumps(run.params, default=str),
        "run_type": run.run_type.value,
        "source": run.source,
        "code_hash": run.code_hash,
        "idempotency_key": run.idempotency_key,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "owner": run.owner,
        "lease_expires_at": lease_until,
        "batch": run.batch,
        "batch_limit": run.batch_limit,
        "triggered_by": run.triggered_by,
    }


def run_record(row: Any) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        pipeline=row["pipeline"],
        state=RunState(row["state"]),
        logical_date=row["logical_date"],
        params=json.loads(row["params"] or "{}"),
        created_at=row["created_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        run_type=RunType(row["run_type"]),
        source=row["source"],
        code_hash=row["code_hash"],
        data_interval_start=row["data_interval_start"],
        data_interval_end=row["data_interval_end"],
        idempotency_key=row["idempotency_key"],
        owner=row["owner"],
        batch=row["batch"],
        batch_limit=row["batch_limit"],
        triggered_by=row["triggered_by"],
    )


def attempt_update(**values: str) -> Any:
    """An UPDATE of one attempt row, matched by ``b_run``, ``b_task``, ``b_map``, ``b_try``
    and setting each column to the bind parameter named for it; build it once, at import
    (statement construction costs more than running it on the hot path)."""
    from sqlalchemy import bindparam

    from phloem.store import schema as s

    a = s.attempts
    return (
        a.update()
        .where(
            a.c.run_id == bindparam("b_run"),
            a.c.task_id == bindparam("b_task"),
            a.c.map_index == bindparam("b_map"),
            a.c.try_number == bindparam("b_try"),
        )
        .values({column: bindparam(param) for column, param in values.items()})
    )


def unindexed(column: Any) -> Any:
    """``column`` as an expression no index answers, for a statement that names its row by
    primary key and also checks a state (a compare-and-set). On a small table without
    statistics (a store's first runs) PostgreSQL rates the index on the state as good as the
    primary key and may take it, then filters every row in that state for each row changed:
    in a 1,000-wide fan-out each compare-and-set read about 1,000 rows. ``state || ''`` is the
    same value to both databases and matches no index."""
    from sqlalchemy import literal_column

    return column.op("||")(literal_column("''"))


def insert_new(dialect: str, table: Any) -> Any:
    """INSERT that skips rows whose primary key exists already (ON CONFLICT DO NOTHING)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()
