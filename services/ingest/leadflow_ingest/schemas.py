"""Request and response bodies of the ingest API, and the parsing of bodies that are not one model
(a batch of leads, HubSpot's batch of events, a lead published to Kafka)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from leadflow.contracts.events import LeadSnapshot
from leadflow.errors import ProblemError, Unprocessable, validation_errors
from leadflow.text import StorableModel
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

BATCH_LIMIT = 1000


class CompanyIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str | None = Field(default=None, max_length=300)
    domain: str | None = Field(default=None, max_length=253)
    industry: str | None = Field(default=None, max_length=100)
    employees: int | None = Field(default=None, ge=0, le=10_000_000)
    country: str | None = Field(default=None, max_length=60)
    region: str | None = Field(default=None, max_length=100)
    tech_stack: list[str] | None = None


class SourceIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    system: str | None = Field(default=None, max_length=100)
    channel: Literal["inbound", "outbound", "partner", "plg"] = "inbound"
    campaign: str | None = Field(default=None, max_length=200)
    medium: str | None = Field(default=None, max_length=100)
    lead_magnet: str | None = Field(default=None, max_length=200)
    utm: dict[str, str] | None = None


class ConsentIn(BaseModel):
    basis: Literal["consent", "legitimate_interest", "none"]
    given_at: datetime | None = None


class LeadIn(StorableModel):
    """A lead as a marketing platform sends it; unknown fields are kept in `properties`."""

    model_config = ConfigDict(extra="allow")

    email: str = Field(min_length=3, max_length=320)
    external_id: str | None = Field(default=None, max_length=200)
    first_name: str | None = Field(default=None, max_length=200)
    last_name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=50)
    title: str | None = Field(default=None, max_length=300)
    role: Literal["decision_maker", "influencer", "champion", "user", "other"] | None = None
    seniority: Literal["c_level", "vp", "director", "manager", "individual"] | None = None
    company: CompanyIn = Field(default_factory=CompanyIn)
    source: SourceIn = Field(default_factory=SourceIn)
    consent: ConsentIn = Field(default_factory=lambda: ConsentIn(basis="consent"))
    intent_tier: int = Field(default=0, ge=0, le=3)
    intent_note: str | None = Field(default=None, max_length=2000)
    occurred_at: datetime | None = None

    @field_validator("email")
    @classmethod
    def _email_shape(cls, email: str) -> str:
        local, at, domain = email.strip().rpartition("@")
        if not at or not local or "." not in domain:
            raise ValueError("must look like name@domain.tld")
        return email

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class FieldError(BaseModel):
    """What is wrong with one field of an input."""

    field: str
    message: str


class LeadAccepted(BaseModel):
    lead_id: uuid.UUID
    event_id: uuid.UUID
    duplicate: bool


class LeadErasure(BaseModel):
    """What an erasure did: the lead (the survivor of any merge) and every lead id of that
    person whose personal data is gone, each announced by one `lead.erased`."""

    lead_id: uuid.UUID
    erased_lead_ids: list[uuid.UUID]
    erased_at: datetime


class ActivityIn(StorableModel):
    model_config = ConfigDict(extra="forbid")
    lead_id: uuid.UUID | None = None
    email: str | None = Field(default=None, max_length=320)
    type: Literal[
        "page_view",
        "content_download",
        "webinar_attended",
        "event_attended",
        "demo_request",
        "email_open",
        "email_click",
        "form_submit",
        "product_usage",
    ]
    page_category: Literal["pricing", "docs", "blog", "careers", "other"] | None = None
    occurred_at: datetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _identifies_lead(self) -> ActivityIn:
        if self.lead_id is None and self.email is None:
            raise ValueError("lead_id or email: one of them is required")
        return self


class ActivityAccepted(BaseModel):
    activity_id: uuid.UUID
    lead_id: uuid.UUID
    event_id: uuid.UUID


class BatchItemResult(BaseModel):
    index: int
    status: int = Field(description="202 accepted, 422 invalid, 403 not this key's lead")
    lead_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None
    duplicate: bool | None = None
    errors: list[FieldError] | None = None


class BatchResult(BaseModel):
    accepted: int
    rejected: int
    results: list[BatchItemResult]


def decoded_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Unprocessable(f"the body is not valid JSON: {exc}", field="body") from None


def parse_batch(body: bytes) -> list[Any]:
    """The items of a batch: a JSON array of leads, or an object with a `leads` array, of at
    most BATCH_LIMIT; each is validated on its own."""
    raw = decoded_json(body)
    items = raw.get("leads") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise Unprocessable(
            "the body is a JSON array of leads, or an object with a `leads` array",
            field="leads",
        )
    if not items:
        raise Unprocessable("the batch is empty", field="leads")
    if len(items) > BATCH_LIMIT:
        raise Unprocessable(
            f"a batch holds at most {BATCH_LIMIT} leads; this one has {len(items)}", field="leads"
        )
    return items


# The lead's own times as this endpoint has always written them (ISO 8601, +00:00).
IsoTime = Annotated[datetime, PlainSerializer(datetime.isoformat, when_used="json")]


class LeadView(LeadSnapshot):
    """The lead as ingest knows it: its latest snapshot, when it was created and last changed."""

    created_at: IsoTime
    updated_at: IsoTime


class HubSpotEvent(StorableModel):
    model_config = ConfigDict(extra="allow")
    eventId: int
    subscriptionType: str = Field(max_length=100)
    portalId: int
    objectId: int
    occurredAt: int = Field(ge=0)
    propertyName: str | None = Field(default=None, max_length=200)
    propertyValue: str | None = Field(default=None, max_length=65_536)
    # generic `object.*` subscriptions: the object's type ("0-1" a contact, "0-48" a call, …)
    objectTypeId: str | None = Field(default=None, max_length=20)


def parse_hubspot_events(body: bytes) -> list[HubSpotEvent]:
    """HubSpot's batch of events: every invalid field of every event named (`<index>.<field>`)."""
    raw = decoded_json(body)
    if not isinstance(raw, list):
        raise ProblemError(
            "HubSpot sends a JSON array of events",
            status=422,
            title="Invalid request",
            field="body",
        )
    events, errors = [], []
    for index, item in enumerate(raw):
        try:
            events.append(HubSpotEvent.model_validate(item))
        except ValidationError as exc:
            for error in validation_errors(exc.errors()):
                errors.append({**error, "field": f"{index}.{error['field']}"})
    if errors:
        raise ProblemError(
            f"{len(errors)} invalid field(s) in the event batch",
            status=422,
            title="Invalid request",
            errors=errors,
        )
    return events


class HubSpotContactResult(BaseModel):
    """One contact the batch touched that has an email: its lead, or why it has none."""

    object_id: int
    status: int = Field(description="202 accepted, 422 invalid")
    lead_id: uuid.UUID | None = None
    duplicate: bool | None = None
    errors: list[FieldError] | None = None


class SalesReportsAccepted(BaseModel):
    """What a sales tool's delivery reported back: passed on to feedback (`reported`, about
    `lead_ids`), reported before (the same record delivered again), about no lead Leadflow
    knows (`unmatched`, kept so that it is not taken twice), or nothing Leadflow maps."""

    reported: int = 0
    duplicates: int = 0
    unmatched: int = 0
    ignored: int = Field(default=0, description="values the connector's tables say nothing of")
    unmapped: int = Field(
        default=0,
        description="of `reported`, values the connector's tables do not list: kept on the "
        "lead's timeline as unmapped, applied to nothing",
    )
    lead_ids: list[uuid.UUID] = Field(default_factory=list)


class HubSpotWebhookResult(BaseModel):
    received: int
    duplicates: int
    waiting_for_email: int = Field(description="contacts kept until their email arrives")
    leads: list[HubSpotContactResult]
    sales_reports: SalesReportsAccepted | None = Field(
        default=None, description="status changes and activities sales logged (when configured)"
    )
