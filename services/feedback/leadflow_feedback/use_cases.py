"""What feedback does: apply a batch of the other services' events to its read model of each lead,
record what sales tools report (contact attempts, status changes: over the API, or reported back
from a CRM through ingest as `lead.sales_reported`, by the same use cases), and build the
reports, the plan and the review pages over the store.

A poll batch is handled as a set: each event says what it means (a timeline row and a `Fact`);
`apply_events` then applies the whole batch with a fixed number of statements whatever its
size. It locks the touched leads and reads them (with what `settle` needs) once, replays the
facts in arrival order in memory — each promotion, routing or exhausted cadence settling its
lead right away, exactly as if the events had come one by one — and writes the timeline rows,
the status history and the changed leads with one statement each (a cadence's consequence,
rare, is recorded on its own).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi.responses import JSONResponse
from leadflow import idempotency as idem
from leadflow import metrics
from leadflow.consumer import Received
from leadflow.contracts.erasure import forget_events
from leadflow.contracts.events import (
    CloudEvent,
    LeadContactAttempt,
    LeadErased,
    LeadSalesReported,
    LeadStatusChanged,
    Payload,
    TeamDirectory,
)
from leadflow.contracts.slas import UNREACHABLE
from leadflow.errors import Conflict, NotFound, ProblemError, Unprocessable
from leadflow.service import Runtime
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback import store
from leadflow_feedback.domain import planning, reports, revenue, review, roles
from leadflow_feedback.domain.facts import Fact, fact_of, settle
from leadflow_feedback.domain.lifecycle import (
    ChangeInvalid,
    StatusChange,
    TransitionRefused,
    after_contact_attempt,
    allowed_next,
    can_move,
    check_change,
    nurture_end,
)
from leadflow_feedback.domain.observed_rates import observed_rates
from leadflow_feedback.domain.sales_capacity import SalesCapacity, calendar_week, sales_capacity
from leadflow_feedback.domain.timeline import row_of
from leadflow_feedback.models import idempotency
from leadflow_feedback.plans import use_cases as corrective_plans
from leadflow_feedback.schemas import (
    AttemptAccepted,
    AttemptIn,
    Lifecycle,
    PlanIn,
    StatusAccepted,
    StatusHistoryEntry,
    StatusIn,
)
from leadflow_feedback.success import use_cases as success

log = logging.getLogger(__name__)
TREND_WEEKS = 4
ROUTING_TIMEOUT = 2.0
CALIBRATION_DAYS = 90


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


# --- the other services' events ------------------------------------------------------------


async def apply_events(rt: Runtime, session: AsyncSession, received: list[Received]) -> None:
    """Apply a unit of work's events in arrival order: every event of a lead lands on its
    timeline in the same transaction as its effects.

    The timeline and status history get their rows in the order handling the events one by
    one would give them, a cadence's consequence (`record_change`, which writes rows of its
    own) between the rows before and after its event; the changed leads are written last."""
    checked = [
        (row_of(item.event, item.payload), fact_of(rt.policy, item.event, item.payload))
        for item in received
    ]
    facts = [fact for _, fact in checked if fact is not None]
    known = (
        await store.lock_leads(session, facts, min(_updated_at(fact) for fact in facts))
        if facts
        else {}
    )
    entries: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []

    async def flush() -> None:
        nonlocal entries, history
        await store.add_to_timeline(session, entries)
        await store.add_history(session, history)
        entries, history = [], []

    for entry, fact in checked:
        if entry is not None:
            entries.append(entry)
        if fact is None:
            continue
        lead = known[fact.lead_id]
        fact.apply(lead.lead)
        for step in settle(lead) if fact.settles else ():
            if not step.unreachable:
                history.append(
                    {"lead_id": step.lead_id, "from_status": step.from_status,
                     "status": step.status, "changed_at": step.at}
                )  # fmt: skip
                continue
            await flush()
            for from_status, status in ((step.from_status, UNREACHABLE), (UNREACHABLE, "recycled")):
                await record_change(
                    rt, session, step.lead_id, from_status=from_status, status=status,
                    reason=UNREACHABLE, changed_at=step.at,
                )  # fmt: skip
    await flush()
    # written last: a change recorded above wrote the status it made, the lead holds the last
    await store.write_leads(session, known)
    erased = [item.payload.lead_id for item in received if isinstance(item.payload, LeadErased)]
    if erased:
        # what feedback keeps of an erased lead beyond its read model: customer success's
        # texts, and its own published events (the hand-off travelled in lead.status_changed)
        await success.forget(session, erased)
        await forget_events(session, rt.outbox.table, erased)


def _updated_at(fact: Fact) -> datetime:
    return fact.values["updated_at"]


async def add_to_timeline(session: AsyncSession, event: CloudEvent, payload: Payload) -> None:
    """Add an event feedback emitted to its lead's timeline (once per event id)."""
    row = row_of(event, payload)
    if row is not None:
        await store.add_to_timeline(session, [row])


async def record_change(
    rt: Runtime,
    session: AsyncSession,
    lead_id: uuid.UUID,
    *,
    from_status: str | None,
    status: str,
    reason: str | None,
    changed_at: datetime,
    rep_id: uuid.UUID | None = None,
    qualification: dict[str, Any] | None = None,
    opportunity: dict[str, Any] | None = None,
    handoff: dict[str, Any] | None = None,
) -> tuple[CloudEvent, datetime | None]:
    """Write an already-checked status change: the read model, its history row and
    `lead.status_changed`, in one unit of work. Returns the event and the end of nurture."""
    nurture_until = nurture_end(rt.policy, status, reason, changed_at)
    details = {
        k: v
        for k, v in {
            "qualification": qualification or None,
            "opportunity": opportunity or None,
            "handoff": handoff or None,
            "rep_id": str(rep_id) if rep_id else None,
            "nurture_until": nurture_until.isoformat() if nurture_until else None,
        }.items()
        if v is not None
    }
    await store.write_status(
        session,
        lead_id,
        from_status=from_status,
        status=status,
        reason=reason,
        details=details or None,
        changed_at=changed_at,
    )
    changed = LeadStatusChanged(
        lead_id=lead_id,
        from_status=from_status,
        status=status,
        reason=reason,
        changed_at=changed_at,
        rep_id=rep_id,
        nurture_until=nurture_until,
        qualification=qualification or None,
        opportunity=opportunity or None,
        handoff=handoff or None,
    )
    event = await rt.outbox.emit(session, changed, policy_version=rt.policy.version)
    await add_to_timeline(session, event, changed)
    return event, nurture_until


# --- what sales tools report ---------------------------------------------------------------


@dataclass(frozen=True)
class Keyed:
    """A write and its `Idempotency-Key` (if it came with one): whose key it is and the request
    it came with, which a replay must match."""

    api_key: str
    key: str | None
    path: str
    body: bytes

    async def claim(self, session: AsyncSession) -> JSONResponse | None:
        """None: do the work (and `record` its answer). Otherwise the first answer to replay."""
        if not self.key:
            return None
        return await idem.claim(
            session, idempotency, api_key=self.api_key, key=self.key, path=self.path,
            body=self.body,
        )  # fmt: skip

    async def record(self, session: AsyncSession, status: int, answer: Any) -> None:
        if self.key:
            await idem.record(
                session, idempotency, api_key=self.api_key, key=self.key, status=status,
                response=answer,
            )  # fmt: skip


async def record_attempt(
    rt: Runtime, lead_id: uuid.UUID, attempt: AttemptIn, keyed: Keyed
) -> AttemptAccepted | JSONResponse:
    """Record a contact attempt; the first one on a routed lead moves it to `working`. A replay
    of the same `Idempotency-Key` answers as the first time and records nothing."""
    async with rt.db.unit_of_work() as session:
        replay = await keyed.claim(session)
        if replay is not None:
            return replay
        current = await store.lock_lead(session, lead_id)
        if current is None:
            raise NotYetKnown(lead_id)
        accepted = await attempt_on(rt, session, lead_id, current, attempt)
        await keyed.record(session, 202, accepted.model_dump(mode="json"))
    return accepted


async def attempt_on(
    rt: Runtime, session: AsyncSession, lead_id: uuid.UUID, current: str, attempt: AttemptIn
) -> AttemptAccepted:
    """Record a contact attempt on a lead in status `current` (its row locked): the attempt,
    `working` after the first one on a routed lead, and `lead.contact_attempt`."""
    attempt_id = uuid.uuid4()
    occurred_at = attempt.occurred_at or rt.clock.now()
    await store.add_attempt(
        session,
        attempt_id=attempt_id,
        lead_id=lead_id,
        channel=attempt.channel,
        occurred_at=occurred_at,
        rep_id=attempt.rep_id,
        outcome=attempt.outcome,
    )
    status = after_contact_attempt(current)
    if status != current:
        await store.write_status(
            session, lead_id, from_status=current, status=status, changed_at=occurred_at,
            set_reason=False,
        )  # fmt: skip
    attempted = LeadContactAttempt(
        lead_id=lead_id,
        attempt_id=attempt_id,
        channel=attempt.channel,
        occurred_at=occurred_at,
        rep_id=attempt.rep_id,
        outcome=attempt.outcome,
    )
    event = await rt.outbox.emit(session, attempted)
    await add_to_timeline(session, event, attempted)
    metrics.count_on_commit(session, metrics.contact_attempts.labels(attempt.channel))
    return AttemptAccepted(attempt_id=attempt_id, lead_id=lead_id, event_id=event.id, status=status)


async def change_status(
    rt: Runtime, lead_id: uuid.UUID, change: StatusIn, keyed: Keyed
) -> StatusAccepted | JSONResponse:
    """Move the lead along its lifecycle, as sales reports it; an impossible transition is a
    `Conflict` naming the allowed ones, a change missing its data `Unprocessable`."""
    async with rt.db.unit_of_work() as session:
        replay = await keyed.claim(session)
        if replay is not None:
            return replay
        current = await store.lock_lead(session, lead_id)
        if current is None:
            raise NotYetKnown(lead_id)
        accepted = await status_on(rt, session, lead_id, current, change)
        await keyed.record(session, 200, accepted.model_dump(mode="json"))
    return accepted


async def status_on(
    rt: Runtime, session: AsyncSession, lead_id: uuid.UUID, current: str, change: StatusIn
) -> StatusAccepted:
    """Move a lead in status `current` (its row locked) to the status sales reports, checked by
    the lifecycle first: a refused change raises (`Conflict`, `Unprocessable`) before anything
    is written."""
    qualification = (
        change.qualification.model_dump(exclude_none=True) if change.qualification else {}
    )
    opportunity = change.opportunity.model_dump(exclude_none=True) if change.opportunity else {}
    handoff = change.handoff.model_dump(exclude_none=True) if change.handoff else {}
    try:
        check_change(
            current,
            StatusChange(change.status, change.reason, qualification, opportunity, handoff),
            rt.policy.reasons,
        )
    except TransitionRefused as exc:
        raise Conflict(str(exc), field="status", current=exc.current, allowed=exc.allowed) from None
    except ChangeInvalid as exc:
        raise Unprocessable(exc.message, field=exc.field, **exc.extra) from None
    changed_at = change.occurred_at or rt.clock.now()
    event, nurture_until = await record_change(
        rt,
        session,
        lead_id,
        from_status=current,
        status=change.status,
        reason=change.reason,
        changed_at=changed_at,
        rep_id=change.rep_id,
        qualification=qualification,
        opportunity=_json(opportunity),
        handoff=handoff,
    )
    await success.after_status(rt, session, lead_id, change.status, changed_at, handoff)
    return StatusAccepted(
        lead_id=lead_id,
        event_id=event.id,
        from_status=current,
        status=change.status,
        reason=change.reason,
        nurture_until=nurture_until,
        allowed_next=allowed_next(change.status, sales_only=True),
    )


# --- what CRMs report back (through ingest) ------------------------------------------------


# What the planner keeps of a rep in routing's directory (no name, no e-mail).
PLANNED_REP = {"id", "capacity", "timezone", "working_hours"}


async def keep_directories(session: AsyncSession, received: list[Received]) -> None:
    """Keep each team's reps as routing published them, the latest copy per team: for each rep
    only what the planner's sales capacity needs."""
    latest: dict[uuid.UUID, TeamDirectory] = {}
    for item in received:
        payload: TeamDirectory = item.payload
        kept = latest.get(payload.team_id)
        if kept is None or kept.changed_at < payload.changed_at:
            latest[payload.team_id] = payload
    await store.save_directories(
        session,
        [
            {
                "team_id": d.team_id,
                "team": d.team,
                "reps": [r.model_dump(mode="json", include=PLANNED_REP) for r in d.reps],
                "changed_at": d.changed_at,
            }
            for d in latest.values()
        ],
    )


async def apply_sales_reports(rt: Runtime, session: AsyncSession, received: list[Received]) -> None:
    """Apply what sales tools reported back, in arrival order, with the same use cases as the
    API's attempts and status changes. Each report lands on its lead's timeline, saying whether
    it was applied; one the lifecycle refuses (or about a lead feedback does not know) is
    recorded there and logged, never lost and never a failure of the batch."""
    for item in received:
        match item.payload:
            case LeadSalesReported() as report:
                refused = await _apply_sales_report(rt, session, report)
                row = row_of(item.event, report)
                if row is None:
                    continue
                row["details"]["applied"] = refused is None
                if refused is not None:
                    row["details"]["refused"] = refused
                    log.warning(
                        "a sales report was not applied",
                        extra={"event_id": str(item.event.id), "system": report.system,
                               "kind": report.kind, "refused": refused},
                    )  # fmt: skip
                await store.add_to_timeline(session, [row])


async def _apply_sales_report(
    rt: Runtime, session: AsyncSession, report: LeadSalesReported
) -> str | None:
    """Apply one report; why it was not applied, or None."""
    if report.kind == "unmapped":
        return (
            f"unmapped: the connectors file does not list {report.value!r} of {report.field} "
            f"({report.system})"
        )
    current = await store.lock_lead(session, report.lead_id)
    if current is None:
        return "the lead is not known to feedback (not yet read here, or never an MQL)"
    if report.kind == "attempt":
        attempt = AttemptIn(
            channel=report.channel or "call", occurred_at=report.occurred_at,
            outcome=report.outcome[:200] if report.outcome else None,
        )  # fmt: skip
        await attempt_on(rt, session, report.lead_id, current, attempt)
        return None
    if report.status == current:
        return f"the lead is already {current}"
    if report.status == "working":
        # what a first contact attempt does otherwise: sales reports it is working the lead
        if not can_move(current, "working"):
            return str(TransitionRefused(current, "working"))
        await record_change(
            rt, session, report.lead_id, from_status=current, status="working", reason=None,
            changed_at=report.occurred_at,
        )  # fmt: skip
        return None
    try:
        change = StatusIn(
            status=report.status, reason=report.reason, occurred_at=report.occurred_at
        )
        await status_on(rt, session, report.lead_id, current, change)
    except ValidationError as exc:
        return f"not a status sales may set: {exc.errors()[0]['msg']}"
    except ProblemError as exc:
        return exc.detail
    return None


def _json(values: dict) -> dict:
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in values.items()}


async def lifecycle(rt: Runtime, lead_id: uuid.UUID) -> Lifecycle:
    """The lead's status, contact attempts and status history in feedback."""
    async with rt.db.unit_of_work() as session:
        found = await store.lifecycle_of(session, lead_id)
    if found is None:
        raise NotFound(f"lead {lead_id} is not known to feedback")
    lead, history, n_attempts = found
    return Lifecycle(
        lead_id=lead_id,
        status=lead.status,
        channel=lead.channel,
        team=lead.team,
        attempts=n_attempts,
        history=[StatusHistoryEntry(**h._asdict()) for h in history],
    )


# --- reports and planning ------------------------------------------------------------------


async def sla_report(
    rt: Runtime, *, first: date | None, last: date | None, granularity: str, team: str | None
) -> dict[str, Any]:
    """Both parties' commitments vs the policy over `first`..`last` (inclusive dates, whole
    periods in the policy's time zone); by default the last four weeks or three months."""
    now = rt.clock.now()
    policy = rt.policy
    last = last or now.astimezone(ZoneInfo(policy.calendar.time_zone)).date()
    first = first or (
        last - timedelta(weeks=4) if granularity == "week" else last - timedelta(days=92)
    )
    try:
        start, end = reports.report_window(first, last, granularity, policy)
    except reports.ReportInputError as exc:
        raise Unprocessable(exc.message, field=exc.field) from None
    async with rt.db.unit_of_work() as session:
        facts = await store.report_facts(session, start=start, end=end, team=team)
        deals = await store.revenue_facts(session, start=start, end=end, team=team)
    report = reports.sla_report(
        facts, policy, first=first, last=last, granularity=granularity, now=now, team=team
    )
    report["revenue"] = revenue.revenue_report(
        deals, policy, first=first, last=last, granularity=granularity
    )
    return report


async def calibration(
    rt: Runtime, *, first: date | None, last: date | None, score: str, step: int
) -> dict[str, Any]:
    """The MQL threshold's calibration over `first`..`last` (inclusive dates; by default the
    last 90 days)."""
    policy = rt.policy
    tz = ZoneInfo(policy.calendar.time_zone)
    last = last or rt.clock.now().astimezone(tz).date()
    first = first or last - timedelta(days=CALIBRATION_DAYS - 1)
    if last < first:
        raise Unprocessable("`to` must not be before `from`", field="to")
    start = datetime(first.year, first.month, first.day, tzinfo=tz)
    end_day = last + timedelta(days=1)
    end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz)
    async with rt.db.unit_of_work() as session:
        facts = await store.report_facts(session, start=start, end=end, scored_too=True)
    return reports.calibration(facts, policy, start=start, end=end, score=score, step=step)


def plan(inputs: planning.PlanInput) -> dict[str, Any]:
    """The reverse funnel of a revenue goal; a bad input is `Unprocessable`, naming it."""
    try:
        return planning.plan(inputs).as_dict()
    except planning.PlanInputError as exc:
        raise Unprocessable(exc.message, field=exc.field) from None


HISTORY_ONLY = ("window_days", "channel", "campaign")
CAPACITY_ONLY = ("capacity_weeks", "team")


async def plan_of(rt: Runtime, body: PlanIn) -> dict[str, Any]:
    """The reverse funnel on the rates typed in, or (`rates: observed`) on what Leadflow
    observed over the window, read from feedback's own read model; sales capacity typed in,
    or (`sales_capacity: routing`) counted from the reps routing published."""
    inputs = planning.PlanInput(
        **body.model_dump(exclude={"rates", "sales_capacity", *HISTORY_ONLY, *CAPACITY_ONLY})
    )
    extra: dict[str, Any] = {}
    if body.sales_capacity == "routing":
        capacity = await capacity_from_routing(rt, body)
        inputs = replace(inputs, sales_capacity_mql=capacity.mql)
        extra["sales_capacity"] = capacity.as_dict()
    else:
        for name in CAPACITY_ONLY:
            if getattr(body, name) is not None:
                raise Unprocessable(
                    f"{name} applies with `sales_capacity: routing` only", field=name
                )
    if body.rates == "typed":
        for name in HISTORY_ONLY:
            if getattr(body, name) is not None:
                raise Unprocessable(f"{name} applies with `rates: observed` only", field=name)
        return {**plan(inputs), **extra}
    return {**await _plan_from_history(rt, body, inputs), **extra}


async def capacity_from_routing(rt: Runtime, body: PlanIn) -> SalesCapacity:
    """The MQLs the active reps of routing's directory (one team's, when named) can work over
    `capacity_weeks` (docs/domain.md "Plans from history")."""
    if body.sales_capacity_mql is not None:
        raise Unprocessable(
            "give either sales_capacity_mql or `sales_capacity: routing`, not both",
            field="sales_capacity_mql",
        )
    if body.capacity_weeks is None:
        raise Unprocessable(
            "capacity_weeks is required with `sales_capacity: routing` (the weeks the plan's MQLs "
            "are worked in)",
            field="capacity_weeks",
        )
    async with rt.db.unit_of_work() as session:
        teams = await store.directories(session, body.team)
    if not any(d["reps"] for d in teams):
        which = f"team {body.team}" if body.team else "any team"
        raise Unprocessable(
            f"routing has published no active reps of {which} to feedback", field="team"
        )
    policy = rt.policy
    cadences = policy.slas.channels
    cadence = (cadences.get(body.channel) if body.channel else None) or cadences["inbound"]
    calendar = policy.calendar
    return sales_capacity(
        teams,
        weeks=planning.exact(body.capacity_weeks),
        full_week=calendar_week(len(calendar.working_days), calendar.opens_at, calendar.closes_at),
        activities_per_week=planning.exact(body.sdr_activities_per_week),
        touches_per_mql=planning.exact(body.touches_per_mql),
        cadence_days=Fraction(int(cadence.cadence.within.total_seconds()), 86_400),
    )


async def _plan_from_history(
    rt: Runtime, body: PlanIn, inputs: planning.PlanInput
) -> dict[str, Any]:
    rules = rt.policy.planning
    days = body.window_days or rules.history_window_days
    end = rt.clock.now()
    start = end - timedelta(days=days)
    async with rt.db.unit_of_work() as session:
        arrived = await store.arrivals(session, start=start, end=end)
        mqls = await store.report_facts(session, start=start, end=end)
    seen = observed_rates(arrived, mqls, channel=body.channel, campaign=body.campaign)
    of = "".join(
        f" of {kind} {value}"
        for kind, value in (("channel", body.channel), ("campaign", body.campaign))
        if value is not None
    )
    try:
        planned = planning.plan_from_history(
            inputs, seen, min_outcomes=rules.min_outcomes, history=f"the last {days} days{of}"
        )
    except planning.PlanInputError as exc:
        raise Unprocessable(exc.message, field=exc.field) from None
    history = {
        "window_days": days,
        "start": start,
        "end": end,
        "channel": body.channel,
        "campaign": body.campaign,
        "min_outcomes": rules.min_outcomes,
    }
    return {**planned.as_dict(), "history": history}


# --- the review pages ----------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    """Whom a page reads routing and notify for: a key as it was presented (the other service
    decides what it shows), or a signed-in person, read with feedback's pages key
    (`LEADFLOW_PAGES_API_KEY`) only where the person's role holds the read's scope."""

    key: str | None
    role: str | None = None  # a person's role; None: the key's own scopes decide

    def refuses(self, scope: str) -> str | None:
        """Why this reader may not make a read needing `scope`, or None."""
        if self.role is not None and not roles.allows(self.role, scope):
            return f"the role {self.role} does not show it"
        if self.key is None:
            return "LEADFLOW_PAGES_API_KEY is not set, so pages read nothing there for people"
        return None


# The scope each read of another service needs there (its OpenAPI document declares it).
READ_SCOPES = {"/v1/reps": "config:read", "/v1/deliveries": "config:read"}


async def from_service(
    rt: Runtime, name: str, path: str, reader: Reader, params: dict[str, str] | None = None
) -> tuple[Any, str | None]:
    """GET one of routing's or notify's read endpoints for the page's viewer, so a page shows
    only what its viewer may read; (None, a note for the page) when it cannot answer or refuses
    the key, or the viewer's role does not hold the read's scope."""
    base = rt.settings.routing_url if name == "routing" else rt.settings.notify_url
    refused = reader.refuses(READ_SCOPES.get(path, "reports:read"))
    if refused is not None:
        return None, f"{name} did not show {path}: {refused}"
    url = base.rstrip("/") + path
    try:
        async with httpx.AsyncClient(timeout=ROUTING_TIMEOUT) as client:
            response = await client.get(url, params=params, headers={"X-API-Key": reader.key})
    except httpx.HTTPError as exc:
        log.warning(f"{name} unavailable", extra={"url": url, "error": type(exc).__name__})
        return None, f"{name} ({base}) did not answer: {type(exc).__name__}"
    if response.status_code == 404:
        return None, None
    if response.status_code in (401, 403):
        try:
            scope = response.json().get("scope") if response.status_code == 403 else None
        except ValueError:
            scope = None
        lacking = f"lacks the scope {scope}" if scope else "is not known there"
        return None, f"{name} did not show {path}: the key this page was opened with {lacking}"
    if response.status_code != 200:
        return None, f"{name} answered {response.status_code} for {path}"
    return response.json(), None


async def from_routing(rt: Runtime, path: str, reader: Reader) -> tuple[Any, str | None]:
    return await from_service(rt, "routing", path, reader)


async def rep_names(rt: Runtime, reader: Reader) -> tuple[dict[str, str], str | None]:
    """Routing's reps by id (its list's first page, of the most it gives at once)."""
    page, note = await from_service(rt, "routing", "/v1/reps", reader, {"limit": "500"})
    return {str(r["id"]): r["name"] for r in (page or {}).get("items", [])}, note


async def review_page(
    rt: Runtime,
    *,
    week: date | None,
    team: str | None,
    reader: Reader,
    account: dict[str, str] | None = None,
) -> str:
    """The weekly SLA review of the week holding `week` (this week by default): the week
    against the plan, the trend of the weeks before, the calibration of the last 90 days."""
    policy = rt.policy
    tz = ZoneInfo(policy.calendar.time_zone)
    now = rt.clock.now()
    team = team or None
    monday = review.week_start(week or now.astimezone(tz).date())
    first = monday - timedelta(weeks=TREND_WEEKS - 1)
    start, end = reports.report_window(first, monday, "week", policy)
    cal_first = monday + timedelta(days=6) - timedelta(days=CALIBRATION_DAYS - 1)
    cal_start = datetime(cal_first.year, cal_first.month, cal_first.day, tzinfo=tz)
    async with rt.db.unit_of_work() as session:
        facts = await store.report_facts(session, start=start, end=end, team=team)
        scored = await store.report_facts(session, start=cal_start, end=end, scored_too=True)
        teams = await store.teams(session)
        week_report = reports.sla_report(
            facts, policy, first=monday, last=monday, granularity="week", now=now, team=team
        )
        week_end = datetime(*(monday + timedelta(days=7)).timetuple()[:3], tzinfo=tz)
        deals = await store.revenue_facts(session, start=start, end=week_end, team=team)
        week_report["revenue"] = revenue.revenue_report(
            deals, policy, first=monday, last=monday, granularity="week"
        )
        # customer success over the calibration's 90 days: enough deals for 14-day clocks
        after_won = await success.feedback_to_marketing(
            session, rt, start=cal_start, end=week_end, team=team
        )
        ids = {
            uuid.UUID(item["lead_id"])
            for kind in ("first_response_breaches", "returned_not_in_target")
            for item in week_report["exceptions"][kind]
        } | success.leads_named(after_won)
        names = await store.display_names(session, ids)
        open_plans = await corrective_plans.open_with_actions(session, now)
    trend_report = reports.sla_report(
        facts, policy, first=first, last=monday, granularity="week", now=now, team=team
    )
    calibrated = reports.calibration(scored, policy, start=cal_start, end=end)
    reps, note = await rep_names(rt, reader)
    return review.render_review(
        account=account,
        week=monday,
        team=team,
        teams=teams,
        week_report=week_report,
        trend_report=trend_report,
        calibration=calibrated,
        names=names,
        reps=reps,
        sla_limits=review.first_response_limits(policy),
        routing_note=note,
        plans=open_plans,
        customer_success=after_won,
    )


async def timeline_page(
    rt: Runtime,
    lead_id: uuid.UUID,
    *,
    reader: Reader,
    may_see: Callable[[str | None], bool] = lambda team: True,
    account: dict[str, str] | None = None,
) -> str:
    """Every event of one lead in order, with routing's decision trace and notify's deliveries
    (read for `reader`, the viewer). A lead the viewer may not see (`may_see` of its team) is
    answered as an unknown one, so the answer does not tell that it exists."""
    async with rt.db.unit_of_work() as session:
        lead = await store.lead_summary(session, lead_id)
        entries = await store.timeline_of(session, lead_id)
    if (lead is None and not entries) or not may_see(lead["team"] if lead else None):
        raise NotFound(f"lead {lead_id} is not known to feedback")
    assignment, note = await from_routing(rt, f"/v1/leads/{lead_id}/assignment", reader)
    # the lead's deliveries, oldest first: the first page of notify's list, of the most it gives
    deliveries, delivery_note = await from_service(
        rt, "notify", "/v1/deliveries", reader, {"lead_id": str(lead_id), "limit": "500"}
    )
    reps, reps_note = await rep_names(rt, reader) if assignment else ({}, None)
    return review.render_timeline(
        account=account,
        lead_id=lead_id,
        lead=lead,
        entries=entries,
        assignment=assignment,
        deliveries=(deliveries or {}).get("items", []),
        reps=reps,
        time_zone=rt.policy.calendar.time_zone,
        routing_note=note or delivery_note or reps_note,
    )
