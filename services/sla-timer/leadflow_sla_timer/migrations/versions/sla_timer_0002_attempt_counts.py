"""attempt counts for contact cadences

Revision ID: sla_timer_0002
Revises: sla_timer_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "sla_timer_0002"
down_revision = "sla_timer_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "timers",
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        schema="sla_timer",
    )
    op.add_column(
        "timers", sa.Column("attempts_required", sa.Integer(), nullable=True), schema="sla_timer"
    )
    op.add_column(
        "early_attempts",
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        schema="sla_timer",
    )


def downgrade() -> None:
    op.drop_column("early_attempts", "attempts", schema="sla_timer")
    op.drop_column("timers", "attempts_required", schema="sla_timer")
    op.drop_column("timers", "attempts", schema="sla_timer")
