"""facts that let the read model tolerate any arrival order across topics

Revision ID: feedback_0004
Revises: feedback_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "feedback_0004"
down_revision = "feedback_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "leads",
        sa.Column("cadence_exhausted_at", sa.DateTime(timezone=True), nullable=True),
        schema="feedback",
    )
    op.add_column(
        "leads",
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        schema="feedback",
    )


def downgrade() -> None:
    op.drop_column("leads", "erased_at", schema="feedback")
    op.drop_column("leads", "cadence_exhausted_at", schema="feedback")
