"""webhook endpoints and deliveries leave routing for notify

Revision ID: routing_0006
Revises: routing_0005

The notify service owns webhook endpoints and deliveries from this release on. Empty tables
(a new installation) are dropped here. Tables holding endpoints or deliveries are left for
notify's first migration, which moves them, rows and all, into the notify schema; it runs after
routing's migrations (`leadflow migrate`, `make run`, compose and the Kubernetes jobs run the
services' migrations in the order ingest, scoring, routing, sla-timer, feedback, notify).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "routing_0006"
down_revision = "routing_0005"
branch_labels = None
depends_on = None


def _holds_rows(table: str) -> bool:
    bind = op.get_bind()
    exists = bind.scalar(
        sa.text("SELECT to_regclass(:name) IS NOT NULL"), {"name": f"routing.{table}"}
    )
    return bool(exists) and bool(
        bind.scalar(sa.text(f"SELECT EXISTS (SELECT 1 FROM routing.{table})"))
    )


def upgrade() -> None:
    if _holds_rows("webhook_endpoints") or _holds_rows("deliveries"):
        return  # notify's first migration moves them
    op.execute("DROP TABLE IF EXISTS routing.deliveries")
    op.execute("DROP TABLE IF EXISTS routing.webhook_endpoints")


def downgrade() -> None:
    # The tables as routing_0001 made them (empty), so that its downgrade finds them.
    op.execute("DROP TABLE IF EXISTS routing.deliveries")
    op.execute("DROP TABLE IF EXISTS routing.webhook_endpoints")
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
        sa.ForeignKeyConstraint(["team_id"], ["routing.teams.id"]),
        sa.PrimaryKeyConstraint("id"),
        schema="routing",
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
        sa.ForeignKeyConstraint(["endpoint_id"], ["routing.webhook_endpoints.id"]),
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
