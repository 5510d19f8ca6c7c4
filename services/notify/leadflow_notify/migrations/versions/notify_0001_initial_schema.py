"""initial schema: webhook endpoints and deliveries (moved from routing), lead context

Revision ID: notify_0001
Revises:

An installation that had endpoints or deliveries in routing keeps them: routing's tables move
into the notify schema with their rows (pending deliveries go on being sent, with the same
webhook-id and secrets), and gain notify's columns. A new installation gets new tables.
"""

import sqlalchemy as sa
from alembic import op
from leadflow.migrations import create_kernel_tables, drop_kernel_tables
from sqlalchemy.dialects import postgresql

revision = "notify_0001"
down_revision = None
branch_labels = None
depends_on = None


def _exists(name: str) -> bool:
    return bool(
        op.get_bind().scalar(sa.text("SELECT to_regclass(:name) IS NOT NULL"), {"name": name})
    )


def _move_from_routing() -> None:
    op.execute("ALTER TABLE routing.webhook_endpoints SET SCHEMA notify")
    op.execute("ALTER TABLE routing.deliveries SET SCHEMA notify")
    # Teams are routing's: the endpoint keeps the team's id as a filter, not a reference.
    op.execute(
        "ALTER TABLE notify.webhook_endpoints DROP CONSTRAINT IF EXISTS webhook_endpoints_team_id_fkey"
    )
    op.execute(
        "ALTER INDEX notify.ix_routing_deliveries_lead_id RENAME TO ix_notify_deliveries_lead_id"
    )
    op.add_column(
        "webhook_endpoints",
        sa.Column(
            "filters", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True
        ),
        schema="notify",
    )
    op.add_column("deliveries", sa.Column("event_id", sa.UUID(), nullable=True), schema="notify")


def _create() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secrets", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("team_id", sa.UUID(), nullable=True),
        sa.Column(
            "filters", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=True
        ),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=True
        ),
        sa.PrimaryKeyConstraint("id"),
        schema="notify",
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
        sa.Column("event_id", sa.UUID(), nullable=True),
        sa.ForeignKeyConstraint(["endpoint_id"], ["notify.webhook_endpoints.id"]),
        sa.PrimaryKeyConstraint("id"),
        schema="notify",
    )
    op.create_index(
        "ix_deliveries_due",
        "deliveries",
        ["next_attempt_at"],
        unique=False,
        schema="notify",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        op.f("ix_notify_deliveries_lead_id"),
        "deliveries",
        ["lead_id"],
        unique=False,
        schema="notify",
    )


def upgrade() -> None:
    create_kernel_tables(op, "notify")
    if _exists("routing.webhook_endpoints") and _exists("routing.deliveries"):
        _move_from_routing()
    else:
        _create()
    op.create_index(
        "uq_deliveries_endpoint_event",
        "deliveries",
        ["endpoint_id", "event_id"],
        unique=True,
        schema="notify",
    )
    op.create_table(
        "lead_context",
        sa.Column("lead_id", sa.UUID(), nullable=False),
        sa.Column(
            "context", postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), nullable=False
        ),
        sa.Column("erased", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lead_id"),
        schema="notify",
    )


def downgrade() -> None:
    op.drop_table("lead_context", schema="notify")
    op.drop_index("uq_deliveries_endpoint_event", table_name="deliveries", schema="notify")
    op.drop_index(op.f("ix_notify_deliveries_lead_id"), table_name="deliveries", schema="notify")
    op.drop_index(
        "ix_deliveries_due",
        table_name="deliveries",
        schema="notify",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_table("deliveries", schema="notify")
    op.drop_table("webhook_endpoints", schema="notify")
    drop_kernel_tables(op, "notify")
