"""consumer and relay positions kept with the service's state

Revision ID: sla_timer_0004
Revises: sla_timer_0003
"""

from alembic import op
from leadflow.migrations import create_position_tables, drop_position_tables

revision = "sla_timer_0004"
down_revision = "sla_timer_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_position_tables(op, "sla_timer")


def downgrade() -> None:
    drop_position_tables(op, "sla_timer")
