"""Tables of the sla-timer schema: durable SLA timers and contact attempts seen before their timers."""

import sqlalchemy as sa
from leadflow.db import JSON, service_metadata
from sqlalchemy.dialects.postgresql import UUID

metadata = service_metadata("sla_timer")

timers = sa.Table(
    "timers",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
    sa.Column("sla", sa.Text, nullable=False),
    sa.Column("party", sa.Text, nullable=False, server_default="sales"),
    sa.Column("channel", sa.Text),
    sa.Column("team", sa.Text),
    sa.Column("rep_id", UUID(as_uuid=True)),
    sa.Column("clock", sa.Text, nullable=False),  # business | wall
    sa.Column("calendar", JSON),
    sa.Column("limit_seconds", sa.Float, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    # open | met | breached | cancelled (the lead left the funnel before the clock ended)
    sa.Column("state", sa.Text, nullable=False, server_default="open"),
    sa.Column("level", sa.Integer, nullable=False, server_default="0"),  # ladder steps fired
    sa.Column("ladder", JSON, nullable=False),  # [{"level", "at"}] in firing order
    sa.Column("next_fire_at", sa.DateTime(timezone=True)),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("met_at", sa.DateTime(timezone=True)),
    sa.Column("policy_version", sa.Text),
    # Contact cadence: attempts seen so far and how many meet it.
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("attempts_required", sa.Integer),
    sa.UniqueConstraint("lead_id", "sla", name="uq_timers_lead_sla"),
    sa.Index("ix_timers_due", "next_fire_at", postgresql_where=sa.text("next_fire_at IS NOT NULL")),
)

early_attempts = sa.Table(
    "early_attempts",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),  # the earliest
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
)

# Units of work that open, meet or move timers touch this tag, which wakes the firing worker.
TIMERS_TAG = "timers"
