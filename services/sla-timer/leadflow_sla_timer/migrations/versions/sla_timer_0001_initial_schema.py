"""initial schema

Revision ID: sla_timer_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from leadflow.migrations import create_kernel_tables, drop_kernel_tables
from sqlalchemy.dialects import postgresql

revision = "sla_timer_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_kernel_tables(op, "sla_timer")
    op.create_table(
        "early_attempts",
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lead_id"),
        schema="sla_timer",
    )
    op.create_table(
        "timers",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("sla", sa.Text(), nullable=False),
        sa.Column("party", sa.Text(), server_default="sales", nullable=False),
        sa.Column("channel", sa.Text(), nullable=True),
        sa.Column("team", sa.Text(), nullable=True),
        sa.Column("rep_id", sa.UUID(), nullable=True),
        sa.Column("clock", sa.Text(), nullable=False),
        sa.Column(
            "calendar", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True
        ),
        sa.Column("limit_seconds", sa.Float(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.Text(), server_default="open", nullable=False),
        sa.Column("level", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "ladder", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False
        ),
        sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("met_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("policy_version", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("lead_id", "sla", name="uq_timers_lead_sla"),
        schema="sla_timer",
    )
    op.create_index(
        "ix_timers_due",
        "timers",
        ["next_fire_at"],
        unique=False,
        schema="sla_timer",
        postgresql_where=sa.text("next_fire_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_timers_due",
        table_name="timers",
        schema="sla_timer",
        postgresql_where=sa.text("next_fire_at IS NOT NULL"),
    )
    op.drop_table("timers", schema="sla_timer")
    op.drop_table("early_attempts", schema="sla_timer")
    drop_kernel_tables(op, "sla_timer")
