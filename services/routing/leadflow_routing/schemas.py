"""Request and response bodies of the routing API."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from leadflow.contracts.calendar import BusinessCalendar
from leadflow.contracts.events import UnassignedReason
from leadflow.text import StorableModel
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, TypeAdapter, field_validator

from leadflow_routing.domain.assignment import DAYS, RULE_FIELDS, condition_problem
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


def _calendar(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    """A team's business calendar, refused (naming the key) unless SLA clocks can run on it."""
    if spec is not None:
        BusinessCalendar.from_spec(spec)
    return spec


CALENDAR = (
    'the team\'s business calendar for its SLA clocks, e.g. {"timezone": "Europe/Warsaw", '
    '"hours": {"mon": ["09:00-17:00"]}, "holiday_country": "PL"}; null: the policy\'s'
)


class TeamIn(StorableModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    calendar: dict[str, Any] | None = Field(default=None, description=CALENDAR)
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
    checks_calendar: ClassVar[bool] = True

    @field_validator("calendar")
    @classmethod
    def _calendar_usable(cls, spec: dict[str, Any] | None) -> dict[str, Any] | None:
        return _calendar(spec) if cls.checks_calendar else spec


class TeamPatch(StorableModel):
    """Change what is given; null removes a team lead, a manager, a channel or the calendar."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    calendar: dict[str, Any] | None = Field(default=None, description=CALENDAR)
    strategy: Strategy | None = None
    team_lead: Person | None = None
    manager: Person | None = None
    slack_webhook_url: str | None = Field(default=None, max_length=2000)
    teams_webhook_url: str | None = Field(default=None, max_length=2000)

    _urls = field_validator("slack_webhook_url", "teams_webhook_url")(_webhook_url)
    _calendars = field_validator("calendar")(_calendar)


class TeamOut(TeamIn):
    # a calendar stored before calendars were checked is shown as it is, never a failed read
    checks_calendar: ClassVar[bool] = False
    id: uuid.UUID
    is_fallback: bool


class RepIn(Contact):
    name: str = Field(min_length=1, max_length=200)
    team_id: uuid.UUID | None = Field(default=None, description="default: the fallback team")
    capacity: int = Field(default=50, ge=0, le=10_000)
    weight: int = Field(default=1, ge=1, le=100)
    active: bool = True
    out_of_office: bool = False
    out_of_office_until: datetime | None = Field(
        default=None,
        description="when the out of office ends by itself (with out_of_office); null: when "
        "it is changed",
    )


class RepPatch(StorableModel):
    """Change what is given; e.g. {"out_of_office": true, "out_of_office_until": "…"} while a
    rep is away (an until alone sets out_of_office; out_of_office false clears the until).
    Null removes an e-mail, a chat id, the time zone, the working hours or the until."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    team_id: uuid.UUID | None = Field(default=None, description="move the rep to this team")
    active: bool | None = None
    out_of_office: bool | None = None
    out_of_office_until: datetime | None = None
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
    away: bool | None = Field(
        default=None,
        description="out of office now: out_of_office, and its out_of_office_until (if any) "
        "not passed yet (null in the audit log's documents)",
    )
    open_leads: int | None = Field(
        default=None,
        description="leads in the rep's open work now, against capacity (null in the audit "
        "log's documents)",
    )


Condition = Annotated[
    list[str] | dict[str, Any],
    Field(
        description='values listed (["PL", "DE"] or {"in": [...]}, case-insensitive), a range '
        'of a number field ({"min": 50, "max": 1000}, either bound optional) or a negation '
        '({"not": <condition>})',
        examples=[["PL", "DE"], {"min": 50, "max": 1000}, {"not": {"in": ["gov"]}}],
    ),
]


def _conditions(conditions: dict[str, Any] | None) -> dict[str, Any] | None:
    for name, condition in (conditions or {}).items():
        problem = condition_problem(name, condition)
        if problem is not None:
            raise ValueError(problem)
    return conditions


class RuleIn(StorableModel):
    """First matching rule (lowest priority number first) picks the team; every condition must
    hold: a list of accepted values, a number range, or the negation of either."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    priority: int = Field(default=100, ge=0, le=1_000_000)
    conditions: dict[RuleField, Condition] = Field(min_length=1)
    team_id: uuid.UUID
    active: bool = True

    _checked = field_validator("conditions")(_conditions)


class RulePatch(StorableModel):
    """Change what is given; `conditions` replaces them all."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    priority: int | None = Field(default=None, ge=0, le=1_000_000)
    conditions: dict[RuleField, Condition] | None = Field(default=None, min_length=1)
    team_id: uuid.UUID | None = None
    active: bool | None = None

    _checked = field_validator("conditions")(_conditions)


class RuleOut(RuleIn):
    model_config = ConfigDict(extra="ignore")
    id: uuid.UUID


AccountDomain = Annotated[
    str,
    Field(
        min_length=3,
        max_length=253,
        pattern=r"^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$",
        description="the company's domain, as leads carry it (case-insensitive)",
    ),
]


class AccountIn(StorableModel):
    """An account's owner: the rep its leads go to (the rep's team with it)."""

    model_config = ConfigDict(extra="forbid")
    domain: AccountDomain
    rep_id: uuid.UUID


class AccountPatch(StorableModel):
    model_config = ConfigDict(extra="forbid")
    rep_id: uuid.UUID


class AccountOut(BaseModel):
    domain: str
    rep_id: uuid.UUID
    team_id: uuid.UUID
    since: datetime


class RepConfig(RepIn):
    """A rep in a routing file: its team by name; reps are matched by email, else by name."""

    team_id: None = None
    team: str = Field(min_length=1, max_length=200)


class RuleConfig(RuleIn):
    team_id: None = None
    team: str = Field(min_length=1, max_length=200)


class AccountConfig(StorableModel):
    """An account owner in a routing file: the rep by e-mail, else by name."""

    model_config = ConfigDict(extra="forbid")
    domain: AccountDomain
    rep: str = Field(min_length=1, max_length=320, description="the rep's e-mail, else name")


class RoutingConfig(StorableModel):
    """Teams, reps, rules and account owners as one document (e.g. a YAML file under version
    control). Teams and reps are created or updated by name; the rules replace the current
    rules; the accounts listed get the owner given (others keep theirs)."""

    model_config = ConfigDict(extra="forbid")
    teams: list[TeamIn] = Field(default_factory=list)
    reps: list[RepConfig] = Field(default_factory=list)
    rules: list[RuleConfig] = Field(default_factory=list)
    accounts: list[AccountConfig] = Field(default_factory=list)


class RoutingConfigOut(BaseModel):
    """What loading a routing document did."""

    teams: int
    reps_created: int
    reps_updated: int
    rules: int
    accounts: int


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
    policy_version: str | None = Field(
        description="the label of the policy version the decision was made under (the "
        "trace's `policy_version`; null for decisions recorded before versions were)"
    )
    created_at: datetime


class WaitingOut(BaseModel):
    """A lead waiting in the unassigned queue for a rep of its team to become eligible."""

    lead_id: uuid.UUID
    team_id: uuid.UUID | None = Field(description="null: no rule claims the lead (no_team)")
    team: str | None
    reason: UnassignedReason = Field(description="what keeps the lead from a rep (lead.unassigned)")
    queued_at: datetime
    waited_seconds: float = Field(description="seconds since it was queued, on the service clock")


class WorkItem(BaseModel):
    """A lead in a rep's open work, with its most urgent SLA clock as routing knows it (opened
    when routed, as the policy schedules it; then as sla-timer's events say)."""

    lead_id: uuid.UUID
    team_id: uuid.UUID
    rep_id: uuid.UUID | None
    kind: str | None = Field(description="mql | pql")
    channel: str | None
    assigned_at: datetime
    sla: str | None = Field(description="the open clock due first; null: no open clock known")
    sla_level: str | None = Field(
        description="open (nothing fired yet), or the last level fired: warning, breached, …"
    )
    due_at: datetime | None
    seconds_left: float | None = Field(description="until due_at on the service clock; < 0: late")
    state: Literal["overdue", "warning", "on_track", "no_clock"]
