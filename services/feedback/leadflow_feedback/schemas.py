"""Request and response bodies of the feedback API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
