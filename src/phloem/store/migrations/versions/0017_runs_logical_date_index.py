"""Runs listed by a logical-date range (every pipeline) read an index on the logical date
instead of scanning the runs newest first.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_logical_date", "runs", ["logical_date"])


def downgrade() -> None:
    op.drop_index("ix_runs_logical_date", "runs")
