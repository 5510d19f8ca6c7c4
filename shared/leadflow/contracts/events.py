"""CloudEvents 1.0 envelope, one typed payload per event type, and the topic each type travels on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

# Every topic has exactly one producing service; all are keyed by lead_id.
TOPIC_INBOUND = "leads.inbound"  # marketing platforms publish raw lead payloads here
TOPIC_INGEST = "leadflow.ingest"
TOPIC_SCORING = "leadflow.scoring"
TOPIC_ROUTING = "leadflow.routing"
TOPIC_SLA = "leadflow.sla"
TOPIC_FEEDBACK = "leadflow.feedback"
TOPIC_NOTIFY = "leadflow.notify"
TOPIC_ACCESS = "leadflow.access"
TOPIC_POLICY = "leadflow.policy"
ALL_TOPICS = (
    TOPIC_INBOUND,
    TOPIC_INGEST,
    TOPIC_SCORING,
    TOPIC_ROUTING,
    TOPIC_SLA,
    TOPIC_FEEDBACK,
    TOPIC_NOTIFY,
    TOPIC_ACCESS,
    TOPIC_POLICY,
)
# The one Leadflow service that publishes each topic (leads.inbound comes from outside Leadflow).
TOPIC_PRODUCERS = {
    TOPIC_INGEST: "ingest",
    TOPIC_SCORING: "scoring",
    TOPIC_ROUTING: "routing",
    TOPIC_SLA: "sla-timer",
    TOPIC_FEEDBACK: "feedback",
    TOPIC_NOTIFY: "notify",
    TOPIC_ACCESS: "feedback",
    TOPIC_POLICY: "feedback",
}
TOPIC_DESCRIPTIONS = {
    TOPIC_INBOUND: "Raw lead payloads that marketing platforms publish (plain JSON, no CloudEvent).",
    TOPIC_INGEST: "Leads as ingest knows them: created, updated or merged, activities, erasures; "
    "what sales tools report back about them.",
    TOPIC_SCORING: "Scores of leads and their promotion to MQL or PQL.",
    TOPIC_ROUTING: "Leads assigned to teams and reps; who is on each team and how to reach them.",
    TOPIC_SLA: "SLA clocks: warnings, breaches, escalations, met SLAs, corrective plans owed.",
    TOPIC_FEEDBACK: "What sales did with a lead: contact attempts and status changes; after the "
    "signature, customer success's onboarding milestones and churn.",
    TOPIC_NOTIFY: "Webhook deliveries given up; CRM records linked to leads; connectors changed.",
    TOPIC_ACCESS: "API keys issued, rotated and revoked (digests only), for every service to check.",
    TOPIC_POLICY: "Versions of the policy published as the current one, whole, for every service to apply.",
}


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


class Payload(BaseModel):
    """Base of every event payload: a small, versioned, typed fact in the past tense."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: ClassVar[str]
    topic: ClassVar[str]
    schema_version: ClassVar[int] = 1
    # False: `lead_id` is the key of something else (a team, a period), not a lead.
    about_lead: ClassVar[bool] = True

    lead_id: uuid.UUID


Channel = Literal["inbound", "outbound", "partner", "plg"]
# How a rep tried to reach a lead (a contact attempt's channel).
ContactChannel = Literal["call", "email", "linkedin", "meeting"]


class LeadSource(BaseModel):
    model_config = ConfigDict(extra="allow")
    system: str | None = None
    channel: Channel = "inbound"
    campaign: str | None = None
    medium: str | None = None
    lead_magnet: str | None = None
    utm: dict[str, str] | None = None


class LeadCompany(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = None
    domain: str | None = None
    industry: str | None = None
    employees: int | None = None
    size_band: str | None = None
    country: str | None = None
    region: str | None = None
    tech_stack: list[str] | None = None


class LeadSnapshot(Payload):
    """The lead as ingest knows it after a change."""

    email: str
    external_id: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    title: str | None = None
    role: str | None = None
    seniority: str | None = None
    company: LeadCompany = Field(default_factory=LeadCompany)
    source: LeadSource = Field(default_factory=LeadSource)
    consent_basis: str = "consent"
    routable: bool = True
    intent_tier: int = 0
    intent_note: str | None = None
    flags: list[str] = Field(default_factory=list)
    # Which parts of marketing's "full context" the lead arrived without (campaign, lead
    # magnet, intent note); key activities and the score are added downstream.
    context_missing: list[str] = Field(default_factory=list)
    properties: dict[str, Any] = Field(default_factory=dict)
    occurred_at: datetime


class LeadCreated(LeadSnapshot):
    """A lead new to Leadflow, as ingest stored it."""

    type = "lead.created"
    topic = TOPIC_INGEST


class LeadUpdated(LeadSnapshot):
    """A known lead changed (or absorbed the leads in `merged_lead_ids`); the whole snapshot."""

    type = "lead.updated"
    topic = TOPIC_INGEST
    merged_lead_ids: list[uuid.UUID] = Field(default_factory=list)


class LeadActivity(Payload):
    """Something the lead did (a visit, a download, product usage) that engagement scores."""

    type = "lead.activity"
    topic = TOPIC_INGEST
    activity_id: uuid.UUID
    activity_type: str
    page_category: str | None = None
    occurred_at: datetime
    properties: dict[str, Any] = Field(default_factory=dict)


class LeadErased(Payload):
    """The person behind the lead asked to be forgotten: every service erases what it holds."""

    type = "lead.erased"
    topic = TOPIC_INGEST


class LeadSalesReported(Payload):
    """A sales tool reported what sales did with the lead in its own records (a CRM's status
    change, a call, e-mail or meeting logged there), in Leadflow's terms: a contact attempt
    (`channel`, `outcome`) or a status (`status`, `reason`). `system` and `record_id` name the
    tool and its own id of what it reported; ingest passes each (system, record_id) on once.
    Feedback applies it as it applies the same report made over its API. A value of a watched
    field that the connectors file does not list is `unmapped` (the `field` and its `value`):
    kept on the lead's timeline, applied to nothing."""

    type = "lead.sales_reported"
    topic = TOPIC_INGEST
    kind: Literal["attempt", "status", "unmapped"]
    system: str
    record_id: str
    occurred_at: datetime
    channel: Literal["call", "email", "linkedin", "meeting"] | None = None
    outcome: str | None = None
    status: str | None = None
    reason: str | None = None
    field: str | None = None
    value: str | None = None


class BreakdownItem(BaseModel):
    rule: str
    points: float
    detail: str = ""


class LeadScored(Payload):
    """The lead's fit, engagement and intent after a change, and whether it is an MQL."""

    type = "lead.scored"
    topic = TOPIC_SCORING
    fit: int
    engagement: float
    intent_tier: int
    is_mql: bool
    breakdown: list[BreakdownItem] = Field(default_factory=list)
    scored_at: datetime
    # Why the MQL rule holds or fails, each reason starting with a stable code.
    reasons: list[str] = Field(default_factory=list)


class LeadMql(Payload):
    """The lead became a marketing (or product) qualified lead, with the context sales needs."""

    type = "lead.mql"
    topic = TOPIC_SCORING
    kind: Literal["mql", "pql"] = "mql"
    fit: int
    engagement: float
    intent_tier: int
    breakdown: list[BreakdownItem] = Field(default_factory=list)
    channel: Channel = "inbound"
    source: LeadSource = Field(default_factory=LeadSource)
    company: LeadCompany = Field(default_factory=LeadCompany)
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    role: str | None = None
    seniority: str | None = None
    intent_note: str | None = None
    key_activities: list[dict[str, Any]] = Field(default_factory=list)
    promoted_at: datetime
    # Why the lead was promoted (MQL rule, re-engagement after recycle, or PQL thresholds).
    reasons: list[str] = Field(default_factory=list)


class LeadRouted(Payload):
    """The lead was assigned to a team and rep (routing's decision and the calendar it runs on)."""

    type = "lead.routed"
    topic = TOPIC_ROUTING
    assignment_id: uuid.UUID
    team_id: uuid.UUID | None
    team: str
    rep_id: uuid.UUID | None
    channel: Channel = "inbound"
    reason: str = "mql"
    routed_at: datetime
    calendar: dict[str, Any] | None = None
    # What was routed: an MQL, or a product-qualified lead (starts the PQL contact clock).
    kind: Literal["mql", "pql"] = "mql"
    rep_name: str | None = None
    # The lead.mql payload routed: the context sales tools receive with the assignment.
    mql: dict[str, Any] | None = None


# Why a lead waits unassigned (see LeadUnassigned).
UnassignedReason = Literal[
    "no_team",
    "no_reps",
    "all_inactive",
    "all_out_of_office",
    "outside_working_hours",
    "at_capacity",
]


class LeadUnassigned(Payload):
    """No rep can take the MQL (or PQL) now: it waits in routing's unassigned queue, and its
    `lead.routed` follows when a rep of the team becomes eligible. Sent once per wait.

    `reason` is one blocker, never a mix: `no_team` (no rule claims the lead and the fallback
    team has no rep; `team_id` and `team` are null), `no_reps` (the team has no rep), else the
    reason of the rep closest to eligible, in this precedence: `outside_working_hours` (hours
    begin at a known instant), `at_capacity` (a place frees when a lead leaves open work),
    `all_out_of_office`, `all_inactive`. `trace` is the routing decision's trace (rules tried,
    each rep considered and why it was passed over)."""

    type = "lead.unassigned"
    topic = TOPIC_ROUTING
    team_id: uuid.UUID | None = None
    team: str | None = None
    reason: UnassignedReason
    queued_at: datetime
    channel: Channel = "inbound"
    kind: Literal["mql", "pql"] = "mql"
    trace: dict[str, Any] = Field(default_factory=dict)


class Person(BaseModel):
    """Someone Leadflow tells things: a rep, a team lead or a manager, and how to reach them."""

    id: uuid.UUID | None = None  # a rep's id; team leads and managers have none
    name: str
    email: str | None = None
    slack_member_id: str | None = None
    teams_upn: str | None = None
    language: Literal["en", "pl"] = "en"
    timezone: str | None = None
    working_hours: dict[str, list[list[str]]] | None = None
    # A rep's open leads at most (routing's `capacity`), for feedback's planner; None from a
    # publisher that predates it, and for team leads and managers.
    capacity: int | None = None


class TeamDirectory(Payload):
    """Who is on a team and how to reach them: its reps, team lead and manager, and the team's
    Slack and Teams channels; sent whole whenever any of it changes. Not about a lead:
    `lead_id` carries the team's id (the key that orders a team's changes)."""

    type = "team.directory"
    topic = TOPIC_ROUTING
    about_lead: ClassVar[bool] = False
    team_id: uuid.UUID
    team: str
    team_lead: Person | None = None
    manager: Person | None = None
    reps: list[Person] = Field(default_factory=list)
    slack_webhook_url: str | None = None
    teams_webhook_url: str | None = None
    changed_at: datetime


class ApiKeyChanged(Payload):
    """An API key issued through the API, as it now is: created, given an end (a rotation's
    grace period) or revoked. Carries the key's SHA-256 digest, never the key. Not about a
    lead: `lead_id` carries the key's id (the key that orders its changes)."""

    type = "api_key.changed"
    topic = TOPIC_ACCESS
    about_lead: ClassVar[bool] = False
    key_id: uuid.UUID
    name: str
    sha256: str
    scopes: list[str]
    source: str | None = None
    created_by: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    changed_at: datetime


# The key of every `policy.published`: one key keeps the publications in order on one partition.
POLICY_KEY = uuid.UUID("5f0c1c3e-6d1a-4c47-9a43-6c1e0e4f9a01")


class PolicyPublished(Payload):
    """A version of the policy became the current one (published for the first time, or again:
    a rollback), with the whole validated document. Every service applies the publication with
    the highest `publication` it has seen. Not about a lead: `lead_id` is `POLICY_KEY`."""

    type = "policy.published"
    topic = TOPIC_POLICY
    about_lead: ClassVar[bool] = False
    number: int
    version: str
    publication: int
    published_at: datetime
    published_by: str
    document: dict[str, Any]


class WebhookDeadLettered(Payload):
    """A webhook delivery was given up after its attempts."""

    type = "webhook.dead_lettered"
    topic = TOPIC_NOTIFY
    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    event_type: str
    attempts: int
    last_error: str


class LeadCrmLinked(Payload):
    """Notify created or found the lead's record in a CRM (a HubSpot contact, a Salesforce Lead)
    while delivering `lead.routed`: the CRM's id for the lead, so what the CRM reports back
    about that record can be matched to the lead."""

    type = "lead.crm_linked"
    topic = TOPIC_NOTIFY
    system: Literal["hubspot", "salesforce"]
    object_type: str
    object_id: str
    linked_at: datetime


CONNECTORS_KEY = uuid.UUID("0b7f3a52-3c8e-4d0e-9f1a-2e6c5d8b4a11")


class ConnectorsPublished(Payload):
    """The CRM connectors were changed through notify's API: the whole validated document
    (names of the settings holding secrets, never a secret). Every service reading connectors
    applies the publication with the highest `publication` it has seen. Not about a lead:
    `lead_id` is `CONNECTORS_KEY`."""

    type = "connectors.published"
    topic = TOPIC_NOTIFY
    about_lead: ClassVar[bool] = False
    publication: int
    published_at: datetime
    published_by: str
    document: dict[str, Any]


class SlaEvent(Payload):
    timer_id: uuid.UUID
    sla: str
    party: Literal["sales", "marketing"] = "sales"
    channel: Channel | None = None
    team: str | None = None
    rep_id: uuid.UUID | None = None
    started_at: datetime
    due_at: datetime
    level: str
    # A contact cadence not met yet: what its attempts still lack, in words a rep reads
    # ("2 more calls", "attempts on 1 more day"); None for the other clocks.
    missing: list[str] | None = None


class SlaWarning(SlaEvent):
    """An SLA clock is close to its due time."""

    type = "sla.warning"
    topic = TOPIC_SLA


class SlaBreached(SlaEvent):
    """An SLA clock passed its due time, or a party missed a period commitment."""

    type = "sla.breached"
    topic = TOPIC_SLA
    # What the breach means for the lead: "unreachable" when a contact cadence ended without
    # its attempts (feedback marks the lead unreachable and recycles it); None otherwise.
    outcome: str | None = None
    # A party's period commitment missed: `sla` names the commitment (mql_volume,
    # in_target_share, full_context_share, contacted_within_limit_share), started_at and
    # due_at bound the period, and lead_id / timer_id carry the period's own id (no lead owns
    # it). planned: the plan (MQL volume) or the share agreed; target: the pass mark;
    # actual: what the period delivered.
    planned: float | None = None
    target: float | None = None
    actual: float | None = None


class SlaEscalated(SlaEvent):
    """A breached SLA was escalated (and the lead possibly reassigned)."""

    type = "sla.escalated"
    topic = TOPIC_SLA
    escalate_to: Literal["team_lead", "manager"] = "team_lead"
    reassign: bool = False


class SlaMet(SlaEvent):
    """An SLA clock stopped in time, after `business_seconds` of business time."""

    type = "sla.met"
    topic = TOPIC_SLA
    met_at: datetime
    business_seconds: float


class SlaCorrectivePlanRequired(Payload):
    """A party missed its period commitments `consecutive_misses` periods in a row (the policy's
    corrective_plan_after_misses or more) and owes a corrective plan. lead_id carries the id of
    the period that completed the streak."""

    type = "sla.corrective_plan_required"
    topic = TOPIC_SLA
    about_lead: ClassVar[bool] = False
    party: Literal["sales", "marketing"]
    period_start: datetime
    period_end: datetime
    consecutive_misses: int
    # The commitments missed in the period that completed the streak.
    missed: list[str] = Field(default_factory=list)


class LeadContactAttempt(Payload):
    """A rep tried to reach the lead (call, email, LinkedIn, meeting)."""

    type = "lead.contact_attempt"
    topic = TOPIC_FEEDBACK
    attempt_id: uuid.UUID
    channel: ContactChannel
    occurred_at: datetime
    rep_id: uuid.UUID | None = None
    outcome: str | None = None


class LeadStatusChanged(Payload):
    """Sales moved the lead to another status (working, contacted, SQL, SQO, recycled …)."""

    type = "lead.status_changed"
    topic = TOPIC_FEEDBACK
    from_status: str | None
    status: str
    reason: str | None = None
    changed_at: datetime
    rep_id: uuid.UUID | None = None
    # recycled: the lead rests in nurture until then (the reason's nurture_days)
    nurture_until: datetime | None = None
    # sql: the qualification areas; sqo: value, stage and close date; won: value and currency
    # when sales gave them (else the SQO's stand)
    qualification: dict[str, Any] | None = None
    opportunity: dict[str, Any] | None = None
    # handed_off: what customer success takes over (use_case, promised_outcomes, risks, plan)
    handoff: dict[str, Any] | None = None


class LeadOnboardingMilestone(Payload):
    """A won customer reached an onboarding milestone: the kickoff meeting was held
    (`kickoff_held`, reported by customer success), or the key feature the policy names was
    used for the first time after the signature (`key_feature_activated`, from product usage;
    `feature` names it). Sent once per lead and milestone."""

    type = "lead.onboarding_milestone"
    topic = TOPIC_FEEDBACK
    milestone: Literal["kickoff_held", "key_feature_activated"]
    reached_at: datetime
    feature: str | None = None


class LeadChurned(Payload):
    """Customer success reported that a won customer left, with a structured reason from the
    policy's churn reasons. The customer owes no onboarding clock any more."""

    type = "lead.churned"
    topic = TOPIC_FEEDBACK
    reason: str
    churned_at: datetime


PAYLOAD_TYPES: dict[str, type[Payload]] = {
    cls.type: cls
    for cls in (
        LeadCreated,
        LeadUpdated,
        LeadActivity,
        LeadErased,
        LeadSalesReported,
        LeadScored,
        LeadMql,
        LeadRouted,
        LeadUnassigned,
        TeamDirectory,
        WebhookDeadLettered,
        LeadCrmLinked,
        ConnectorsPublished,
        ApiKeyChanged,
        PolicyPublished,
        SlaWarning,
        SlaBreached,
        SlaEscalated,
        SlaMet,
        SlaCorrectivePlanRequired,
        LeadContactAttempt,
        LeadStatusChanged,
        LeadOnboardingMilestone,
        LeadChurned,
    )
}


class CloudEvent(BaseModel):
    """The CloudEvents 1.0 JSON envelope (contract)."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    source: str
    type: str
    time: datetime
    subject: str
    datacontenttype: Literal["application/json"] = "application/json"
    dataschema: str | None = None
    leadflowpolicyversion: str | None = None
    data: dict[str, Any]

    def payload(self) -> Payload:
        """The typed payload; raises pydantic.ValidationError if the data does not fit."""
        return PAYLOAD_TYPES[self.type].model_validate(self.data)

    def to_bytes(self) -> bytes:
        return self.__pydantic_serializer__.to_json(self, exclude_none=True)

    @classmethod
    def from_bytes(cls, raw: bytes) -> CloudEvent:
        return cls.model_validate_json(raw)


def make_event(
    payload: Payload,
    *,
    source: str,
    time: datetime | None = None,
    policy_version: str | None = None,
    event_id: uuid.UUID | None = None,
) -> CloudEvent:
    return CloudEvent(
        id=event_id or uuid.uuid4(),
        source=source,
        type=payload.type,
        time=time or datetime.now(UTC),
        subject=str(payload.lead_id),
        dataschema=f"leadflow:{payload.type}/v{payload.schema_version}",
        leadflowpolicyversion=policy_version,
        data=payload.model_dump(mode="json"),
    )
