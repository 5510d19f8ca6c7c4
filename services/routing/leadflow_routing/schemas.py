"""Request and response bodies of the routing API."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from leadflow.contracts.events import UnassignedReason
from leadflow.text import StorableModel
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, TypeAdapter, field_validator

from leadflow_routing.domain.assignment import DAYS, RULE_FIELDS
from leadflow_routing.domain.strategies import DEFAULT_STRATEGY, strategy_names

# Derived from the domain: a strategy, rule field or day added there is offered here (and
# listed in the OpenAPI document); any other value is refused with 422 naming the field.
Strategy = Literal[strategy_names()]
RuleField = Literal[tuple(RULE_FIELDS)]
Day = Literal[DAYS]
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"
Span = Annotated[list[str], Field(min_length=2, max_length=2)]  # ["09:00", "17:00"]


SLACK_MEMBER = re.compile(r"^[UW][A-Z0-9]{6,}$")
_url = TypeAdapter(HttpUrl)


class Contact(StorableModel):
    """How a person is reached: e-mail, a Slack member id and a Teams user (mentioned in the
    team's channels), the language of their messages, their time zone and working hours."""

    model_config = ConfigDict(extra="forbid")
    email: str | None = Field(default=None, max_length=320)
    slack_member_id: str | None = Field(
        default=None, max_length=32, description="Slack member id (U… or W…), to mention them"
    )
    teams_upn: str | None = Field(
        default=None,
        max_length=320,
        description="Microsoft Teams user principal name, to mention them",
    )
    language: Literal["en", "pl"] = "en"
    timezone: str | None = Field(default=None, description="IANA time zone; default UTC")
    working_hours: dict[Day, list[Span]] | None = Field(
        default=None, description='e.g. {"mon": [["09:00", "17:00"]]}; omitted: always available'
    )

    @field_validator("email", "teams_upn")
    @classmethod
    def _address(cls, address: str | None) -> str | None:
        if address is None:
            return None
        try:
            validate_email(address, check_deliverability=False)
        except EmailNotValidError as exc:
            raise ValueError(f"{address!r} is not an e-mail address: {exc}") from None
        return address

    @field_validator("slack_member_id")
    @classmethod
    def _member(cls, member: str | None) -> str | None:
        if member is not None and not SLACK_MEMBER.match(member):
            raise ValueError(f"{member!r} is not a Slack member id (U… or W…, e.g. U024BE7LH)")
        return member

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str | None) -> str | None:
        if zone is None:
            return None
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {zone!r}") from exc
        return zone

    @field_validator("working_hours")
    @classmethod
    def _hours(cls, hours: dict | None) -> dict | None:
        for day, spans in (hours or {}).items():
            for start, end in spans:
                for value in (start, end):
                    if not re.match(HHMM, value):
                        raise ValueError(f"{day}: {value!r} is not HH:MM")
                if start >= end:
                    raise ValueError(f"{day}: {start}–{end} ends before it starts")
        return hours


class Person(Contact):
    """A team lead or a manager: who hears a team's escalations."""

    name: str = Field(min_length=1, max_length=200)


def _webhook_url(url: str | None) -> str | None:
    return None if url is None else str(_url.validate_python(url))


class TeamIn(StorableModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    calendar: dict[str, Any] | None = None
    strategy: Strategy = DEFAULT_STRATEGY
    team_lead: Person | None = Field(default=None, description="hears escalations at team_lead_at")
    manager: Person | None = Field(default=None, description="hears escalations at manager_at")
    slack_webhook_url: str | None = Field(
        default=None, max_length=2000, description="the team channel's Slack incoming webhook"
    )
    teams_webhook_url: str | None = Field(
        default=None,
        max_length=2000,
        description="the team channel's Microsoft Teams workflow webhook",
    )

    _urls = field_validator("slack_webhook_url", "teams_webhook_url")(_webhook_url)


class TeamPatch(StorableModel):
    """Change what is given; null removes a team lead, a manager or a channel."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    strategy: Strategy | None = None
    team_lead: Person | None = None
    manager: Person | None = None
    slack_webhook_url: str | None = Field(default=None, max_length=2000)
    teams_webhook_url: str | None = Field(default=None, max_length=2000)

    _urls = field_validator("slack_webhook_url", "teams_webhook_url")(_webhook_url)


class TeamOut(TeamIn):
    id: uuid.UUID
    is_fallback: bool


class RepIn(Contact):
    name: str = Field(min_length=1, max_length=200)
    team_id: uuid.UUID | None = Field(default=None, description="default: the fallback team")
    capacity: int = Field(default=50, ge=0, le=10_000)
    weight: int = Field(default=1, ge=1, le=100)
    active: bool = True
    out_of_office: bool = False


class RepPatch(StorableModel):
    """Change what is given; e.g. {"out_of_office": true} while a rep is away."""

    model_config = ConfigDict(extra="forbid")
    active: bool | None = None
    out_of_office: bool | None = None
    capacity: int | None = Field(default=None, ge=0, le=10_000)
    weight: int | None = Field(default=None, ge=1, le=100)
    email: str | None = Field(default=None, max_length=320)
    slack_member_id: str | None = Field(default=None, max_length=32)
    teams_upn: str | None = Field(default=None, max_length=320)
    language: Literal["en", "pl"] | None = None
    timezone: str | None = None
    working_hours: dict[Day, list[Span]] | None = None

    _address = field_validator("email", "teams_upn")(Contact._address.__func__)
    _member = field_validator("slack_member_id")(Contact._member.__func__)
    _zone = field_validator("timezone")(Contact._zone.__func__)
    _hours = field_validator("working_hours")(Contact._hours.__func__)


class RepOut(RepIn):
    model_config = ConfigDict(extra="ignore")
    id: uuid.UUID
    team_id: uuid.UUID


class RuleIn(StorableModel):
    """First matching rule (lowest priority number first) picks the team; every condition must
    hold, each listing the values it accepts (case-insensitive)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=100, ge=0, le=1_000_000)
    conditions: dict[RuleField, list[str]] = Field(min_length=1)
    team_id: uuid.UUID
    active: bool = True

    @field_validator("conditions")
    @classmethod
    def _non_empty(cls, conditions: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, values in conditions.items():
            if not values:
                raise ValueError(f"{name}: list at least one value")
        return conditions


class RuleOut(RuleIn):
    model_config = ConfigDict(extra="ignore")
    id: uuid.UUID


class RepConfig(RepIn):
    """A rep in a routing file: its team by name; reps are matched by email, else by name."""

    team_id: None = None
    team: str = Field(min_length=1, max_length=200)


class RuleConfig(RuleIn):
    team_id: None = None
    team: str = Field(min_length=1, max_length=200)


class RoutingConfig(StorableModel):
    """Teams, reps and rules as one document (e.g. a YAML file under version control).
    Teams and reps are created or updated by name; the rules replace the current rules."""

    model_config = ConfigDict(extra="forbid")
    teams: list[TeamIn] = Field(default_factory=list)
    reps: list[RepConfig] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)


class RoutingConfigOut(BaseModel):
    """What loading a routing document did."""

    teams: int
    reps_created: int
    reps_updated: int
    rules: int


class DryRunIn(StorableModel):
    """A sample lead as routing sees an MQL: channel, company and source are what rules test."""

    model_config = ConfigDict(extra="allow")
    channel: Literal["inbound", "outbound", "partner", "plg"] = "inbound"
    company: dict[str, Any] = Field(default_factory=dict)
    source: dict[str, Any] = Field(default_factory=dict)


class DryRunOut(BaseModel):
    team_id: uuid.UUID
    team: str
    rep_id: uuid.UUID | None
    trace: dict[str, Any]


class AssignmentOut(BaseModel):
    lead_id: uuid.UUID
    assignment_id: uuid.UUID
    team_id: uuid.UUID
    rep_id: uuid.UUID | None
    reason: str
    trace: dict[str, Any]
    created_at: datetime


class WaitingOut(BaseModel):
    """A lead waiting in the unassigned queue for a rep of its team to become eligible."""

    lead_id: uuid.UUID
    team_id: uuid.UUID | None = Field(description="null: no rule claims the lead (no_team)")
    team: str | None
    reason: UnassignedReason = Field(description="what keeps the lead from a rep (lead.unassigned)")
    queued_at: datetime
    waited_seconds: float = Field(description="seconds since it was queued, on the service clock")
