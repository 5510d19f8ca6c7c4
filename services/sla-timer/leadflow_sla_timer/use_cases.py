"""sla-timer's use cases: routing, contact attempts and status changes open and stop SLA clocks;
the firing loop fires their due levels; the period loop judges both parties' commitments.

Which events open and meet which clocks is the SLA kinds table (leadflow.contracts.slas): a
lead.routed opens first_response, contact_cadence and sal_acceptance (and pql_contact for a
PQL); status sql opens sql_to_sqo, status won cs_handoff, onboarding_kickoff and
key_feature_activation; a contact attempt meets first_response and pql_contact and counts
towards the cadence; statuses and onboarding milestones (lead.onboarding_milestone) meet the
kinds the table names. A lead that leaves the funnel (lost, recycled, unreachable, returned), or
a customer who churned (lead.churned), owes nothing more: its open clocks are cancelled and
pending escalations dropped.

Topics are ordered per lead but not across topics: an attempt, a status change, a milestone or
a churn that arrives before the lead.routed opening the lead's clocks is held back and applied,
in time order, when the clocks open (milestones and churns are held with the status changes,
each row naming its event type).

Contact attempts keep counting after the cadence is met; the first one beyond the cadence's cap
(the policy's max_attempts of the channel) emits one `sla.warning` at level attempts_exceeded.

A poll batch is applied as a set: `apply_timers` takes the per-lead locks of every lead the
batch touches (in key order, so that batches never wait on each other in a circle; routing and
holding back cannot interleave across instances), reads their clocks (`FOR UPDATE`: the firing
loop cannot fire a level between the read and the write) and held-back events once, replays the
events in arrival order in memory (`Clocks`), exactly as applying them one by one would, and
writes the opened clocks, the changed ones, the held-back events and the SLA events with a fixed
number of statements whatever the batch's size.

Nothing here names a person. A held-back status change is kept without its qualification notes
and opportunity (the clocks need neither); on lead.erased the lead's held changes lose them too,
for changes held before that rule, and its outbox rows are forgotten.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from leadflow import metrics
from leadflow.consumer import Received, Reject
from leadflow.contracts import slas
from leadflow.contracts.calendar import BusinessCalendar, policy_calendar
from leadflow.contracts.commitments import period_of
from leadflow.contracts.events import (
    LeadChurned,
    LeadContactAttempt,
    LeadErased,
    LeadMql,
    LeadOnboardingMilestone,
    LeadRouted,
    LeadStatusChanged,
    Payload,
    SlaBreached,
    SlaCorrectivePlanRequired,
    SlaEscalated,
    SlaMet,
    SlaWarning,
)
from leadflow.contracts.policy import Policy
from leadflow.db import touch
from leadflow.outbox import Outbox
from leadflow.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_sla_timer import store
from leadflow_sla_timer.domain.cadence import (
    cadence_missing,
    counted,
    day_of,
    requirement_of,
    shortfall,
)
from leadflow_sla_timer.domain.periods import (
    MARKETING,
    PARTIES,
    Figure,
    consecutive_misses,
    counted_promotion,
    latest_promotions,
    marketing_figures,
    missed,
    owes_corrective_plan,
    period_id,
    sales_figures,
)
from leadflow_sla_timer.domain.timers import (
    ATTEMPTS_EXCEEDED,
    TEAM_LEAD,
    about,
    due_levels,
    escalates_to,
    reassign_on_breach,
    schedule,
)
from leadflow_sla_timer.models import TIMERS_TAG
from leadflow_sla_timer.schemas import LeadSlas, SlaClock

log = logging.getLogger(__name__)

# What a status change may say about the person in free text; the clocks need none of it.
FREE_TEXT_OF_STATUS = {"qualification", "opportunity", "handoff"}
# Held-back rows of these event types name their type (`event_type`); a row without one is a
# status change.
HELD_TYPES: dict[str, type[LeadStatusChanged | LeadOnboardingMilestone | LeadChurned]] = {
    t.type: t for t in (LeadStatusChanged, LeadOnboardingMilestone, LeadChurned)
}
AfterWon = LeadOnboardingMilestone | LeadChurned


def _instant_of(step: LeadStatusChanged | AfterWon) -> datetime:
    match step:
        case LeadOnboardingMilestone():
            return step.reached_at
        case LeadChurned():
            return step.churned_at
    return step.changed_at


# --- the clocks of a batch --------------------------------------------------------------------


@dataclass
class Calendars:
    """The business calendars of one unit of work, each built once per spec (a batch's leads
    name few); a lead without one runs on the policy's calendar."""

    policy: Policy
    built: dict[str | None, BusinessCalendar] = field(default_factory=dict)

    def of(self, spec: dict | None) -> BusinessCalendar:
        key = json.dumps(spec, sort_keys=True, default=str) if spec else None
        if key not in self.built:
            self.built[key] = (
                BusinessCalendar.from_spec(spec) if spec else policy_calendar(self.policy)
            )
        return self.built[key]


def _stored(at: datetime) -> datetime:
    """An instant as PostgreSQL gives it back (UTC), so that the events a unit of work emits
    about a clock it opened read as those of a clock opened earlier."""
    return at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass
class Held:
    """A lead's attempts and status changes seen before its clocks: as stored, then as the
    unit of work leaves them."""

    attempt: tuple[datetime, int] | None = None  # the earliest instant, how many
    attempt_channels: dict[str, int] = field(default_factory=dict)  # how many on each channel
    statuses: list[tuple[uuid.UUID, datetime, dict]] = field(default_factory=list)
    stored_attempt: bool = False
    stored_statuses: bool = False
    attempt_changed: bool = False
    new_statuses: list[dict] = field(default_factory=list)
    released: bool = False  # applied when the clocks opened: the stored rows go


class Clocks:
    """The clocks of a unit of work's leads as it found and changes them, in memory.

    Its methods are the rules of the one-by-one handling, applied to the rows read once; the
    rows opened and changed, the held-back events, the SLA events to emit and the metrics to
    count are collected for `write_clocks`."""

    def __init__(self, policy: Policy, calendars: Calendars) -> None:
        self.policy = policy
        self.calendars = calendars
        self.timers: dict[uuid.UUID, dict[str, dict[str, Any]]] = {}
        self.opened: dict[uuid.UUID, dict[str, Any]] = {}  # timers opened, by id
        self.changed: dict[uuid.UUID, dict[str, Any]] = {}  # stored timers changed, by id
        self.held: dict[uuid.UUID, Held] = {}
        self.events: list[tuple[Payload, str | None]] = []
        self.started: Counter[tuple[str, str, str]] = Counter()
        self.warned: Counter[tuple[str, str, str]] = Counter()
        self.responses: list[tuple[tuple[str, str], float]] = []
        self.touched = False

    def found(self, clocks: list, attempts: list, statuses: list) -> None:
        """Take the leads' stored timers, held-back attempts and held-back status changes."""
        for row in clocks:
            self.timers.setdefault(row["lead_id"], {})[row["sla"]] = dict(row)
        for row in attempts:
            held = self.held.setdefault(row.lead_id, Held())
            held.attempt, held.stored_attempt = (row.occurred_at, row.attempts), True
            held.attempt_channels = dict(row.by_channel)
        for row in statuses:
            held = self.held.setdefault(row.lead_id, Held())
            held.statuses.append((row.event_id, row.changed_at, row.change))
            held.stored_statuses = True

    # --- the rules -------------------------------------------------------------------

    def routed(self, routed: LeadRouted) -> None:
        try:
            self.calendars.of(routed.calendar)  # built here once; the clocks take it from there
        except ValueError as exc:  # a calendar it can never be scheduled on
            raise Reject(f"calendar of lead.routed invalid: {exc}") from exc
        opened = False
        for sla in slas.opened_by_routing(routed.kind):
            opened |= self.open_timer(
                lead_id=routed.lead_id,
                sla=sla,
                started_at=routed.routed_at,
                channel=routed.channel,
                team=routed.team,
                rep_id=routed.rep_id,
                calendar=routed.calendar,
            )
        if opened:
            self.apply_held(routed)

    def attempt(self, attempt: LeadContactAttempt) -> None:
        channels = {attempt.channel: 1}
        if self.count_attempts(attempt.lead_id, attempt.occurred_at, channels=channels):
            return
        held = self.held.setdefault(attempt.lead_id, Held())
        at = attempt.occurred_at
        if held.attempt is not None:
            at, n = min(held.attempt[0], at), held.attempt[1] + 1
        else:
            n = 1
        held.attempt, held.attempt_changed = (at, n), True
        held.attempt_channels[attempt.channel] = held.attempt_channels.get(attempt.channel, 0) + 1

    def status(self, event_id: uuid.UUID, change: LeadStatusChanged | AfterWon) -> None:
        """Apply a status change, an onboarding milestone or a churn to the lead's clocks, or
        hold it back until its clocks open."""
        if self.timers.get(change.lead_id):
            self.step(change)
            return
        held = self.held.setdefault(change.lead_id, Held())
        if any(event_id == held_id for held_id, _, _ in held.statuses):
            return
        at = _instant_of(change)
        kept = change.model_dump(mode="json", exclude=FREE_TEXT_OF_STATUS)
        if not isinstance(change, LeadStatusChanged):
            kept["event_type"] = change.type
        held.statuses.append((event_id, at, kept))
        held.new_statuses.append(
            {"event_id": event_id, "lead_id": change.lead_id, "changed_at": at, "change": kept}
        )

    def step(self, change: LeadStatusChanged | AfterWon) -> None:
        match change:
            case LeadStatusChanged():
                self.status_changed(change)
            case LeadOnboardingMilestone():
                for sla in slas.MET_BY_MILESTONE.get(change.milestone, ()):
                    self.stop(change.lead_id, sla, change.reached_at)
            case LeadChurned():
                self.cancel_all(change.lead_id)

    def open_timer(
        self,
        *,
        lead_id: uuid.UUID,
        sla: str,
        started_at: datetime,
        channel: str | None,
        team: str | None,
        rep_id: uuid.UUID | None,
        calendar: dict | None,
    ) -> bool:
        """Start the lead's `sla` clock; False when it already runs (or ran) for this lead:
        re-routing keeps the clock that started with the first routing."""
        clocks = self.timers.setdefault(lead_id, {})
        if sla in clocks:
            return False
        policy = self.policy
        term, ladder, due_at = schedule(
            policy, sla, channel, self.calendars.of(calendar), started_at
        )
        timer = {
            "id": uuid.uuid4(),
            "lead_id": lead_id,
            "sla": sla,
            "party": "sales",
            "channel": channel,
            "team": team,
            "rep_id": rep_id,
            "clock": term.clock,
            "calendar": calendar,
            "limit_seconds": term.limit.total_seconds(),
            "started_at": _stored(started_at),
            "due_at": _stored(due_at),
            "state": "open",
            "level": 0,
            "ladder": ladder,
            "next_fire_at": _stored(datetime.fromisoformat(ladder[0]["at"])),
            "version": 1,
            "met_at": None,
            "policy_version": policy.version,
            "attempts": 0,
            "attempts_required": term.attempts_required,
            "attempts_allowed": term.attempts_allowed,
            "attempts_exceeded_at": None,
            "attempts_by_channel": {},
            "attempt_days": [],
            "min_per_channel": term.min_per_channel if term.attempts_required else None,
            "min_distinct_days": term.min_distinct_days if term.attempts_required else None,
        }
        clocks[sla] = timer
        self.opened[timer["id"]] = timer
        self.started[(sla, channel or "unknown", team or "unknown")] += 1
        self.touched = True
        return True

    def apply_held(self, routed: LeadRouted) -> None:
        """Apply the attempts and status changes that came before the clocks, in time order (an
        attempt first at a tie); what happened before the routing counts as at the routing."""
        held = self.held.get(routed.lead_id)
        if held is None:
            return
        steps: list[tuple[datetime, int, object]] = [
            (at, 1, HELD_TYPES[data.get("event_type", LeadStatusChanged.type)].model_validate(data))
            for _, at, data in held.statuses
        ]
        if held.attempt is not None:
            steps.append((held.attempt[0], 0, (held.attempt[1], held.attempt_channels)))
        held.attempt, held.statuses, held.new_statuses = None, [], []
        held.attempt_changed, held.released = False, True
        for at, _, step in sorted(steps, key=lambda s: (s[0], s[1])):
            at = max(at, routed.routed_at)
            if isinstance(step, LeadStatusChanged):
                self.status_changed(step.model_copy(update={"changed_at": at}))
            elif isinstance(step, LeadOnboardingMilestone):
                self.step(step.model_copy(update={"reached_at": at}))
            elif isinstance(step, LeadChurned):
                self.step(step)
            else:
                n, channels = step
                self.count_attempts(routed.lead_id, at, n, channels=channels)

    def change(self, timer: dict[str, Any], **values: object) -> None:
        timer.update(values, version=timer["version"] + 1)
        if timer["id"] not in self.opened:
            self.changed[timer["id"]] = timer

    def stop(
        self,
        lead_id: uuid.UUID,
        sla: str,
        at: datetime,
        *,
        add_attempts: int = 0,
        channels: dict[str, int] | None = None,
    ) -> bool:
        """Meet the lead's `sla` clock (for a cadence: count attempts, per channel and day, and
        meet it once their number, mix and spread hold).

        False if the lead has no such clock."""
        timer = self.timers.get(lead_id, {}).get(sla)
        if timer is None:
            return False
        if timer["state"] == "cancelled":
            return True
        counts: dict[str, Any] = {}
        if add_attempts:
            tz = self.calendars.of(timer["calendar"]).timezone
            by_channel, days = counted(
                timer["attempts_by_channel"], timer["attempt_days"], channels or {}, day_of(at, tz)
            )
            counts = dict(
                attempts=timer["attempts"] + add_attempts,
                attempts_by_channel=by_channel,
                attempt_days=days,
            )
        if timer["met_at"] is not None or (
            add_attempts and timer["attempts_required"] and self.short(timer, counts)
        ):
            # Not met yet, or met already: the touch still counts (past the cap it warns once).
            if add_attempts:
                self.change(timer, **counts)
                self.warn_if_over_cap(timer, counts["attempts"], at)
            return True
        state = "met" if timer["state"] == "open" else timer["state"]
        self.change(timer, state=state, met_at=at, next_fire_at=None, **counts)
        self.touched = True
        took = slas.elapsed(
            timer["clock"], self.calendars.of(timer["calendar"]), timer["started_at"], at
        ).total_seconds()
        if sla == slas.FIRST_RESPONSE:
            self.responses.append(
                ((timer["channel"] or "unknown", timer["team"] or "unknown"), took)
            )
        met = SlaMet(
            **about(timer),
            level=state,
            met_at=at,
            business_seconds=took,
        )
        self.events.append((met, timer["policy_version"]))
        if add_attempts:
            self.warn_if_over_cap(timer, counts["attempts"], at)
        return True

    @staticmethod
    def short(timer: dict[str, Any], counts: dict[str, Any]) -> bool:
        """Whether a cadence's attempts, so counted, still lack their number, mix or spread."""
        return bool(
            shortfall(
                counts["attempts"],
                counts["attempts_by_channel"],
                len(counts["attempt_days"]),
                requirement_of(timer),
            )
        )

    def warn_if_over_cap(self, timer: dict[str, Any], attempts: int, at: datetime) -> None:
        """One warning, the first time a lead got more touches than its cadence allows."""
        allowed = timer["attempts_allowed"]
        if allowed is None or attempts <= allowed or timer["attempts_exceeded_at"] is not None:
            return
        timer["attempts_exceeded_at"] = at  # the version stays: no level moves
        if timer["id"] not in self.opened:
            self.changed[timer["id"]] = timer
        warning = SlaWarning(
            **about(timer),
            party=timer["party"],
            level=ATTEMPTS_EXCEEDED,
        )
        self.events.append((warning, timer["policy_version"]))
        self.warned[(timer["sla"], timer["channel"] or "unknown", timer["team"] or "unknown")] += 1

    def count_attempts(
        self, lead_id: uuid.UUID, at: datetime, n: int = 1, *, channels: dict[str, int]
    ) -> bool:
        """Apply `n` contact attempts (the earliest at `at`; `channels`: how many on each);
        False if the lead has no clocks yet."""
        found = False
        for sla in slas.MET_BY_FIRST_ATTEMPT:
            found |= self.stop(lead_id, sla, at)
        for sla in slas.COUNTING_ATTEMPTS:
            found |= self.stop(lead_id, sla, at, add_attempts=n, channels=channels)
        return found

    def cancel_all(self, lead_id: uuid.UUID) -> None:
        """The lead left the funnel: open clocks end without an event, pending escalations drop."""
        for timer in self.timers.get(lead_id, {}).values():
            if timer["next_fire_at"] is not None:
                state = "cancelled" if timer["state"] == "open" else timer["state"]
                self.change(timer, state=state, next_fire_at=None)
        self.touched = True

    def status_changed(self, change: LeadStatusChanged) -> None:
        for sla in slas.MET_BY_STATUS.get(change.status, ()):
            self.stop(change.lead_id, sla, change.changed_at)
        if change.status in slas.ENDS_ALL_CLOCKS:
            self.cancel_all(change.lead_id)
        for sla in slas.OPENED_BY_STATUS.get(change.status, ()):
            # The lead's routing (channel, team, calendar) comes from the clocks routing started.
            clocks = self.timers.get(change.lead_id, {}).values()
            routed = min(clocks, key=lambda timer: timer["started_at"], default=None)
            self.open_timer(
                lead_id=change.lead_id,
                sla=sla,
                started_at=change.changed_at,
                channel=routed["channel"] if routed else None,
                team=routed["team"] if routed else None,
                rep_id=change.rep_id or (routed["rep_id"] if routed else None),
                calendar=routed["calendar"] if routed else None,
            )


async def write_clocks(session: AsyncSession, outbox: Outbox, clocks: Clocks) -> None:
    """Write what the batch did: opened and moved timers, held-back events, SLA events; count
    the metrics on commit."""
    await store.open_timers(session, list(clocks.opened.values()))
    await store.move_timers(session, list(clocks.changed.values()))
    held = clocks.held
    released = [i for i, h in held.items() if h.released]
    await store.release_held(
        session,
        attempts_of=[i for i in released if held[i].stored_attempt],
        statuses_of=[i for i in released if held[i].stored_statuses],
    )
    await store.hold(
        session,
        attempts=[
            {
                "lead_id": i,
                "occurred_at": h.attempt[0],
                "attempts": h.attempt[1],
                "by_channel": h.attempt_channels,
            }
            for i, h in held.items()
            if h.attempt_changed and h.attempt is not None
        ],
        statuses=[row for h in held.values() for row in h.new_statuses],
    )
    await outbox.emit_many(session, clocks.events)
    if clocks.touched:
        touch(session, TIMERS_TAG)
    for labels, n in clocks.started.items():
        metrics.count_on_commit(session, metrics.sla_timers_started.labels(*labels), n)
    for labels, n in clocks.warned.items():
        metrics.count_on_commit(session, metrics.sla_warnings.labels(*labels), n)
    if clocks.responses:
        metrics.observe_on_commit(
            session,
            [(metrics.lead_response.labels(*labels), s) for labels, s in clocks.responses],
        )


async def apply_timers(rt: Runtime, session: AsyncSession, received: list[Received]) -> None:
    """Apply a unit of work's routings, contact attempts and status changes, in arrival order."""
    policy = rt.policy
    clocks = Clocks(policy, Calendars(policy))
    lead_ids = sorted({item.payload.lead_id for item in received})
    clocks.found(*await store.lock_and_read_clocks(session, lead_ids))
    for item in received:
        match item.payload:
            case LeadRouted() as routed:
                clocks.routed(routed)
            case LeadContactAttempt() as attempt:
                clocks.attempt(attempt)
            case LeadStatusChanged() | LeadOnboardingMilestone() | LeadChurned() as change:
                clocks.status(item.event.id, change)
    await write_clocks(session, rt.outbox, clocks)


async def apply_mqls(rt: Runtime, session: AsyncSession, received: list[Received[LeadMql]]) -> None:
    """Remember a unit of work's promotions for marketing's period commitments; a replayed
    older promotion does not move a lead back."""
    policy = rt.policy
    rows = [counted_promotion(policy, item.payload) for item in received]
    await store.record_mqls(session, latest_promotions(rows))


async def apply_erasures(session: AsyncSession, received: list[Received[LeadErased]]) -> None:
    """The leads' held-back status changes lose their notes; their outbox rows are forgotten.
    Timers and counted MQLs name nobody and stay for the reports."""
    lead_ids = [item.payload.lead_id for item in received]
    for lead_id in lead_ids:
        for row in await store.held_statuses_of(session, lead_id):
            if FREE_TEXT_OF_STATUS & row.change.keys():
                kept = {k: v for k, v in row.change.items() if k not in FREE_TEXT_OF_STATUS}
                await store.replace_held_status(session, row.event_id, kept)
    await store.forget_outbox_rows(session, lead_ids)


# --- firing -----------------------------------------------------------------------------------

BATCH = 500  # timers per claim
BACKLOG_BATCH = 1000  # timers per claim while a backlog is fired (fewer round trips per timer)
MAX_IDLE = 1.0  # real seconds between looks at the table when nothing is due sooner
OVERDUE_AFTER = 30.0  # real seconds past due after which an unfired level counts as overdue


async def fire_due(rt: Runtime, limit: int = BATCH) -> int:
    """Fire every due level of up to `limit` timers; returns how many timers advanced."""
    now = rt.clock.now()
    reassign = reassign_on_breach(rt.policy)
    real_seconds = rt.clock.real_seconds
    fromisoformat = datetime.fromisoformat
    outcome_of = slas.BREACH_OUTCOMES.get
    new_warning, new_breach = SlaWarning.model_construct, SlaBreached.model_construct
    new_escalation = SlaEscalated.model_construct
    async with rt.db.unit_of_work() as session:
        rows = await store.claim_due(session, now, limit)
        # A cadence's warning and breach say what its attempts still lack.
        counting = [row.id for row in rows if row.sla in slas.COUNTING_ATTEMPTS]
        missing_of = {
            counts["id"]: cadence_missing(counts)
            for counts in (await store.cadence_counts(session, counting) if counting else [])
        }
        events: list[tuple[Payload, str | None]] = []
        ids, states, levels, next_fire_ats = [], [], [], []
        warnings: Counter[tuple] = Counter()  # counted per label set, added once per claim
        breaches: Counter[tuple] = Counter()
        for row in rows:
            ladder = orjson.loads(row.ladder)
            state = row.state
            fired = due_levels(ladder, row.level, now)
            if fired:
                # The payloads are built from the timer's own columns, written from validated
                # events: constructed without validating them again.
                common = dict(
                    lead_id=row.lead_id,
                    timer_id=row.id,
                    sla=row.sla,
                    party=row.party,
                    channel=row.channel,
                    team=row.team,
                    rep_id=row.rep_id,
                    started_at=row.started_at,
                    due_at=row.due_at,
                    missing=missing_of.get(row.id),
                )
                labels = (row.sla, row.channel or "unknown", row.team or "unknown")
            for index in fired:
                step = ladder[index]
                name = step["level"]
                if name == slas.WARNING:
                    events.append((new_warning(**common, level=name), row.policy_version))
                    warnings[labels] += 1
                elif name == slas.BREACHED:
                    state = "breached"
                    # e.g. a cadence that ends without its attempts leaves the lead unreachable
                    outcome = outcome_of(row.sla)
                    events.append(
                        (new_breach(**common, level=name, outcome=outcome), row.policy_version)
                    )
                    breaches[labels] += 1
                # The team lead's escalation (its own step, or an older ladder's breach) asks for
                # the reassignment if the policy wants one; the manager's never does.
                if (to := escalates_to(step)) is not None:
                    escalated = new_escalation(
                        **common, level=name, escalate_to=to, reassign=reassign and to == TEAM_LEAD
                    )
                    events.append((escalated, row.policy_version))
                metrics.sla_fire_lag.observe(real_seconds(now - fromisoformat(step["at"])))
            level = (fired[-1] + 1) if fired else row.level
            ids.append(row.id)
            states.append(state)
            levels.append(level)
            next_fire_ats.append(
                fromisoformat(ladder[level]["at"]) if level < len(ladder) else None
            )
        # One outbox insert and one UPDATE for the whole claim.
        await rt.outbox.emit_many(session, events)
        await store.move_fired(session, ids, states, levels, next_fire_ats)
    for labels, n in warnings.items():
        metrics.sla_warnings.labels(*labels).inc(n)
    for labels, n in breaches.items():
        metrics.sla_breaches.labels(*labels).inc(n)
    return len(rows)


async def drain(rt: Runtime, limit: int) -> None:
    """Claim after claim of `limit` timers, until one comes back short: nothing more is due."""
    while not rt.stop and await fire_due(rt, limit) >= limit:
        pass


async def fire_backlog(rt: Runtime) -> None:
    """Several claimers at once (settings.sla_timer_claimers), each with claims of
    BACKLOG_BATCH timers, until no due timer is left. SKIP LOCKED gives each claim timers no
    other claim holds; each claimer ends its transaction before it stops, and the first failure
    is raised once all have stopped."""
    claimers = max(rt.settings.sla_timer_claimers, 1)
    results = await asyncio.gather(
        *(drain(rt, BACKLOG_BATCH) for _ in range(claimers)), return_exceptions=True
    )
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def next_due(rt: Runtime) -> datetime | None:
    async with rt.db.unit_of_work() as session:
        return await store.next_due(session)


async def run_firing(rt: Runtime) -> None:
    """Worker: fire what is due, then sleep until the next due instant (woken early by new timers).

    While a full claim's worth or more is due, the backlog is fired by several claimers at once."""
    wake = asyncio.Event()
    rt.db.on_commit(TIMERS_TAG, wake.set)  # a timer was opened, met or moved
    while not rt.stop:
        wake.clear()
        if await fire_due(rt) >= BATCH:
            await fire_backlog(rt)
            continue
        upcoming = await next_due(rt)
        delay = (
            MAX_IDLE
            if upcoming is None
            else min(rt.clock.real_seconds(upcoming - rt.clock.now()), MAX_IDLE)
        )
        await rt.stop.pause(max(delay, 0.01), wake)


async def measure_open(rt: Runtime) -> None:
    """Set the open-timers and overdue-timers gauges from the table, per SLA.

    Overdue: the next level came due more than OVERDUE_AFTER real seconds ago (in simulated
    time that is OVERDUE_AFTER x clock speed) and the firing loop has not fired it."""
    cutoff = rt.clock.now() - timedelta(seconds=OVERDUE_AFTER * rt.clock.speed)
    async with rt.db.unit_of_work() as session:
        rows = await store.count_open(session, cutoff)
    metrics.sla_open_timers.clear()
    metrics.sla_timers_overdue.clear()
    for sla in slas.SLAS:  # present at 0 rather than missing while none is open
        metrics.sla_open_timers.labels(sla).set(0)
        metrics.sla_timers_overdue.labels(sla).set(0)
    for sla, n, overdue in rows:
        metrics.sla_open_timers.labels(sla).set(n)
        metrics.sla_timers_overdue.labels(sla).set(overdue)


async def count_open(rt: Runtime) -> None:
    """Worker: keep the open-timers and overdue-timers gauges current."""
    while not rt.stop:
        await measure_open(rt)
        await rt.stop.pause(15)


# --- period commitments ----------------------------------------------------------------------
#
# Each party's period commitments are judged once per period, after the period ended (plus the
# policy's evaluation_delay): each missed commitment becomes an `sla.breached` naming the party,
# the commitment, the plan and what was delivered; a run of missed periods as long as the
# policy's corrective_plan_after_misses becomes `sla.corrective_plan_required`.
#
# Exactly once: the (party, period_start) key of period_evaluations is written in the same
# transaction as the events, so another instance, a replay or a restart finds the period judged.
# Periods are judged oldest first, from the period of the first MQL sla-timer recorded (or the
# one after the last period judged), so none is skipped while sla-timer was down.

EVALUATION_IDLE = 5.0  # real seconds between looks for a period that has come due


async def next_period(
    session: AsyncSession, party: str, granularity: str, tz: ZoneInfo
) -> tuple[datetime, datetime] | None:
    """The party's oldest period not judged yet; None while sla-timer has recorded no MQL."""
    last_end = await store.last_judged_end(session, party)
    if last_end is None:
        # Judging starts with the period of the first MQL sla-timer recorded: before it (a new
        # installation, or clocks older than the MQL record) there is nothing fair to judge.
        first_mql = await store.first_mql_at(session)
        return None if first_mql is None else period_of(first_mql, granularity, tz)
    return period_of(last_end, granularity, tz)


async def evaluate_next(rt: Runtime, party: str) -> bool:
    """Judge the party's next period if it has come due; False when none has."""
    policy = rt.policy
    c = policy.commitments
    tz = ZoneInfo(policy.calendar.time_zone)
    now = rt.clock.now()
    async with rt.db.unit_of_work() as session:
        period = await next_period(session, party, c.period, tz)
        if period is None or period[1] + c.evaluation_delay > now:
            return False
        start, end = period
        if party == MARKETING:
            figures = marketing_figures(
                await store.count_marketing(session, start, end), policy, c.period
            )
        else:
            figures = sales_figures(await store.count_sales(session, start, end, now), policy)
        misses = missed(party, figures)
        previous = await store.misses_before(session, party, start)
        streak = consecutive_misses(previous or 0, bool(misses))
        corrective = owes_corrective_plan(streak, policy)
        pid = period_id(party, start)
        judged = await store.record_evaluation(
            session,
            party=party,
            period_start=start,
            period_end=end,
            id=pid,
            evaluated_at=now,
            figures=[f.as_dict() for f in figures],
            missed=misses,
            consecutive_misses=streak,
            corrective_plan=corrective,
            policy_version=policy.version,
        )
        if judged is None:  # another instance judged it meanwhile
            return True
        events = [
            (breach(party, pid, start, end, f), policy.version) for f in figures if f.met is False
        ]
        if corrective:
            events.append(
                (
                    SlaCorrectivePlanRequired(
                        lead_id=pid,
                        party=party,
                        period_start=start,
                        period_end=end,
                        consecutive_misses=streak,
                        missed=misses,
                    ),
                    policy.version,
                )
            )
        await rt.outbox.emit_many(session, events)
    if misses:
        log.info(
            "period commitments missed",
            extra={"party": party, "period_start": start.isoformat(), "missed": misses},
        )
    return True


def breach(
    party: str, pid: uuid.UUID, start: datetime, end: datetime, figure: Figure
) -> SlaBreached:
    return SlaBreached(
        lead_id=pid,
        timer_id=pid,
        sla=figure.commitment,
        party=party,
        started_at=start,
        due_at=end,
        level="breached",
        planned=figure.planned,
        target=figure.target,
        actual=figure.actual,
    )


async def evaluate_due(rt: Runtime) -> int:
    """Judge every period that has come due, oldest first; returns how many were judged."""
    judged = 0
    for party in PARTIES:
        while await evaluate_next(rt, party):
            judged += 1
    return judged


async def run_evaluation(rt: Runtime) -> None:
    """Worker: judge the periods that have come due. The first look waits until the consumers
    hold their partitions, so that events waiting since a restart are not judged as missing."""
    while not rt.stop and not all(c.joined for c in rt.consumers):
        await rt.stop.pause(0.5)
    while not rt.stop:
        await evaluate_due(rt)
        await rt.stop.pause(EVALUATION_IDLE)


# --- the HTTP API ---------------------------------------------------------------------------


async def lead_slas(rt: Runtime, lead_id: uuid.UUID) -> LeadSlas:
    """The SLA clocks of one lead, oldest first, with the levels each has fired."""
    async with rt.db.unit_of_work() as session:
        rows = await store.timers_of_lead(session, lead_id)
    clocks = []
    for r in rows:
        fired = [s["level"] for s in r.ladder[: r.level]]
        clocks.append(
            SlaClock(
                timer_id=r.id,
                sla=r.sla,
                state=r.state,
                channel=r.channel,
                team=r.team,
                clock=r.clock,
                started_at=r.started_at,
                due_at=r.due_at,
                level=fired[-1] if fired else "none",
                levels_fired=fired,
                met_at=r.met_at,
                next_fire_at=r.next_fire_at,
                policy_version=r.policy_version,
                attempts=r.attempts,
                attempts_required=r.attempts_required,
                attempts_allowed=r.attempts_allowed,
                attempts_exceeded_at=r.attempts_exceeded_at,
                attempts_by_channel=r.attempts_by_channel,
                attempt_days=len(r.attempt_days),
                min_per_channel=r.min_per_channel,
                min_distinct_days=r.min_distinct_days,
                missing=cadence_missing(r._asdict()),
            )
        )
    return LeadSlas(lead_id=lead_id, timers=clocks)
