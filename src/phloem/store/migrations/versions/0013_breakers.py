"""Circuit breakers shared by every task, run, worker and scheduler on the store.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "breakers",
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("failures", sa.Text, nullable=False),
        sa.Column("opened_at", sa.Float),
        sa.Column("probe_until", sa.Float),
        sa.Column("last_error", sa.Text),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("breakers")
