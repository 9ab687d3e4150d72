"""Runs are listed newest first, filtered by pipeline, state or source, in keyset pages:
each of those listings reads one index in order.

Revision ID: 0008
Revises: 0007
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_created", "runs", ["created_at", "run_id"])
    op.create_index("ix_runs_state_created", "runs", ["state", "created_at"])
    op.create_index("ix_runs_type_created", "runs", ["run_type", "created_at"])
    op.drop_index("ix_runs_state", "runs")


def downgrade() -> None:
    op.create_index("ix_runs_state", "runs", ["state"])
    op.drop_index("ix_runs_type_created", "runs")
    op.drop_index("ix_runs_state_created", "runs")
    op.drop_index("ix_runs_created", "runs")
