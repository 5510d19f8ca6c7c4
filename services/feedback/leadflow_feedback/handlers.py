"""Feedback's read model of each lead, kept from the events of the other services."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from leadflow.consumer import Subscription
from leadflow.events import (
    TOPIC_INGEST,
    TOPIC_ROUTING,
    TOPIC_SCORING,
    CloudEvent,
    LeadMql,
    LeadRouted,
)
from leadflow.service import Runtime
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback.models import leads, status_history


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
    """Move the lead to `status` if it is in one of `allowed_from` (events may arrive late)."""
    moved = await session.execute(
        sa.update(leads)
        .where(leads.c.lead_id == lead_id, leads.c.status.in_(allowed_from))
        .values(status=status, updated_at=at)
        .returning(leads.c.status)
    )
    if moved.first() is not None:
        await session.execute(
            sa.insert(status_history).values(lead_id=lead_id, status=status, changed_at=at)
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
        )

    async def on_mql(event: CloudEvent, session: AsyncSession) -> None:
        mql = LeadMql.model_validate(event.data)
        await remember_lead(
            session, mql.lead_id, event.time, channel=mql.channel, mql_at=mql.promoted_at
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
        )
        await advance(session, routed.lead_id, event.time, "routed", {"lead", "mql"})

    return [
        Subscription(
            "lifecycle",
            (TOPIC_INGEST, TOPIC_SCORING, TOPIC_ROUTING),
            handlers={
                "lead.created": on_lead,
                "lead.updated": on_lead,
                "lead.mql": on_mql,
                "lead.routed": on_routed,
            },
        )
    ]
