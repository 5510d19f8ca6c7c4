"""Feedback's read model of each lead, kept from the events of the other services.

Topics are ordered per lead but not across topics, so every handler upserts only the facts
its event carries and tolerates any order (an SLA event may arrive before `lead.routed`).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from leadflow.commitments import in_target, mql_context_missing
from leadflow.consumer import Subscription
from leadflow.events import (
    TOPIC_INGEST,
    TOPIC_ROUTING,
    TOPIC_SCORING,
    TOPIC_SLA,
    CloudEvent,
    LeadMql,
    LeadRouted,
    LeadScored,
    SlaBreached,
    SlaMet,
)
from leadflow.service import Runtime
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback import timeline
from leadflow_feedback.changes import record_change
from leadflow_feedback.models import leads, status_history

FIRST_RESPONSE = "first_response"
CONTACT_CADENCE = "contact_cadence"
UNREACHABLE = "unreachable"


async def cadence_exhausted(rt: Runtime, session: AsyncSession, lead_id, at: datetime) -> None:  # noqa: ANN001
    """The cadence ended without contact: the lead is marked unreachable and recycled to
    nurture (DOMAIN.md), unless sales already moved it on."""
    current = await session.scalar(
        sa.select(leads.c.status).where(leads.c.lead_id == lead_id).with_for_update()
    )
    if current not in ("routed", "working"):
        return
    await record_change(
        rt,
        session,
        lead_id,
        from_status=current,
        status=UNREACHABLE,
        reason=UNREACHABLE,
        changed_at=at,
    )
    await record_change(
        rt,
        session,
        lead_id,
        from_status=UNREACHABLE,
        status="recycled",
        reason=UNREACHABLE,
        changed_at=at,
    )


async def remember_lead(session: AsyncSession, lead_id: uuid.UUID, at: datetime, **values) -> None:  # noqa: ANN003
    values["updated_at"] = at
    await session.execute(
        insert(leads)
        .values(lead_id=lead_id, **values)
        .on_conflict_do_update(index_elements=[leads.c.lead_id], set_=values)
    )


async def advance(
    session: AsyncSession, lead_id: uuid.UUID, at: datetime, status: str, allowed_from: set[str]
) -> None:
    """Move the lead to `status` if it is in one of `allowed_from` (events may arrive late);
    the history row names the status it came from, so the history is an unbroken chain."""
    current = await session.scalar(
        sa.select(leads.c.status).where(leads.c.lead_id == lead_id).with_for_update()
    )
    if current is None or current not in allowed_from:
        return
    await session.execute(
        sa.update(leads).where(leads.c.lead_id == lead_id).values(status=status, updated_at=at)
    )
    await session.execute(
        sa.insert(status_history).values(
            lead_id=lead_id, from_status=current, status=status, changed_at=at
        )
    )


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def on_lead(event: CloudEvent, session: AsyncSession) -> None:
        source = event.data.get("source") or {}
        await remember_lead(
            session,
            uuid.UUID(event.subject),
            event.time,
            channel=source.get("channel"),
            source=source,
            role=event.data.get("role"),
            context_missing=list(event.data.get("context_missing") or []),
            display_name=timeline.display_name(event.data),
        )

    async def on_erased(event: CloudEvent, session: AsyncSession) -> None:
        await timeline.erase(session, uuid.UUID(event.subject))

    async def on_scored(event: CloudEvent, session: AsyncSession) -> None:
        scored = LeadScored.model_validate(event.data)
        await remember_lead(
            session,
            scored.lead_id,
            event.time,
            fit=scored.fit,
            engagement=scored.engagement,
            intent_tier=scored.intent_tier,
            scored_at=scored.scored_at,
        )

    async def on_mql(event: CloudEvent, session: AsyncSession) -> None:
        mql = LeadMql.model_validate(event.data)
        await remember_lead(
            session,
            mql.lead_id,
            event.time,
            channel=mql.channel,
            source=mql.source.model_dump(mode="json", exclude_none=True),
            role=mql.role,
            mql_at=mql.promoted_at,
            mql_fit=mql.fit,
            mql_engagement=mql.engagement,
            mql_intent_tier=mql.intent_tier,
            in_target=in_target(rt.policy, mql.company.model_dump(), mql.role),
            mql_context_missing=mql_context_missing(mql),
            display_name=timeline.display_name(event.data),
        )
        await advance(session, mql.lead_id, event.time, "mql", {"lead", "recycled"})

    async def on_routed(event: CloudEvent, session: AsyncSession) -> None:
        routed = LeadRouted.model_validate(event.data)
        await remember_lead(
            session,
            routed.lead_id,
            event.time,
            team=routed.team,
            rep_id=routed.rep_id,
            routed_at=routed.routed_at,
            calendar=routed.calendar,
        )
        await advance(session, routed.lead_id, event.time, "routed", {"lead", "mql"})

    async def on_sla_met(event: CloudEvent, session: AsyncSession) -> None:
        met = SlaMet.model_validate(event.data)
        if met.sla != FIRST_RESPONSE:
            return
        await remember_lead(
            session,
            met.lead_id,
            event.time,
            sla_due_at=met.due_at,
            sla_response_seconds=met.business_seconds,
        )

    async def on_sla_breached(event: CloudEvent, session: AsyncSession) -> None:
        breached = SlaBreached.model_validate(event.data)
        if breached.sla == CONTACT_CADENCE and event.data.get("outcome") == "unreachable":
            await cadence_exhausted(rt, session, breached.lead_id, event.time)
            return
        if breached.sla != FIRST_RESPONSE:
            return
        await remember_lead(
            session, breached.lead_id, event.time, sla_due_at=breached.due_at, sla_breached=True
        )

    async def on_timeline_only(event: CloudEvent, session: AsyncSession) -> None:
        return None

    def with_timeline(handler):  # noqa: ANN001, ANN202 - a handler, the same shape back
        async def handle(event: CloudEvent, session: AsyncSession) -> None:
            await timeline.record(session, event)
            await handler(event, session)

        return handle

    decide = {
        "lead.created": on_lead,
        "lead.updated": on_lead,
        "lead.activity": on_timeline_only,
        "lead.erased": on_erased,
        "lead.scored": on_scored,
        "lead.mql": on_mql,
        "lead.routed": on_routed,
        "webhook.dead_lettered": on_timeline_only,
        "sla.warning": on_timeline_only,
        "sla.escalated": on_timeline_only,
        "sla.met": on_sla_met,
        "sla.breached": on_sla_breached,
    }
    return [
        Subscription(
            "lifecycle",
            (TOPIC_INGEST, TOPIC_SCORING, TOPIC_ROUTING, TOPIC_SLA),
            # every event of a lead lands on its timeline in the same transaction as its effects
            handlers={kind: with_timeline(handler) for kind, handler in decide.items()},
        )
    ]
