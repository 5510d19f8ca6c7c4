"""consumer and relay positions kept with the service's state

Revision ID: notify_0003
Revises: notify_0002
"""

from alembic import op
from leadflow.migrations import create_position_tables, drop_position_tables

revision = "notify_0003"
down_revision = "notify_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_position_tables(op, "notify")


def downgrade() -> None:
    drop_position_tables(op, "notify")
