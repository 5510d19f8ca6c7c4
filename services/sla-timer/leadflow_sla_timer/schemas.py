"""Response models of sla-timer's HTTP API (it takes no request bodies)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, PlainSerializer

# Instants as the API has always written them (ISO 8601 with a +00:00 offset, not "Z").
Instant = Annotated[datetime, PlainSerializer(lambda at: at.isoformat(), return_type=str)]


class SlaClock(BaseModel):
    """One SLA clock of a lead: where it stands, the levels it fired and, for a contact
    cadence, the attempts counted (in all, per channel, days) against the ones it owes and
    allows, and what it still lacks."""

    timer_id: uuid.UUID
    sla: str
    state: str  # open | met | breached | cancelled
    channel: str | None
    team: str | None
    clock: str  # business_hours | business_days | wall
    started_at: Instant
    due_at: Instant
    level: str  # the last level fired, or "none"
    levels_fired: list[str]
    met_at: Instant | None
    next_fire_at: Instant | None
    policy_version: str | None
    attempts: int
    attempts_required: int | None
    attempts_allowed: int | None
    attempts_exceeded_at: Instant | None
    attempts_by_channel: dict[str, int] = Field(
        description="contact cadence: the attempts counted on each channel"
    )
    attempt_days: int = Field(description="contact cadence: the distinct days attempts fell on")
    min_per_channel: dict[str, int] | None = Field(
        description="contact cadence: the attempts it needs on each channel"
    )
    min_distinct_days: int | None = Field(
        description="contact cadence: the distinct days its attempts must fall on"
    )
    missing: list[str] = Field(
        description='contact cadence not met: what it still lacks, e.g. "2 more calls", '
        '"attempts on 1 more day"; empty once met'
    )


class LeadSlas(BaseModel):
    """Every SLA clock of one lead, oldest first."""

    lead_id: uuid.UUID
    timers: list[SlaClock]
