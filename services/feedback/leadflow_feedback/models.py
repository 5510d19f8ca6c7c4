"""Tables of the feedback schema: the sales lifecycle of each lead and what sales reported."""

import sqlalchemy as sa
from leadflow.db import JSON, service_metadata
from sqlalchemy.dialects.postgresql import UUID

metadata = service_metadata("feedback")

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("status", sa.Text, nullable=False, server_default="lead"),
    sa.Column("channel", sa.Text),
    sa.Column("source", JSON),
    sa.Column("team", sa.Text),
    sa.Column("rep_id", UUID(as_uuid=True)),
    sa.Column("mql_at", sa.DateTime(timezone=True)),
    sa.Column("routed_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column(
        "lead_id", UUID(as_uuid=True), sa.ForeignKey("leads.lead_id"), nullable=False, index=True
    ),
    sa.Column("channel", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("rep_id", UUID(as_uuid=True)),
    sa.Column("outcome", sa.Text),
    sa.Column("idempotency_key", sa.Text, unique=True),
)

status_history = sa.Table(
    "status_history",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "lead_id", UUID(as_uuid=True), sa.ForeignKey("leads.lead_id"), nullable=False, index=True
    ),
    sa.Column("from_status", sa.Text),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("details", JSON),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)
