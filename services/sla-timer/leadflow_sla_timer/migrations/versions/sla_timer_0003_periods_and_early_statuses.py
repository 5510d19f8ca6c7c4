"""period commitments, early status changes, cadence attempt caps

Revision ID: sla_timer_0003
Revises: sla_timer_0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "sla_timer_0003"
down_revision = "sla_timer_0002"
branch_labels = None
depends_on = None

JSONB = postgresql.JSONB(none_as_null=True, astext_type=sa.Text())


def upgrade() -> None:
    op.add_column(
        "timers", sa.Column("attempts_allowed", sa.Integer(), nullable=True), schema="sla_timer"
    )
    op.add_column(
        "timers",
        sa.Column("attempts_exceeded_at", sa.DateTime(timezone=True), nullable=True),
        schema="sla_timer",
    )
    op.create_table(
        "early_statuses",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("change", JSONB, nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
        schema="sla_timer",
    )
    op.create_index(
        "ix_sla_timer_early_statuses_lead_id",
        "early_statuses",
        ["lead_id"],
        schema="sla_timer",
    )
    op.create_table(
        "mqls",
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=True),
        sa.Column("in_target", sa.Boolean(), nullable=False),
        sa.Column("context_missing", JSONB, nullable=False),
        sa.PrimaryKeyConstraint("lead_id"),
        schema="sla_timer",
    )
    op.create_index("ix_sla_timer_mqls_promoted_at", "mqls", ["promoted_at"], schema="sla_timer")
    op.create_table(
        "period_evaluations",
        sa.Column("party", sa.Text(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("figures", JSONB, nullable=False),
        sa.Column("missed", JSONB, nullable=False),
        sa.Column("consecutive_misses", sa.Integer(), nullable=False),
        sa.Column("corrective_plan", sa.Boolean(), nullable=False),
        sa.Column("policy_version", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("party", "period_start"),
        sa.UniqueConstraint("id"),
        schema="sla_timer",
    )


def downgrade() -> None:
    op.drop_table("period_evaluations", schema="sla_timer")
    op.drop_index("ix_sla_timer_mqls_promoted_at", table_name="mqls", schema="sla_timer")
    op.drop_table("mqls", schema="sla_timer")
    op.drop_index(
        "ix_sla_timer_early_statuses_lead_id", table_name="early_statuses", schema="sla_timer"
    )
    op.drop_table("early_statuses", schema="sla_timer")
    op.drop_column("timers", "attempts_exceeded_at", schema="sla_timer")
    op.drop_column("timers", "attempts_allowed", schema="sla_timer")
