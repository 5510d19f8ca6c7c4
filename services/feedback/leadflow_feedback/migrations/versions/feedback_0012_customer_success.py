"""customer success after the signature: hand-offs, onboarding milestones, product usage, churns
and success stories

Revision ID: feedback_0012
Revises: feedback_0011
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "feedback_0012"
down_revision = "feedback_0011"
branch_labels = None
depends_on = None

_JSON = postgresql.JSONB(none_as_null=True, astext_type=sa.Text())
_AT = sa.DateTime(timezone=True)
_LEAD = ["feedback.leads.lead_id"]


def upgrade() -> None:
    op.create_table(
        "handoffs",
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("handed_off_at", _AT, nullable=False),
        sa.Column("use_case", sa.Text(), nullable=False),
        sa.Column("promised_outcomes", sa.Text(), nullable=False),
        sa.Column("risks", sa.Text(), nullable=False),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], _LEAD),
        sa.PrimaryKeyConstraint("lead_id"),
        schema="feedback",
    )
    op.create_table(
        "onboarding",
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("kickoff_at", _AT),
        sa.Column("activated_at", _AT),
        sa.Column("activation_feature", sa.Text()),
        sa.ForeignKeyConstraint(["lead_id"], _LEAD),
        sa.PrimaryKeyConstraint("lead_id"),
        schema="feedback",
    )
    op.create_table(
        "product_usage",
        sa.Column("activity_id", sa.UUID(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("feature", sa.Text(), nullable=False),
        sa.Column("occurred_at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("activity_id"),
        schema="feedback",
    )
    op.create_index(
        "ix_feedback_product_usage_lead_id_feature",
        "product_usage",
        ["lead_id", "feature"],
        schema="feedback",
    )
    op.create_table(
        "churns",
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("churned_at", _AT, nullable=False),
        sa.Column("note", sa.Text()),
        sa.Column("reported_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], _LEAD),
        sa.PrimaryKeyConstraint("lead_id"),
        schema="feedback",
    )
    op.create_index("ix_feedback_churns_churned_at", "churns", ["churned_at"], schema="feedback")
    op.create_table(
        "success_stories",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("topics", _JSON, server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("reported_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], _LEAD),
        sa.PrimaryKeyConstraint("id"),
        schema="feedback",
    )
    op.create_index(
        "ix_feedback_success_stories_lead_id", "success_stories", ["lead_id"], schema="feedback"
    )
    op.create_index(
        "ix_feedback_success_stories_reported_at",
        "success_stories",
        ["reported_at"],
        schema="feedback",
    )


def downgrade() -> None:
    op.drop_table("success_stories", schema="feedback")
    op.drop_table("churns", schema="feedback")
    op.drop_table("product_usage", schema="feedback")
    op.drop_table("onboarding", schema="feedback")
    op.drop_table("handoffs", schema="feedback")
