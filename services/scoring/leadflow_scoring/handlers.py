"""Scoring's event handlers: every lead change or activity re-scores the lead; MQLs are promoted once."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime, timedelta

import sqlalchemy as sa
from leadflow import metrics
from leadflow.consumer import Subscription
from leadflow.db import JSON, kernel_tables, touch
from leadflow.erasure import forget_events, without_personal_data
from leadflow.events import (
    TOPIC_FEEDBACK,
    TOPIC_INGEST,
    BreakdownItem,
    CloudEvent,
    LeadActivity,
    LeadMql,
    LeadScored,
    LeadSnapshot,
    LeadStatusChanged,
)
from leadflow.policy import Policy
from leadflow.service import Runtime
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_scoring import rules
from leadflow_scoring.models import lead_scores, metadata, pql_accounts, product_usage

log = logging.getLogger(__name__)


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


REVIEW_TAG = "scoring.review"
# rt.state keys: the worker's wake-up event, and the instant it plans to look next
# (None while it is awake and will look again anyway).
REVIEW_WAKE = "scoring.review_wake"
REVIEW_PLANNED = "scoring.review_planned"


def _account_of(activity: LeadActivity, lead: dict) -> str:
    """The product account a usage belongs to: as the product names it, else the company
    domain of the lead, else the lead itself."""
    props = activity.properties
    for key in ("account", "account_id"):
        if props.get(key) not in (None, ""):
            return str(props[key])
    company = lead.get("company") or {}
    domain = company.get("domain") or str(lead.get("email", "")).rpartition("@")[2]
    return domain or str(activity.lead_id)


async def pql_verdict(
    session: AsyncSession, lead_id: uuid.UUID, now: datetime, policy: Policy
) -> tuple[str | None, tuple[bool, list[str]] | None]:
    """The PQL verdict of the lead's product accounts within the window: the first account
    that crosses a threshold and is not a PQL yet (with its reasons); else no account and the
    reasons of the last account that fell short; (None, None) without product usage."""
    since = now - policy.scoring.pql.window
    u = product_usage.c
    accounts = (
        (
            await session.execute(
                sa.select(u.account)
                .where(u.lead_id == lead_id, u.occurred_at > since)
                .where(~sa.exists().where(pql_accounts.c.account == u.account))
                .distinct()
                .order_by(u.account)
            )
        )
        .scalars()
        .all()
    )
    verdict: tuple[str | None, tuple[bool, list[str]] | None] = (None, None)
    for account in accounts:
        in_window = sa.and_(u.account == account, u.occurred_at > since)
        features = (
            await session.execute(
                sa.select(u.feature, sa.func.count())
                .where(in_window, u.feature.is_not(None))
                .group_by(u.feature)
            )
        ).all()
        users = await session.scalar(
            sa.select(sa.func.count(sa.distinct(u.user_id))).where(in_window)
        )
        usage = rules.ProductUsage(account, dict(features), int(users or 0))
        decided = rules.is_pql(usage, policy)
        if decided[0]:
            return account, decided
        verdict = (None, decided)
    return verdict


async def rescore(
    rt: Runtime,
    session: AsyncSession,
    lead_id: uuid.UUID,
    now: datetime | None = None,
    *,
    row: sa.Row | None = None,
) -> None:
    """Score the lead at `now` (the clock's now by default), emit lead.scored when the score
    changed and lead.mql when the lead is promoted; plan its next review. `row`: the lead's
    score row as this transaction just wrote (and so locked) it, saving the read."""
    if row is None:
        row = (
            await session.execute(
                sa.select(lead_scores).where(lead_scores.c.lead_id == lead_id).with_for_update()
            )
        ).first()
    if row is None or not row.lead:
        return  # an activity before its lead: scored when the lead arrives
    if row.lead.get("erased"):
        return  # the person is erased: the last score stays for the reports, nothing is promoted
    policy = rt.policy
    now = now or rt.clock.now()
    interactions = interactions_of(row.interactions)
    result = rules.evaluate(facts_of(row.lead, policy), interactions, now, policy)
    breakdown = [
        BreakdownItem(rule=b.rule, points=b.points, detail=b.detail) for b in result.breakdown
    ]
    changed = (result.fit, round(result.engagement, 2), result.intent_tier, result.is_mql) != (
        row.fit,
        round(row.engagement, 2),
        row.intent_tier,
        row.is_mql,
    ) or row.scored_at is None

    account, pql = await pql_verdict(session, lead_id, now, policy)
    state = rules.PromotionState(
        promoted=row.mql_at is not None,
        routable=row.lead.get("routable", True),
        nurture_until=row.nurture_until,
        recycle_intent_tier=row.recycle_intent_tier or 0,
    )
    kind, promotion_reasons = rules.promotion(result, pql, state, now, policy)
    if kind == "pql":
        claimed = await session.scalar(
            insert(pql_accounts)
            .values(account=account, lead_id=lead_id, promoted_at=now)
            .on_conflict_do_nothing()
            .returning(pql_accounts.c.account)
        )
        if claimed is None:
            kind = None  # another lead of the account was promoted meanwhile

    review = rules.next_decay_at(interactions, now, policy)
    still_nurtured = kind is None and row.nurture_until is not None and now < row.nurture_until
    if still_nurtured:
        review = min(review or row.nurture_until, row.nurture_until)
    values: dict = {
        "fit": result.fit,
        "engagement": result.engagement,
        "intent_tier": result.intent_tier,
        "is_mql": result.is_mql,
        "breakdown": [b.model_dump() for b in breakdown],
        "reasons": list(result.mql_reasons),
        "policy_version": policy.version,
        "scored_at": now,
        "next_review_at": review,
    }
    if kind is not None:
        values |= {"mql_at": now, "mql_kind": kind, "nurture_until": None}
    await session.execute(
        sa.update(lead_scores).where(lead_scores.c.lead_id == lead_id).values(**values)
    )
    planned = rt.state.get(REVIEW_PLANNED)
    if review is not None and (planned is None or review < planned):
        touch(session, REVIEW_TAG)

    events: list = []
    if changed:
        events.append(
            (
                LeadScored(
                lead_id=lead_id,
                fit=result.fit,
                engagement=result.engagement,
                intent_tier=result.intent_tier,
                is_mql=result.is_mql,
                breakdown=breakdown,
                    scored_at=now,
                    reasons=list(result.mql_reasons),
                ),
                policy.version,
            )
        )
    if kind is not None:
        lead = LeadSnapshot.model_validate(row.lead)
        events.append(
            (
                LeadMql(
                lead_id=lead_id,
                kind=kind,
                fit=result.fit,
                engagement=result.engagement,
                intent_tier=result.intent_tier,
                breakdown=breakdown,
                # A PQL runs on the product-led SLA whatever channel first brought the lead.
                channel="plg" if kind == "pql" else lead.source.channel,
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
                    reasons=promotion_reasons,
                ),
                policy.version,
            )
        )
    await rt.outbox.emit_many(session, events)  # lead.scored before lead.mql, one round trip
    if kind is not None:
        metrics.mql_promoted.labels(kind).inc()


async def review_due(rt: Runtime, now: datetime | None = None, limit: int = 200) -> int:
    """Re-score leads whose next review has come (decay period passed, nurture ended), at
    most `limit` of them in one transaction; rows another instance holds are skipped."""
    now = now or rt.clock.now()
    s = lead_scores.c
    async with rt.db.unit_of_work() as session:
        due = (
            (
                await session.execute(
                    sa.select(s.lead_id)
                    .where(s.next_review_at <= now)
                    .order_by(s.next_review_at)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            .scalars()
            .all()
        )
        for lead_id in due:
            await rescore(rt, session, lead_id, now=now)
        if due:
            # A lead that could not be scored (no snapshot yet) waits for its next event.
            await session.execute(
                sa.update(lead_scores)
                .where(s.lead_id.in_(due), s.next_review_at <= now)
                .values(next_review_at=None)
            )
    return len(due)


async def next_review(rt: Runtime) -> datetime | None:
    async with rt.db.unit_of_work() as session:
        return await session.scalar(sa.select(sa.func.min(lead_scores.c.next_review_at)))


async def decay_reviewer(rt: Runtime, batch: int = 200, idle_cap: float = 60.0) -> None:
    """Background loop: re-scores leads that receive no events when their score changes by
    time alone, sleeping until the earliest next review (woken by commits that plan an
    earlier one; at most `idle_cap` real seconds, for reviews planned by other instances)."""
    wake: asyncio.Event = rt.state.setdefault(REVIEW_WAKE, asyncio.Event())
    while not rt.stop:
        rt.state[REVIEW_PLANNED] = None
        wake.clear()
        if await review_due(rt, limit=batch) >= batch:
            continue
        upcoming = await next_review(rt)
        now = rt.clock.now()
        delay = idle_cap
        if upcoming is not None and upcoming <= now:
            delay = 1.0  # due, but held by another instance: it is being reviewed
        elif upcoming is not None:
            delay = min(rt.clock.real_seconds(upcoming - now), idle_cap)
        rt.state[REVIEW_PLANNED] = now + timedelta(seconds=delay * rt.clock.speed)
        await rt.stop.pause(delay, wake)


async def on_start(rt: Runtime) -> None:
    """Let commits that plan an early review wake the reviewer."""
    wake = rt.state.setdefault(REVIEW_WAKE, asyncio.Event())
    rt.db.on_commit(REVIEW_TAG, wake.set)


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
    await session.execute(
        sa.update(product_usage).where(product_usage.c.lead_id.in_(merged)).values(lead_id=survivor)
    )
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


async def record_usage(
    session: AsyncSession, activity: LeadActivity, lead: dict | None = None
) -> None:
    """Keep a product_usage activity for its account's PQL thresholds (`lead`: the lead's
    snapshot when the caller has it)."""
    if lead is None:
        lead = await session.scalar(
            sa.select(lead_scores.c.lead).where(lead_scores.c.lead_id == activity.lead_id)
        )
    props = activity.properties
    user = props.get("user_id") or props.get("user") or activity.lead_id
    feature = props.get("feature")
    await session.execute(
        insert(product_usage)
        .values(
            activity_id=activity.activity_id,
            lead_id=activity.lead_id,
            account=_account_of(activity, lead or {}),
            user_id=str(user),
            feature=str(feature) if feature not in (None, "") else None,
            occurred_at=rules.aware(activity.occurred_at),
        )
        .on_conflict_do_nothing()
    )


async def erase(session: AsyncSession, lead_id: uuid.UUID) -> None:
    """The lead's personal data goes: its snapshot keeps only what names nobody, its product
    usage (user ids, accounts as the product names them) is deleted, and its outbox rows are
    forgotten. Scores, breakdown and interactions stay; the lead is never scored again."""
    lead = await session.scalar(
        sa.select(lead_scores.c.lead).where(lead_scores.c.lead_id == lead_id).with_for_update()
    )
    if lead is not None and not lead.get("erased"):
        await session.execute(
            sa.update(lead_scores)
            .where(lead_scores.c.lead_id == lead_id)
            .values(lead=without_personal_data(lead), next_review_at=None)
        )
    elif lead is None:  # erased before scoring heard of it: whatever arrives late stays inert
        await session.execute(
            insert(lead_scores)
            .values(lead_id=lead_id, lead={"erased": True}, interactions=[], breakdown=[])
            .on_conflict_do_nothing()
        )
    await session.execute(sa.delete(product_usage).where(product_usage.c.lead_id == lead_id))
    await forget_events(session, kernel_tables(metadata)[0], [lead_id])


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def on_lead(event: CloudEvent, session: AsyncSession) -> None:
        lead = LeadSnapshot.model_validate(event.data)
        snapshot = lead.model_dump(mode="json")
        row = (
            await session.execute(
                insert(lead_scores)
                .values(lead_id=lead.lead_id, lead=snapshot, interactions=[], breakdown=[])
                .on_conflict_do_update(
                    index_elements=[lead_scores.c.lead_id],
                    set_={"lead": snapshot},
                    # an erased lead is not filled again by an event published before its erasure
                    where=~lead_scores.c.lead.has_key("erased"),
                )
                .returning(*lead_scores.c)
            )
        ).first()
        merged = [uuid.UUID(str(i)) for i in (event.data.get("merged_lead_ids") or [])]
        if merged:
            await absorb(session, lead.lead_id, merged)
            row = None  # the survivor took the merged leads' interactions: read it again
        await rescore(rt, session, lead.lead_id, row=row)

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
        row = (
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
                .returning(*lead_scores.c)
            )
        ).first()
        if activity.activity_type == "product_usage":
            await record_usage(session, activity, row.lead if row is not None else None)
        await rescore(rt, session, activity.lead_id, row=row)

    async def on_erased(event: CloudEvent, session: AsyncSession) -> None:
        await erase(session, uuid.UUID(event.subject))

    async def on_status(event: CloudEvent, session: AsyncSession) -> None:
        change = LeadStatusChanged.model_validate(event.data)
        if change.status != "recycled":
            return
        changed_at = rules.aware(change.changed_at)
        nurture_until = change.nurture_until or changed_at + rt.policy.nurture_for(change.reason)
        recycle = {
            "recycled_at": changed_at,
            "recycle_reason": change.reason,
            "nurture_until": rules.aware(nurture_until),
        }
        await session.execute(
            insert(lead_scores)
            .values(
                lead_id=change.lead_id,
                lead={},
                interactions=[],
                breakdown=[],
                recycle_intent_tier=0,
                **recycle,
            )
            .on_conflict_do_update(
                index_elements=[lead_scores.c.lead_id],
                set_={**recycle, "recycle_intent_tier": lead_scores.c.intent_tier},
            )
        )
        await rescore(rt, session, change.lead_id)

    return [
        Subscription(
            "leads",
            (TOPIC_INGEST,),
            handlers={
                "lead.created": on_lead,
                "lead.updated": on_lead,
                "lead.activity": on_activity,
                "lead.erased": on_erased,
            },
        ),
        Subscription("feedback", (TOPIC_FEEDBACK,), handlers={"lead.status_changed": on_status}),
    ]
