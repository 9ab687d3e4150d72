"""Initial schema: runs, task instances, attempts, events, artifacts, pools.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("pipeline", sa.String(250), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("logical_date", sa.String(40), nullable=False),
        sa.Column("data_interval_start", sa.String(40)),
        sa.Column("data_interval_end", sa.String(40)),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("run_type", sa.String(20), nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("code_hash", sa.String(64)),
        sa.Column("idempotency_key", sa.String(250)),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("ended_at", sa.Float),
        sa.UniqueConstraint("pipeline", "logical_date", name="uq_runs_pipeline_logical_date"),
        sa.UniqueConstraint("pipeline", "idempotency_key", name="uq_runs_pipeline_idempotency_key"),
    )
    op.create_index("ix_runs_state", "runs", ["state"])
    op.create_index("ix_runs_pipeline_created", "runs", ["pipeline", "created_at"])
    op.create_table(
        "task_instances",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.String(250), primary_key=True),
        sa.Column("map_index", sa.Integer, primary_key=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("retry_base", sa.Integer, nullable=False),
        sa.Column("next_try_at", sa.Float),
        sa.Column("queued_at", sa.Float),
        sa.Column("started_at", sa.Float),
        sa.Column("ended_at", sa.Float),
        sa.Column("first_started_at", sa.Float),
        sa.Column("map_length", sa.Integer),
        sa.Column("follow", sa.Text),
        sa.Column("output", sa.Text),
        sa.Column("error", sa.Text),
    )
    op.create_index("ix_ti_state", "task_instances", ["state"])
    op.create_table(
        "attempts",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.String(250), primary_key=True),
        sa.Column("map_index", sa.Integer, primary_key=True),
        sa.Column("try_number", sa.Integer, primary_key=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("queued_at", sa.Float),
        sa.Column("started_at", sa.Float),
        sa.Column("ended_at", sa.Float),
        sa.Column("heartbeat_at", sa.Float),
        sa.Column("worker", sa.String(250)),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(250)),
        sa.Column("map_index", sa.Integer),
        sa.Column("try_number", sa.Integer),
        sa.Column("old_state", sa.String(20)),
        sa.Column("new_state", sa.String(20), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_events_run", "events", ["run_id", "id"])
    op.create_table(
        "artifacts",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("serializer", sa.String(40), nullable=False),
        sa.Column("type_name", sa.String(250), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "artifact_uses",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.String(250), primary_key=True),
        sa.Column("map_index", sa.Integer, primary_key=True),
        sa.Column("role", sa.String(10), primary_key=True),
        sa.Column("try_number", sa.Integer, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_artifact_uses_run", "artifact_uses", ["run_id"])
    op.create_table(
        "pools",
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("slots", sa.Integer, nullable=False),
        sa.Column("description", sa.Text),
    )


def downgrade() -> None:
    for table in (
        "pools",
        "artifact_uses",
        "artifacts",
        "events",
        "attempts",
        "task_instances",
        "runs",
    ):
        op.drop_table(table)
