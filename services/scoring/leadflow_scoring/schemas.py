"""The bodies scoring's HTTP API answers with."""

from __future__ import annotations

import uuid
from datetime import datetime

from leadflow.contracts.events import BreakdownItem
from pydantic import BaseModel, Field


class LeadScore(BaseModel):
    """A lead's score as of its last scoring, why the MQL rule holds or fails, its latest
    promotion, when it is looked at again without an event, and its recycle, if any."""

    lead_id: uuid.UUID
    fit: int = Field(description="fit score, 0–100, after negative signals")
    engagement: float = Field(description="decayed engagement score")
    intent_tier: int
    is_mql: bool = Field(description="whether the MQL rule holds now")
    breakdown: list[BreakdownItem] = Field(description="the points each rule gave or took")
    reasons: list[str] = Field(description="why the MQL rule holds or fails, stable codes first")
    policy_version: str | None
    scored_at: datetime
    mql_at: datetime | None = Field(description="the latest promotion (first, or after a recycle)")
    mql_kind: str | None = Field(description='"mql" or "pql", of the latest promotion')
    next_review_at: datetime | None = Field(
        description="when the score changes without any event (decay, end of nurture)"
    )
    recycled_at: datetime | None
    recycle_reason: str | None
    nurture_until: datetime | None = Field(
        description="a recycled lead rests in nurture until then, or until promoted again"
    )
