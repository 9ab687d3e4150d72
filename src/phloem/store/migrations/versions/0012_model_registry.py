"""The model registry: versions, aliases, the history of alias moves, promotion decisions.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=False),
        sa.Column("eval_digest", sa.String(64)),
        sa.Column("description", sa.Text),
        sa.Column("run_id", sa.String(64)),
        sa.Column("task_id", sa.String(250)),
        sa.Column("map_index", sa.Integer),
        sa.Column("try_number", sa.Integer),
        sa.Column("registered_by", sa.String(500), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("ready_at", sa.Float),
    )
    op.create_index(
        "ix_model_versions_attempt", "model_versions", ["run_id", "task_id", "map_index"]
    )
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(250), primary_key=True),
        sa.Column("alias", sa.String(250), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("moved_at", sa.Float, nullable=False),
    )
    op.create_table(
        "model_alias_moves",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("alias", sa.String(250), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("previous", sa.Integer),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("who", sa.String(500), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("run_id", sa.String(64)),
        sa.Column("task_id", sa.String(250)),
    )
    op.create_index("ix_model_alias_moves_name", "model_alias_moves", ["name", "alias", "id"])
    op.create_table(
        "model_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(250), nullable=False),
        sa.Column("decision", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("task_id", sa.String(250)),
    )
    op.create_index("ix_model_decisions_name", "model_decisions", ["name", "id"])


def downgrade() -> None:
    op.drop_index("ix_model_decisions_name", "model_decisions")
    op.drop_table("model_decisions")
    op.drop_index("ix_model_alias_moves_name", "model_alias_moves")
    op.drop_table("model_alias_moves")
    op.drop_table("model_aliases")
    op.drop_index("ix_model_versions_attempt", "model_versions")
    op.drop_table("model_versions")
