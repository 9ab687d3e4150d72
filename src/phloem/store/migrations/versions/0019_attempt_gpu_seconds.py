"""Attempts on Ray record the GPU seconds they reserved (the GPUs Ray gave their worker times
their wall time).

Revision ID: 0019
Revises: 0018
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.add_column(sa.Column("gpu_seconds", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("attempts") as batch:
        batch.drop_column("gpu_seconds")
