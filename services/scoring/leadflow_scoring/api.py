"""HTTP API of scoring: a lead's current score and its explanation."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends
from leadflow.auth import KEY_RESPONSES, require_scope
from leadflow.service import RuntimeDep

from leadflow_scoring import use_cases
from leadflow_scoring.schemas import LeadScore

router = APIRouter(prefix="/v1", tags=["scores"], responses=KEY_RESPONSES)
# A score and its explanation say how a lead is judged, not who the person is.
ReportsRead = Depends(require_scope("reports:read"))


@router.get(
    "/leads/{lead_id}/score",
    response_model=LeadScore,
    responses={404: {"description": "the lead has not been scored"}},
    dependencies=[ReportsRead],
)
async def get_score(lead_id: uuid.UUID, rt: RuntimeDep) -> LeadScore:
    """The lead's score as of its last scoring and why; 404 until it was first scored."""
    return await use_cases.current_score(rt, lead_id)
