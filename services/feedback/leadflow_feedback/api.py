"""HTTP API of feedback: contact attempts and status changes from sales tools, the SLA and
calibration reports, the reverse-funnel planner, and the review pages (HTML)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from leadflow.auth import KEY_RESPONSES, Caller, Person, require_page, require_scope
from leadflow.service import Runtime, RuntimeDep
from leadflow.settings import DEV_API_KEY, ApiKeySpec

from leadflow_feedback import use_cases
from leadflow_feedback.domain import reports, revenue, roles
from leadflow_feedback.people.api import account_bar, signed_in
from leadflow_feedback.quarterly import use_cases as quarterly
from leadflow_feedback.schemas import (
    AttemptAccepted,
    AttemptIn,
    Calibration,
    Lifecycle,
    PlanIn,
    PlanOut,
    ReportDay,
    SlaReport,
    StatusAccepted,
    StatusIn,
    TeamQuery,
)

router = APIRouter(prefix="/v1", tags=["feedback"], responses=KEY_RESPONSES)
pages = APIRouter(tags=["review"], responses=KEY_RESPONSES)

SalesTool = Annotated[ApiKeySpec, Depends(require_scope("sales:write"))]
# Reports, lifecycles, the planner and the review pages: how leads fare, not who they are.
ReportsRead = Depends(require_scope("reports:read"))
# People open the pages signed in (a browser without a session is sent to /login); tools
# present a key, also as the password of HTTP Basic.
Viewer = Annotated[Caller | Person, Depends(require_page("reports:read", signed_in))]
IdempotencyKey = Annotated[str | None, Header(max_length=200)]
FromDay = Annotated[ReportDay | None, Query(alias="from")]
CSV = "text/csv"
# JSON by default; CSV with `format=csv` or `Accept: text/csv`.
REPORT_FORMATS: dict = {
    200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}}
}


async def _keyed(request: Request, key: ApiKeySpec, idempotency_key: str | None) -> use_cases.Keyed:
    return use_cases.Keyed(key.name, idempotency_key, request.url.path, await request.body())


@router.post("/leads/{lead_id}/attempts", status_code=202, response_model=AttemptAccepted)
async def post_attempt(
    lead_id: uuid.UUID,
    body: AttemptIn,
    request: Request,
    rt: RuntimeDep,
    key: SalesTool,
    idempotency_key: IdempotencyKey = None,
) -> AttemptAccepted | JSONResponse:
    """Record a contact attempt; the first one on a routed lead moves it to `working`."""
    return await use_cases.record_attempt(
        rt, lead_id, body, await _keyed(request, key, idempotency_key)
    )


@router.get("/leads/{lead_id}/lifecycle", dependencies=[ReportsRead])
async def get_lifecycle(lead_id: uuid.UUID, rt: RuntimeDep) -> Lifecycle:
    return await use_cases.lifecycle(rt, lead_id)


@router.post("/leads/{lead_id}/status", response_model=StatusAccepted)
async def post_status(
    lead_id: uuid.UUID,
    body: StatusIn,
    request: Request,
    rt: RuntimeDep,
    key: SalesTool,
    idempotency_key: IdempotencyKey = None,
) -> StatusAccepted | JSONResponse:
    """Move the lead along its lifecycle. An impossible transition is 409 with the `allowed`
    ones; returned / recycled / lost need a structured `reason` from the policy; `sql` needs
    3 of the 4 `qualification` areas; `sqo` needs the opportunity's value, stage and close date."""
    return await use_cases.change_status(
        rt, lead_id, body, await _keyed(request, key, idempotency_key)
    )


@router.get(
    "/reports/sla", response_model=SlaReport, responses=REPORT_FORMATS, dependencies=[ReportsRead]
)
async def get_sla_report(
    request: Request,
    rt: RuntimeDep,
    from_: FromDay = None,
    to: ReportDay | None = None,
    granularity: Literal["week", "month", "quarter"] = "week",
    team: TeamQuery = None,
    format_: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
    period: Annotated[
        Literal["week", "month", "quarter"] | None, Query(description="the same as granularity")
    ] = None,
) -> SlaReport | Response:
    """Both parties' commitments vs the policy, per week, month or quarter (`from`..`to`,
    inclusive dates, whole periods in the policy's time zone); JSON, or CSV with
    `Accept: text/csv`. Per quarter (by default this quarter and the three before it) each
    period also lists the policy versions published within it."""
    granularity = period or granularity
    if granularity == "quarter":
        report = await quarterly.quarter_report(rt, first=from_, last=to, team=team)
        if format_ == "csv" if format_ is not None else CSV in request.headers.get("accept", ""):
            return Response(quarterly.quarter_csv(report), media_type=f"{CSV}; charset=utf-8")
        return SlaReport.model_validate(report)
    report = await use_cases.sla_report(
        rt, first=from_, last=to, granularity=granularity, team=team
    )
    wants_csv = (
        format_ == "csv" if format_ is not None else CSV in request.headers.get("accept", "")
    )
    if wants_csv:
        text = reports.report_csv(report, revenue.revenue_csv_rows(report.get("revenue")))
        return Response(text, media_type=f"{CSV}; charset=utf-8")
    return SlaReport.model_validate(report)


@router.get(
    "/reports/calibration",
    response_model=Calibration,
    responses=REPORT_FORMATS,
    dependencies=[ReportsRead],
)
async def get_calibration(
    rt: RuntimeDep,
    from_: FromDay = None,
    to: ReportDay | None = None,
    score: Literal["fit", "engagement"] = "fit",
    step: Annotated[int, Query(ge=1, le=50)] = 5,
) -> Calibration:
    """For each MQL threshold: precision and recall of "score ≥ threshold" against SQL
    outcomes from sales, the recommended threshold and the MQL volume expected at it.
    The window (`from`..`to`, inclusive dates) defaults to the last 90 days."""
    calibrated = await use_cases.calibration(rt, first=from_, last=to, score=score, step=step)
    return Calibration.model_validate(calibrated)


@router.post(
    "/plan", response_model=PlanOut, response_model_exclude_unset=True, dependencies=[ReportsRead]
)
async def post_plan(body: PlanIn, rt: RuntimeDep) -> PlanOut:
    """Reverse funnel math: revenue goal → deals → SQO → SQL → MQL → visits (or leads) →
    activities → SDR-weeks, with a capacity verdict when `sales_capacity_mql` is given. With
    `rates: observed` the rates come from history (`window_days`, `channel`, `campaign`), each
    with the outcomes it rests on, and the plan warns where the goal needs better rates."""
    return PlanOut.model_validate(await use_cases.plan_of(rt, body))


def _reader(rt: Runtime, viewer: Caller | Person) -> use_cases.Reader:
    """A key reads the other services as itself; a person through feedback's pages key, within
    their role (in development the development key stands in when none is set)."""
    if isinstance(viewer, Caller):
        return use_cases.Reader(viewer.key)
    key = rt.settings.pages_api_key
    if key is None and rt.settings.env == "development":
        return use_cases.Reader(DEV_API_KEY, viewer.role)
    return use_cases.Reader(key.get_secret_value() if key else None, viewer.role)


@pages.get("/review", response_class=HTMLResponse)
async def review_page(
    request: Request,
    rt: RuntimeDep,
    viewer: Viewer,
    week: Annotated[ReportDay | None, Query(description="any day of the week to review")] = None,
    team: TeamQuery = None,
) -> HTMLResponse:
    """The weekly SLA review: this week against the plan for both parties, the exceptions
    (each linking to its lead's timeline), the calibration curve and the corrective plans."""
    page = await use_cases.review_page(
        rt, week=week, team=team, reader=_reader(rt, viewer),
        account=await account_bar(rt, request, viewer),
    )  # fmt: skip
    return HTMLResponse(page)


@pages.get("/review/leads/{lead_id}", response_class=HTMLResponse)
async def lead_timeline(
    lead_id: uuid.UUID, request: Request, rt: RuntimeDep, viewer: Viewer
) -> HTMLResponse:
    """Every event of one lead in order: created, scored (with the explanation), MQL, routed
    (with routing's decision trace), webhook deliveries, attempts, SLA events, statuses. A
    sales manager signed in sees only their teams' leads."""

    def may_see(team: str | None) -> bool:
        if isinstance(viewer, Caller):
            return True
        return roles.may_see_lead(viewer.role, viewer.teams, team)

    page = await use_cases.timeline_page(
        rt, lead_id, reader=_reader(rt, viewer), may_see=may_see,
        account=await account_bar(rt, request, viewer),
    )  # fmt: skip
    return HTMLResponse(page)
