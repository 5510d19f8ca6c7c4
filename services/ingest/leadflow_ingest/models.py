"""Tables of the ingest schema: leads, their activities, and idempotent request replies."""

import sqlalchemy as sa
from leadflow.db import JSON, service_metadata
from sqlalchemy.dialects.postgresql import UUID

metadata = service_metadata("ingest")

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("email", sa.Text, nullable=False, unique=True),
    sa.Column("external_id", sa.Text, unique=True),
    sa.Column("source_key", sa.Text, nullable=False),
    sa.Column("snapshot", JSON, nullable=False),
    sa.Column("routable", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

activities = sa.Table(
    "activities",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("lead_id", UUID(as_uuid=True), sa.ForeignKey("leads.id"), nullable=False, index=True),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("page_category", sa.Text),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("properties", JSON, nullable=False),
)

idempotency = sa.Table(
    "idempotency",
    metadata,
    sa.Column("api_key", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("response", JSON, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)
