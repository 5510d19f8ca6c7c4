"""initial schema

Revision ID: scoring_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from leadflow.migrations import create_kernel_tables, drop_kernel_tables
from sqlalchemy.dialects import postgresql

revision = "scoring_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_kernel_tables(op, "scoring")
    op.create_table(
        "lead_scores",
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column(
            "lead", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False
        ),
        sa.Column(
            "interactions",
            postgresql.JSONB(none_as_null=True, astext_type=sa.Text()),
            nullable=False,
        ),
        sa.Column("fit", sa.Integer(), server_default="0", nullable=False),
        sa.Column("engagement", sa.Float(), server_default="0", nullable=False),
        sa.Column("intent_tier", sa.Integer(), server_default="0", nullable=False),
        sa.Column("is_mql", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "breakdown", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False
        ),
        sa.Column("policy_version", sa.Text(), nullable=True),
        sa.Column("mql_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("lead_id"),
        schema="scoring",
    )


def downgrade() -> None:
    op.drop_table("lead_scores", schema="scoring")
    drop_kernel_tables(op, "scoring")
