"""Feedback's read model of each lead, kept from the events of the other services.

Topics are ordered per lead but not across topics (after a broker outage they catch up in any
order), so every handler records the facts its event carries with an upsert that creates the
lead when it is new, keeps the latest of each stamped fact (promotion, routing, score), and
then derives the lifecycle status from the facts (`settle`): a later-stage fact is never lost,
an earlier-stage event arriving late never moves the lead backwards, and a status set by sales
stays.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

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
from leadflow_feedback.lifecycle import pipeline_steps
from leadflow_feedback.models import attempts, leads, status_history

FIRST_RESPONSE = "first_response"
CONTACT_CADENCE = "contact_cadence"
UNREACHABLE = "unreachable"
# Lead facts that come from the lead snapshot of ingest until the lead is promoted; from then
# on the MQL's snapshot is the one the reports use, whichever of the two arrives first.
SNAPSHOT_UNTIL_MQL = ("channel", "source", "role")


async def remember_lead(session: AsyncSession, lead_id: uuid.UUID, at: datetime, **values) -> None:  # noqa: ANN003
    values["updated_at"] = at
    await session.execute(
        insert(leads)
        .values(lead_id=lead_id, **values)
        .on_conflict_do_update(index_elements=[leads.c.lead_id], set_=values)
    )


async def remember_latest(
    session: AsyncSession,
    lead_id: uuid.UUID,
    at: datetime,
    stamp: sa.Column,
    set_: dict[str, Any] | None = None,
    **values: Any,  # noqa: ANN401 - column values
) -> None:
    """Upsert facts stamped by the `stamp` column (one of `values`): facts older than the ones
    already known leave the row as it is, so the latest wins whatever the arrival order.
    `set_` overrides how an existing row takes a column (an SQL expression)."""
    values["updated_at"] = at
    statement = insert(leads).values(lead_id=lead_id, **values)
    updates = {name: getattr(statement.excluded, name) for name in values} | (set_ or {})
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[leads.c.lead_id],
            set_=updates,
            where=stamp.is_(None) | (stamp <= values[stamp.name]),
        )
    )


async def _step(
    session: AsyncSession, lead_id: uuid.UUID, from_status: str, status: str, at: datetime
) -> None:
    """A status the pipeline's facts imply; the history row names the status it came from,
    so the history is an unbroken chain."""
    await session.execute(
        sa.update(leads).where(leads.c.lead_id == lead_id).values(status=status, updated_at=at)
    )
    await session.execute(
        sa.insert(status_history).values(
            lead_id=lead_id, from_status=from_status, status=status, changed_at=at
        )
    )


async def make_unreachable(
    rt: Runtime, session: AsyncSession, lead_id: uuid.UUID, current: str, at: datetime
) -> None:
    """The cadence ended without contact: the lead is marked unreachable and recycled to
    nurture (DOMAIN.md)."""
    await record_change(
        rt, session, lead_id, from_status=current, status=UNREACHABLE, reason=UNREACHABLE,
        changed_at=at,
    )  # fmt: skip
    await record_change(
        rt, session, lead_id, from_status=UNREACHABLE, status="recycled", reason=UNREACHABLE,
        changed_at=at,
    )  # fmt: skip


async def settle(rt: Runtime, session: AsyncSession, lead_id: uuid.UUID) -> None:
    """Bring the lead's status in line with the facts known about it, whatever order they
    arrived in: promotion and routing (`lifecycle.pipeline_steps`), then the consequences
    that wait for routing — a contact attempt already recorded makes it `working`, a cadence
    already exhausted makes it unreachable and recycles it. Facts from before the lead's last
    recycle are spent; a status set by sales is left as it is."""
    lead = (
        await session.execute(
            sa.select(
                leads.c.status, leads.c.mql_at, leads.c.routed_at, leads.c.cadence_exhausted_at
            )
            .where(leads.c.lead_id == lead_id)
            .with_for_update()
        )
    ).one()
    reopened_at = await session.scalar(
        sa.select(sa.func.max(status_history.c.changed_at)).where(
            status_history.c.lead_id == lead_id, status_history.c.status == "recycled"
        )
    )

    def fresh(at: datetime | None) -> bool:
        return at is not None and (reopened_at is None or at > reopened_at)

    current = lead.status
    for status in pipeline_steps(
        current, mql_at=lead.mql_at, routed_at=lead.routed_at, reopened_at=reopened_at
    ):
        # a lead routed before its promotion arrived passes mql at the routing instant
        at = lead.mql_at if status == "mql" and fresh(lead.mql_at) else lead.routed_at
        await _step(session, lead_id, current, status, at)
        current = status
    if current == "routed":
        since = [attempts.c.occurred_at > reopened_at] if reopened_at is not None else []
        first_attempt = await session.scalar(
            sa.select(sa.func.min(attempts.c.occurred_at)).where(
                attempts.c.lead_id == lead_id, *since
            )
        )
        if first_attempt is not None:
            await _step(session, lead_id, current, "working", max(first_attempt, lead.routed_at))
            current = "working"
    if current in ("routed", "working") and fresh(lead.cadence_exhausted_at):
        await make_unreachable(rt, session, lead_id, current, lead.cadence_exhausted_at)


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def on_lead(event: CloudEvent, session: AsyncSession) -> None:
        source = event.data.get("source") or {}
        lead_id = uuid.UUID(event.subject)
        statement = insert(leads).values(
            lead_id=lead_id,
            channel=source.get("channel"),
            source=source,
            role=event.data.get("role"),
            context_missing=list(event.data.get("context_missing") or []),
            display_name=timeline.display_name(event.data),
            updated_at=event.time,
        )
        new = statement.excluded
        promoted = leads.c.mql_at.is_not(None)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[leads.c.lead_id],
                set_={
                    **{
                        name: sa.case((promoted, leads.c[name]), else_=new[name])
                        for name in SNAPSHOT_UNTIL_MQL
                    },
                    "context_missing": new.context_missing,
                    "display_name": sa.case(
                        (leads.c.erased_at.is_not(None), leads.c.display_name),
                        else_=new.display_name,
                    ),
                    "updated_at": new.updated_at,
                },
            )
        )

    async def on_erased(event: CloudEvent, session: AsyncSession) -> None:
        lead_id = uuid.UUID(event.subject)
        await remember_lead(session, lead_id, event.time, erased_at=event.time)
        await timeline.erase(session, lead_id)

    async def on_scored(event: CloudEvent, session: AsyncSession) -> None:
        scored = LeadScored.model_validate(event.data)
        await remember_latest(
            session,
            scored.lead_id,
            event.time,
            leads.c.scored_at,
            fit=scored.fit,
            engagement=scored.engagement,
            intent_tier=scored.intent_tier,
            scored_at=scored.scored_at,
        )

    async def on_mql(event: CloudEvent, session: AsyncSession) -> None:
        mql = LeadMql.model_validate(event.data)
        # The name comes from ingest's snapshot; the MQL's fills it in only when it is missing,
        # and never after the lead was erased.
        name = timeline.display_name(event.data)
        keep_name = sa.case(
            (leads.c.erased_at.is_not(None), leads.c.display_name),
            else_=sa.func.coalesce(leads.c.display_name, name),
        )
        await remember_latest(
            session,
            mql.lead_id,
            event.time,
            leads.c.mql_at,
            set_={"display_name": keep_name},
            channel=mql.channel,
            source=mql.source.model_dump(mode="json", exclude_none=True),
            role=mql.role,
            mql_at=mql.promoted_at,
            mql_fit=mql.fit,
            mql_engagement=mql.engagement,
            mql_intent_tier=mql.intent_tier,
            in_target=in_target(rt.policy, mql.company.model_dump(), mql.role),
            mql_context_missing=mql_context_missing(mql),
            display_name=name,
        )
        await settle(rt, session, mql.lead_id)

    async def on_routed(event: CloudEvent, session: AsyncSession) -> None:
        routed = LeadRouted.model_validate(event.data)
        await remember_latest(
            session,
            routed.lead_id,
            event.time,
            leads.c.routed_at,
            team=routed.team,
            rep_id=routed.rep_id,
            routed_at=routed.routed_at,
            calendar=routed.calendar,
        )
        await settle(rt, session, routed.lead_id)

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
        if breached.sla == CONTACT_CADENCE and event.data.get("outcome") == UNREACHABLE:
            # applied now if the lead is routed here, or once its routing arrives
            await remember_latest(
                session,
                breached.lead_id,
                event.time,
                leads.c.cadence_exhausted_at,
                cadence_exhausted_at=event.time,
            )
            await settle(rt, session, breached.lead_id)
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
