"""Figures that live in one process (a scheduler's loop durations, the database errors it
waited out), published to the store so a server in another process can show them.

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "process_stats",
        sa.Column("holder", sa.String(120), primary_key=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("loop", sa.Text, nullable=False),
        sa.Column("waited_out", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("process_stats")
