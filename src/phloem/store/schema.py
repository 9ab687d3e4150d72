"""Tables (SQLAlchemy Core). Alembic migrations in ``migrations/`` create and evolve them.

Times on hot rows are epoch seconds (float) so writes stay cheap and identical on SQLite and
PostgreSQL; logical dates are canonical ISO-8601 UTC strings so they sort and compare as text.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("pipeline", String(250), nullable=False),
    Column("state", String(20), nullable=False),
    Column("logical_date", String(40), nullable=False),
    Column("data_interval_start", String(40)),
    Column("data_interval_end", String(40)),
    Column("params", Text, nullable=False, default="{}"),
    Column("run_type", String(20), nullable=False, default="manual"),
    Column("source", Text),
    Column("code_hash", String(64)),
    Column("idempotency_key", String(250)),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("ended_at", Float),
    UniqueConstraint("pipeline", "logical_date", name="uq_runs_pipeline_logical_date"),
    UniqueConstraint("pipeline", "idempotency_key", name="uq_runs_pipeline_idempotency_key"),
    Index("ix_runs_state", "state"),
    Index("ix_runs_pipeline_created", "pipeline", "created_at"),
)

task_instances = Table(
    "task_instances",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("task_id", String(250), primary_key=True),
    Column("map_index", Integer, primary_key=True),
    Column("state", String(20), nullable=False),
    Column("try_number", Integer, nullable=False, default=0),
    Column("retry_base", Integer, nullable=False, default=0),
    Column("next_try_at", Float),
    Column("queued_at", Float),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("first_started_at", Float),
    Column("map_length", Integer),
    Column("follow", Text),
    Column("output", Text),
    Column("error", Text),
    Index("ix_ti_state", "state"),
)

attempts = Table(
    "attempts",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("task_id", String(250), primary_key=True),
    Column("map_index", Integer, primary_key=True),
    Column("try_number", Integer, primary_key=True),
    Column("state", String(20), nullable=False),
    Column("queued_at", Float),
    Column("started_at", Float),
    Column("ended_at", Float),
    Column("heartbeat_at", Float),
    Column("worker", String(250)),
    Column("error", Text),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False),
    Column("task_id", String(250)),
    Column("map_index", Integer),
    Column("try_number", Integer),
    Column("old_state", String(20)),
    Column("new_state", String(20), nullable=False),
    Column("at", Float, nullable=False),
    Column("reason", Text),
    Index("ix_events_run", "run_id", "id"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("serializer", String(40), nullable=False),
    Column("type_name", String(250), nullable=False),
    Column("size", Integer, nullable=False),
    Column("key", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)

artifact_uses = Table(
    "artifact_uses",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("task_id", String(250), primary_key=True),
    Column("map_index", Integer, primary_key=True),
    Column("role", String(10), primary_key=True),  # "output" | "input"
    Column("try_number", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Index("ix_artifact_uses_run", "run_id"),
)

pools = Table(
    "pools",
    metadata,
    Column("name", String(250), primary_key=True),
    Column("slots", Integer, nullable=False),
    Column("description", Text),
)
