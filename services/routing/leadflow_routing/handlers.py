"""Routing's event handlers: an MQL is assigned to a rep and queued for delivery to sales tools.

A poll batch of MQLs is handled as a set: the handler only checks each payload; the
subscription's `after_batch` then reads what the batch's decisions need with a fixed number of
statements (which leads are erased or routed already, their accounts, the teams they may go to
— locked in key order —, those teams' reps with their open leads, the webhook endpoints),
decides every lead in memory in arrival order, each decision moving the round-robin positions
and open-lead counts the next one sees exactly as handling the events one by one would, and
writes the assignments, accounts, positions, `lead.routed` events and deliveries with one
statement each."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from leadflow import metrics
from leadflow.consumer import Subscription
from leadflow.contracts.events import (
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
from leadflow.db import lock_leads, touch
from leadflow.service import Runtime
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
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
ROUTED = LeadRouted.type

OPEN_WORK_ENDS = frozenset({"returned", "recycled", "unreachable", "lost", "won"})

# session.info key of what one consumer transaction (a poll batch) has already read: the active
# rules ("rules"), each team's reps with their open leads ("reps": team id -> reps), the teams
# ("teams"), accounts by domain ("accounts", None: no owner), the webhook endpoints per event
# type and team ("endpoints") and, for the teams the batch locked, their round-robin position
# as read and as moved since ("positions": team id -> [read, next]). Counts and positions are
# kept up to date with the transaction's own decisions; a team routed by rule is locked until
# the transaction ends, so other transactions cannot add to its reps meanwhile. Rolled back
# with the session: a failed batch leaves nothing.
BATCH_CACHE = "leadflow_routing.batch"
# session.info key of the MQLs the handler checked in this unit of work: event id -> LeadMql.
MQLS = "leadflow_routing.mqls"
# session.info key of the status changes that end a lead's open work: event id -> change.
CLOSINGS = "leadflow_routing.closings"
ROWS_PER_INSERT = 1000

_ids = sa.bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
_domains = sa.bindparam("domains", type_=ARRAY(sa.Text))
# Leads of a batch already erased or routed (a re-sent MQL changes nothing).
_known_leads = sa.union_all(
    sa.select(erasure.erased_leads.c.lead_id, sa.literal("erased").label("kind"))
    .where(erasure.erased_leads.c.lead_id == sa.any_(_ids)),
    sa.select(assignments.c.lead_id, sa.literal("routed"))
    .where(assignments.c.current, assignments.c.lead_id == sa.any_(_ids)),
)  # fmt: skip
_read_accounts = sa.select(accounts).where(accounts.c.domain == sa.any_(_domains))
# In key order, so that two batches never wait on each other in a circle.
_lock_teams = (
    sa.select(teams).where(teams.c.id == sa.any_(_ids)).order_by(teams.c.id).with_for_update()
)
_open_leads = (
    sa.select(assignments.c.rep_id, sa.func.count().label("n"))
    .where(assignments.c.current, assignments.c.closed_at.is_(None))
    .group_by(assignments.c.rep_id)
    .subquery()
)
_reps_with_load = sa.select(
    reps, sa.func.coalesce(_open_leads.c.n, 0).label("open_leads")
).outerjoin(_open_leads, _open_leads.c.rep_id == reps.c.id)
_routed_endpoints = sa.select(webhook_endpoints.c.id, webhook_endpoints.c.team_id).where(
    webhook_endpoints.c.enabled, sa.literal(ROUTED) == sa.any_(webhook_endpoints.c.event_types)
)
_close_assignments = (
    sa.update(assignments)
    .where(assignments.c.id == sa.bindparam("key"))
    .values(current=False, closed_at=sa.bindparam("at"))
)
_add_assignments = sa.insert(assignments).execution_options(
    insertmanyvalues_page_size=ROWS_PER_INSERT
)
_add_accounts = (
    insert(accounts)
    .on_conflict_do_nothing()
    .execution_options(insertmanyvalues_page_size=ROWS_PER_INSERT)
)
_move_positions = (
    sa.update(teams)
    .where(teams.c.id == sa.bindparam("key"))
    .values(rr_position=sa.bindparam("position"))
)
# The lead left its rep's open work: the first change that says so sets the instant.
_close_open_work = (
    sa.update(assignments)
    .where(
        assignments.c.lead_id == sa.bindparam("lead"),
        assignments.c.current,
        assignments.c.closed_at.is_(None),
    )
    .values(closed_at=sa.bindparam("at"))
)
_add_deliveries = sa.insert(deliveries).execution_options(
    insertmanyvalues_page_size=ROWS_PER_INSERT
)


def _batch(session: AsyncSession) -> dict | None:
    return session.info.get(BATCH_CACHE)


def _cached(session: AsyncSession, part: str) -> dict | None:
    cache = _batch(session)
    return None if cache is None else cache.setdefault(part, {})


def _count_open(session: AsyncSession, rep_id: uuid.UUID | None, change: int) -> None:
    """Move a rep's cached open-lead count after the transaction assigned or closed one."""
    cache = _batch(session)
    if cache is None or rep_id is None:
        return
    for team_reps in cache.get("reps", {}).values():
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


@dataclass
class Writes:
    """The rows a unit of work's routing decisions write, in decision order; `write` stores
    each kind with one statement."""

    closed: list[dict[str, Any]] = field(default_factory=list)
    assignments: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    routed: list[LeadRouted] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    async def write(self, rt: Runtime, session: AsyncSession) -> None:
        # the closed assignments first: a lead has one current assignment at a time
        if self.closed:
            await session.execute(_close_assignments, self.closed)
        if self.assignments:
            await session.execute(_add_assignments, self.assignments)
        if self.accounts:
            await session.execute(_add_accounts, self.accounts)
        positions = _cached(session, "positions") or {}
        moved = [
            {"key": team_id, "position": position[1]}
            for team_id, position in positions.items()
            if position[1] != position[0]
        ]
        if moved:
            await session.execute(_move_positions, moved)
            for position in positions.values():
                position[0] = position[1]
        await rt.outbox.emit_many(session, [(routed, None) for routed in self.routed])
        for (team, reason), n in Counter((r.team, r.reason) for r in self.routed).items():
            metrics.count_on_commit(session, metrics.leads_routed.labels(team, reason), n)
        if self.deliveries:
            await session.execute(_add_deliveries, self.deliveries)
            touch(session, DELIVERIES_TAG)


def _rep_view(r: Any) -> RepView:  # noqa: ANN401 - a row of reps with its open leads
    return RepView(
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


async def _team_reps(session: AsyncSession, team_id: uuid.UUID) -> list[RepView]:
    cached = _cached(session, "reps")
    if cached is not None and team_id in cached:
        return list(cached[team_id])
    rows = (await session.execute(_reps_with_load.where(reps.c.team_id == team_id))).all()
    team_reps = [_rep_view(r) for r in rows]
    if cached is not None:
        cached[team_id] = team_reps
        return list(team_reps)
    return team_reps


async def _team(session: AsyncSession, team_id: uuid.UUID) -> Any:  # noqa: ANN401 - a teams row
    cached = _cached(session, "teams")
    if cached is not None and team_id in cached:
        return cached[team_id]
    team = (await session.execute(sa.select(teams).where(teams.c.id == team_id))).one()
    if cached is not None:
        cached[team_id] = team
    return team


async def _account(session: AsyncSession, domain: str) -> Any:  # noqa: ANN401 - accounts row
    cached = _cached(session, "accounts")
    if cached is not None and domain in cached:
        return cached[domain]
    owner = (await session.execute(sa.select(accounts).where(accounts.c.domain == domain))).first()
    if cached is not None:
        cached[domain] = owner
    return owner


async def _next_position(session: AsyncSession, team_id: uuid.UUID) -> tuple[Any, int]:
    """The team (locked) and its round-robin position for this decision, moved on by one."""
    positions = _cached(session, "positions")
    if positions is not None and team_id in positions:
        position = positions[team_id]
        position[1] += 1
        return await _team(session, team_id), position[1] - 1
    team = (
        await session.execute(
            sa.update(teams)
            .where(teams.c.id == team_id)
            .values(rr_position=teams.c.rr_position + 1)
            .returning(teams)
        )
    ).one()
    return team, team.rr_position - 1


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
    domain = _domain(mql)
    if domain:
        owner = await _account(session, domain)
        if owner is not None:
            team = await _team(session, owner.team_id)
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
        team, position = await _next_position(session, team_id)
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


def _domain(mql: dict[str, Any]) -> str | None:
    return ((mql.get("company") or {}).get("domain") or "").lower() or None


async def _rules(session: AsyncSession) -> list[RuleView]:
    cache = _batch(session)
    if cache is not None and "rules" in cache:
        return cache["rules"]
    rule_rows = (
        await session.execute(
            sa.select(rules).where(rules.c.active).order_by(rules.c.priority, rules.c.created_at)
        )
    ).all()
    views = [RuleView(r.id, r.name, r.team_id, r.conditions) for r in rule_rows]
    if cache is not None:
        cache["rules"] = views
    return views


async def assign_lead(
    rt: Runtime,
    session: AsyncSession,
    mql: LeadMql,
    reason: str,
    *,
    exclude_rep: uuid.UUID | None = None,
    writes: Writes | None = None,
) -> uuid.UUID | None:
    """Assign (or reassign) the lead; None when a re-sent MQL finds it already routed.

    With `writes`, the rows are added to them for the caller to write; otherwise written now."""
    current = (
        await session.execute(
            sa.select(assignments.c.id, assignments.c.rep_id, assignments.c.closed_at).where(
                assignments.c.lead_id == mql.lead_id, assignments.c.current
            )
        )
    ).first()
    if current is not None and reason == "mql":
        return None  # already routed: a re-sent MQL changes nothing
    planned = writes if writes is not None else Writes()
    assignment_id = await _assign(
        rt, session, mql, mql.model_dump(mode="json"), reason, planned,
        current=current, exclude_rep=exclude_rep,
    )  # fmt: skip
    if writes is None:
        await planned.write(rt, session)
    return assignment_id


async def _assign(
    rt: Runtime,
    session: AsyncSession,
    mql: LeadMql,
    mql_json: dict[str, Any],
    reason: str,
    writes: Writes,
    *,
    current: Any = None,  # noqa: ANN401 - the lead's current assignment (id, rep_id, closed_at)
    exclude_rep: uuid.UUID | None = None,
) -> uuid.UUID:
    """Decide the lead's rep and add the assignment, the account it opens, `lead.routed` and
    its deliveries to `writes`; the cached counts follow the decision."""
    now = rt.clock.now()
    routing = await decide(session, mql_json, now, exclude_rep=exclude_rep)
    team, decision, trace = routing.team, routing.decision, routing.trace
    assignment_id = uuid.uuid4()
    if current is not None:
        writes.closed.append({"key": current.id, "at": now})
        if current.closed_at is None:
            _count_open(session, current.rep_id, -1)
    writes.assignments.append(
        {
            "id": assignment_id,
            "lead_id": mql.lead_id,
            "team_id": team.id,
            "rep_id": decision.rep_id,
            "reason": reason,
            "trace": trace,
            "mql": mql_json,
            "current": True,
            "created_at": now,
            "closed_at": None,
        }
    )
    _count_open(session, decision.rep_id, +1)
    domain = _domain(mql_json)
    if domain and decision.rep_id is not None and trace.get("strategy") != "account_owner":
        known = _cached(session, "accounts")
        if known is None or known.get(domain) is None:
            writes.accounts.append(
                {"domain": domain, "rep_id": decision.rep_id, "team_id": team.id, "since": now}
            )
            if known is not None:  # the account is the domain's from now on, in this batch too
                known[domain] = _Owner(decision.rep_id, team.id)
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
    writes.routed.append(routed)
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
    writes.deliveries += await delivery_rows(session, routed.type, mql.lead_id, team.id, body)
    return assignment_id


@dataclass(frozen=True)
class _Owner:
    """An account a decision of this unit of work opened."""

    rep_id: uuid.UUID
    team_id: uuid.UUID


async def _endpoints(
    session: AsyncSession, event_type: str, team_id: uuid.UUID | None
) -> list[uuid.UUID]:
    e = webhook_endpoints.c
    cached = _cached(session, "endpoints")
    key = (event_type, team_id)
    if cached is not None and key in cached:
        return cached[key]
    endpoint_ids = (
        await session.scalars(
            sa.select(e.id).where(
                e.enabled,
                sa.literal(event_type) == sa.any_(e.event_types),
                sa.or_(e.team_id.is_(None), e.team_id == team_id),
            )
        )
    ).all()
    if cached is not None:
        cached[key] = endpoint_ids
    return endpoint_ids


async def delivery_rows(
    session: AsyncSession,
    event_type: str,
    lead_id: uuid.UUID,
    team_id: uuid.UUID | None,
    body: dict,
) -> list[dict[str, Any]]:
    """The pending deliveries of `body` to every enabled endpoint of the event type and team."""
    endpoint_ids = await _endpoints(session, event_type, team_id)
    if not endpoint_ids:
        return []
    raw = orjson.dumps(body)
    now = datetime.now(UTC)
    return [
        {
            "id": uuid.uuid4(),
            "endpoint_id": endpoint_id,
            "lead_id": lead_id,
            "event_type": event_type,
            "body": raw,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "last_status": None,
            "last_error": None,
            "created_at": now,
            "delivered_at": None,
        }
        for endpoint_id in endpoint_ids
    ]


async def queue_deliveries(
    session: AsyncSession,
    event_type: str,
    lead_id: uuid.UUID,
    team_id: uuid.UUID | None,
    body: dict,
) -> None:
    rows = await delivery_rows(session, event_type, lead_id, team_id, body)
    if rows:
        await session.execute(_add_deliveries, rows)
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


async def _prepare(session: AsyncSession, mqls: list[dict[str, Any]]) -> None:
    """Read what deciding these MQLs needs, once: their accounts, the teams they may go to
    (their rule's and their account's, locked), those teams' reps and the endpoints."""
    cache = session.info.setdefault(BATCH_CACHE, {})
    domains = sorted({d for d in map(_domain, mqls) if d})
    known = cache.setdefault("accounts", {})
    if domains:
        known.update(dict.fromkeys(domains))
        for row in await session.execute(_read_accounts, {"domains": domains}):
            known[row.domain] = row
    candidates = {FALLBACK_TEAM_ID}
    rule_views = await _rules(session)
    for mql in mqls:
        rule, _ = match_rule(rule_views, mql)
        if rule is not None:
            candidates.add(rule.team_id)
    candidates |= {known[d].team_id for d in domains if known[d] is not None}
    team_ids = sorted(candidates)
    locked = (await session.execute(_lock_teams, {"ids": team_ids})).all()
    cache.setdefault("teams", {}).update((team.id, team) for team in locked)
    positions = cache.setdefault("positions", {})
    for team in locked:
        positions.setdefault(team.id, [team.rr_position, team.rr_position])
    team_reps: dict[uuid.UUID, list[RepView]] = {team_id: [] for team_id in team_ids}
    for r in await session.execute(
        _reps_with_load.where(reps.c.team_id == sa.any_(_ids)), {"ids": team_ids}
    ):
        team_reps[r.team_id].append(_rep_view(r))
    cache.setdefault("reps", {}).update(team_reps)
    endpoints = (await session.execute(_routed_endpoints)).all()
    cache.setdefault("endpoints", {}).update(
        ((ROUTED, team_id), [e.id for e in endpoints if e.team_id in (None, team_id)])
        for team_id in team_ids
    )


async def route_batch(rt: Runtime, session: AsyncSession, mqls: list[LeadMql]) -> None:
    """Route a unit of work's MQLs in arrival order, as if one by one: an erased lead is not
    routed, a lead routed already (before or earlier in the batch) stays as it is."""
    ids = sorted({mql.lead_id for mql in mqls})
    # Held until the batch commits: an erasure of one of these leads (another consumer) waits,
    # then finds what the batch wrote; or the batch waits, then finds the lead erased.
    await lock_leads(session, "routing", ids)
    known = {kind: set() for kind in ("erased", "routed")}
    for lead_id, kind in await session.execute(_known_leads, {"ids": ids}):
        known[kind].add(lead_id)
    todo = []
    for mql in mqls:
        if mql.lead_id in known["erased"] or mql.lead_id in known["routed"]:
            continue
        known["routed"].add(mql.lead_id)
        todo.append((mql, mql.model_dump(mode="json")))
    if not todo:
        return
    await _prepare(session, [mql_json for _, mql_json in todo])
    writes = Writes()
    for mql, mql_json in todo:
        await _assign(rt, session, mql, mql_json, "mql", writes)
    await writes.write(rt, session)


async def close_open_work(session: AsyncSession, changes: list[LeadStatusChanged]) -> None:
    """Close the current assignment of each lead a change took out of open work, at the first
    such change of the unit of work (as one by one: a closed assignment stays as it is)."""
    first: dict[uuid.UUID, datetime] = {}
    for change in changes:
        first.setdefault(change.lead_id, change.changed_at)
    if first:
        await session.execute(
            _close_open_work, [{"lead": lead_id, "at": at} for lead_id, at in sorted(first.items())]
        )


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def on_mql(event: CloudEvent, session: AsyncSession) -> None:
        """Checks the payload; `after_mqls` routes the batch."""
        session.info.setdefault(MQLS, {})[event.id] = LeadMql.model_validate(event.data)

    async def after_mqls(events: list[CloudEvent], session: AsyncSession) -> None:
        checked = session.info.pop(MQLS, {})
        await route_batch(rt, session, [checked[event.id] for event in events])

    async def on_escalated(event: CloudEvent, session: AsyncSession) -> None:
        session.info.setdefault(BATCH_CACHE, {})
        escalation = SlaEscalated.model_validate(event.data)
        if escalation.reassign and not await erasure.is_erased(session, escalation.lead_id):
            await reassign(rt, session, escalation.lead_id, "sla_escalation")

    async def on_erased(event: CloudEvent, session: AsyncSession) -> None:
        await erasure.erase(session, uuid.UUID(event.subject), rt.clock.now())

    async def on_status(event: CloudEvent, session: AsyncSession) -> None:
        """Checks the change; `after_status` closes the open work it ends."""
        change = LeadStatusChanged.model_validate(event.data)
        if change.status in OPEN_WORK_ENDS:
            session.info.setdefault(CLOSINGS, {})[event.id] = change

    async def after_status(events: list[CloudEvent], session: AsyncSession) -> None:
        checked = session.info.pop(CLOSINGS, {})
        await close_open_work(session, [checked[e.id] for e in events if e.id in checked])

    return [
        Subscription(
            "mql", (TOPIC_SCORING,), handlers={"lead.mql": on_mql}, after_batch=after_mqls
        ),
        Subscription("sla", (TOPIC_SLA,), handlers={"sla.escalated": on_escalated}),
        Subscription(
            "feedback",
            (TOPIC_FEEDBACK,),
            handlers={"lead.status_changed": on_status},
            after_batch=after_status,
        ),
        Subscription("erasure", (TOPIC_INGEST,), handlers={"lead.erased": on_erased}),
    ]
