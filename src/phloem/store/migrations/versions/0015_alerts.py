"""Alert rules declared from the command line, and one delivery record per alert and channel.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("pipeline", sa.String(250), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("channels", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("ix_alert_rules_pipeline", "alert_rules", ["pipeline"])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule_id", sa.String(80), nullable=False),
        sa.Column("pipeline", sa.String(250), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(400), nullable=False),
        sa.Column("channel", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("tries", sa.Integer, nullable=False),
        sa.Column("next_try_at", sa.Float, nullable=False),
        sa.Column("claimed_by", sa.String(120)),
        sa.Column("claim_expires_at", sa.Float),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("sent_at", sa.Float),
        sa.UniqueConstraint(
            "rule_id", "run_id", "subject", "channel", name="uq_alert_deliveries_once"
        ),
    )
    op.create_index("ix_alert_deliveries_due", "alert_deliveries", ["state", "next_try_at"])
    op.create_index("ix_alert_deliveries_pipeline", "alert_deliveries", ["pipeline", "id"])


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_table("alert_rules")
