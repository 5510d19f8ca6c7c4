"""Tables of the ingest schema: leads and their identities, activities, idempotent replies,
the HubSpot contacts being assembled from their property-change events, what sales tools reported
back and the CRM records linked to leads."""

import sqlalchemy as sa
from leadflow.db import JSON, service_metadata
from leadflow.idempotency import idempotency_table
from leadflow.publications import CURRENT_CONNECTORS
from sqlalchemy.dialects.postgresql import UUID

metadata = service_metadata("ingest")

# The connectors changed through notify's API, as this service last took them (one row).
current_connectors_table = CURRENT_CONNECTORS.define(metadata)

leads = sa.Table(
    "leads",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    # NULL once the lead is merged into another: its identities then live in lead_aliases.
    sa.Column("email", sa.Text, unique=True),
    sa.Column("external_id", sa.Text, unique=True),
    sa.Column("source_key", sa.Text, nullable=False),
    # The source system whose key created the lead; keys bound to another source may not write it.
    sa.Column("owner_source", sa.Text),
    sa.Column("merged_into", UUID(as_uuid=True), index=True),
    sa.Column("snapshot", JSON, nullable=False),
    sa.Column("routable", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Set when the lead's personal data was erased: the row keeps only what reports need.
    sa.Column("erased_at", sa.DateTime(timezone=True)),
)

lead_aliases = sa.Table(
    "lead_aliases",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True),  # email | external_id
    sa.Column("value", sa.Text, primary_key=True),
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("merged_from", UUID(as_uuid=True), nullable=False),
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

idempotency = idempotency_table(metadata)

hubspot_events = sa.Table(
    "hubspot_events",
    metadata,
    sa.Column("portal_id", sa.BigInteger, primary_key=True),
    sa.Column("event_id", sa.BigInteger, primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

hubspot_contacts = sa.Table(
    "hubspot_contacts",
    metadata,
    sa.Column("portal_id", sa.BigInteger, primary_key=True),
    sa.Column("object_id", sa.BigInteger, primary_key=True),
    # property -> {"value", "occurred_at"}: the latest value of each property seen so far
    sa.Column("properties", JSON, nullable=False),
    sa.Column("lead_id", UUID(as_uuid=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# What sales tools reported back: each (system, record id) once, whatever delivered it; the
# lead it was about (NULL when no lead matched its record).
sales_reports = sa.Table(
    "sales_reports",
    metadata,
    sa.Column("system", sa.Text, primary_key=True),
    sa.Column("record_id", sa.Text, primary_key=True),
    sa.Column("lead_id", UUID(as_uuid=True), index=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)

# A lead's record in a CRM (a HubSpot contact, a Salesforce Lead or Contact), as notify made or
# found it (`lead.crm_linked`): what the CRM reports about that record is about the lead.
crm_links = sa.Table(
    "crm_links",
    metadata,
    sa.Column("system", sa.Text, primary_key=True),
    sa.Column("object_id", sa.Text, primary_key=True),
    sa.Column("object_type", sa.Text, nullable=False),
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
)
