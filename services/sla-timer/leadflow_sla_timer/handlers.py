"""sla-timer's event handlers: a routed lead opens its first-response clock, a contact meets it."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from leadflow import metrics
from leadflow.calendar import BusinessCalendar
from leadflow.consumer import Subscription
from leadflow.db import touch
from leadflow.events import (
    TOPIC_FEEDBACK,
    TOPIC_ROUTING,
    CloudEvent,
    LeadContactAttempt,
    LeadRouted,
    SlaMet,
)
from leadflow.service import Runtime
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_sla_timer import sla_policy
from leadflow_sla_timer.models import TIMERS_TAG, early_attempts, timers
from leadflow_sla_timer.timers import fire_times, measured

FIRST_RESPONSE = "first_response"


def calendar_of(rt: Runtime, spec: dict | None) -> BusinessCalendar:
    return BusinessCalendar.from_spec(spec) if spec else sla_policy.default_calendar(rt.policy)


async def open_first_response(rt: Runtime, session: AsyncSession, routed: LeadRouted) -> None:
    limit, clock = sla_policy.first_response(rt.policy, routed.channel)
    calendar = calendar_of(rt, routed.calendar)
    ladder = [
        {"level": level, "at": at.isoformat()}
        for level, at in fire_times(
            sla_policy.ladder(rt.policy), clock, calendar, routed.routed_at, limit
        )
    ]
    due_at = next(datetime.fromisoformat(s["at"]) for s in ladder if s["level"] == "breached")
    timer_id = uuid.uuid4()
    created = await session.scalar(
        insert(timers)
        .values(
            id=timer_id,
            lead_id=routed.lead_id,
            sla=FIRST_RESPONSE,
            channel=routed.channel,
            team=routed.team,
            rep_id=routed.rep_id,
            clock=clock,
            calendar=routed.calendar,
            limit_seconds=limit.total_seconds(),
            started_at=routed.routed_at,
            due_at=due_at,
            ladder=ladder,
            next_fire_at=datetime.fromisoformat(ladder[0]["at"]),
            policy_version=rt.policy.version,
        )
        .on_conflict_do_nothing()  # re-routing keeps the clock that started with the first routing
        .returning(timers.c.id)
    )
    if created is None:
        return
    touch(session, TIMERS_TAG)
    early = await session.scalar(
        sa.delete(early_attempts)
        .where(early_attempts.c.lead_id == routed.lead_id)
        .returning(early_attempts.c.occurred_at)
    )
    if early is not None:
        await meet(rt, session, routed.lead_id, max(early, routed.routed_at))


async def meet(rt: Runtime, session: AsyncSession, lead_id: uuid.UUID, at: datetime) -> bool:
    """Stop the first-response clock; False if there is no timer yet (the attempt came early)."""
    timer = (
        await session.execute(
            sa.select(timers)
            .where(timers.c.lead_id == lead_id, timers.c.sla == FIRST_RESPONSE)
            .with_for_update()
        )
    ).first()
    if timer is None:
        return False
    if timer.met_at is not None:
        return True
    # Locked above: the firing loop cannot breach this timer between the read and the write.
    state = "met" if timer.state == "open" else timer.state
    await session.execute(
        sa.update(timers)
        .where(timers.c.id == timer.id)
        .values(
            state=state,
            met_at=at,
            next_fire_at=None,
            version=timers.c.version + 1,
        )
    )
    calendar = calendar_of(rt, timer.calendar)
    took = measured(timer.clock, calendar, timer.started_at, at)
    metrics.lead_response.labels(timer.channel or "unknown", timer.team or "unknown").observe(
        took.total_seconds()
    )
    await rt.outbox.emit(
        session,
        SlaMet(
            lead_id=lead_id,
            timer_id=timer.id,
            sla=timer.sla,
            channel=timer.channel,
            team=timer.team,
            rep_id=timer.rep_id,
            started_at=timer.started_at,
            due_at=timer.due_at,
            level=state,
            met_at=at,
            business_seconds=took.total_seconds(),
        ),
        policy_version=timer.policy_version,
    )
    return True


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def on_routed(event: CloudEvent, session: AsyncSession) -> None:
        await open_first_response(rt, session, LeadRouted.model_validate(event.data))

    async def on_attempt(event: CloudEvent, session: AsyncSession) -> None:
        attempt = LeadContactAttempt.model_validate(event.data)
        if not await meet(rt, session, attempt.lead_id, attempt.occurred_at):
            await session.execute(
                insert(early_attempts)
                .values(lead_id=attempt.lead_id, occurred_at=attempt.occurred_at)
                .on_conflict_do_update(
                    index_elements=[early_attempts.c.lead_id],
                    set_={
                        "occurred_at": sa.func.least(
                            early_attempts.c.occurred_at, attempt.occurred_at
                        )
                    },
                )
            )

    return [
        Subscription(
            "timers",
            (TOPIC_ROUTING, TOPIC_FEEDBACK),
            handlers={"lead.routed": on_routed, "lead.contact_attempt": on_attempt},
        )
    ]
