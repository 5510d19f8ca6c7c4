"""erased leads

Revision ID: ingest_0003
Revises: ingest_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "ingest_0003"
down_revision = "ingest_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("leads", sa.Column("erased_at", sa.DateTime(timezone=True)), schema="ingest")


def downgrade() -> None:
    op.drop_column("leads", "erased_at", schema="ingest")
