"""initial schema

Revision ID: feedback_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from leadflow.migrations import create_kernel_tables, drop_kernel_tables
from sqlalchemy.dialects import postgresql

revision = "feedback_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_kernel_tables(op, "feedback")
    op.create_table(
        "leads",
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.Text(), server_default="lead", nullable=False),
        sa.Column("channel", sa.Text(), nullable=True),
        sa.Column(
            "source", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True
        ),
        sa.Column("team", sa.Text(), nullable=True),
        sa.Column("rep_id", sa.UUID(), nullable=True),
        sa.Column("mql_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("routed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lead_id"),
        schema="feedback",
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rep_id", sa.UUID(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["feedback.leads.lead_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
        schema="feedback",
    )
    op.create_index(
        op.f("ix_feedback_attempts_lead_id"),
        "attempts",
        ["lead_id"],
        unique=False,
        schema="feedback",
    )
    op.create_table(
        "status_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("from_status", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column(
            "details", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True
        ),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["feedback.leads.lead_id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="feedback",
    )
    op.create_index(
        op.f("ix_feedback_status_history_lead_id"),
        "status_history",
        ["lead_id"],
        unique=False,
        schema="feedback",
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_feedback_status_history_lead_id"), table_name="status_history", schema="feedback"
    )
    op.drop_table("status_history", schema="feedback")
    op.drop_index(op.f("ix_feedback_attempts_lead_id"), table_name="attempts", schema="feedback")
    op.drop_table("attempts", schema="feedback")
    op.drop_table("leads", schema="feedback")
    drop_kernel_tables(op, "feedback")
