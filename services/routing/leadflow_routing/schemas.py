"""Request and response bodies of the routing API."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from leadflow.text import StorableModel
from pydantic import BaseModel, ConfigDict, Field, field_validator

from leadflow_routing.domain.assignment import DAYS, RULE_FIELDS
from leadflow_routing.domain.strategies import DEFAULT_STRATEGY, strategy_names

# Derived from the domain: a strategy, rule field or day added there is offered here (and
# listed in the OpenAPI document); any other value is refused with 422 naming the field.
Strategy = Literal[strategy_names()]
RuleField = Literal[tuple(RULE_FIELDS)]
Day = Literal[DAYS]
HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"
Span = Annotated[list[str], Field(min_length=2, max_length=2)]  # ["09:00", "17:00"]


class TeamIn(StorableModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    calendar: dict[str, Any] | None = None
    strategy: Strategy = DEFAULT_STRATEGY


class TeamOut(TeamIn):
    id: uuid.UUID
    is_fallback: bool


class RepIn(StorableModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    team_id: uuid.UUID | None = Field(default=None, description="default: the fallback team")
    capacity: int = Field(default=50, ge=0, le=10_000)
    weight: int = Field(default=1, ge=1, le=100)
    active: bool = True
    out_of_office: bool = False
    timezone: str | None = Field(default=None, description="IANA time zone; default UTC")
    working_hours: dict[Day, list[Span]] | None = Field(
        default=None, description='e.g. {"mon": [["09:00", "17:00"]]}; omitted: always available'
    )

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


class RepPatch(StorableModel):
    """Change what is given; e.g. {"out_of_office": true} while a rep is away."""

    model_config = ConfigDict(extra="forbid")
    active: bool | None = None
    out_of_office: bool | None = None
    capacity: int | None = Field(default=None, ge=0, le=10_000)
    weight: int | None = Field(default=None, ge=1, le=100)


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
