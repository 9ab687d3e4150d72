"""Scheduler: pipelines and their versions, import errors, variables, connections, leases,
run ownership, pool columns on task instances, asset events.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("owner", sa.String(120)))
        batch.add_column(sa.Column("lease_expires_at", sa.Float))
    with op.batch_alter_table("task_instances") as batch:
        batch.add_column(
            sa.Column("pool", sa.String(250), nullable=False, server_default="default")
        )
        batch.add_column(sa.Column("pool_slots", sa.Integer, nullable=False, server_default="1"))
    op.create_table(
        "pipelines",
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column("schedule", sa.String(250)),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("start_date", sa.String(40)),
        sa.Column("catchup", sa.Integer, nullable=False),
        sa.Column("max_active_runs", sa.Integer, nullable=False),
        sa.Column("assets", sa.Text),
        sa.Column("paused", sa.Integer, nullable=False),
        sa.Column("active", sa.Integer, nullable=False),
        sa.Column("last_parsed_at", sa.Float),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "pipeline_versions",
        sa.Column("pipeline", sa.String(250), primary_key=True),
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("first_seen_at", sa.Float, nullable=False),
    )
    op.create_table(
        "import_errors",
        sa.Column("file", sa.String(1000), primary_key=True),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_table(
        "variables",
        sa.Column("key", sa.String(250), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("description", sa.Text),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "connections",
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("holder", sa.String(120), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "asset_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("asset", sa.String(500), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("task_id", sa.String(250)),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_asset_events_asset", "asset_events", ["asset", "id"])
    op.create_table(
        "asset_watermarks",
        sa.Column("pipeline", sa.String(250), primary_key=True),
        sa.Column("asset", sa.String(500), primary_key=True),
        sa.Column("last_event_id", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "asset_watermarks",
        "asset_events",
        "leases",
        "connections",
        "variables",
        "import_errors",
        "pipeline_versions",
        "pipelines",
    ):
        op.drop_table(table)
    with op.batch_alter_table("task_instances") as batch:
        batch.drop_column("pool_slots")
        batch.drop_column("pool")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("owner")
