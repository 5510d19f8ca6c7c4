"""What routing does: route a batch of MQLs, reassign leads, close a rep's open work, erase a
lead, and the configuration requests; decisions over the store.

A batch of MQLs is decided as a set: `prepare` reads what its decisions need with a fixed
number of statements (the accounts, the rules, the teams the leads may go to — locked in key
order —, those teams' reps with their open leads) into a `Batch`; every
lead is then decided in memory in arrival order, each decision moving the round-robin positions
and open-lead counts the next one sees exactly as deciding the leads one by one would; and the
assignments, accounts, positions and `lead.routed` events are written with one statement
each (notify delivers `lead.routed`, with the MQL it carries, to the sales tools). A
reassignment (manual or on escalation) and a dry run take the same path.

A lead no rep can take now waits in the unassigned queue (`lead.unassigned`, once per wait)
instead of being routed to nobody; the worker `unassigned-queue` gives waiting leads a rep,
oldest first and by the same decision, when one becomes eligible: at once after a change of
reps, teams or rules, or a lead leaving a rep's open work, and every
`unassigned_recheck_seconds` for what time brings (working hours)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leadflow import audit, metrics
from leadflow.contracts.calendar import BusinessCalendar, policy_calendar
from leadflow.contracts.events import (
    LeadMql,
    LeadRouted,
    LeadStatusChanged,
    LeadUnassigned,
    Person,
    SlaEscalated,
    SlaEvent,
    SlaMet,
    TeamDirectory,
)
from leadflow.db import lock_leads, touch
from leadflow.errors import Conflict, LeadGone, NotFound, Unprocessable
from leadflow.paging import Page, PageRequest
from leadflow.service import Runtime
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_routing import store
from leadflow_routing.domain.assignment import (
    Decision,
    Owner,
    RepView,
    RuleView,
    TeamView,
    ends_open_work,
    match_rule,
    mql_domain,
    skip_reason,
    unassigned_reason,
)
from leadflow_routing.domain.strategies import UnknownStrategy, strategy_named, strategy_names
from leadflow_routing.domain.worklist import OPEN, clocks_opened, work_state
from leadflow_routing.models import FALLBACK_TEAM_ID
from leadflow_routing.schemas import (
    AccountIn,
    AccountOut,
    AccountPatch,
    AssignmentOut,
    DryRunIn,
    DryRunOut,
    RepIn,
    RepOut,
    RepPatch,
    RoutingConfig,
    RoutingConfigOut,
    RuleIn,
    RuleOut,
    RulePatch,
    TeamIn,
    TeamOut,
    TeamPatch,
    WaitingOut,
    WorkItem,
)

log = logging.getLogger(__name__)
ACCOUNT_OWNER = "account_owner"  # the trace's strategy when the account's owner takes the lead
NO_TEAM = "none"  # the team label of the queue's metrics for leads no team claims
# A unit of work that may have made a waiting lead assignable (a rep, team or rule changed, a
# lead left a rep's open work) touches this: its commit wakes the queue's worker at once.
QUEUE_TAG = "routing.unassigned"
WAITING_PAGE = 500  # waiting leads decided per unit of work
RECOUNT_SECONDS = 3600.0  # real seconds between checks of the reps' counts of open leads

# --- routing ------------------------------------------------------------------------------


@dataclass
class Position:
    """A team's round-robin position: as read, and as this unit of work's decisions moved it."""

    read: int
    next: int


@dataclass
class Batch:
    """What one unit of work's routing decisions read, once, kept up to date with its own
    decisions: positions moved, reps' open leads and last assignments, accounts opened. A
    team routed by rule is locked until the transaction ends (except for a dry run), so no
    other transaction moves its position or adds to its reps' leads meanwhile. Lives as long
    as its transaction."""

    rules: list[RuleView]
    teams: dict[uuid.UUID, TeamView]
    positions: dict[uuid.UUID, Position]
    reps: dict[uuid.UUID, list[RepView]]  # team id -> its reps
    accounts: dict[str, Owner | None]  # domain -> owner; None: nobody owns it yet
    # rep id -> (team id, index in its team's list): where a decision's counts are moved
    _seats: dict[uuid.UUID, tuple[uuid.UUID, int]] = field(init=False, repr=False)
    # team id -> its business calendar (the policy's when it has none), built once
    _calendars: dict[uuid.UUID, BusinessCalendar | None] = field(
        init=False, repr=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        self._seats = {
            rep.id: (team_id, index)
            for team_id, team_reps in self.reps.items()
            for index, rep in enumerate(team_reps)
        }

    def take_position(self, team_id: uuid.UUID) -> int:
        """The team's position for this decision; the next decision gets the one after."""
        position = self.positions[team_id]
        position.next += 1
        return position.next - 1

    def give_back_position(self, team_id: uuid.UUID) -> None:
        """The last decision's turn goes unused (its lead keeps waiting): the next one gets it."""
        self.positions[team_id].next -= 1

    def assigned(self, rep_id: uuid.UUID | None, at: datetime) -> None:
        """A lead was assigned to the rep: one more open lead, and its last assignment."""
        self._update(rep_id, +1, last_assigned_at=at)

    def left_open_work(self, rep_id: uuid.UUID | None) -> None:
        """One of the rep's leads left its open work (it was routed to someone else)."""
        self._update(rep_id, -1)

    def _update(self, rep_id: uuid.UUID | None, change: int, **fields: Any) -> None:
        seat = self._seats.get(rep_id) if rep_id is not None else None
        if seat is None:
            return
        team_id, index = seat
        rep = self.reps[team_id][index]
        self.reps[team_id][index] = dataclasses.replace(
            rep, open_leads=max(rep.open_leads + change, 0), **fields
        )

    def calendar(self, rt: Runtime, team: TeamView) -> BusinessCalendar | None:
        """The team's calendar for its leads' SLA clocks; None when it cannot be built (the
        clocks are then left to sla-timer's events)."""
        if team.id not in self._calendars:
            try:
                spec = team.calendar
                built = BusinessCalendar.from_spec(spec) if spec else policy_calendar(rt.policy)
            except ValueError:
                built = None
            self._calendars[team.id] = built
        return self._calendars[team.id]

    def moved_positions(self) -> list[dict[str, Any]]:
        """The positions to write; from then on they count as read."""
        moved = []
        for team_id, position in self.positions.items():
            if position.next != position.read:
                moved.append({"key": team_id, "position": position.next})
                position.read = position.next
        return moved


@dataclass
class Routing:
    """A routing decision with everything the trace and the assignment need."""

    team: TeamView
    decision: Decision
    trace: dict[str, Any]
    reps: list[RepView]


async def prepare(session: AsyncSession, mqls: list[dict[str, Any]], *, lock: bool = True) -> Batch:
    """Read what deciding these MQLs needs, once: their accounts, the rules, the teams they
    may go to (their rule's, their account's and the fallback queue, locked unless `lock` is
    False) and those teams' reps."""
    domains = sorted({domain for domain in map(mql_domain, mqls) if domain})
    owners = await store.account_owners(session, domains)
    rules = await store.active_rules(session)
    candidates = {FALLBACK_TEAM_ID} | {owner.team_id for owner in owners.values()}
    for mql in mqls:
        rule, _ = match_rule(rules, mql)
        if rule is not None:
            candidates.add(rule.team_id)
    team_ids = sorted(candidates)
    found = await store.read_teams(session, team_ids, lock=lock)
    team_reps = await store.team_reps(session, team_ids)
    return Batch(
        rules=rules,
        teams={team.id: team for team in found},
        positions={team.id: Position(team.rr_position, team.rr_position) for team in found},
        reps=team_reps,
        accounts={domain: owners.get(domain) for domain in domains},
    )


def decide(
    batch: Batch, mql: dict[str, Any], now: datetime, *, exclude_rep: uuid.UUID | None = None
) -> Routing:
    """Account owner first, else the first matching rule's team (or the fallback queue), then
    the team's strategy. Every step is written to the trace."""
    trace: dict[str, Any] = {"account": None, "rule": None, "rules_tried": []}
    domain = mql_domain(mql)
    owner = batch.accounts.get(domain) if domain else None
    if owner is not None:
        team = batch.teams[owner.team_id]
        team_reps = list(batch.reps[team.id])
        rep = next((r for r in team_reps if r.id == owner.rep_id), None)
        reason = "reassigned_from" if rep and rep.id == exclude_rep else None
        reason = reason or (skip_reason(rep, now) if rep else "not_in_team")
        trace["account"] = {"domain": domain, "owner": str(owner.rep_id), "skipped": reason}
        if reason is None:
            trace.update(team=team.name, strategy=ACCOUNT_OWNER)
            chosen = [{"rep_id": str(rep.id), "name": rep.name, "skipped": None, "chosen": True}]
            return Routing(team, Decision(rep.id, chosen), trace, team_reps)
    rule, tried = match_rule(batch.rules, mql)
    trace["rules_tried"] = tried
    trace["rule"] = rule.name if rule else None
    team = batch.teams[rule.team_id if rule else FALLBACK_TEAM_ID]
    position = batch.take_position(team.id)
    team_reps = list(batch.reps[team.id])
    eligible = [r for r in team_reps if r.id != exclude_rep]
    decision = strategy_named(team.strategy)(eligible, position, now)
    if exclude_rep is not None:
        excluded = next((r for r in team_reps if r.id == exclude_rep), None)
        if excluded is not None:
            decision.considered.insert(
                0, {"rep_id": str(excluded.id), "name": excluded.name, "skipped": "reassigned_from"}
            )
    trace.update(team=team.name, strategy=team.strategy, position=position)
    trace["considered"] = decision.considered
    return Routing(team, decision, trace, team_reps)


@dataclass
class Writes:
    """The rows and events of a unit of work's routing decisions, in decision order; `write`
    stores each kind with one statement."""

    closed: list[dict[str, Any]] = field(default_factory=list)
    assignments: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    routed: list[LeadRouted] = field(default_factory=list)
    unassigned: list[LeadUnassigned] = field(default_factory=list)
    # each event with the label of the policy version its decision was made under
    events: list[tuple[LeadRouted | LeadUnassigned, str | None]] = field(default_factory=list)
    queued: list[dict[str, Any]] = field(default_factory=list)
    left_queue: list[uuid.UUID] = field(default_factory=list)
    still_waiting: list[dict[str, Any]] = field(default_factory=list)
    waits: list[tuple[str, float]] = field(default_factory=list)  # (team, real seconds waited)
    # leads given a new assignment: their SLA clocks are these from now on (none while waiting)
    reassigned: list[uuid.UUID] = field(default_factory=list)
    clocks: list[dict[str, Any]] = field(default_factory=list)
    # rep id -> the change to its count of open leads (written last: store.count_open_work)
    open_work: Counter[uuid.UUID] = field(default_factory=Counter)

    def close(self, assignment_id: uuid.UUID, at: datetime) -> None:
        """The assignment is no longer the lead's current one (one made by this unit of work
        is written closed)."""
        pending = self.assignments.get(assignment_id)
        if pending is not None:
            pending.update(current=False, closed_at=at)
        else:
            self.closed.append({"key": assignment_id, "at": at})

    def emit(self, event: LeadRouted | LeadUnassigned, policy_version: str | None) -> None:
        self.events.append((event, policy_version))
        (self.routed if isinstance(event, LeadRouted) else self.unassigned).append(event)

    async def write(self, rt: Runtime, session: AsyncSession, batch: Batch) -> None:
        await store.write_routing(
            session,
            closed=self.closed,
            added=list(self.assignments.values()),
            opened_accounts=self.accounts,
            positions=batch.moved_positions(),
            queued=self.queued,
            left_queue=self.left_queue,
            still_waiting=self.still_waiting,
        )
        await store.open_clocks(session, self.reassigned, self.clocks)
        await rt.outbox.emit_many(session, self.events)
        for (team, reason), n in Counter((r.team, r.reason) for r in self.routed).items():
            metrics.count_on_commit(session, metrics.leads_routed.labels(team, reason), n)
        for (team, reason), n in Counter(
            (e.team or NO_TEAM, e.reason) for e in self.unassigned
        ).items():
            metrics.count_on_commit(session, metrics.mql_unassigned.labels(team, reason), n)
        if self.waits:
            metrics.observe_on_commit(
                session, [(metrics.unassigned_wait.labels(team), s) for team, s in self.waits]
            )
        await store.count_open_work(session, self.open_work)


@dataclass
class Outcome:
    """A lead's state after a routing decision: its current assignment, and its place in the
    unassigned queue while no rep has it."""

    current: store.Current
    waiting: store.Waiting | None = None


def assign(
    rt: Runtime,
    batch: Batch,
    writes: Writes,
    mql: LeadMql,
    mql_json: dict[str, Any],
    reason: str,
    now: datetime,
    *,
    current: store.Current | None = None,
    waiting: store.Waiting | None = None,
) -> Outcome:
    """Decide the lead's rep (away from its current one, if any) and add the assignment, the
    account it opens and `lead.routed` to `writes`; the batch's counts follow the decision.

    When no rep can take the lead, it waits in the unassigned queue (`lead.unassigned`, once
    per wait; its current assignment has no rep and keeps the trace); a lead waiting already
    stays as it is, and the round-robin turn its decision took is given back. A waiting lead
    that finds a rep leaves the queue and is routed as any other, with the reason it was
    being routed for."""
    away_from = current.rep_id if current and current.rep_id else None
    if waiting is not None:
        away_from = waiting.away_from
    policy = rt.policy  # the version this decision is made under, recorded with it
    routing = decide(batch, mql_json, now, exclude_rep=away_from)
    team, decision, trace = routing.team, routing.decision, routing.trace
    trace["policy_version"] = policy.version
    if decision.rep_id is None:
        why = unassigned_reason(trace.get("considered", []), by_rule=trace["rule"] is not None)
        team_id = None if why == "no_team" else team.id
        if waiting is not None:
            batch.give_back_position(team.id)
            if (why, team_id) != (waiting.reason, waiting.team_id):
                writes.still_waiting.append({"key": waiting.lead_id, "team": team_id, "why": why})
                waiting = dataclasses.replace(waiting, reason=why, team_id=team_id)
            assert current is not None
            return Outcome(current, waiting)
    elif waiting is not None:
        writes.left_queue.append(waiting.lead_id)
        writes.waits.append((team.name, rt.clock.real_seconds(now - waiting.queued_at)))
        trace["waited_since"] = waiting.queued_at.isoformat()
    assignment_id = uuid.uuid4()
    if current is not None:
        writes.close(current.id, now)
        if current.closed_at is None:
            batch.left_open_work(current.rep_id)
            if current.rep_id is not None:
                writes.open_work[current.rep_id] -= 1
    writes.assignments[assignment_id] = {
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
    assigned = store.Current(assignment_id, decision.rep_id, None, mql_json)
    writes.reassigned.append(mql.lead_id)
    if decision.rep_id is None:
        queued = store.Waiting(mql.lead_id, team_id, why, reason, away_from, now)
        writes.queued.append(dataclasses.asdict(queued))
        writes.emit(
            LeadUnassigned(
                lead_id=mql.lead_id,
                team_id=team_id,
                team=team.name if team_id else None,
                reason=why,
                queued_at=now,
                channel=mql.channel,
                kind=mql.kind,
                trace=trace,
            ),
            policy.version,
        )
        return Outcome(assigned, queued)
    batch.assigned(decision.rep_id, now)
    writes.open_work[decision.rep_id] += 1
    domain = mql_domain(mql_json)
    if domain and trace.get("strategy") != ACCOUNT_OWNER:
        if batch.accounts.get(domain) is None:
            writes.accounts.append(
                {"domain": domain, "rep_id": decision.rep_id, "team_id": team.id, "since": now}
            )
            batch.accounts[domain] = Owner(decision.rep_id, team.id)  # in this batch too
    calendar = batch.calendar(rt, team)
    if calendar is not None:
        for sla, due_at in clocks_opened(policy, mql.kind, mql.channel, calendar, now):
            writes.clocks.append(
                {"lead_id": mql.lead_id, "sla": sla, "started_at": now, "due_at": due_at,
                 "level": OPEN}
            )  # fmt: skip
    rep = next((r for r in routing.reps if r.id == decision.rep_id), None)
    writes.emit(
        LeadRouted(
            lead_id=mql.lead_id,
            assignment_id=assignment_id,
            team_id=team.id,
            team=team.name,
            rep_id=decision.rep_id,
            rep_name=rep.name if rep else None,
            channel=mql.channel,
            reason=reason,
            routed_at=now,
            calendar=team.calendar,
            kind=mql.kind,
            mql=mql_json,
        ),
        policy.version,
    )
    return Outcome(assigned)


async def route_batch(rt: Runtime, session: AsyncSession, mqls: list[LeadMql]) -> None:
    """Route a unit of work's MQLs in arrival order, as if one by one: an erased lead is not
    routed, a lead routed already (before or earlier in the batch) stays as it is."""
    ids = sorted({mql.lead_id for mql in mqls})
    # Held until the batch commits: an erasure of one of these leads (another consumer) waits,
    # then finds what the batch wrote; or the batch waits, then finds the lead erased.
    await lock_leads(session, "routing", ids)
    known = await store.known_leads(session, ids)
    todo = []
    for mql in mqls:
        if mql.lead_id in known["erased"] or mql.lead_id in known["routed"]:
            continue
        known["routed"].add(mql.lead_id)
        todo.append((mql, mql.model_dump(mode="json")))
    if not todo:
        return
    batch = await prepare(session, [mql_json for _, mql_json in todo])
    writes = Writes()
    for mql, mql_json in todo:
        assign(rt, batch, writes, mql, mql_json, "mql", rt.clock.now())
    await writes.write(rt, session, batch)


async def reassign(
    rt: Runtime, session: AsyncSession, lead_ids: list[uuid.UUID], reason: str
) -> set[uuid.UUID]:
    """Route the leads again, in order, each away from its current rep (a lead listed twice is
    routed away from the rep it got the first time); returns those that had been routed (the
    others are left alone). A lead waiting for a rep is tried again (it keeps its place in the
    queue if there is still none); one that no other rep can take now waits in the queue.

    Lock order, as routing a new batch and assigning waiting leads take them: the leads, then
    their queue rows and current assignments, then the teams."""
    await lock_leads(session, "routing", lead_ids)
    waiting = await store.lock_waiting(session, lead_ids)
    currents = await store.lock_current(session, lead_ids)
    todo = [(lead_id, LeadMql.model_validate(currents[lead_id].mql)) for lead_id in lead_ids
            if lead_id in currents]  # fmt: skip
    if not todo:
        return set()
    mql_jsons = [mql.model_dump(mode="json") for _, mql in todo]
    batch = await prepare(session, mql_jsons)
    writes = Writes()
    for (lead_id, mql), mql_json in zip(todo, mql_jsons, strict=True):
        outcome = assign(
            rt, batch, writes, mql, mql_json, reason, rt.clock.now(),
            current=currents[lead_id], waiting=waiting.get(lead_id),
        )  # fmt: skip
        currents[lead_id] = outcome.current
        if outcome.waiting is not None:
            waiting[lead_id] = outcome.waiting
        else:
            waiting.pop(lead_id, None)
    await writes.write(rt, session, batch)
    return set(currents)


async def follow_clocks(rt: Runtime, session: AsyncSession, events: list[SlaEvent]) -> None:
    """sla-timer's word on the clocks of leads in open work (a level fired, a clock met), kept
    for the worklists; then the escalations that ask for it route their lead again."""
    fired: list[dict[str, Any]] = []
    met: list[dict[str, Any]] = []
    for event in events:
        match event:
            case SlaMet():
                met.append(
                    {"lead": event.lead_id, "sla_name": event.sla, "started": event.started_at}
                )
            case _:
                fired.append(
                    {"lead_id": event.lead_id, "sla": event.sla, "started_at": event.started_at,
                     "due_at": event.due_at, "level": event.level}
                )  # fmt: skip
    await lock_leads(session, "routing", [event.lead_id for event in events])
    await store.clocks_fired(session, fired)
    await store.clocks_met(session, met)
    await reassign_escalated(
        rt, session, [event for event in events if isinstance(event, SlaEscalated)]
    )


async def reassign_escalated(
    rt: Runtime, session: AsyncSession, escalations: list[SlaEscalated]
) -> None:
    """An escalation that asks for it routes its lead again, unless the lead was erased."""
    wanted = [escalation.lead_id for escalation in escalations if escalation.reassign]
    if not wanted:
        return
    erased = await store.erased_among(session, wanted)
    await reassign(rt, session, [lead for lead in wanted if lead not in erased], "sla_escalation")


async def close_open_work(session: AsyncSession, changes: list[LeadStatusChanged]) -> None:
    """Close the current assignment of each lead a change took out of open work, at the first
    such change of the unit of work (as one by one: a closed assignment stays as it is). The
    rep has a place free again: the unassigned queue is looked at once this commits. A lead
    that leaves open work while waiting for a rep leaves the queue."""
    first: dict[uuid.UUID, datetime] = {}
    for change in changes:
        if ends_open_work(change.status):
            first.setdefault(change.lead_id, change.changed_at)
    if first:
        await lock_leads(session, "routing", first)
        left = await store.close_open_work(session, first)
        await store.close_clocks(session, first)
        await store.count_open_work(session, left)
        touch(session, QUEUE_TAG)


# --- the unassigned queue -----------------------------------------------------------------


async def assign_waiting(rt: Runtime) -> int:
    """Give each waiting lead a rep if one of its team can take it now, oldest first, with the
    same decision (and trace) as routing it on arrival; returns how many got one.

    The queue is walked a page per unit of work. Each page takes the leads' locks first (as
    routing, reassigning and erasing them do), then reads their queue rows again, locked
    (`SKIP LOCKED`): a lead another replica assigned meanwhile has left the queue and is not
    seen, so no waiting lead is assigned twice."""
    assigned = 0
    after = 0
    while not rt.stop:
        async with rt.db.unit_of_work() as session:
            page = await store.waiting_page(session, after, WAITING_PAGE)
            if not page:
                break
            after = page[-1][1]
            lead_ids = [lead_id for lead_id, _ in page]
            await lock_leads(session, "routing", lead_ids)
            waiting = await store.lock_waiting(session, lead_ids)
            currents = await store.lock_current(session, list(waiting))
            todo = [
                (waiting[lead_id], currents[lead_id])
                for lead_id in lead_ids
                if lead_id in waiting and lead_id in currents
            ]
            if todo:
                mqls = [LeadMql.model_validate(current.mql) for _, current in todo]
                mql_jsons = [mql.model_dump(mode="json") for mql in mqls]
                batch = await prepare(session, mql_jsons)
                writes = Writes()
                now = rt.clock.now()
                for (wait, current), mql, mql_json in zip(todo, mqls, mql_jsons, strict=True):
                    assign(
                        rt, batch, writes, mql, mql_json, wait.routing_reason, now,
                        current=current, waiting=wait,
                    )  # fmt: skip
                await writes.write(rt, session, batch)
                assigned += len(writes.routed)
        if len(page) < WAITING_PAGE:
            break
    return assigned


async def measure_waiting(rt: Runtime) -> None:
    """Set the queue's gauges per team: how many leads wait and the real seconds the oldest
    has waited (every team present, at 0 while none of its leads waits)."""
    async with rt.db.unit_of_work() as session:
        waiting, names = await store.waiting_by_team(session)
    now = rt.clock.now()
    metrics.unassigned_waiting.clear()
    metrics.unassigned_oldest_age.clear()
    for team_id, name in [*names.items(), (None, NO_TEAM)]:
        n, oldest = waiting.get(team_id, (0, None))
        age = rt.clock.real_seconds(now - oldest) if oldest is not None else 0.0
        metrics.unassigned_waiting.labels(name).set(n)
        metrics.unassigned_oldest_age.labels(name).set(age)


async def run_unassigned_queue(rt: Runtime) -> None:
    """Worker: assign waiting leads whose team has an eligible rep, and keep the queue's
    gauges. Looks again every `unassigned_recheck_seconds` (working hours begin, out of office
    ends with time, on the service's clock) and at once when a commit touched `QUEUE_TAG` (a
    rep, team or rule changed through the API, a lead left a rep's open work)."""
    wake = rt.state.get(QUEUE_TAG)
    if wake is None:
        wake = rt.state[QUEUE_TAG] = asyncio.Event()
        rt.db.on_commit(QUEUE_TAG, wake.set)
    recounted = -RECOUNT_SECONDS
    while not rt.stop:
        wake.clear()
        if time.monotonic() - recounted >= RECOUNT_SECONDS:
            await recount_open_work(rt)
            recounted = time.monotonic()
        await assign_waiting(rt)
        await measure_waiting(rt)
        await rt.stop.pause(await next_look(rt), wake)


async def recount_open_work(rt: Runtime) -> dict[uuid.UUID, int]:
    """Check each rep's count of open leads against the assignments and mend a wrong one;
    returns the wrong ones as they were. Routing keeps the counts as it opens and closes
    work; a count can only be off after a routing that did not keep them wrote assignments
    (during an upgrade to the version that brought them), so a wrong one is logged."""
    async with rt.db.unit_of_work() as session:
        await store.add_missing_counts(session)
    async with rt.db.unit_of_work() as session:
        wrong = await store.recount_open_work(session)
    if wrong:
        log.warning(
            "reps' counts of open leads mended",
            extra={"reps": len(wrong), "rep_ids": sorted(map(str, wrong))[:20]},
        )
    return wrong


async def next_look(rt: Runtime) -> float:
    """Real seconds until the queue is looked at again: the recheck interval, or sooner when a
    rep's out of office ends by itself before that (the leads waiting for them go at once)."""
    now = rt.clock.now()
    async with rt.db.unit_of_work() as session:
        ends = await store.next_out_of_office_end(session, now)
    wait = rt.settings.unassigned_recheck_seconds
    if ends is not None:
        wait = min(wait, rt.clock.real_seconds(ends - now) + 0.01)
    return wait


async def list_waiting(rt: Runtime, wanted: PageRequest) -> Page[WaitingOut]:
    """The leads waiting for a rep, in queue order (oldest first) unless sorted otherwise."""
    async with rt.db.unit_of_work() as session:
        rows = await store.page_waiting(session, wanted)
    now = rt.clock.now()
    return wanted.page(
        rows,
        lambda r: WaitingOut(
            lead_id=r.lead_id,
            team_id=r.team_id,
            team=r.team,
            reason=r.reason,
            queued_at=r.queued_at,
            waited_seconds=max((now - r.queued_at).total_seconds(), 0.0),
        ),
    )


async def worklist(
    rt: Runtime,
    wanted: PageRequest,
    *,
    rep_id: uuid.UUID | None = None,
    team_id: uuid.UUID | None = None,
) -> Page[WorkItem]:
    """A rep's or a team's open leads, each with its clock due first: overdue first, then by
    the time left; leads with no open clock last."""
    async with rt.db.unit_of_work() as session:
        if rep_id is not None and await store.rep_row(session, rep_id) is None:
            raise NotFound(f"rep {rep_id} not found")
        if team_id is not None and not await store.team_exists(session, team_id):
            raise NotFound(f"team {team_id} not found")
        rows = await store.page_worklist(session, wanted, rep_id=rep_id, team_id=team_id)
    now = rt.clock.now()

    def item(r: Row) -> WorkItem:
        state, left = work_state(r.due_at, r.level, now)
        return WorkItem(
            lead_id=r.lead_id,
            team_id=r.team_id,
            rep_id=r.rep_id,
            kind=r.kind,
            channel=r.channel,
            assigned_at=r.assigned_at,
            sla=r.sla,
            sla_level=r.level,
            due_at=r.due_at,
            seconds_left=left,
            state=state,
        )

    return wanted.page(rows, item)


async def dry_run(rt: Runtime, body: DryRunIn) -> DryRunOut:
    """Where a lead like this would go now, and why; nothing is locked or written."""
    mql = body.model_dump(mode="json")
    async with rt.db.unit_of_work() as session:
        batch = await prepare(session, [mql], lock=False)
    routing = decide(batch, mql, rt.clock.now())
    routing.trace["policy_version"] = rt.policy.version
    return DryRunOut(
        team_id=routing.team.id,
        team=routing.team.name,
        rep_id=routing.decision.rep_id,
        trace=routing.trace,
    )


async def reassign_on_request(rt: Runtime, lead_id: uuid.UUID) -> AssignmentOut:
    """Route the lead again, away from its current rep (`lead.routed` with reason manual)."""
    async with rt.db.unit_of_work() as session:
        if await store.is_erased(session, lead_id):
            raise LeadGone(lead_id, field="lead_id")
        if not await reassign(rt, session, [lead_id], "manual"):
            raise NotFound(f"lead {lead_id} has not been routed")
    return await current_assignment(rt, lead_id)


async def current_assignment(rt: Runtime, lead_id: uuid.UUID) -> AssignmentOut:
    async with rt.db.unit_of_work() as session:
        row = await store.current_assignment(session, lead_id)
    if row is None:
        raise NotFound(f"lead {lead_id} has not been routed")
    return AssignmentOut(
        lead_id=row.lead_id,
        assignment_id=row.id,
        team_id=row.team_id,
        rep_id=row.rep_id,
        reason=row.reason,
        trace=row.trace,
        policy_version=row.trace.get("policy_version"),
        created_at=row.created_at,
    )


# --- erasure ------------------------------------------------------------------------------


async def erase(session: AsyncSession, lead_ids: list[uuid.UUID], now: datetime) -> None:
    """What routing keeps of erased leads: assignments without personal data, its outbox's
    events of them forgotten, and the leads' ids, so that an MQL arriving after the erasure
    (`lead.mql` and `lead.erased` travel on different topics) is not routed.

    Serialised with the routing of the same leads (`lock_leads`), so a batch routing one of
    them at the same moment is either seen here or sees the lead erased."""
    await lock_leads(session, "routing", lead_ids)
    for lead_id in dict.fromkeys(lead_ids):
        await store.erase_lead(session, lead_id, now)
    await store.close_clocks(session, lead_ids)
    await store.forget_lead_events(session, list(dict.fromkeys(lead_ids)))


# --- configuration ------------------------------------------------------------------------


async def keep_strategies_checked(rt: Runtime) -> None:
    """At start: the database accepts exactly the registry's strategies in `teams.strategy`.

    Kept here rather than in a migration so that adding a strategy touches only the registry
    (domain/strategies.py): the CHECK constraint follows the code that runs. It is replaced
    only when it differs, under a lock, so replicas starting together change it once. A team
    using a strategy this version does not know stops the start, naming the team, rather than
    being routed by another strategy."""
    names = strategy_names()
    async with rt.db.unit_of_work() as session:
        await store.lock_strategy_check(session)
        if await store.checked_strategies(session) == set(names):
            return
        unknown = await store.teams_with_other_strategies(session, names)
        if unknown:
            listed = ", ".join(f"team {team!r} uses {strategy!r}" for team, strategy in unknown)
            raise UnknownStrategy(
                f"{listed}: not a routing strategy of this version (known: {', '.join(names)})"
            )
        await store.replace_strategy_check(session, names)


async def publish_directory(
    rt: Runtime, session: AsyncSession, team_ids: Iterable[uuid.UUID]
) -> None:
    """`team.directory` of each of these teams as the unit of work leaves it: who is on the
    team and how to reach them (notify tells them of their leads' clocks)."""
    now = rt.clock.now()
    for team, members in await store.directory(session, team_ids):
        await rt.outbox.emit(
            session,
            TeamDirectory(
                lead_id=team.id,
                team_id=team.id,
                team=team.name,
                team_lead=team.team_lead,
                manager=team.manager,
                reps=[
                    Person(
                        id=r.id,
                        name=r.name,
                        email=r.email,
                        slack_member_id=r.slack_member_id,
                        teams_upn=r.teams_upn,
                        language=r.language,
                        timezone=r.timezone,
                        working_hours=r.working_hours,
                        capacity=r.capacity,
                    )
                    for r in members
                    if r.active
                ],  # fmt: skip
                slack_webhook_url=team.slack_webhook_url,
                teams_webhook_url=team.teams_webhook_url,
                changed_at=now,
            ),
        )


async def _locked(session: AsyncSession, entity: str, row_id: uuid.UUID) -> Row:
    """The team, rep or rule locked for a change or a deletion; 404 when there is none."""
    row = await store.locked_row(session, entity, row_id)
    if row is None:
        raise NotFound(f"{entity} {row_id} not found")
    return row


async def _locked_account(session: AsyncSession, domain: str) -> Row:
    row = await store.locked_account(session, domain)
    if row is None:
        raise NotFound(f"account {domain} has no owner")
    return row


async def _recorded(
    rt: Runtime,
    session: AsyncSession,
    action: audit.Action,
    entity: str,
    entity_id: object,
    *,
    before: Any = None,
    after: Any = None,
) -> None:
    """Audit a change of the configuration; the leads waiting for a rep are looked at again
    as soon as it commits."""
    await audit.record(
        session,
        rt.spec.metadata,
        action=action,
        entity=entity,
        entity_id=entity_id,
        before=before,
        after=after,
    )
    touch(session, QUEUE_TAG)


def _team_out(row: Row) -> TeamOut:
    return TeamOut.model_validate({c: getattr(row, c) for c in TeamOut.model_fields})


async def create_team(rt: Runtime, body: TeamIn) -> TeamOut:
    team_id = uuid.uuid4()
    try:
        async with rt.db.unit_of_work() as session:
            await store.add_team(session, team_id, body.model_dump())
            created = TeamOut(id=team_id, is_fallback=False, **body.model_dump())
            await _recorded(rt, session, "created", "team", team_id, after=created)
            await publish_directory(rt, session, [team_id])
    except IntegrityError as exc:
        raise Conflict(f"a team named '{body.name}' exists", field="name") from exc
    return created


async def change_team(rt: Runtime, team_id: uuid.UUID, body: TeamPatch) -> TeamOut:
    """Rename, change the strategy, the team lead, the manager or the channels; notify hears of
    it at once."""
    changes = body.model_dump(exclude_unset=True)
    if changes.get("name", "") is None or changes.get("strategy", "") is None:
        field = "name" if changes.get("name", "") is None else "strategy"
        raise Unprocessable(f"{field} cannot be removed", field=field)
    try:
        async with rt.db.unit_of_work() as session:
            before = await _locked(session, "team", team_id)
            row = await store.patch_team(session, team_id, changes)
            await _recorded(
                rt,
                session,
                "changed",
                "team",
                team_id,
                before=_team_out(before),
                after=_team_out(row),
            )
            await publish_directory(rt, session, [team_id])
    except IntegrityError as exc:
        raise Conflict(f"a team named '{body.name}' exists", field="name") from exc
    return _team_out(row)


async def list_teams(rt: Runtime, wanted: PageRequest) -> Page[TeamOut]:
    async with rt.db.unit_of_work() as session:
        rows = await store.page_teams(session, wanted)
    return wanted.page(rows, _team_out)


async def get_team(rt: Runtime, team_id: uuid.UUID) -> TeamOut:
    async with rt.db.unit_of_work() as session:
        row = await store.team_row(session, team_id)
    if row is None:
        raise NotFound(f"team {team_id} not found")
    return _team_out(row)


def _counted(uses: dict[str, int]) -> dict[str, int]:
    """What uses a thing, for the problem's `uses` member: {"reps": 2, "open_leads": 1}."""
    return {use.replace(" ", "_"): n for use, n in uses.items() if n}


def _refuse_in_use(what: str, uses: dict[str, int], remedy: str) -> None:
    """409 when anything uses `what`: `what` is still used by…, naming each use and how many,
    then the remedy."""
    named = [f"{n} {use if n != 1 else use.removesuffix('s')}" for use, n in uses.items() if n]
    if named:
        used = f"{what} is still used by {', '.join(named)}"
        raise Conflict(f"{used}: {remedy}", uses=_counted(uses))


async def delete_team(rt: Runtime, team_id: uuid.UUID) -> None:
    """Delete a team nothing uses: no reps, rules, accounts, leads in open work or waiting;
    else 409 naming what uses it. The fallback team stays."""
    async with rt.db.unit_of_work() as session:
        before = await _locked(session, "team", team_id)
        if before.is_fallback:
            raise Conflict("the fallback team takes the leads no rule claims: it cannot be deleted")
        uses = await store.team_uses(session, team_id)
        _refuse_in_use(f"team '{before.name}'", uses, "move or delete them first")
        await store.delete_team(session, team_id)
        await _recorded(rt, session, "deleted", "team", team_id, before=_team_out(before))


def _rep_out(row: Row, now: datetime | None = None) -> RepOut:
    """A rep as the API shows it; with `now`, whether it is away now and its open leads."""
    rep = RepOut.model_validate(row._asdict())
    if now is None:
        return rep
    until = row.out_of_office_until
    away = row.out_of_office and (until is None or now < until)
    return rep.model_copy(update={"away": away, "open_leads": getattr(row, "open_leads", 0)})


# What a null in a rep's PATCH removes; any other field refuses a null (422 naming it).
REMOVABLE_REP_FIELDS = frozenset(
    {"email", "slack_member_id", "teams_upn", "timezone", "working_hours", "out_of_office_until"}
)


def _out_of_office(changes: dict[str, Any], given: set[str], now: datetime) -> dict[str, Any]:
    """An until alone sets the rep out of office; back in office clears the until; an until
    already past is refused."""
    until = changes.get("out_of_office_until")
    if until is not None:
        if until <= now:
            raise Unprocessable(
                f"out_of_office_until {until.isoformat()} has passed", field="out_of_office_until"
            )
        if "out_of_office" not in given:
            changes["out_of_office"] = True
    if changes.get("out_of_office") is False:
        changes["out_of_office_until"] = None
    return changes


async def _team_must_exist(session: AsyncSession, team_id: uuid.UUID) -> None:
    if not await store.team_exists(session, team_id):
        raise Unprocessable(
            f"team {team_id} does not exist",
            field="team_id",
            errors=[{"field": "team_id", "message": "unknown team"}],
        )


async def create_rep(rt: Runtime, body: RepIn) -> RepOut:
    rep_id = uuid.uuid4()
    now = rt.clock.now()
    values = _out_of_office(body.model_dump(), body.model_fields_set, now)
    values["team_id"] = body.team_id or FALLBACK_TEAM_ID
    async with rt.db.unit_of_work() as session:
        await _team_must_exist(session, values["team_id"])
        await store.add_rep(session, rep_id, values)
        created = RepOut(id=rep_id, **values)
        await _recorded(rt, session, "created", "rep", rep_id, after=created)
        await publish_directory(rt, session, [values["team_id"]])
        row = await store.rep_row(session, rep_id)
    return _rep_out(row, now)


async def change_rep(rt: Runtime, rep_id: uuid.UUID, body: RepPatch) -> RepOut:
    """Out of office (until when), inactive, capacity, weight, hours or a move to another team
    take effect on the next lead, and on the leads waiting for a rep as soon as this commits.
    A rep moved takes the accounts it owns along to its new team."""
    now = rt.clock.now()
    given = body.model_fields_set
    changes = body.model_dump(exclude_unset=True)
    for name, value in changes.items():
        if value is None and name not in REMOVABLE_REP_FIELDS:
            raise Unprocessable(f"{name} cannot be removed", field=name)
    changes = _out_of_office(changes, given, now)
    async with rt.db.unit_of_work() as session:
        before = await _locked(session, "rep", rep_id)
        if "team_id" in changes:
            await _team_must_exist(session, changes["team_id"])
        row = await store.change_rep(session, rep_id, changes)
        assert row is not None
        if row.team_id != before.team_id:
            await store.accounts_follow_rep(session, rep_id)
        await _recorded(
            rt, session, "changed", "rep", rep_id, before=_rep_out(before), after=_rep_out(row)
        )
        await publish_directory(rt, session, {before.team_id, row.team_id})
        read = await store.rep_row(session, rep_id)
    return _rep_out(read, now)


async def get_rep(rt: Runtime, rep_id: uuid.UUID) -> RepOut:
    async with rt.db.unit_of_work() as session:
        row = await store.rep_row(session, rep_id)
    if row is None:
        raise NotFound(f"rep {rep_id} not found")
    return _rep_out(row, rt.clock.now())


async def list_reps(rt: Runtime, wanted: PageRequest) -> Page[RepOut]:
    async with rt.db.unit_of_work() as session:
        rows = await store.page_reps(session, wanted)
    now = rt.clock.now()
    return wanted.page(rows, lambda row: _rep_out(row, now))


async def delete_rep(rt: Runtime, rep_id: uuid.UUID) -> None:
    """Delete a rep with no leads in open work and no accounts; else 409 naming them."""
    async with rt.db.unit_of_work() as session:
        before = await _locked(session, "rep", rep_id)
        uses = await store.rep_uses(session, rep_id)
        _refuse_in_use(f"rep '{before.name}'", uses, "reassign them first")
        await store.delete_rep(session, rep_id)
        await _recorded(rt, session, "deleted", "rep", rep_id, before=_rep_out(before))
        await publish_directory(rt, session, [before.team_id])


async def create_rule(rt: Runtime, body: RuleIn) -> RuleOut:
    rule_id = uuid.uuid4()
    async with rt.db.unit_of_work() as session:
        await _team_must_exist(session, body.team_id)
        try:
            async with session.begin_nested():
                await store.add_rule(session, rule_id, body.model_dump())
        except IntegrityError as exc:
            raise Conflict(f"a rule named '{body.name}' exists", field="name") from exc
        created = RuleOut(id=rule_id, **body.model_dump())
        await _recorded(rt, session, "created", "rule", rule_id, after=created)
    return created


async def list_rules(rt: Runtime, wanted: PageRequest) -> Page[RuleOut]:
    async with rt.db.unit_of_work() as session:
        rows = await store.page_rules(session, wanted)
    return wanted.page(rows, lambda r: RuleOut.model_validate(r._asdict()))


async def get_rule(rt: Runtime, rule_id: uuid.UUID) -> RuleOut:
    async with rt.db.unit_of_work() as session:
        row = await store.rule_row(session, rule_id)
    if row is None:
        raise NotFound(f"rule {rule_id} not found")
    return RuleOut.model_validate(row._asdict())


async def change_rule(rt: Runtime, rule_id: uuid.UUID, body: RulePatch) -> RuleOut:
    """Rename, reorder, change the conditions or the team, (de)activate; the leads waiting for
    a rep are looked at again as soon as this commits."""
    changes = body.model_dump(exclude_unset=True)
    for name in ("name", "priority", "conditions", "team_id", "active"):
        if name in changes and changes[name] is None:
            raise Unprocessable(f"{name} cannot be removed", field=name)
    async with rt.db.unit_of_work() as session:
        before = await _locked(session, "rule", rule_id)
        if "team_id" in changes:
            await _team_must_exist(session, changes["team_id"])
        try:
            async with session.begin_nested():
                row = await store.patch_rule(session, rule_id, changes)
        except IntegrityError as exc:
            raise Conflict(f"a rule named '{body.name}' exists", field="name") from exc
        after = RuleOut.model_validate(row._asdict())
        before_out = RuleOut.model_validate(before._asdict())
        await _recorded(rt, session, "changed", "rule", rule_id, before=before_out, after=after)
    return after


async def delete_rule(rt: Runtime, rule_id: uuid.UUID) -> None:
    async with rt.db.unit_of_work() as session:
        before = await _locked(session, "rule", rule_id)
        await store.delete_rule(session, rule_id)
        before_out = RuleOut.model_validate(before._asdict())
        await _recorded(rt, session, "deleted", "rule", rule_id, before=before_out)


def _account_out(row: Row) -> AccountOut:
    return AccountOut(domain=row.domain, rep_id=row.rep_id, team_id=row.team_id, since=row.since)


async def _owner(session: AsyncSession, rep_id: uuid.UUID) -> Row:
    rep = await store.rep_exists(session, rep_id)
    if rep is None:
        raise Unprocessable(
            f"rep {rep_id} does not exist",
            field="rep_id",
            errors=[{"field": "rep_id", "message": "unknown rep"}],
        )
    return rep


async def create_account(rt: Runtime, body: AccountIn) -> AccountOut:
    """The account's leads go to this rep (and its team) from now on; 409 if it has an owner."""
    domain = body.domain.lower()
    async with rt.db.unit_of_work() as session:
        rep = await _owner(session, body.rep_id)
        row = await store.add_account(
            session,
            {"domain": domain, "rep_id": rep.id, "team_id": rep.team_id, "since": rt.clock.now()},
        )
        if row is None:
            raise Conflict(f"account {domain} has an owner: change it instead", field="domain")
        created = _account_out(row)
        await _recorded(rt, session, "created", "account", domain, after=created)
    return created


async def get_account(rt: Runtime, domain: str) -> AccountOut:
    async with rt.db.unit_of_work() as session:
        row = await store.locked_account(session, domain.lower())
    if row is None:
        raise NotFound(f"account {domain} has no owner")
    return _account_out(row)


async def list_accounts(rt: Runtime, wanted: PageRequest) -> Page[AccountOut]:
    async with rt.db.unit_of_work() as session:
        rows = await store.page_accounts(session, wanted)
    return wanted.page(rows, _account_out)


async def change_account(rt: Runtime, domain: str, body: AccountPatch) -> AccountOut:
    """Give the account to another rep (and its team), from now on."""
    domain = domain.lower()
    async with rt.db.unit_of_work() as session:
        before = await _locked_account(session, domain)
        rep = await _owner(session, body.rep_id)
        row = await store.change_account(
            session, domain, {"rep_id": rep.id, "team_id": rep.team_id, "since": rt.clock.now()}
        )
        after = _account_out(row)
        await _recorded(
            rt, session, "changed", "account", domain, before=_account_out(before), after=after
        )
    return after


async def delete_account(rt: Runtime, domain: str) -> None:
    """The account has no owner any more: its next lead is routed by rule, and its rep owns it."""
    domain = domain.lower()
    async with rt.db.unit_of_work() as session:
        before = await _locked_account(session, domain)
        await store.delete_account(session, domain)
        await _recorded(rt, session, "deleted", "account", domain, before=_account_out(before))


async def _routing_config(session: AsyncSession) -> dict[str, list]:
    """Every team, rep and rule as the API shows them: a routing file's before and after."""
    return {
        "teams": [_team_out(r) for r in await store.all_teams(session)],
        "reps": [_rep_out(r) for r in await store.all_reps(session)],
        "rules": [RuleOut.model_validate(r._asdict()) for r in await store.all_rules(session)],
        "accounts": [_account_out(r) for r in await store.all_accounts(session)],
    }


async def load_routing_config(rt: Runtime, body: RoutingConfig) -> RoutingConfigOut:
    """Load teams, reps, rules and account owners from one document, all or nothing. Teams are
    matched by name, reps by email (else name); the document's rules replace the current ones;
    each account listed gets its owner (one already owned changes hands only if another rep is
    named)."""
    async with rt.db.unit_of_work() as session:
        before = await _routing_config(session)
        team_ids = await store.team_ids_by_name(session)
        for team in body.teams:
            values = team.model_dump()
            if team.name in team_ids:
                await store.update_team(session, team_ids[team.name], values)
            else:
                team_ids[team.name] = uuid.uuid4()
                await store.add_team(session, team_ids[team.name], values)

        def team_of(name: str, field: str) -> uuid.UUID:
            if name not in team_ids:
                raise Unprocessable(f"no team named '{name}'", field=field)
            return team_ids[name]

        created = updated = 0
        for index, rep in enumerate(body.reps):
            values = rep.model_dump(exclude={"team", "team_id"})
            values["team_id"] = team_of(rep.team, f"reps.{index}.team")
            existing = await store.rep_matching(session, rep.email, rep.name)
            if existing is None:
                await store.add_rep(session, uuid.uuid4(), values)
                created += 1
            else:
                await store.update_rep(session, existing, values)
                updated += 1
        await store.delete_all_rules(session)
        names: set[str] = set()
        for index, rule in enumerate(body.rules):
            if rule.name in names:
                raise Unprocessable(
                    f"rule '{rule.name}' appears twice", field=f"rules.{index}.name"
                )
            names.add(rule.name)
            values = rule.model_dump(exclude={"team", "team_id"})
            values["team_id"] = team_of(rule.team, f"rules.{index}.team")
            await store.add_rule(session, uuid.uuid4(), values)
        now = rt.clock.now()
        for index, account in enumerate(body.accounts):
            email = account.rep if "@" in account.rep else None
            rep_id = await store.rep_matching(session, email, account.rep)
            if rep_id is None:
                raise Unprocessable(f"no rep '{account.rep}'", field=f"accounts.{index}.rep")
            rep = await _owner(session, rep_id)
            await store.own_account(
                session,
                {"domain": account.domain.lower(), "rep_id": rep.id, "team_id": rep.team_id,
                 "since": now},
            )  # fmt: skip
        after = await _routing_config(session)
        await _recorded(
            rt, session, "replaced", "routing-config", "routing-config", before=before, after=after
        )
        await publish_directory(rt, session, team_ids.values())
    return RoutingConfigOut(
        teams=len(body.teams),
        reps_created=created,
        reps_updated=updated,
        rules=len(body.rules),
        accounts=len(body.accounts),
    )
