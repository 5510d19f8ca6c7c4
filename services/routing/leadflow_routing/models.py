"""Tables of the routing schema: teams, reps, rules, account owners, assignments and the leads
waiting for a rep."""

import uuid

import sqlalchemy as sa
from leadflow.db import JSON, service_metadata
from sqlalchemy.dialects.postgresql import UUID

metadata = service_metadata("routing")
# The fallback queue, created by the first migration: leads no rule claims are assigned there.
FALLBACK_TEAM_ID = uuid.UUID("00000000-0000-0000-0000-00000000f411")

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("is_fallback", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("calendar", JSON),  # business calendar spec; null: the policy's default
    sa.Column("rr_position", sa.BigInteger, nullable=False, server_default="0"),
    # One of the registry's names (domain/strategies.py): its CHECK constraint is kept equal to
    # the registry when the service starts (use_cases.keep_strategies_checked).
    sa.Column("strategy", sa.Text, nullable=False, server_default="round_robin"),
    # Who hears the team's escalations ({"name", "email", "slack_member_id", …}), and the team
    # channels notify posts people's messages to.
    sa.Column("team_lead", JSON),
    sa.Column("manager", JSON),
    sa.Column("slack_webhook_url", sa.Text),
    sa.Column("teams_webhook_url", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

reps = sa.Table(
    "reps",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("team_id", UUID(as_uuid=True), sa.ForeignKey("teams.id"), nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("email", sa.Text),
    sa.Column("capacity", sa.Integer, nullable=False, server_default="50"),
    sa.Column("weight", sa.Integer, nullable=False, server_default="1"),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("out_of_office", sa.Boolean, nullable=False, server_default=sa.false()),
    # when an out of office ends by itself; null: when an admin ends it
    sa.Column("out_of_office_until", sa.DateTime(timezone=True)),
    sa.Column("timezone", sa.Text),  # IANA name; null: UTC
    sa.Column("working_hours", JSON),  # {"mon": [["09:00", "17:00"]], ...}; null: always
    sa.Column("slack_member_id", sa.Text),
    sa.Column("teams_upn", sa.Text),
    sa.Column("language", sa.Text, nullable=False, server_default="en"),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

rules = sa.Table(
    "rules",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("priority", sa.Integer, nullable=False),  # lower first
    sa.Column("conditions", JSON, nullable=False),  # {"channel": ["inbound"], "country": [...]}
    sa.Column("team_id", UUID(as_uuid=True), sa.ForeignKey("teams.id"), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("domain", sa.Text, primary_key=True),
    sa.Column("rep_id", UUID(as_uuid=True), sa.ForeignKey("reps.id"), nullable=False),
    sa.Column("team_id", UUID(as_uuid=True), sa.ForeignKey("teams.id"), nullable=False),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
)

assignments = sa.Table(
    "assignments",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False, index=True),
    # History: the ids of the team and rep as they were, kept when either is deleted later (a
    # team or rep with open work cannot be deleted: use_cases checks it).
    sa.Column("team_id", UUID(as_uuid=True), nullable=False),
    sa.Column("rep_id", UUID(as_uuid=True)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("trace", JSON, nullable=False),
    sa.Column("current", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("mql", JSON, nullable=False),  # the MQL context delivered to sales tools
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True)),  # the lead left the rep's open work
    sa.Index("uq_assignments_current", "lead_id", unique=True, postgresql_where=sa.text("current")),
    # Each rep's open leads, counted by every routing batch: only the open ones, whatever the
    # history grows to.
    sa.Index(
        "ix_assignments_open_by_rep",
        "rep_id",
        postgresql_where=sa.text("current AND closed_at IS NULL"),
    ),
    # Each team's open leads (the team's worklist).
    sa.Index(
        "ix_assignments_open_by_team",
        "team_id",
        postgresql_where=sa.text("current AND closed_at IS NULL"),
    ),
    # Each rep's last assignment (what strategies see as `last_assigned_at`): one index probe.
    sa.Index("ix_assignments_rep_created", "rep_id", "created_at"),
)

# Each rep's leads in open work (current assignments not closed), kept by the transactions
# that open and close them (store.count_open_work) so that a routing batch reads ten numbers, not
# every open assignment. A row per rep, made with the rep (or by the first change of its count).
rep_open_work = sa.Table(
    "rep_open_work",
    metadata,
    sa.Column("rep_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("open_leads", sa.Integer, nullable=False, server_default="0"),
)

# Leads erased: an MQL arriving after the erasure (another topic, not ordered with it) is not
# routed.
erased_leads = sa.Table(
    "erased_leads",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
)

# Leads no rep could take when they were routed: each waits here, once, until a rep of its team
# becomes eligible (the lead's current assignment meanwhile has no rep and holds the MQL and
# the trace). Nothing personal: an erasure deletes the row.
unassigned = sa.Table(
    "unassigned",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    # the team that would take the lead; null: no rule claims it and the fallback team has no rep
    sa.Column("team_id", UUID(as_uuid=True), sa.ForeignKey("teams.id")),
    sa.Column("reason", sa.Text, nullable=False),  # domain/assignment.py's UnassignedReason
    # why the lead was being routed (mql, manual, sla_escalation): its lead.routed says it
    sa.Column("routing_reason", sa.Text, nullable=False),
    # the rep a reassignment took the lead away from: not given it back
    sa.Column("away_from", UUID(as_uuid=True)),
    sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
    # arrival order: leads queued by one decision batch share `queued_at`; the queue is walked
    # in this order, oldest first
    sa.Column("seq", sa.BigInteger, sa.Identity(always=True), nullable=False, unique=True),
)

# The SLA clocks of leads in open work, as routing knows them for the worklists: each clock a
# `lead.routed` opens, due when the policy schedules it (estimated when routed), then as
# sla-timer's events say (`sla.warning`, `sla.breached`, `sla.escalated` set the level and due
# instant; `sla.met` removes the clock). Nothing personal.
lead_clocks = sa.Table(
    "lead_clocks",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("sla", sa.Text, primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    # open (no event yet), or the last level sla-timer fired: warning, breached, team_lead, ...
    sa.Column("level", sa.Text, nullable=False, server_default="open"),
)
