"""erased leads

Revision ID: routing_0003
Revises: routing_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "routing_0003"
down_revision = "routing_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erased_leads",
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lead_id"),
        schema="routing",
    )


def downgrade() -> None:
    op.drop_table("erased_leads", schema="routing")
