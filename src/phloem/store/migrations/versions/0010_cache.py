"""Task caching: one entry per cache key, and what the cache said about each task instance.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cache_entries",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("pipeline", sa.String(250), nullable=False),
        sa.Column("task_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("map_index", sa.Integer, nullable=False),
        sa.Column("output", sa.Text),
        sa.Column("map_length", sa.Integer),
        sa.Column("follow", sa.Text),
        sa.Column("parts", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_cache_entries_task", "cache_entries", ["pipeline", "task_id", "created_at"]
    )
    op.create_table(
        "cache_checks",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.String(250), primary_key=True),
        sa.Column("map_index", sa.Integer, primary_key=True),
        sa.Column("pipeline", sa.String(250), nullable=False),
        sa.Column("key", sa.String(64)),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("parts", sa.Text),
        sa.Column("source_run", sa.String(64)),
        sa.Column("at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cache_checks")
    op.drop_index("ix_cache_entries_task", table_name="cache_entries")
    op.drop_table("cache_entries")
