"""initial schema

Revision ID: routing_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from leadflow.migrations import create_kernel_tables, drop_kernel_tables
from sqlalchemy.dialects import postgresql

revision = "routing_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_kernel_tables(op, "routing")
    op.create_table(
        "teams",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("is_fallback", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "calendar", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True
        ),
        sa.Column("rr_position", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        schema="routing",
    )
    op.create_table(
        "reps",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("team_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("capacity", sa.Integer(), server_default="50", nullable=False),
        sa.Column("weight", sa.Integer(), server_default="1", nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("out_of_office", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["routing.teams.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="routing",
    )
    op.create_index(
        op.f("ix_routing_reps_team_id"), "reps", ["team_id"], unique=False, schema="routing"
    )
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secrets", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("team_id", sa.UUID(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["routing.teams.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="routing",
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("team_id", sa.UUID(), nullable=False),
        sa.Column("rep_id", sa.UUID(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column(
            "trace", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False
        ),
        sa.Column("current", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "mql", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["rep_id"],
            ["routing.reps.id"],
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["routing.teams.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="routing",
    )
    op.create_index(
        op.f("ix_routing_assignments_lead_id"),
        "assignments",
        ["lead_id"],
        unique=False,
        schema="routing",
    )
    op.create_index(
        "uq_assignments_current",
        "assignments",
        ["lead_id"],
        unique=True,
        schema="routing",
        postgresql_where=sa.text("current"),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("endpoint_id", sa.UUID(), nullable=False),
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.Text(), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["routing.webhook_endpoints.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="routing",
    )
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        ["next_attempt_at"],
        unique=False,
        schema="routing",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        op.f("ix_routing_deliveries_lead_id"),
        "deliveries",
        ["lead_id"],
        unique=False,
        schema="routing",
    )

    # The fallback queue always exists: leads no rule claims are assigned there.
    op.execute(
        "INSERT INTO routing.teams (id, name, is_fallback) "
        "VALUES ('00000000-0000-0000-0000-00000000f411', 'fallback', true)"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_routing_deliveries_lead_id"), table_name="deliveries", schema="routing")
    op.drop_index(
        "ix_deliveries_due",
        table_name="deliveries",
        schema="routing",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_table("deliveries", schema="routing")
    op.drop_index(
        "uq_assignments_current",
        table_name="assignments",
        schema="routing",
        postgresql_where=sa.text("current"),
    )
    op.drop_index(
        op.f("ix_routing_assignments_lead_id"), table_name="assignments", schema="routing"
    )
    op.drop_table("assignments", schema="routing")
    op.drop_table("webhook_endpoints", schema="routing")
    op.drop_index(op.f("ix_routing_reps_team_id"), table_name="reps", schema="routing")
    op.drop_table("reps", schema="routing")
    op.drop_table("teams", schema="routing")
    drop_kernel_tables(op, "routing")
