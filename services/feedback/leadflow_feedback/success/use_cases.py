"""What customer success reports after the signature, and what it feeds back to marketing.

The hand-off is the status `handed_off` (checked by the lifecycle: use case, promised outcomes,
risks and plan), recorded here beside the status. The kickoff, churns and success stories come
over the API; the key feature's activation is derived from ingest's product usage activities.
Each milestone is emitted once (`lead.onboarding_milestone`) for sla-timer's onboarding clocks,
a churn as `lead.churned`; every write is audited in its transaction.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from leadflow import audit
from leadflow.consumer import Received
from leadflow.contracts import slas
from leadflow.contracts.events import LeadActivity, LeadChurned, LeadOnboardingMilestone, Payload
from leadflow.errors import Conflict, NotFound, Unprocessable
from leadflow.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback import store as leads
from leadflow_feedback.domain.timeline import row_of
from leadflow_feedback.success import rules, store
from leadflow_feedback.success.schemas import (
    ChurnIn,
    ChurnOut,
    ClockOut,
    CustomerSuccessOut,
    HandoffOut,
    KickoffIn,
    StoryIn,
    StoryOut,
)

HANDOFF_ENTITY = "cs-handoff"
KICKOFF_ENTITY = "onboarding-kickoff"
CHURN_ENTITY = "churn"
STORY_ENTITY = "success-story"
PRODUCT_USAGE = "product_usage"
REPORT_DAYS = 90


async def _emit(rt: Runtime, session: AsyncSession, payload: Payload) -> None:
    event = await rt.outbox.emit(session, payload, policy_version=rt.policy.version)
    row = row_of(event, payload)
    if row is not None:
        await leads.add_to_timeline(session, [row])


async def _activate(
    rt: Runtime, session: AsyncSession, lead_id: uuid.UUID, at: datetime, feature: str
) -> None:
    if await store.reach_milestone(session, lead_id, activated_at=at, activation_feature=feature):
        milestone = LeadOnboardingMilestone(
            lead_id=lead_id, milestone=slas.KEY_FEATURE_ACTIVATED, reached_at=at, feature=feature
        )
        await _emit(rt, session, milestone)


# --- the hand-off and the won status (within the status change's unit of work) -----------------


async def after_status(
    rt: Runtime,
    session: AsyncSession,
    lead_id: uuid.UUID,
    status: str,
    at: datetime,
    handoff: dict[str, Any],
) -> None:
    """A hand-off (checked complete by the lifecycle) is recorded; a won status finds a use of
    the key feature already recorded at or after it (a won status reported late)."""
    if status == "handed_off":
        values = {"lead_id": lead_id, "handed_off_at": at, **handoff}
        await store.add_handoff(session, values)
        await audit.record(
            session, rt.spec.metadata, action="created", entity=HANDOFF_ENTITY, entity_id=lead_id,
            after={"handed_off_at": at.isoformat(), "fields": sorted(handoff)},
        )  # fmt: skip
        await _forget_if_erased(session, lead_id)
    elif status == "won":
        feature = rt.policy.customer_success.key_feature
        uses = [(feature, used) for used in await store.uses_of(session, lead_id, feature)]
        activated = rules.activation(uses, at, feature)
        if activated is not None:
            await _activate(rt, session, lead_id, activated, feature)


# --- product usage (lead.activity from ingest) ---------------------------------------------------


async def record_usage(rt: Runtime, session: AsyncSession, received: list[Received]) -> None:
    """Keep every product usage activity that names its feature; the first use of the policy's
    key feature by a won customer at or after the won status activates it."""
    feature = rt.policy.customer_success.key_feature
    uses = []
    for item in received:
        activity: LeadActivity = item.payload
        used = activity.properties.get("feature")
        if activity.activity_type != PRODUCT_USAGE or used in (None, ""):
            continue
        uses.append({"activity_id": activity.activity_id, "lead_id": activity.lead_id,
                     "feature": str(used), "occurred_at": activity.occurred_at})  # fmt: skip
    await store.add_usage(session, uses)
    for lead_id in sorted({u["lead_id"] for u in uses if u["feature"] == feature}):
        status = await leads.lock_lead(session, lead_id)
        if status not in rules.CUSTOMER_STATUSES:
            continue  # not won (yet): the won status looks for it
        pairs = [(feature, at) for at in await store.uses_of(session, lead_id, feature)]
        activated = rules.activation(pairs, await store.won_at(session, lead_id), feature)
        if activated is not None:
            await _activate(rt, session, lead_id, activated, feature)


# --- erasure (lead.erased from ingest, within the lifecycle batch's unit of work) -------------


async def forget(session: AsyncSession, lead_ids: list[uuid.UUID]) -> None:
    """An erased lead's hand-off, churn note and success stories lose their free text; the
    facts the reports count stay."""
    await store.forget_texts(session, lead_ids)


async def _forget_if_erased(session: AsyncSession, lead_id: uuid.UUID) -> None:
    # A sales tool may still report on a lead after its erasure: its words are not kept either.
    if await store.is_erased(session, lead_id):
        await store.forget_texts(session, [lead_id])


# --- the API ---------------------------------------------------------------------------------


async def _customer(session: AsyncSession, lead_id: uuid.UUID) -> str:
    """Lock the lead and check it is a won customer still with us; its status."""
    status = await leads.lock_lead(session, lead_id)
    if status is None:
        raise NotFound(f"lead {lead_id} is not known to feedback", field="lead_id")
    churn = await store.churn_of(session, lead_id)
    try:
        rules.check_customer(status, churn.churned_at if churn else None)
    except rules.CustomerSuccessRefused as refused:
        raise Conflict(refused.message, field=refused.field, **refused.extra) from None
    return status


async def record_kickoff(rt: Runtime, lead_id: uuid.UUID, body: KickoffIn) -> CustomerSuccessOut:
    """The onboarding kickoff was held: recorded once (a second report changes nothing)."""
    held_at = body.held_at or rt.clock.now()
    async with rt.db.unit_of_work() as session:
        await _customer(session, lead_id)
        won_at = await store.won_at(session, lead_id)
        if won_at is not None and held_at < won_at:
            raise Unprocessable("the kickoff cannot be held before the deal was won",
                                field="held_at")  # fmt: skip
        if await store.reach_milestone(session, lead_id, kickoff_at=held_at):
            await _emit(rt, session, LeadOnboardingMilestone(
                lead_id=lead_id, milestone=slas.KICKOFF_HELD, reached_at=held_at,
            ))  # fmt: skip
            await audit.record(
                session, rt.spec.metadata, action="created", entity=KICKOFF_ENTITY,
                entity_id=lead_id, after={"held_at": held_at.isoformat()},
            )  # fmt: skip
        return await _detail(rt, session, lead_id)


async def report_churn(rt: Runtime, lead_id: uuid.UUID, body: ChurnIn) -> ChurnOut:
    """The customer left, for a reason from the policy's churn reasons."""
    now = rt.clock.now()
    churned_at = body.churned_at or now
    try:
        rules.check_churn_reason(body.reason, rt.policy)
    except rules.CustomerSuccessRefused as refused:
        raise Unprocessable(refused.message, field=refused.field, **refused.extra) from None
    async with rt.db.unit_of_work() as session:
        await _customer(session, lead_id)
        row = await store.add_churn(session, {"lead_id": lead_id, "reason": body.reason,
                                              "churned_at": churned_at, "note": body.note,
                                              "reported_at": now})  # fmt: skip
        await _emit(rt, session, LeadChurned(lead_id=lead_id, reason=body.reason,
                                             churned_at=churned_at))  # fmt: skip
        await audit.record(
            session, rt.spec.metadata, action="created", entity=CHURN_ENTITY, entity_id=lead_id,
            after={"reason": body.reason, "churned_at": churned_at.isoformat()},
        )  # fmt: skip
        await _forget_if_erased(session, lead_id)
        return ChurnOut.model_validate(row._asdict())


async def add_story(rt: Runtime, lead_id: uuid.UUID, body: StoryIn) -> StoryOut:
    """A customer's success story, with the topics marketing may write about."""
    async with rt.db.unit_of_work() as session:
        await _customer(session, lead_id)
        topics = list(dict.fromkeys(t.strip() for t in body.topics if t.strip()))
        row = await store.add_story(session, {"id": uuid.uuid4(), "lead_id": lead_id,
                                              "title": body.title, "outcome": body.outcome,
                                              "topics": topics,
                                              "reported_at": rt.clock.now()})  # fmt: skip
        await audit.record(
            session, rt.spec.metadata, action="created", entity=STORY_ENTITY, entity_id=row.id,
            after={"lead_id": str(lead_id), "topics": topics},  # the audit log keeps no text
        )  # fmt: skip
        await _forget_if_erased(session, lead_id)
        return StoryOut.model_validate(row._asdict())


async def _detail(rt: Runtime, session: AsyncSession, lead_id: uuid.UUID) -> CustomerSuccessOut:
    status = await leads.lock_lead(session, lead_id)
    if status is None:
        raise NotFound(f"lead {lead_id} is not known to feedback", field="lead_id")
    handoff = await store.handoff_of(session, lead_id)
    onboarding = await store.onboarding_of(session, lead_id)
    churn = await store.churn_of(session, lead_id)
    stories = await store.stories_of(session, lead_id)
    [customer] = await store.customers(session, lead_ids=[lead_id]) or [None]
    clocks = (
        [
            ClockOut(**vars(rules.clock_result(customer, sla, rt.policy, rt.clock.now())))
            for sla in rules.AFTER_WON
        ]
        if customer is not None
        else []
    )
    return CustomerSuccessOut(
        lead_id=lead_id,
        status=status,
        won_at=customer.won_at if customer else None,
        handoff=HandoffOut.model_validate(handoff._asdict()) if handoff else None,
        kickoff_at=onboarding.kickoff_at if onboarding else None,
        activated_at=onboarding.activated_at if onboarding else None,
        activation_feature=onboarding.activation_feature if onboarding else None,
        clocks=clocks,
        churn=ChurnOut.model_validate(churn._asdict()) if churn else None,
        stories=[StoryOut.model_validate(s._asdict()) for s in stories],
    )


async def customer(rt: Runtime, lead_id: uuid.UUID) -> CustomerSuccessOut:
    async with rt.db.unit_of_work() as session:
        return await _detail(rt, session, lead_id)


async def feedback_to_marketing(
    session: AsyncSession,
    rt: Runtime,
    *,
    start: datetime,
    end: datetime,
    team: str | None = None,
) -> dict[str, Any]:
    """The customer success part of the reports and the review page over [start, end), of the
    customers routed to `team` when given (as the rest of the review)."""
    won = await store.customers(session, won_from=start, won_before=end, team=team)
    everyone = await store.customers(session, won_before=end, team=team)
    churned = await store.customers(session, churned_from=start, churned_before=end, team=team)
    stories = await store.stories(session, start=start, end=end, team=team)
    return rules.customer_success_report(
        won, everyone, churned, stories, rt.policy, start=start, end=end, now=rt.clock.now()
    )


def leads_named(report: dict[str, Any]) -> set[uuid.UUID]:
    """The leads a customer success report names (missed clocks, stories)."""
    missed = {m["lead_id"] for c in report["clocks"].values() for m in c["missed_leads"]}
    return {uuid.UUID(i) for i in missed | {s["lead_id"] for s in report["stories"]}}


def window(rt: Runtime, first: Any, last: Any) -> tuple[datetime, datetime]:
    """[first, last] as instants in the policy calendar's time zone; the last 90 days by
    default."""
    tz = ZoneInfo(rt.policy.calendar.time_zone)
    last = last or rt.clock.now().astimezone(tz).date()
    first = first or last - timedelta(days=REPORT_DAYS - 1)
    if last < first:
        raise Unprocessable("`to` must not be before `from`", field="to")
    end_day = last + timedelta(days=1)
    return (
        datetime(first.year, first.month, first.day, tzinfo=tz),
        datetime(end_day.year, end_day.month, end_day.day, tzinfo=tz),
    )


async def report(rt: Runtime, first: Any, last: Any, team: str | None = None) -> dict[str, Any]:
    start, end = window(rt, first, last)
    async with rt.db.unit_of_work() as session:
        return await feedback_to_marketing(session, rt, start=start, end=end, team=team)
