"""Attempts record what they cost (CPU seconds, peak RSS) and the memory they were allowed.

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("cpu_seconds", sa.Float))
        batch.add_column(sa.Column("peak_rss", sa.BigInteger))
        batch.add_column(sa.Column("memory_limit", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("memory_limit")
        batch.drop_column("peak_rss")
        batch.drop_column("cpu_seconds")
