"""index of each rep's open assignments

Revision ID: routing_0004
Revises: routing_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "routing_0004"
down_revision = "routing_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_assignments_open_by_rep",
        "assignments",
        ["rep_id"],
        schema="routing",
        postgresql_where=sa.text("current AND closed_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_assignments_open_by_rep", table_name="assignments", schema="routing")
