"""consumer and relay positions kept with the service's state

Revision ID: feedback_0005
Revises: feedback_0004
"""

from alembic import op
from leadflow.migrations import create_position_tables, drop_position_tables

revision = "feedback_0005"
down_revision = "feedback_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_position_tables(op, "feedback")


def downgrade() -> None:
    drop_position_tables(op, "feedback")
