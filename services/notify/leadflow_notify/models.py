"""Tables of the notify schema: webhook endpoints, their deliveries, and the lead context
messages carry."""

import sqlalchemy as sa
from leadflow.db import JSON, service_metadata
from sqlalchemy.dialects.postgresql import ARRAY, UUID

metadata = service_metadata("notify")

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("secrets", ARRAY(sa.Text), nullable=False),  # newest first; two during rotation
    # Event types or patterns (`sla.*`, `*`) it subscribes to.
    sa.Column("event_types", ARRAY(sa.Text), nullable=False),
    sa.Column("team_id", UUID(as_uuid=True)),  # null: every team
    # Further conditions on the event: {"channels": [...], "slas": [...], "levels": [...],
    # "teams": [...]}; an event lacking a filtered field does not match.
    sa.Column("filters", JSON),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("disabled_reason", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),  # also the stable webhook-id
    sa.Column(
        "endpoint_id", UUID(as_uuid=True), sa.ForeignKey("webhook_endpoints.id"), nullable=False
    ),
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("event_type", sa.Text, nullable=False),
    # The event delivered: one delivery per endpoint and event, whatever is replayed.
    sa.Column("event_id", UUID(as_uuid=True)),
    sa.Column("body", sa.LargeBinary, nullable=False),
    sa.Column("state", sa.Text, nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Index("ix_deliveries_due", "next_attempt_at", postgresql_where=sa.text("state = 'pending'")),
    sa.Index("uq_deliveries_endpoint_event", "endpoint_id", "event_id", unique=True),
)

# What a message says about its lead, kept up to date from the events notify consumes.
lead_context = sa.Table(
    "lead_context",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("context", JSON, nullable=False),
    sa.Column("erased", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# Units of work that queue deliveries touch this tag, which wakes the delivery worker.
DELIVERIES_TAG = "deliveries"
