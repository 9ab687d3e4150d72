"""Pipelines carry their owner, tags and description, for listings.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pipelines") as batch:
        batch.add_column(sa.Column("owner", sa.String(250)))
        batch.add_column(sa.Column("tags", sa.Text))
        batch.add_column(sa.Column("description", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("pipelines") as batch:
        batch.drop_column("description")
        batch.drop_column("tags")
        batch.drop_column("owner")
