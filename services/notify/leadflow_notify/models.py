"""Tables of the notify schema: webhook endpoints, deliveries (to them and to CRMs), the lead
context messages carry, and leads' records in CRMs."""

import sqlalchemy as sa
from leadflow.db import JSON, service_metadata
from leadflow.publications import CURRENT_CONNECTORS
from sqlalchemy.dialects.postgresql import ARRAY, UUID

metadata = service_metadata("notify")

# The connectors changed through notify's API, as this service last took them (one row).
current_connectors_table = CURRENT_CONNECTORS.define(metadata)

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
    # Where it goes: a webhook endpoint, or a CRM connector (hubspot | salesforce).
    sa.Column("endpoint_id", UUID(as_uuid=True), sa.ForeignKey("webhook_endpoints.id")),
    sa.Column("connector", sa.Text),
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
    sa.Index(
        "uq_deliveries_connector_event",
        "connector",
        "event_id",
        unique=True,
        postgresql_where=sa.text("connector IS NOT NULL"),
    ),
    sa.CheckConstraint(
        "(endpoint_id IS NULL) <> (connector IS NULL)", name="ck_deliveries_one_target"
    ),
)

# The lead's record in each CRM it was written to (a HubSpot contact, a Salesforce Lead):
# one per lead and system, so `lead.crm_linked` is emitted once.
crm_links = sa.Table(
    "crm_links",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("system", sa.Text, primary_key=True),
    sa.Column("object_type", sa.Text, nullable=False),
    sa.Column("object_id", sa.Text, nullable=False),
    sa.Column("linked_at", sa.DateTime(timezone=True), nullable=False),
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

# Each team's directory as routing last published it (team.directory): its reps, team lead,
# manager and channels.
team_directory = sa.Table(
    "team_directory",
    metadata,
    sa.Column("team_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("directory", JSON, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)

# What people are told of their leads' clocks: one row per clock level, person and channel
# (the unique key makes each person hear each level of each clock once). Rows due for the same
# recipient and channel go out together as one message (`message_id`, kept across retries).
notices = sa.Table(
    "notices",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("recipient", sa.Text, nullable=False),  # rep:<id>, team_lead:<team>, manager:<team>
    sa.Column("person", JSON, nullable=False),  # name, email, handles, language, time zone
    sa.Column("channel", sa.Text, nullable=False),  # email | slack | teams | none
    sa.Column("target", sa.Text),  # the address or webhook URL
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("timer_id", UUID(as_uuid=True), nullable=False),
    sa.Column("level", sa.Text, nullable=False),  # warning | breach | team_lead | manager
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("notice", JSON, nullable=False),  # what the message says (domain.messages.Notice)
    # pending | sent | dead | cancelled | undeliverable
    sa.Column("state", sa.Text, nullable=False, server_default="pending"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("message_id", UUID(as_uuid=True)),
    sa.Column("last_status", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("timer_id", "level", "recipient", "channel", name="uq_notices_once"),
    sa.Index("ix_notices_due", "next_attempt_at", postgresql_where=sa.text("state = 'pending'")),
    sa.Index("ix_notices_last_sent", "recipient", "channel", "sent_at"),
)

# Units of work that queue deliveries touch this tag, which wakes the delivery worker.
DELIVERIES_TAG = "deliveries"
# Units of work that queue notices touch this one, which wakes the notice worker.
NOTICES_TAG = "notices"
