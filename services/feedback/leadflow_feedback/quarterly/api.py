"""HTTP of the quarterly review page (the JSON and CSV are `GET /v1/reports/sla?period=quarter`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from leadflow.auth import KEY_RESPONSES
from leadflow.service import RuntimeDep

from leadflow_feedback.api import Viewer
from leadflow_feedback.people.api import account_bar
from leadflow_feedback.quarterly import use_cases
from leadflow_feedback.schemas import ReportDay, TeamQuery

pages = APIRouter(tags=["review"], responses=KEY_RESPONSES)


@pages.get("/review/quarter", response_class=HTMLResponse)
async def quarter_review_page(
    request: Request,
    rt: RuntimeDep,
    viewer: Viewer,
    quarter: Annotated[ReportDay | None, Query(description="any day of the quarter")] = None,
    team: TeamQuery = None,
) -> HTMLResponse:
    """The quarterly review: both parties' commitments against their targets for this quarter
    and the three before it, and the policy versions published within each quarter."""
    page = await use_cases.quarter_page(
        rt, quarter=quarter, team=team, account=await account_bar(rt, request, viewer)
    )
    return HTMLResponse(page)
