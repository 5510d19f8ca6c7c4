"""Requests and answers of the corrective plans API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from leadflow_feedback.plans.rules import PlanStatus


class ActionOut(BaseModel):
    id: uuid.UUID
    plan_id: uuid.UUID
    description: str
    owner: str
    due_at: datetime
    done: bool
    done_at: datetime | None
    created_at: datetime
    overdue: bool


class PlanOut(BaseModel):
    id: uuid.UUID
    party: str
    owner: str
    status: PlanStatus
    periods: list[dict[str, Any]] = Field(
        description="the missed periods the plan answers for: period_id, start, end, "
        "consecutive_misses and the commitments missed"
    )
    missed: list[str]
    opened_at: datetime
    due_at: datetime
    changed_at: datetime
    policy_version: str | None


class PlanDetail(PlanOut):
    actions: list[ActionOut]


class PlanChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: PlanStatus


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str = Field(min_length=1, max_length=2000)
    owner: str | None = Field(
        default=None, min_length=1, max_length=200, description="the plan's owner if not given"
    )
    due_at: datetime | None = Field(default=None, description="the plan's due date if not given")


class ActionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    done: bool | None = None
    owner: str | None = Field(default=None, min_length=1, max_length=200)
    due_at: datetime | None = None
