"""HTTP API of scoring: a lead's current score and its explanation."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from fastapi import APIRouter
from leadflow.errors import NotFound
from leadflow.service import RuntimeDep

from leadflow_scoring.models import lead_scores

router = APIRouter(prefix="/v1", tags=["scores"])


@router.get("/leads/{lead_id}/score")
async def get_score(lead_id: uuid.UUID, rt: RuntimeDep) -> dict:
    s = lead_scores.c
    async with rt.db.unit_of_work() as session:
        row = (
            await session.execute(
                sa.select(
                    s.fit,
                    s.engagement,
                    s.intent_tier,
                    s.is_mql,
                    s.breakdown,
                    s.reasons,
                    s.policy_version,
                    s.scored_at,
                    s.mql_at,
                    s.mql_kind,
                    s.next_review_at,
                    s.recycled_at,
                    s.recycle_reason,
                    s.nurture_until,
                ).where(s.lead_id == lead_id)
            )
        ).first()
    if row is None or row.scored_at is None:
        raise NotFound(f"lead {lead_id} has not been scored")
    return {"lead_id": lead_id, **row._asdict()}
