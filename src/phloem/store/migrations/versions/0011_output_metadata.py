"""Outputs keep metadata (``phloem.Output``, data frames' row counts and schemas), and artifact
uses are found by digest for lineage.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "output_metadata",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("task_id", sa.String(250), primary_key=True),
        sa.Column("map_index", sa.Integer, primary_key=True),
        sa.Column("try_number", sa.Integer, primary_key=True),
        sa.Column("path", sa.String(1000), primary_key=True),
        sa.Column("digest", sa.String(64)),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_output_metadata_digest", "output_metadata", ["digest"])
    op.create_index("ix_artifact_uses_digest_role", "artifact_uses", ["digest", "role"])


def downgrade() -> None:
    op.drop_index("ix_artifact_uses_digest_role", table_name="artifact_uses")
    op.drop_index("ix_output_metadata_digest", table_name="output_metadata")
    op.drop_table("output_metadata")
