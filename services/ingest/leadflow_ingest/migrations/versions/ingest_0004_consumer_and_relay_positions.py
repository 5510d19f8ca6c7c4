"""consumer and relay positions kept with the service's state

Revision ID: ingest_0004
Revises: ingest_0003
"""

from alembic import op
from leadflow.migrations import create_position_tables, drop_position_tables

revision = "ingest_0004"
down_revision = "ingest_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_position_tables(op, "ingest")


def downgrade() -> None:
    drop_position_tables(op, "ingest")
