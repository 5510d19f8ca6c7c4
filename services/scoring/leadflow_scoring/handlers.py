"""Scoring's event handlers: every lead change or activity re-scores the lead; MQLs are promoted once."""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from leadflow import metrics
from leadflow.consumer import Subscription
from leadflow.db import JSON
from leadflow.events import (
    TOPIC_INGEST,
    BreakdownItem,
    CloudEvent,
    LeadActivity,
    LeadMql,
    LeadScored,
    LeadSnapshot,
)
from leadflow.service import Runtime
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_scoring import rules
from leadflow_scoring.models import lead_scores


def facts_of(lead: dict, policy) -> rules.LeadFacts:  # noqa: ANN001
    flags = set(lead.get("flags") or [])
    company = lead.get("company") or {}
    domain = str(lead.get("email", "")).rpartition("@")[2]
    return rules.LeadFacts(
        email_valid="invalid_email" not in flags,
        email_domain=domain,
        industry=company.get("industry"),
        employees=company.get("employees"),
        seniority=lead.get("seniority"),
        role=lead.get("role"),
        intent_tier=int(lead.get("intent_tier") or 0),
        is_student="student" in flags,
        is_job_seeker="job_seeker" in flags,
        is_competitor="competitor" in flags or rules.is_competitor_domain(domain, policy),
    )


def interactions_of(stored: list[dict]) -> list[rules.Interaction]:
    return [rules.Interaction(i["kind"], datetime.fromisoformat(i["occurred_at"])) for i in stored]


async def rescore(rt: Runtime, session: AsyncSession, lead_id: uuid.UUID) -> None:
    row = (
        await session.execute(
            sa.select(lead_scores).where(lead_scores.c.lead_id == lead_id).with_for_update()
        )
    ).first()
    if row is None or not row.lead:
        return  # an activity before its lead: scored when the lead arrives
    policy = rt.policy
    now = rt.clock.now()
    result = rules.evaluate(
        facts_of(row.lead, policy), interactions_of(row.interactions), now, policy
    )
    breakdown = [
        BreakdownItem(rule=b.rule, points=b.points, detail=b.detail) for b in result.breakdown
    ]
    changed = (result.fit, round(result.engagement, 2), result.intent_tier, result.is_mql) != (
        row.fit,
        round(row.engagement, 2),
        row.intent_tier,
        row.is_mql,
    ) or row.scored_at is None
    promote = result.is_mql and row.mql_at is None and row.lead.get("routable", True)
    await session.execute(
        sa.update(lead_scores)
        .where(lead_scores.c.lead_id == lead_id)
        .values(
            fit=result.fit,
            engagement=result.engagement,
            intent_tier=result.intent_tier,
            is_mql=result.is_mql,
            breakdown=[b.model_dump() for b in breakdown],
            policy_version=policy.version,
            scored_at=now,
            mql_at=now if promote else row.mql_at,
        )
    )
    if changed:
        await rt.outbox.emit(
            session,
            LeadScored(
                lead_id=lead_id,
                fit=result.fit,
                engagement=result.engagement,
                intent_tier=result.intent_tier,
                is_mql=result.is_mql,
                breakdown=breakdown,
                scored_at=now,
            ),
            policy_version=policy.version,
        )
    if promote:
        lead = LeadSnapshot.model_validate(row.lead)
        await rt.outbox.emit(
            session,
            LeadMql(
                lead_id=lead_id,
                fit=result.fit,
                engagement=result.engagement,
                intent_tier=result.intent_tier,
                breakdown=breakdown,
                channel=lead.source.channel,
                source=lead.source,
                company=lead.company,
                email=lead.email,
                first_name=lead.first_name,
                last_name=lead.last_name,
                title=lead.title,
                role=lead.role,
                seniority=lead.seniority,
                intent_note=lead.intent_note,
                key_activities=row.interactions[-10:],
                promoted_at=now,
            ),
            policy_version=policy.version,
        )
        metrics.mql_promoted.labels("mql").inc()


async def absorb(session: AsyncSession, survivor: uuid.UUID, merged: list[uuid.UUID]) -> None:
    """Two leads were one person: the survivor takes their interactions, and an MQL already
    promoted for either stays promoted once (sales got it; it is not sent again)."""
    rows = (
        await session.execute(
            sa.delete(lead_scores)
            .where(lead_scores.c.lead_id.in_(merged))
            .returning(lead_scores.c.interactions, lead_scores.c.mql_at)
        )
    ).all()
    if not rows:
        return
    interactions = [i for row in rows for i in row.interactions]
    earliest_mql = min((row.mql_at for row in rows if row.mql_at is not None), default=None)
    values: dict = {
        "interactions": lead_scores.c.interactions.op("||")(
            sa.bindparam("absorbed", interactions, type_=JSON)
        )
    }
    if earliest_mql is not None:
        values["mql_at"] = sa.func.coalesce(lead_scores.c.mql_at, earliest_mql)
    await session.execute(
        sa.update(lead_scores).where(lead_scores.c.lead_id == survivor).values(**values)
    )


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def on_lead(event: CloudEvent, session: AsyncSession) -> None:
        lead = LeadSnapshot.model_validate(event.data)
        snapshot = lead.model_dump(mode="json")
        await session.execute(
            insert(lead_scores)
            .values(lead_id=lead.lead_id, lead=snapshot, interactions=[], breakdown=[])
            .on_conflict_do_update(index_elements=[lead_scores.c.lead_id], set_={"lead": snapshot})
        )
        merged = [uuid.UUID(str(i)) for i in (event.data.get("merged_lead_ids") or [])]
        if merged:
            await absorb(session, lead.lead_id, merged)
        await rescore(rt, session, lead.lead_id)

    async def on_activity(event: CloudEvent, session: AsyncSession) -> None:
        activity = LeadActivity.model_validate(event.data)
        kind = rules.activity_kind(activity.activity_type, activity.page_category)
        if kind is None:
            return
        entry = [
            {
                "kind": kind,
                "type": activity.activity_type,
                "occurred_at": activity.occurred_at.isoformat(),
            }
        ]
        await session.execute(
            insert(lead_scores)
            .values(lead_id=activity.lead_id, lead={}, interactions=entry, breakdown=[])
            .on_conflict_do_update(
                index_elements=[lead_scores.c.lead_id],
                set_={
                    "interactions": lead_scores.c.interactions.op("||")(
                        sa.bindparam("entry", entry, type_=JSON)
                    )
                },
            )
        )
        await rescore(rt, session, activity.lead_id)

    return [
        Subscription(
            "leads",
            (TOPIC_INGEST,),
            handlers={
                "lead.created": on_lead,
                "lead.updated": on_lead,
                "lead.activity": on_activity,
            },
        )
    ]
