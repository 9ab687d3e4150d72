"""Runs record the run (and task) that triggered them with ``phloem.trigger``.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("triggered_by", sa.String(320)))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("triggered_by")
