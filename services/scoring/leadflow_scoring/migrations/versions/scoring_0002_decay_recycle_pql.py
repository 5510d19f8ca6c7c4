"""decay review, recycle re-promotion and product-qualified leads

Revision ID: scoring_0002
Revises: scoring_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "scoring_0002"
down_revision = "scoring_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "lead_scores",
        sa.Column(
            "reasons",
            postgresql.JSONB(none_as_null=True, astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        schema="scoring",
    )
    op.add_column("lead_scores", sa.Column("mql_kind", sa.Text(), nullable=True), schema="scoring")
    op.execute("UPDATE scoring.lead_scores SET mql_kind = 'mql' WHERE mql_at IS NOT NULL")
    for name in ("next_review_at", "recycled_at", "nurture_until"):
        op.add_column(
            "lead_scores",
            sa.Column(name, sa.DateTime(timezone=True), nullable=True),
            schema="scoring",
        )
    op.add_column(
        "lead_scores", sa.Column("recycle_reason", sa.Text(), nullable=True), schema="scoring"
    )
    op.add_column(
        "lead_scores",
        sa.Column("recycle_intent_tier", sa.Integer(), nullable=True),
        schema="scoring",
    )
    op.create_index(
        "ix_scoring_lead_scores_next_review_at",
        "lead_scores",
        ["next_review_at"],
        unique=False,
        schema="scoring",
        postgresql_where=sa.text("next_review_at IS NOT NULL"),
    )
    op.create_table(
        "product_usage",
        sa.Column("activity_id", sa.UUID(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("feature", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("activity_id"),
        schema="scoring",
    )
    op.create_index(
        "ix_scoring_product_usage_lead_id",
        "product_usage",
        ["lead_id"],
        unique=False,
        schema="scoring",
    )
    op.create_index(
        "ix_scoring_product_usage_account",
        "product_usage",
        ["account", "occurred_at"],
        unique=False,
        schema="scoring",
    )
    op.create_table(
        "pql_accounts",
        sa.Column("account", sa.Text(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account"),
        schema="scoring",
    )
    # Leads scored before this revision are reviewed once, which sets their next review.
    op.execute(
        "UPDATE scoring.lead_scores SET next_review_at = scored_at "
        "WHERE scored_at IS NOT NULL AND engagement > 0"
    )


def downgrade() -> None:
    op.drop_table("pql_accounts", schema="scoring")
    op.drop_index("ix_scoring_product_usage_account", table_name="product_usage", schema="scoring")
    op.drop_index("ix_scoring_product_usage_lead_id", table_name="product_usage", schema="scoring")
    op.drop_table("product_usage", schema="scoring")
    op.drop_index(
        "ix_scoring_lead_scores_next_review_at",
        table_name="lead_scores",
        schema="scoring",
        postgresql_where=sa.text("next_review_at IS NOT NULL"),
    )
    for name in (
        "recycle_intent_tier",
        "recycle_reason",
        "nurture_until",
        "recycled_at",
        "next_review_at",
        "mql_kind",
        "reasons",
    ):
        op.drop_column("lead_scores", name, schema="scoring")
