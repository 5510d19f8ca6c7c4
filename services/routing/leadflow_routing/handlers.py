"""Routing's event handlers: an MQL is assigned to a rep and queued for delivery to sales tools."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from leadflow import metrics
from leadflow.consumer import Subscription
from leadflow.db import touch
from leadflow.events import (
    TOPIC_FEEDBACK,
    TOPIC_INGEST,
    TOPIC_SCORING,
    TOPIC_SLA,
    CloudEvent,
    LeadMql,
    LeadRouted,
    LeadStatusChanged,
    SlaEscalated,
)
from leadflow.service import Runtime
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_routing import erasure
from leadflow_routing.assignment import (
    Decision,
    RepView,
    RuleView,
    choose,
    match_rule,
    skip_reason,
)
from leadflow_routing.models import (
    DELIVERIES_TAG,
    accounts,
    assignments,
    deliveries,
    reps,
    rules,
    teams,
    webhook_endpoints,
)

FALLBACK_TEAM_ID = uuid.UUID("00000000-0000-0000-0000-00000000f411")


OPEN_WORK_ENDS = frozenset({"returned", "recycled", "unreachable", "lost", "won"})

# session.info key of what one consumer transaction (a poll batch) has already read: the active
# rules, each team's reps with their open leads, the webhook endpoints per event type and team.
# Counts are kept up to date with the transaction's own assignments; a team routed by rule is
# locked (its round-robin position) until the transaction ends, so other transactions cannot
# add to its reps meanwhile. Rolled back with the session: a failed batch leaves nothing.
BATCH_CACHE = "leadflow_routing.batch"


def _batch(session: AsyncSession) -> dict | None:
    return session.info.get(BATCH_CACHE)


def _count_open(session: AsyncSession, rep_id: uuid.UUID | None, change: int) -> None:
    """Move a rep's cached open-lead count after the transaction assigned or closed one."""
    cache = _batch(session)
    if cache is None or rep_id is None:
        return
    for key, team_reps in cache.items():
        if key[0] != "reps":
            continue
        for i, r in enumerate(team_reps):
            if r.id == rep_id:
                team_reps[i] = dataclasses.replace(r, open_leads=max(r.open_leads + change, 0))


@dataclass
class Routing:
    """A routing decision with everything the trace and the assignment need."""

    team: Any
    decision: Decision
    trace: dict[str, Any]
    reps: list[RepView]


async def _team_reps(session: AsyncSession, team_id: uuid.UUID) -> list[RepView]:
    cache = _batch(session)
    if cache is not None and ("reps", team_id) in cache:
        return list(cache[("reps", team_id)])
    open_leads = (
        sa.select(assignments.c.rep_id, sa.func.count().label("n"))
        .where(assignments.c.current, assignments.c.closed_at.is_(None))
        .group_by(assignments.c.rep_id)
        .subquery()
    )
    rows = (
        await session.execute(
            sa.select(reps, sa.func.coalesce(open_leads.c.n, 0).label("open_leads"))
            .outerjoin(open_leads, open_leads.c.rep_id == reps.c.id)
            .where(reps.c.team_id == team_id)
        )
    ).all()
    team_reps = [
        RepView(
            r.id,
            r.name,
            r.active,
            r.out_of_office,
            r.weight,
            r.capacity,
            r.open_leads,
            r.timezone,
            r.working_hours,
        )
        for r in rows
    ]
    if cache is not None:
        cache[("reps", team_id)] = team_reps
        return list(team_reps)
    return team_reps


async def decide(
    session: AsyncSession,
    mql: dict[str, Any],
    now: datetime,
    *,
    exclude_rep: uuid.UUID | None = None,
    dry_run: bool = False,
) -> Routing:
    """Account owner first, else the first matching rule's team (or the fallback queue), then
    the team's strategy. Every step is written to the trace."""
    trace: dict[str, Any] = {"account": None, "rule": None, "rules_tried": []}
    domain = ((mql.get("company") or {}).get("domain") or "").lower() or None
    if domain:
        owner = (
            await session.execute(sa.select(accounts).where(accounts.c.domain == domain))
        ).first()
        if owner is not None:
            team = (
                await session.execute(sa.select(teams).where(teams.c.id == owner.team_id))
            ).one()
            team_reps = await _team_reps(session, team.id)
            rep = next((r for r in team_reps if r.id == owner.rep_id), None)
            reason = "reassigned_from" if rep and rep.id == exclude_rep else None
            reason = reason or (skip_reason(rep, now) if rep else "not_in_team")
            trace["account"] = {"domain": domain, "owner": str(owner.rep_id), "skipped": reason}
            if reason is None:
                trace.update(team=team.name, strategy="account_owner")
                considered = [
                    {"rep_id": str(rep.id), "name": rep.name, "skipped": None, "chosen": True}
                ]
                return Routing(team, Decision(rep.id, considered), trace, team_reps)
    rule, tried = match_rule(await _rules(session), mql)
    trace["rules_tried"] = tried
    team_id = rule.team_id if rule else FALLBACK_TEAM_ID
    trace["rule"] = rule.name if rule else None
    if dry_run:
        team = (await session.execute(sa.select(teams).where(teams.c.id == team_id))).one()
        position = team.rr_position
    else:
        team = (
            await session.execute(
                sa.update(teams)
                .where(teams.c.id == team_id)
                .values(rr_position=teams.c.rr_position + 1)
                .returning(teams)
            )
        ).one()
        position = team.rr_position - 1
    team_reps = await _team_reps(session, team.id)
    eligible = [r for r in team_reps if r.id != exclude_rep]
    decision = choose(team.strategy, eligible, position, now)
    if exclude_rep is not None:
        excluded = next((r for r in team_reps if r.id == exclude_rep), None)
        if excluded is not None:
            decision.considered.insert(
                0, {"rep_id": str(excluded.id), "name": excluded.name, "skipped": "reassigned_from"}
            )
    trace.update(team=team.name, strategy=team.strategy, position=position)
    trace["considered"] = decision.considered
    return Routing(team, decision, trace, team_reps)


async def _rules(session: AsyncSession) -> list[RuleView]:
    cache = _batch(session)
    if cache is not None and ("rules",) in cache:
        return cache[("rules",)]
    rule_rows = (
        await session.execute(
            sa.select(rules).where(rules.c.active).order_by(rules.c.priority, rules.c.created_at)
        )
    ).all()
    views = [RuleView(r.id, r.name, r.team_id, r.conditions) for r in rule_rows]
    if cache is not None:
        cache[("rules",)] = views
    return views


async def assign_lead(
    rt: Runtime, session: AsyncSession, mql: LeadMql, reason: str, *, exclude_rep=None
) -> uuid.UUID | None:
    """Assign (or reassign) the lead; None when a re-sent MQL finds it already routed."""
    current = (
        await session.execute(
            sa.select(assignments.c.id, assignments.c.rep_id, assignments.c.closed_at).where(
                assignments.c.lead_id == mql.lead_id, assignments.c.current
            )
        )
    ).first()
    if current is not None and reason == "mql":
        return None  # already routed: a re-sent MQL changes nothing
    now = rt.clock.now()
    mql_json = mql.model_dump(mode="json")
    routing = await decide(session, mql_json, now, exclude_rep=exclude_rep)
    team, decision, trace = routing.team, routing.decision, routing.trace
    assignment_id = uuid.uuid4()
    if current is not None:
        await session.execute(
            sa.update(assignments)
            .where(assignments.c.id == current.id)
            .values(current=False, closed_at=now)
        )
        if current.closed_at is None:
            _count_open(session, current.rep_id, -1)
    await session.execute(
        sa.insert(assignments).values(
            id=assignment_id,
            lead_id=mql.lead_id,
            team_id=team.id,
            rep_id=decision.rep_id,
            reason=reason,
            trace=trace,
            mql=mql_json,
            created_at=now,
        )
    )
    _count_open(session, decision.rep_id, +1)
    domain = (mql.company.domain or "").lower()
    if domain and decision.rep_id is not None and trace.get("strategy") != "account_owner":
        await session.execute(
            insert(accounts)
            .values(domain=domain, rep_id=decision.rep_id, team_id=team.id, since=now)
            .on_conflict_do_nothing()
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
        kind=mql.kind,
    )
    await rt.outbox.emit(session, routed)
    metrics.leads_routed.labels(team.name, reason).inc()
    rep = next((r for r in routing.reps if r.id == decision.rep_id), None)
    body = {
        "type": routed.type,
        "timestamp": now.isoformat(),
        "data": {
            "lead": mql_json,
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
    cache = _batch(session)
    key = ("endpoints", event_type, team_id)
    if cache is not None and key in cache:
        endpoint_ids = cache[key]
    else:
        endpoint_ids = (
            await session.scalars(
                sa.select(e.id).where(
                    e.enabled,
                    sa.literal(event_type) == sa.any_(e.event_types),
                    sa.or_(e.team_id.is_(None), e.team_id == team_id),
                )
            )
        ).all()
        if cache is not None:
            cache[key] = endpoint_ids
    raw = orjson.dumps(body)
    now = datetime.now(UTC)
    if endpoint_ids:
        await session.execute(
            sa.insert(deliveries).values(
                [
                    {
                        "id": uuid.uuid4(),
                        "endpoint_id": endpoint_id,
                        "lead_id": lead_id,
                        "event_type": event_type,
                        "body": raw,
                        "state": "pending",
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                    for endpoint_id in endpoint_ids
                ]
            )
        )
        touch(session, DELIVERIES_TAG)


async def reassign(rt: Runtime, session: AsyncSession, lead_id: uuid.UUID, reason: str) -> bool:
    """Route the lead again, away from its current rep; False if it was never routed."""
    current = (
        await session.execute(
            sa.select(assignments)
            .where(assignments.c.lead_id == lead_id, assignments.c.current)
            .with_for_update()
        )
    ).first()
    if current is None:
        return False
    mql = LeadMql.model_validate(current.mql)
    await assign_lead(rt, session, mql, reason, exclude_rep=current.rep_id)
    return True


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def on_mql(event: CloudEvent, session: AsyncSession) -> None:
        session.info.setdefault(BATCH_CACHE, {})
        mql = LeadMql.model_validate(event.data)
        if await erasure.is_erased(session, mql.lead_id):
            return  # erased before its MQL got here: an erased person is not routed
        await assign_lead(rt, session, mql, reason="mql")

    async def on_escalated(event: CloudEvent, session: AsyncSession) -> None:
        session.info.setdefault(BATCH_CACHE, {})
        escalation = SlaEscalated.model_validate(event.data)
        if escalation.reassign and not await erasure.is_erased(session, escalation.lead_id):
            await reassign(rt, session, escalation.lead_id, "sla_escalation")

    async def on_erased(event: CloudEvent, session: AsyncSession) -> None:
        await erasure.erase(session, uuid.UUID(event.subject), rt.clock.now())

    async def on_status(event: CloudEvent, session: AsyncSession) -> None:
        change = LeadStatusChanged.model_validate(event.data)
        if change.status in OPEN_WORK_ENDS:
            await session.execute(
                sa.update(assignments)
                .where(
                    assignments.c.lead_id == change.lead_id,
                    assignments.c.current,
                    assignments.c.closed_at.is_(None),
                )
                .values(closed_at=change.changed_at)
            )

    return [
        Subscription("mql", (TOPIC_SCORING,), handlers={"lead.mql": on_mql}),
        Subscription("sla", (TOPIC_SLA,), handlers={"sla.escalated": on_escalated}),
        Subscription("feedback", (TOPIC_FEEDBACK,), handlers={"lead.status_changed": on_status}),
        Subscription("erasure", (TOPIC_INGEST,), handlers={"lead.erased": on_erased}),
    ]
