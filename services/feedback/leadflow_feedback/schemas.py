"""Request and response bodies of the feedback API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class AttemptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Literal["call", "email", "linkedin", "meeting"]
    occurred_at: datetime | None = None
    rep_id: uuid.UUID | None = None
    outcome: str | None = Field(default=None, max_length=200)


class AttemptAccepted(BaseModel):
    attempt_id: uuid.UUID
    lead_id: uuid.UUID
    event_id: uuid.UUID | None
    status: str
    duplicate: bool = False


class Qualification(BaseModel):
    """The four qualification areas of an SQL; each is `true` or a note when confirmed."""

    model_config = ConfigDict(extra="forbid")
    problem: bool | str | None = Field(default=None, description="problem / urgency")
    impact: bool | str | None = Field(default=None, description="impact / value")
    authority: bool | str | None = Field(default=None, description="process / authority")
    budget: bool | str | None = Field(default=None, description="budget / timing")


class Opportunity(BaseModel):
    """The opportunity an SQO is: value, stage and close date are required for `sqo`."""

    model_config = ConfigDict(extra="forbid")
    value: float | None = Field(default=None, gt=0)
    currency: str | None = Field(default=None, max_length=3)
    stage: str | None = Field(default=None, max_length=100)
    close_date: date | None = None


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal[
        "sal", "returned", "sql", "sqo", "won", "handed_off", "lost", "recycled", "unreachable"
    ]
    reason: str | None = Field(default=None, max_length=100)
    qualification: Qualification | None = None
    opportunity: Opportunity | None = None
    occurred_at: datetime | None = None
    rep_id: uuid.UUID | None = None


class StatusAccepted(BaseModel):
    lead_id: uuid.UUID
    event_id: uuid.UUID
    from_status: str
    status: str
    reason: str | None = None
    nurture_until: datetime | None = None
    allowed_next: list[str]


class PlanIn(BaseModel):
    """Reverse funnel inputs (DOMAIN.md "Planning"); shares are fractions (0.25 = 25 %)."""

    model_config = ConfigDict(extra="forbid")
    revenue_goal: float = Field(gt=0)
    avg_deal_size: float = Field(gt=0)
    win_rate: float = Field(gt=0, le=1)
    sql_to_sqo: float = Field(gt=0, le=1)
    mql_to_sql: float = Field(gt=0, le=1)
    visit_to_mql: float = Field(gt=0, le=1)
    touches_per_mql: float = Field(gt=0)
    sdr_activities_per_week: float = Field(gt=0)
    sales_capacity_mql: float | None = Field(default=None, ge=0)


FIRST_DAY, LAST_DAY = date(1900, 1, 1), date(2999, 12, 31)


def _report_day(value: date) -> date:
    if not FIRST_DAY <= value <= LAST_DAY:
        raise ValueError(f"must be between {FIRST_DAY} and {LAST_DAY}")
    return value


# A day in a report's or the review page's query: far enough from the calendar's ends that the
# weeks and months around it exist.
ReportDay = Annotated[date, AfterValidator(_report_day)]

# A team filter as a query parameter: a team name, never text PostgreSQL refuses (NUL).
TeamQuery = Annotated[
    str | None, Query(max_length=200, pattern=r"^[^\x00]*$", description="a team's name")
]
