"""Tables of the feedback schema: the sales lifecycle of each lead, what sales reported, and
the read model (scores, context, SLA outcomes) the reports and the calibration are built from."""

import sqlalchemy as sa
from leadflow.db import JSON, service_metadata
from leadflow.idempotency import idempotency_table
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
    sa.Column("mql_at", sa.DateTime(timezone=True), index=True),
    sa.Column("routed_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # the latest status reason (structured, from the policy's list)
    sa.Column("reason", sa.Text),
    sa.Column("role", sa.Text),
    # from lead.scored: the latest score, also for leads that never became MQLs
    sa.Column("fit", sa.Integer),
    sa.Column("engagement", sa.Float),
    sa.Column("intent_tier", sa.Integer),
    sa.Column("scored_at", sa.DateTime(timezone=True)),
    # from lead.mql: the score that promoted the lead, whether it was inside the target
    # segment/persona, and which parts of the full context it arrived without
    sa.Column("mql_fit", sa.Integer),
    sa.Column("mql_engagement", sa.Float),
    sa.Column("mql_intent_tier", sa.Integer),
    sa.Column("in_target", sa.Boolean),
    sa.Column("mql_context_missing", JSON),
    # from the lead snapshots of ingest
    sa.Column("context_missing", JSON),
    # from lead.routed: the team's business calendar, to measure response time on it
    sa.Column("calendar", JSON),
    # from sla-timer's first-response clock
    sa.Column("sla_due_at", sa.DateTime(timezone=True)),
    sa.Column("sla_response_seconds", sa.Float),
    sa.Column("sla_breached", sa.Boolean, nullable=False, server_default=sa.false()),
    # when the contact cadence ended without contact (sla.breached, outcome unreachable); kept
    # so that the consequence still applies when the lead's routing is consumed after it
    sa.Column("cadence_exhausted_at", sa.DateTime(timezone=True)),
    # how people recognise the lead on the review page (name and company); the only personal
    # data feedback keeps, cleared when the lead is erased
    sa.Column("display_name", sa.Text),
    # when the lead was erased: a late event must not bring its name back
    sa.Column("erased_at", sa.DateTime(timezone=True)),
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
    # No longer written: a contact attempt's Idempotency-Key is kept in `idempotency`, like
    # every other write's; the column stays for the rows recorded before.
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

# Every event of a lead that feedback consumed or emitted, once each (by event id), with the
# facts the timeline shows (scores and their explanation, routing, SLA levels, statuses) and
# no personal data: names, emails and phone numbers stay out of `details`.
timeline = sa.Table(
    "timeline",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("details", JSON),
    sa.Index("ix_feedback_timeline_lead_id_occurred_at", "lead_id", "occurred_at"),
)

idempotency = idempotency_table(metadata)

# People who sign in to the pages: a local password (argon2) or an identity provider's account
# (issuer and subject), a role, and, for a sales manager, the teams (by name, as leads carry
# them) whose leads they see. Never deleted: a disabled person keeps their row for the audit log.
users = sa.Table(
    "users",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("email", sa.Text, nullable=False, unique=True),  # lower-case
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("teams", JSON, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("password_hash", sa.Text),
    sa.Column("oidc_issuer", sa.Text),
    sa.Column("oidc_subject", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("disabled_at", sa.DateTime(timezone=True)),
    sa.Column("last_signed_in_at", sa.DateTime(timezone=True)),
    # sessions made before this instant are no longer valid (a new password ends them)
    sa.Column("sessions_valid_from", sa.DateTime(timezone=True)),
    sa.UniqueConstraint("oidc_issuer", "oidc_subject", name="uq_users_oidc_identity"),
)

# Failed sign-ins counted per account (the SHA-256 of the e-mail given, whether or not such an
# account exists, so a lock says nothing about it) and per client address (its SHA-256).
sign_in_failures = sa.Table(
    "sign_in_failures",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True),  # account | address
    sa.Column("subject", sa.Text, primary_key=True),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("locked_until", sa.DateTime(timezone=True)),
)

# The policy's numbered versions (leadflow_feedback.policy_versions): the text as written, its
# validated document, and which is current. `publication` counts publications (a rollback
# publishes an older version again), so every service can tell the latest one.
policy_versions = sa.Table(
    "policy_versions",
    metadata,
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("version", sa.Text, nullable=False, unique=True),  # the document's own label
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("document", JSON, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # draft | published | superseded
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("publication", sa.Integer, unique=True),
    sa.Column("published_by", sa.Text),
    sa.Column("published_at", sa.DateTime(timezone=True)),
)

# Corrective plans (docs/domain.md "Corrective plans"): one open plan per party at a time, linked
# to the periods whose missed commitments owe it (sla.corrective_plan_required), and its actions.
corrective_plans = sa.Table(
    "corrective_plans",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column("party", sa.Text, nullable=False),  # marketing | sales
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # open | in_progress | done | cancelled
    # [{"period_id", "start", "end", "consecutive_misses", "missed"}] in arrival order
    sa.Column("periods", JSON, nullable=False),
    sa.Column("missed", JSON, nullable=False),  # the missed commitments, each once
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("policy_version", sa.Text),
    sa.Index(
        "uq_corrective_plans_open_party",
        "party",
        unique=True,
        postgresql_where=sa.text("status IN ('open', 'in_progress')"),
    ),
)

plan_actions = sa.Table(
    "plan_actions",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column(
        "plan_id",
        UUID(as_uuid=True),
        sa.ForeignKey("corrective_plans.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("owner", sa.Text, nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("done", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("done_at", sa.DateTime(timezone=True)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Each team's reps as routing last published them (team.directory), for the planner's sales
# capacity: per rep only its id, capacity, time zone and working hours (no names or e-mails).
team_directory = sa.Table(
    "team_directory",
    metadata,
    sa.Column("team_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("team", sa.Text, nullable=False),
    sa.Column("reps", JSON, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)

# Customer success after the signature (docs/domain.md "Customer success"): the hand-off of each
# won deal with what customer success takes over, the onboarding milestones (kickoff held, key
# feature activated), the product usage they are derived from, churns and success stories.
handoffs = sa.Table(
    "handoffs",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), sa.ForeignKey("leads.lead_id"), primary_key=True),
    sa.Column("handed_off_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("use_case", sa.Text, nullable=False),
    sa.Column("promised_outcomes", sa.Text, nullable=False),
    sa.Column("risks", sa.Text, nullable=False),
    sa.Column("plan", sa.Text, nullable=False),
)

onboarding = sa.Table(
    "onboarding",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), sa.ForeignKey("leads.lead_id"), primary_key=True),
    sa.Column("kickoff_at", sa.DateTime(timezone=True)),
    sa.Column("activated_at", sa.DateTime(timezone=True)),
    sa.Column("activation_feature", sa.Text),
)

# Every product usage activity ingest passed on (lead.activity, activity_type product_usage):
# the feature used and when, whatever the lead's status, so an activation is found whichever
# arrives first, the usage or the won status.
product_usage = sa.Table(
    "product_usage",
    metadata,
    sa.Column("activity_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("lead_id", UUID(as_uuid=True), nullable=False),
    sa.Column("feature", sa.Text, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_feedback_product_usage_lead_id_feature", "lead_id", "feature"),
)

churns = sa.Table(
    "churns",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), sa.ForeignKey("leads.lead_id"), primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),  # from the policy's churn reasons
    sa.Column("churned_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("note", sa.Text),
    sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False),
)

success_stories = sa.Table(
    "success_stories",
    metadata,
    sa.Column("id", UUID(as_uuid=True), primary_key=True),
    sa.Column(
        "lead_id", UUID(as_uuid=True), sa.ForeignKey("leads.lead_id"), nullable=False, index=True
    ),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("topics", JSON, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("reported_at", sa.DateTime(timezone=True), nullable=False, index=True),
)
