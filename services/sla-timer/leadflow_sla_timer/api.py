"""HTTP API of sla-timer: the SLA clocks of one lead."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends
from leadflow.auth import KEY_RESPONSES, require_scope
from leadflow.service import RuntimeDep

from leadflow_sla_timer import use_cases
from leadflow_sla_timer.schemas import LeadSlas

router = APIRouter(prefix="/v1", tags=["slas"], responses=KEY_RESPONSES)
ReportsRead = Depends(require_scope("reports:read"))


@router.get("/leads/{lead_id}/slas", response_model=LeadSlas, dependencies=[ReportsRead])
async def get_slas(lead_id: uuid.UUID, rt: RuntimeDep) -> LeadSlas:
    return await use_cases.lead_slas(rt, lead_id)
