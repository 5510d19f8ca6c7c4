"""Requests and answers of the customer success API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class KickoffIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    held_at: datetime | None = Field(default=None, description="when it was held; now if not given")


class ChurnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(max_length=100, description="one of the policy's churn reasons")
    churned_at: datetime | None = Field(default=None, description="now if not given")
    note: str | None = Field(default=None, max_length=2000)


class StoryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    outcome: str = Field(min_length=1, max_length=4000, description="the business result")
    topics: list[str] = Field(
        default_factory=list, max_length=20, description="themes marketing may write about"
    )


class ClockOut(BaseModel):
    sla: str
    started_at: datetime
    due_at: datetime
    reached_at: datetime | None
    verdict: str = Field(description="met | missed | pending | cancelled")


class HandoffOut(BaseModel):
    handed_off_at: datetime
    use_case: str
    promised_outcomes: str
    risks: str
    plan: str


class ChurnOut(BaseModel):
    lead_id: uuid.UUID
    reason: str
    churned_at: datetime
    note: str | None
    reported_at: datetime


class StoryOut(BaseModel):
    id: uuid.UUID
    lead_id: uuid.UUID
    title: str
    outcome: str
    topics: list[str]
    reported_at: datetime


class CustomerSuccessOut(BaseModel):
    """One won customer after the signature: its hand-off, the clocks after the won status,
    its onboarding milestones, its churn and success stories."""

    lead_id: uuid.UUID
    status: str
    won_at: datetime | None
    handoff: HandoffOut | None
    kickoff_at: datetime | None
    activated_at: datetime | None
    activation_feature: str | None
    clocks: list[ClockOut]
    churn: ChurnOut | None
    stories: list[StoryOut]


class ClockSummary(BaseModel):
    met: int
    missed: int
    pending: int
    cancelled: int
    share_met: float | None
    limit: dict[str, Any]
    missed_leads: list[dict[str, Any]]


class CustomerSuccessReport(BaseModel):
    """What customer success feeds back over a window: the clocks of the deals won in it, its
    churns by reason, source and channel, the low-usage segments, its success stories."""

    start: datetime
    end: datetime
    key_feature: str
    clocks: dict[str, ClockSummary]
    churn: dict[str, Any]
    low_usage_segments: list[dict[str, Any]]
    stories: list[dict[str, Any]]
    topics: list[dict[str, Any]]
