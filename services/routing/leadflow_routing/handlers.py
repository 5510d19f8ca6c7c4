"""Routing's event handlers: an MQL is assigned to a rep and queued for delivery to sales tools."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa
from leadflow import metrics
from leadflow.consumer import Subscription
from leadflow.db import touch
from leadflow.events import TOPIC_SCORING, CloudEvent, LeadMql, LeadRouted
from leadflow.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_routing.assignment import RepView, round_robin
from leadflow_routing.models import (
    DELIVERIES_TAG,
    assignments,
    deliveries,
    reps,
    teams,
    webhook_endpoints,
)

FALLBACK_TEAM_ID = uuid.UUID("00000000-0000-0000-0000-00000000f411")


async def assign_lead(rt: Runtime, session: AsyncSession, mql: LeadMql, reason: str) -> None:
    current = await session.scalar(
        sa.select(assignments.c.id).where(
            assignments.c.lead_id == mql.lead_id, assignments.c.current
        )
    )
    if current is not None and reason == "mql":
        return  # already routed: a re-sent MQL changes nothing
    team = (await session.execute(sa.select(teams).where(teams.c.id == FALLBACK_TEAM_ID))).one()
    position = await session.scalar(
        sa.update(teams)
        .where(teams.c.id == team.id)
        .values(rr_position=teams.c.rr_position + 1)
        .returning(teams.c.rr_position - 1)
    )
    team_reps = [
        RepView(r.id, r.name, r.active, r.out_of_office)
        for r in (await session.execute(sa.select(reps).where(reps.c.team_id == team.id))).all()
    ]
    decision = round_robin(team_reps, position or 0)
    now = rt.clock.now()
    assignment_id = uuid.uuid4()
    trace = {
        "rule": None,
        "team": team.name,
        "strategy": "round_robin",
        "position": position,
        "considered": decision.considered,
    }
    if current is not None:
        await session.execute(
            sa.update(assignments).where(assignments.c.id == current).values(current=False)
        )
    await session.execute(
        sa.insert(assignments).values(
            id=assignment_id,
            lead_id=mql.lead_id,
            team_id=team.id,
            rep_id=decision.rep_id,
            reason=reason,
            trace=trace,
            mql=mql.model_dump(mode="json"),
            created_at=now,
        )
    )
    routed = LeadRouted(
        lead_id=mql.lead_id,
        assignment_id=assignment_id,
        team_id=team.id,
        team=team.name,
        rep_id=decision.rep_id,
        channel=mql.channel,
        reason=reason,
        routed_at=now,
        calendar=team.calendar,
    )
    await rt.outbox.emit(session, routed)
    metrics.leads_routed.labels(team.name, reason).inc()
    rep = next((r for r in team_reps if r.id == decision.rep_id), None)
    body = {
        "type": routed.type,
        "timestamp": now.isoformat(),
        "data": {
            "lead": mql.model_dump(mode="json"),
            "assignment": {
                "id": str(assignment_id),
                "team": team.name,
                "team_id": str(team.id),
                "rep_id": str(decision.rep_id) if decision.rep_id else None,
                "rep_name": rep.name if rep else None,
                "reason": reason,
            },
        },
    }
    await queue_deliveries(session, routed.type, mql.lead_id, team.id, body)


async def queue_deliveries(
    session: AsyncSession,
    event_type: str,
    lead_id: uuid.UUID,
    team_id: uuid.UUID | None,
    body: dict,
) -> None:
    e = webhook_endpoints.c
    endpoint_ids = (
        await session.scalars(
            sa.select(e.id).where(
                e.enabled,
                e.event_types.any(event_type),
                sa.or_(e.team_id.is_(None), e.team_id == team_id),
            )
        )
    ).all()
    raw = orjson.dumps(body)
    now = datetime.now(UTC)
    for endpoint_id in endpoint_ids:
        await session.execute(
            sa.insert(deliveries).values(
                id=uuid.uuid4(),
                endpoint_id=endpoint_id,
                lead_id=lead_id,
                event_type=event_type,
                body=raw,
                state="pending",
                next_attempt_at=now,
                created_at=now,
            )
        )
    if endpoint_ids:
        touch(session, DELIVERIES_TAG)


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def on_mql(event: CloudEvent, session: AsyncSession) -> None:
        await assign_lead(rt, session, LeadMql.model_validate(event.data), reason="mql")

    return [Subscription("mql", (TOPIC_SCORING,), handlers={"lead.mql": on_mql})]
