"""HTTP API of feedback: contact attempts and status changes from sales tools, the SLA and
calibration reports, and the reverse-funnel planner."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from leadflow import idempotency as idem
from leadflow import metrics
from leadflow.auth import require_scope
from leadflow.contracts.events import LeadContactAttempt
from leadflow.errors import Conflict, NotFound, Unprocessable
from leadflow.service import RuntimeDep
from leadflow.settings import ApiKeySpec
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback import planning, reports, timeline
from leadflow_feedback.changes import record_change
from leadflow_feedback.lifecycle import (
    ChangeInvalid,
    StatusChange,
    TransitionRefused,
    after_contact_attempt,
    allowed_next,
    check_change,
)
from leadflow_feedback.models import attempts, idempotency, leads, status_history
from leadflow_feedback.schemas import (
    AttemptAccepted,
    AttemptIn,
    PlanIn,
    ReportDay,
    StatusAccepted,
    StatusIn,
    TeamQuery,
)

router = APIRouter(prefix="/v1", tags=["feedback"])


class NotYetKnown(NotFound):
    """A sales tool may report on a lead within moments of its webhook, before feedback has read
    `lead.routed`: the answer says so and when to try again, so the report is not dropped."""

    def __init__(self, lead_id: uuid.UUID) -> None:
        super().__init__(
            f"lead {lead_id} is not known to feedback: not an MQL, or routed moments ago and "
            "not yet read here; retry after a few seconds",
            headers={"Retry-After": "5"},
            field="lead_id",
        )
SalesTool = Annotated[ApiKeySpec, Depends(require_scope("sales:write"))]
IdempotencyKey = Annotated[str | None, Header(max_length=200)]
CSV = "text/csv"


@router.post("/leads/{lead_id}/attempts", status_code=202, response_model=AttemptAccepted)
async def post_attempt(
    lead_id: uuid.UUID,
    body: AttemptIn,
    rt: RuntimeDep,
    key: SalesTool,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> AttemptAccepted:
    """Record a contact attempt; the first one on a routed lead moves it to `working`."""
    scoped_key = f"{key.name}:{idempotency_key}" if idempotency_key else None
    async with rt.db.unit_of_work() as session:
        lead = (
            await session.execute(
                sa.select(leads.c.status, leads.c.channel)
                .where(leads.c.lead_id == lead_id)
                .with_for_update()
            )
        ).first()
        if lead is None:
            raise NotYetKnown(lead_id)
        if scoped_key:
            earlier = await session.scalar(
                sa.select(attempts.c.id).where(attempts.c.idempotency_key == scoped_key)
            )
            if earlier is not None:
                return AttemptAccepted(
                    attempt_id=earlier,
                    lead_id=lead_id,
                    event_id=None,
                    status=lead.status,
                    duplicate=True,
                )
        attempt_id = uuid.uuid4()
        occurred_at = body.occurred_at or rt.clock.now()
        await session.execute(
            sa.insert(attempts).values(
                id=attempt_id,
                lead_id=lead_id,
                channel=body.channel,
                occurred_at=occurred_at,
                rep_id=body.rep_id,
                outcome=body.outcome,
                idempotency_key=scoped_key,
            )
        )
        status = after_contact_attempt(lead.status)
        if status != lead.status:
            await session.execute(
                sa.update(leads)
                .where(leads.c.lead_id == lead_id)
                .values(status=status, updated_at=occurred_at)
            )
            await session.execute(
                sa.insert(status_history).values(
                    lead_id=lead_id, from_status=lead.status, status=status, changed_at=occurred_at
                )
            )
        event = await rt.outbox.emit(
            session,
            LeadContactAttempt(
                lead_id=lead_id,
                attempt_id=attempt_id,
                channel=body.channel,
                occurred_at=occurred_at,
                rep_id=body.rep_id,
                outcome=body.outcome,
            ),
        )
        await timeline.record(session, event)
    metrics.contact_attempts.labels(body.channel).inc()
    return AttemptAccepted(attempt_id=attempt_id, lead_id=lead_id, event_id=event.id, status=status)


@router.get("/leads/{lead_id}/lifecycle")
async def get_lifecycle(lead_id: uuid.UUID, rt: RuntimeDep) -> dict:
    async with rt.db.unit_of_work() as session:
        lead = (await session.execute(sa.select(leads).where(leads.c.lead_id == lead_id))).first()
        if lead is None:
            raise NotFound(f"lead {lead_id} is not known to feedback")
        history = (
            await session.execute(
                sa.select(
                    status_history.c.from_status,
                    status_history.c.status,
                    status_history.c.reason,
                    status_history.c.changed_at,
                )
                .where(status_history.c.lead_id == lead_id)
                .order_by(status_history.c.id)
            )
        ).all()
        n_attempts = await session.scalar(
            sa.select(sa.func.count()).select_from(attempts).where(attempts.c.lead_id == lead_id)
        )
    return {
        "lead_id": lead_id,
        "status": lead.status,
        "channel": lead.channel,
        "team": lead.team,
        "attempts": n_attempts,
        "history": [h._asdict() for h in history],
    }


@router.post("/leads/{lead_id}/status", response_model=StatusAccepted)
async def post_status(
    lead_id: uuid.UUID,
    body: StatusIn,
    request: Request,
    rt: RuntimeDep,
    key: SalesTool,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Move the lead along its lifecycle. An impossible transition is 409 with the `allowed`
    ones; returned / recycled / lost need a structured `reason` from the policy; `sql` needs
    3 of the 4 `qualification` areas; `sqo` needs the opportunity's value, stage and close date."""
    async with rt.db.unit_of_work() as session:
        if idempotency_key:
            replay = await idem.claim(
                session,
                idempotency,
                api_key=key.name,
                key=idempotency_key,
                path=request.url.path,
                body=await request.body(),
            )
            if replay is not None:
                return replay
        lead = (
            await session.execute(
                sa.select(leads.c.status).where(leads.c.lead_id == lead_id).with_for_update()
            )
        ).first()
        if lead is None:
            raise NotYetKnown(lead_id)
        qualification = (
            body.qualification.model_dump(exclude_none=True) if body.qualification else {}
        )
        opportunity = body.opportunity.model_dump(exclude_none=True) if body.opportunity else {}
        change = StatusChange(body.status, body.reason, qualification, opportunity)
        try:
            check_change(lead.status, change, rt.policy.reasons)
        except TransitionRefused as exc:
            raise Conflict(
                str(exc), field="status", current=exc.current, allowed=exc.allowed
            ) from None
        except ChangeInvalid as exc:
            raise Unprocessable(exc.message, field=exc.field, **exc.extra) from None
        changed_at = body.occurred_at or rt.clock.now()
        event, nurture_until = await record_change(
            rt,
            session,
            lead_id,
            from_status=lead.status,
            status=body.status,
            reason=body.reason,
            changed_at=changed_at,
            rep_id=body.rep_id,
            qualification=qualification,
            opportunity=_json(opportunity),
        )
        content = StatusAccepted(
            lead_id=lead_id,
            event_id=event.id,
            from_status=lead.status,
            status=body.status,
            reason=body.reason,
            nurture_until=nurture_until,
            allowed_next=allowed_next(body.status, sales_only=True),
        ).model_dump(mode="json")
        if idempotency_key:
            await idem.record(
                session,
                idempotency,
                api_key=key.name,
                key=idempotency_key,
                status=200,
                response=content,
            )
    return JSONResponse(content)


def _json(values: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in values.items()}


# --- reports -------------------------------------------------------------------------------


async def load_facts(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    team: str | None = None,
    scored_too: bool = False,
) -> list[reports.LeadFacts]:
    """The leads promoted to MQL in [start, end) (and, for calibration, the leads scored in
    it), with their attempts and status history."""
    in_window = leads.c.mql_at.between(start, end)
    if scored_too:
        in_window = in_window | leads.c.scored_at.between(start, end)
    query = sa.select(leads).where(in_window)
    if team is not None:
        query = query.where(leads.c.team == team)
    rows = (await session.execute(query)).mappings().all()
    facts = {
        row["lead_id"]: reports.LeadFacts(
            **{k: v for k, v in row.items() if k in reports.LeadFacts.__dataclass_fields__}
        )
        for row in rows
    }
    if not facts:
        return []
    ids = list(facts)
    tried = await session.execute(
        sa.select(attempts.c.lead_id, sa.func.count(), sa.func.min(attempts.c.occurred_at))
        .where(attempts.c.lead_id.in_(ids))
        .group_by(attempts.c.lead_id)
    )
    for lead_id, count, first in tried:
        facts[lead_id].attempts = count
        facts[lead_id].first_attempt_at = first
    history = await session.execute(
        sa.select(
            status_history.c.lead_id,
            status_history.c.status,
            status_history.c.reason,
            status_history.c.changed_at,
        )
        .where(status_history.c.lead_id.in_(ids))
        .order_by(status_history.c.id)
    )
    for lead_id, status, reason, changed_at in history:
        facts[lead_id].history.append(reports.StatusStep(status, reason, changed_at))
    return list(facts.values())


def _wants_csv(request: Request, format_: str | None) -> bool:
    if format_ is not None:
        return format_ == "csv"
    return CSV in request.headers.get("accept", "")


# JSON by default; CSV with `format=csv` or `Accept: text/csv`.
REPORT_FORMATS: dict = {
    200: {"content": {"application/json": {}, "text/csv": {"schema": {"type": "string"}}}}
}


@router.get("/reports/sla", responses=REPORT_FORMATS)
async def get_sla_report(
    request: Request,
    rt: RuntimeDep,
    from_: Annotated[ReportDay | None, Query(alias="from")] = None,
    to: ReportDay | None = None,
    granularity: Literal["week", "month"] = "week",
    team: TeamQuery = None,
    format_: Annotated[Literal["json", "csv"] | None, Query(alias="format")] = None,
) -> Response:
    """Both parties' commitments vs the policy, per week or month (`from`..`to`, inclusive
    dates, whole periods in the policy's time zone); JSON, or CSV with `Accept: text/csv`."""
    now = rt.clock.now()
    policy = rt.policy
    last = to or now.astimezone(reports.ZoneInfo(policy.calendar.time_zone)).date()
    first = from_ or (
        last - timedelta(weeks=4) if granularity == "week" else last - timedelta(days=92)
    )
    try:
        start, end = reports.report_window(first, last, granularity, policy)
    except reports.ReportInputError as exc:
        raise Unprocessable(exc.message, field=exc.field) from None
    async with rt.db.unit_of_work() as session:
        facts = await load_facts(session, start=start, end=end, team=team)
    report = reports.sla_report(
        facts, policy, first=first, last=last, granularity=granularity, now=now, team=team
    )
    if _wants_csv(request, format_):
        return Response(reports.report_csv(report), media_type=f"{CSV}; charset=utf-8")
    return JSONResponse(report)


@router.get("/reports/calibration", responses=REPORT_FORMATS)
async def get_calibration(
    rt: RuntimeDep,
    from_: Annotated[ReportDay | None, Query(alias="from")] = None,
    to: ReportDay | None = None,
    score: Literal["fit", "engagement"] = "fit",
    step: Annotated[int, Query(ge=1, le=50)] = 5,
) -> JSONResponse:
    """For each MQL threshold: precision and recall of "score ≥ threshold" against SQL
    outcomes from sales, the recommended threshold and the MQL volume expected at it.
    The window (`from`..`to`, inclusive dates) defaults to the last 90 days."""
    now = rt.clock.now()
    policy = rt.policy
    tz = reports.ZoneInfo(policy.calendar.time_zone)
    last = to or now.astimezone(tz).date()
    first = from_ or last - timedelta(days=89)
    if last < first:
        raise Unprocessable("`to` must not be before `from`", field="to")
    start = datetime(first.year, first.month, first.day, tzinfo=tz)
    end_day = last + timedelta(days=1)
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz)
    async with rt.db.unit_of_work() as session:
        facts = await load_facts(session, start=start, end=end, scored_too=True)
    return JSONResponse(
        reports.calibration(facts, policy, start=start, end=end, score=score, step=step)
    )


# --- planning ------------------------------------------------------------------------------


@router.post("/plan")
async def post_plan(body: PlanIn) -> JSONResponse:
    """Reverse funnel math: revenue goal → deals → SQO → SQL → MQL → visits → activities →
    SDR-weeks, with a capacity verdict when `sales_capacity_mql` is given."""
    try:
        result = planning.plan(planning.PlanInput(**body.model_dump()))
    except planning.PlanInputError as exc:
        raise Unprocessable(exc.message, field=exc.field) from None
    return JSONResponse(result.as_dict())
