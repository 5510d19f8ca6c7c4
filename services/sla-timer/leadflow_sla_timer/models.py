"""Tables of the sla-timer schema: durable SLA timers, attempts and status changes seen before
their timers, the MQLs of each period and the parties' period evaluations."""

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
    # [{"level", "at", "escalate"?}] in firing order. A breach step without `"escalate": false`
    # also escalates to the team lead: ladders stored before escalated_team_lead was a step.
    sa.Column("ladder", JSON, nullable=False),
    sa.Column("next_fire_at", sa.DateTime(timezone=True)),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("met_at", sa.DateTime(timezone=True)),
    sa.Column("policy_version", sa.Text),
    # Contact cadence: attempts seen so far and how many meet it.
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("attempts_required", sa.Integer),
    # The most touches the cadence allows (policy max_attempts; None: no cap), and when an
    # attempt beyond it was first seen (its warning is emitted once).
    sa.Column("attempts_allowed", sa.Integer),
    sa.Column("attempts_exceeded_at", sa.DateTime(timezone=True)),
    # Contact cadence: the attempts seen per channel ({"call": 2}) and the local days they fell
    # on (ISO dates, in the calendar's time zone), and the mix and spread that meet it (policy
    # min_per_channel and min_distinct_days; None for the other kinds).
    sa.Column("attempts_by_channel", JSON, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("attempt_days", JSON, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("min_per_channel", JSON),
    sa.Column("min_distinct_days", sa.Integer),
    sa.UniqueConstraint("lead_id", "sla", name="uq_timers_lead_sla"),
    sa.Index("ix_timers_due", "next_fire_at", postgresql_where=sa.text("next_fire_at IS NOT NULL")),
)

early_attempts = sa.Table(
    "early_attempts",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),  # the earliest
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("by_channel", JSON, nullable=False, server_default=sa.text("'{}'::jsonb")),
)

# Status changes seen before the lead.routed that opens the lead's clocks, applied when it comes.
early_statuses = sa.Table(
    "early_statuses",
    metadata,
    sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("change", JSON, nullable=False),  # the lead.status_changed payload
)

# Every MQL (and PQL) promoted, as marketing's period commitments count it (the latest
# promotion of a lead wins, as in feedback's report).
mqls = sa.Table(
    "mqls",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("channel", sa.Text),
    sa.Column("in_target", sa.Boolean, nullable=False),
    sa.Column("context_missing", JSON, nullable=False),
    sa.Column("medium", sa.Text),  # the source medium, grouped into the source mix when judged
)

# One row per party and period judged: its key makes each evaluation happen exactly once,
# whatever the number of instances and restarts.
period_evaluations = sa.Table(
    "period_evaluations",
    metadata,
    sa.Column("party", sa.Text, primary_key=True),  # marketing | sales
    sa.Column("period_start", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
    sa.Column("id", UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
    # [{"commitment", "planned", "target", "actual", "met"}]
    sa.Column("figures", JSON, nullable=False),
    sa.Column("missed", JSON, nullable=False),  # names of the commitments missed
    sa.Column("consecutive_misses", sa.Integer, nullable=False),
    sa.Column("corrective_plan", sa.Boolean, nullable=False),
    sa.Column("policy_version", sa.Text),
)

# Units of work that open, meet or move timers touch this tag, which wakes the firing worker.
TIMERS_TAG = "timers"
