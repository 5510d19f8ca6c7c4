"""contact cadence: attempts per channel and per day, and the mix and spread that meet it

Revision ID: sla_timer_0007
Revises: sla_timer_0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "sla_timer_0007"
down_revision = "sla_timer_0006"
branch_labels = None
depends_on = None

_EMPTY_OBJECT = sa.text("'{}'::jsonb")


def upgrade() -> None:
    op.add_column(
        "timers",
        sa.Column("attempts_by_channel", JSONB(), server_default=_EMPTY_OBJECT, nullable=False),
        schema="sla_timer",
    )
    op.add_column(
        "timers",
        sa.Column("attempt_days", JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        schema="sla_timer",
    )
    op.add_column("timers", sa.Column("min_per_channel", JSONB()), schema="sla_timer")
    op.add_column("timers", sa.Column("min_distinct_days", sa.Integer()), schema="sla_timer")
    op.add_column(
        "early_attempts",
        sa.Column("by_channel", JSONB(), server_default=_EMPTY_OBJECT, nullable=False),
        schema="sla_timer",
    )


def downgrade() -> None:
    op.drop_column("early_attempts", "by_channel", schema="sla_timer")
    for column in ("min_distinct_days", "min_per_channel", "attempt_days", "attempts_by_channel"):
        op.drop_column("timers", column, schema="sla_timer")
