"""lead timeline, display name for the review page

Revision ID: feedback_0003
Revises: feedback_0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "feedback_0003"
down_revision = "feedback_0002"
branch_labels = None
depends_on = None

JSONB = postgresql.JSONB(none_as_null=True, astext_type=sa.Text())


def upgrade() -> None:
    op.add_column("leads", sa.Column("display_name", sa.Text(), nullable=True), schema="feedback")
    op.create_table(
        "timeline",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("details", JSONB, nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
        schema="feedback",
    )
    op.create_index(
        "ix_feedback_timeline_lead_id_occurred_at",
        "timeline",
        ["lead_id", "occurred_at"],
        unique=False,
        schema="feedback",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_feedback_timeline_lead_id_occurred_at", table_name="timeline", schema="feedback"
    )
    op.drop_table("timeline", schema="feedback")
    op.drop_column("leads", "display_name", schema="feedback")
