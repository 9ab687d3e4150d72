"""Watermarks for incremental processing (``phloem.watermark``) with their history, and the
metadata of asset events (``phloem.emit(..., metadata=...)``).

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "watermarks",
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("task_id", sa.String(250)),
    )
    op.create_table(
        "watermark_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("kind", sa.String(16)),
        sa.Column("value", sa.Text),
        sa.Column("previous", sa.Text),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("run_id", sa.String(64)),
        sa.Column("task_id", sa.String(250)),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_watermark_history_name", "watermark_history", ["name", "id"])
    with op.batch_alter_table("asset_events") as batch:
        batch.add_column(sa.Column("metadata", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("asset_events") as batch:
        batch.drop_column("metadata")
    op.drop_index("ix_watermark_history_name", "watermark_history")
    op.drop_table("watermark_history")
    op.drop_table("watermarks")
