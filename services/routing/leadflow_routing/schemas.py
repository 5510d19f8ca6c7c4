"""Request and response bodies of the routing API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from leadflow.webhooks import check_secret
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator


class TeamIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    calendar: dict[str, Any] | None = None


class TeamOut(TeamIn):
    id: uuid.UUID
    is_fallback: bool


class RepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    team_id: uuid.UUID | None = Field(default=None, description="default: the fallback team")
    capacity: int = Field(default=50, ge=0, le=10_000)
    weight: int = Field(default=1, ge=1, le=100)
    active: bool = True
    out_of_office: bool = False


class RepOut(RepIn):
    id: uuid.UUID
    team_id: uuid.UUID


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl
    event_types: list[str] = Field(default_factory=lambda: ["lead.routed"], min_length=1)
    team_id: uuid.UUID | None = None
    secret: str | None = Field(default=None, pattern=r"^whsec_[A-Za-z0-9+/=]{24,}$")

    @field_validator("secret")
    @classmethod
    def _signs(cls, secret: str | None) -> str | None:
        return None if secret is None else check_secret(secret)


class EndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    team_id: uuid.UUID | None
    enabled: bool
    secret: str | None = Field(default=None, description="shown only when created")


class AssignmentOut(BaseModel):
    lead_id: uuid.UUID
    assignment_id: uuid.UUID
    team_id: uuid.UUID
    rep_id: uuid.UUID | None
    reason: str
    trace: dict[str, Any]
    created_at: datetime


class DeliveryOut(BaseModel):
    id: uuid.UUID
    endpoint_id: uuid.UUID
    lead_id: uuid.UUID
    event_type: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None
