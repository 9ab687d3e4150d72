"""Run batches: a backfill's runs share a batch and a limit on how many run at once.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("batch", sa.String(80)))
        batch.add_column(sa.Column("batch_limit", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("batch_limit")
        batch.drop_column("batch")
