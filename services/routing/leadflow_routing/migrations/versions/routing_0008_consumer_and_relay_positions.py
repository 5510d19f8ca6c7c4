"""consumer and relay positions kept with the service's state

Revision ID: routing_0008
Revises: routing_0007
"""

from alembic import op
from leadflow.migrations import create_position_tables, drop_position_tables

revision = "routing_0008"
down_revision = "routing_0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_position_tables(op, "routing")


def downgrade() -> None:
    drop_position_tables(op, "routing")
