"""sla-timer's event handlers: routing, contact attempts and status changes open and stop SLA clocks.

| SLA             | opens on                   | met by                                         |
|-----------------|----------------------------|------------------------------------------------|
| first_response  | lead.routed                | the first contact attempt                      |
| contact_cadence | lead.routed                | the Nth attempt, or status sal / returned      |
| sal_acceptance  | lead.routed                | status sal or returned                         |
| pql_contact     | lead.routed of a PQL       | the first contact attempt                      |
| sql_to_sqo      | status sql                 | status sqo                                     |
| cs_handoff      | status won                 | status handed_off                              |

A lead that leaves the funnel (lost, recycled, unreachable) owes nothing more: its open clocks
are cancelled and pending escalations dropped. A returned lead likewise owes no first response.

Topics are ordered per lead but not across topics: an attempt or a status change that arrives
before the lead.routed opening the lead's clocks is held back and applied, in time order, when
the clocks open.

Contact attempts keep counting after the cadence is met; the first one beyond the cadence's cap
(the policy's max_attempts of the channel) emits one `sla.warning` at level attempts_exceeded.

lead.mql records each promotion for marketing's period commitments (see evaluation.py).

A poll batch is handled as a set: each event's handler only checks its payload; the
subscription's `after_batch` then takes the per-lead locks of every lead the batch touches (in
key order, so that batches never wait on each other in a circle; routing and holding back
cannot interleave across instances), reads their clocks (`FOR UPDATE`: the firing loop cannot
fire a level between the read and the write) and held-back events once, replays the events in
arrival order in memory (`Clocks`), exactly as handling them one by one would, and writes the
opened clocks, the changed ones, the held-back events and the SLA events with a fixed number
of statements whatever the batch's size.

Nothing here names a person. A held-back status change is kept without its qualification notes
and opportunity (the clocks need neither); on lead.erased the lead's held changes lose them too,
for changes held before that rule, and its outbox rows are forgotten.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from leadflow import metrics
from leadflow.consumer import Reject, Subscription
from leadflow.contracts.calendar import BusinessCalendar, policy_calendar
from leadflow.contracts.commitments import in_target, mql_context_missing
from leadflow.contracts.erasure import forget_events
from leadflow.contracts.events import (
    TOPIC_FEEDBACK,
    TOPIC_INGEST,
    TOPIC_ROUTING,
    TOPIC_SCORING,
    CloudEvent,
    LeadContactAttempt,
    LeadMql,
    LeadRouted,
    LeadStatusChanged,
    Payload,
    SlaMet,
    SlaWarning,
)
from leadflow.contracts.policy import Policy
from leadflow.db import kernel_tables, lock_leads, touch
from leadflow.service import Runtime
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_sla_timer import sla_policy
from leadflow_sla_timer.models import (
    TIMERS_TAG,
    early_attempts,
    early_statuses,
    metadata,
    mqls,
    timers,
)
from leadflow_sla_timer.sla_policy import (
    CONTACT_CADENCE,
    CS_HANDOFF,
    FIRST_RESPONSE,
    PQL_CONTACT,
    SAL_ACCEPTANCE,
    SQL_TO_SQO,
)
from leadflow_sla_timer.timers import fire_times, measured

__all__ = ["FIRST_RESPONSE", "subscriptions"]

# Statuses that stop clocks: which SLAs they meet, and whether the rest of the lead's clocks end.
MEETS = {
    "sal": (CONTACT_CADENCE, SAL_ACCEPTANCE),
    "returned": (CONTACT_CADENCE, SAL_ACCEPTANCE),
    "sqo": (SQL_TO_SQO,),
    "handed_off": (CS_HANDOFF,),
}
ENDS_ALL = frozenset({"returned", "lost", "recycled", "unreachable"})
OPENS = {"sql": SQL_TO_SQO, "won": CS_HANDOFF}
MET_BY_ATTEMPT = (FIRST_RESPONSE, PQL_CONTACT)
ATTEMPTS_EXCEEDED = "attempts_exceeded"

# What a status change may say about the person in free text; the clocks need none of it.
FREE_TEXT_OF_STATUS = {"qualification", "opportunity"}

# session.info keys of a unit of work's checked events: event id -> what the batch applies.
TIMERS_BATCH = "leadflow_sla_timer.timers"
MQLS_BATCH = "leadflow_sla_timer.mqls"
# session.info key of the unit of work's calendars, by spec.
CALENDARS = "leadflow_sla_timer.calendars"

# The columns a unit of work may change on a timer it found (its key and the rest stay).
MOVED_COLUMNS = ("state", "met_at", "attempts", "next_fire_at", "version", "attempts_exceeded_at")

_ids = sa.bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
_read_timers = (
    sa.select(timers)
    .where(timers.c.lead_id == sa.any_(_ids))
    .order_by(timers.c.lead_id, timers.c.sla)
    .with_for_update()
)
_read_early_attempts = sa.select(early_attempts).where(early_attempts.c.lead_id == sa.any_(_ids))
_read_early_statuses = (
    sa.select(early_statuses)
    .where(early_statuses.c.lead_id == sa.any_(_ids))
    .order_by(early_statuses.c.changed_at)
)
_open_timers = sa.insert(timers)
# The changed timers move on in one UPDATE joined to the unnested arrays of their new values.
_moved = (
    sa.func.unnest(
        _ids,
        sa.bindparam("states", type_=ARRAY(sa.Text)),
        sa.bindparam("met_ats", type_=ARRAY(sa.DateTime(timezone=True))),
        sa.bindparam("attempts", type_=ARRAY(sa.Integer)),
        sa.bindparam("next_fire_ats", type_=ARRAY(sa.DateTime(timezone=True))),
        sa.bindparam("versions", type_=ARRAY(sa.Integer)),
        sa.bindparam("attempts_exceeded_ats", type_=ARRAY(sa.DateTime(timezone=True))),
    )
    .table_valued("id", *MOVED_COLUMNS)
    .render_derived(name="moved")
)
_move_timers = (
    sa.update(timers)
    .where(timers.c.id == _moved.c.id)
    .values({name: _moved.c[name] for name in MOVED_COLUMNS})
)
_hold_attempts = insert(early_attempts)
_hold_attempts = _hold_attempts.on_conflict_do_update(
    index_elements=[early_attempts.c.lead_id],
    set_={
        "occurred_at": _hold_attempts.excluded.occurred_at,
        "attempts": _hold_attempts.excluded.attempts,
    },
)
_hold_statuses = insert(early_statuses).on_conflict_do_nothing()
_release_attempts = sa.delete(early_attempts).where(early_attempts.c.lead_id == sa.any_(_ids))
_release_statuses = sa.delete(early_statuses).where(early_statuses.c.lead_id == sa.any_(_ids))
_MQL_COLUMNS = ("promoted_at", "kind", "channel", "in_target", "context_missing")
_record_mqls = insert(mqls)
_record_mqls = _record_mqls.on_conflict_do_update(
    index_elements=[mqls.c.lead_id],
    set_={name: _record_mqls.excluded[name] for name in _MQL_COLUMNS},
    # a replayed older promotion does not move the lead back
    where=mqls.c.promoted_at <= _record_mqls.excluded.promoted_at,
)


def _about(timer: dict[str, Any]) -> dict[str, Any]:
    """The fields every SLA event carries about its timer."""
    return {
        "lead_id": timer["lead_id"],
        "timer_id": timer["id"],
        **{k: timer[k] for k in ("sla", "channel", "team", "rep_id", "started_at", "due_at")},
    }


def calendar_of(rt: Runtime, spec: dict | None) -> BusinessCalendar:
    return BusinessCalendar.from_spec(spec) if spec else policy_calendar(rt.policy)


def cached_calendar(rt: Runtime, session: AsyncSession, spec: dict | None) -> BusinessCalendar:
    """`calendar_of`, built once per spec and unit of work."""
    calendars = session.info.setdefault(CALENDARS, {})
    key = json.dumps(spec, sort_keys=True, default=str) if spec else None
    if key not in calendars:
        calendars[key] = calendar_of(rt, spec)
    return calendars[key]


def schedule(
    policy: Policy, sla: str, channel: str | None, calendar: BusinessCalendar, start: datetime
) -> tuple[sla_policy.Terms, list[dict], datetime]:
    """The terms, the ladder ([{"level", "at", "escalate"?}]) and the due instant of a clock."""
    terms = sla_policy.terms(policy, sla, channel)
    ladder = []
    for level, at in fire_times(terms.steps, terms.clock, calendar, start, terms.limit):
        step = {"level": level, "at": at.isoformat()}
        if level == "breached" and not terms.escalate_on_breach:
            step["escalate"] = False
        ladder.append(step)
    due_at = next(datetime.fromisoformat(s["at"]) for s in ladder if s["level"] == "breached")
    return terms, ladder, due_at


def _stored(at: datetime) -> datetime:
    """An instant as PostgreSQL gives it back (UTC), so that the events a unit of work emits
    about a clock it opened read as those of a clock opened earlier."""
    return at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass
class Held:
    """A lead's attempts and status changes seen before its clocks: as stored, then as the
    unit of work leaves them."""

    attempt: tuple[datetime, int] | None = None  # the earliest instant, how many
    statuses: list[tuple[uuid.UUID, datetime, dict]] = field(default_factory=list)
    stored_attempt: bool = False
    stored_statuses: bool = False
    attempt_changed: bool = False
    new_statuses: list[dict] = field(default_factory=list)
    released: bool = False  # applied when the clocks opened: the stored rows go


class Clocks:
    """The clocks of a unit of work's leads as it found and changes them, in memory.

    Its methods are the rules of the one-by-one handling, applied to the rows read once; the
    rows opened and changed, the held-back events and the SLA events to emit are written by
    `write` with one statement each."""

    def __init__(self, rt: Runtime, session: AsyncSession) -> None:
        self.rt = rt
        self.session = session
        self.timers: dict[uuid.UUID, dict[str, dict[str, Any]]] = {}
        self.opened: dict[uuid.UUID, dict[str, Any]] = {}  # timers opened, by id
        self.changed: dict[uuid.UUID, dict[str, Any]] = {}  # stored timers changed, by id
        self.held: dict[uuid.UUID, Held] = {}
        self.events: list[tuple[Payload, str | None]] = []
        self.started: Counter[tuple[str, str, str]] = Counter()
        self.warned: Counter[tuple[str, str, str]] = Counter()
        self.responses: list[tuple[tuple[str, str], float]] = []
        self.touched = False

    # --- reading ---------------------------------------------------------------------

    async def load(self, lead_ids: list[uuid.UUID]) -> None:
        """Lock the leads (in key order), read their clocks and what was held back for them."""
        await lock_leads(self.session, "sla-timer", lead_ids)
        for row in (await self.session.execute(_read_timers, {"ids": lead_ids})).mappings():
            self.timers.setdefault(row["lead_id"], {})[row["sla"]] = dict(row)
        for row in await self.session.execute(_read_early_attempts, {"ids": lead_ids}):
            held = self.held.setdefault(row.lead_id, Held())
            held.attempt, held.stored_attempt = (row.occurred_at, row.attempts), True
        for row in await self.session.execute(_read_early_statuses, {"ids": lead_ids}):
            held = self.held.setdefault(row.lead_id, Held())
            held.statuses.append((row.event_id, row.changed_at, row.change))
            held.stored_statuses = True

    def calendar(self, spec: dict | None) -> BusinessCalendar:
        return cached_calendar(self.rt, self.session, spec)

    # --- the rules -------------------------------------------------------------------

    def routed(self, routed: LeadRouted) -> None:
        slas = [FIRST_RESPONSE, CONTACT_CADENCE, SAL_ACCEPTANCE]
        if routed.kind == "pql":
            slas.append(PQL_CONTACT)
        opened = False
        for sla in slas:
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
        if self.count_attempts(attempt.lead_id, attempt.occurred_at):
            return
        held = self.held.setdefault(attempt.lead_id, Held())
        at = attempt.occurred_at
        if held.attempt is not None:
            at, n = min(held.attempt[0], at), held.attempt[1] + 1
        else:
            n = 1
        held.attempt, held.attempt_changed = (at, n), True

    def status(self, event_id: uuid.UUID, change: LeadStatusChanged) -> None:
        if self.timers.get(change.lead_id):
            self.status_changed(change)
            return
        held = self.held.setdefault(change.lead_id, Held())
        if any(event_id == held_id for held_id, _, _ in held.statuses):
            return
        kept = change.model_dump(mode="json", exclude=FREE_TEXT_OF_STATUS)
        held.statuses.append((event_id, change.changed_at, kept))
        held.new_statuses.append(
            {"event_id": event_id, "lead_id": change.lead_id, "changed_at": change.changed_at,
             "change": kept}
        )  # fmt: skip

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
        policy = self.rt.policy
        terms, ladder, due_at = schedule(policy, sla, channel, self.calendar(calendar), started_at)
        timer = {
            "id": uuid.uuid4(),
            "lead_id": lead_id,
            "sla": sla,
            "party": "sales",
            "channel": channel,
            "team": team,
            "rep_id": rep_id,
            "clock": terms.clock,
            "calendar": calendar,
            "limit_seconds": terms.limit.total_seconds(),
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
            "attempts_required": terms.attempts_required,
            "attempts_allowed": terms.attempts_allowed,
            "attempts_exceeded_at": None,
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
            (change.changed_at, 1, change)
            for change in (LeadStatusChanged.model_validate(data) for _, _, data in held.statuses)
        ]
        if held.attempt is not None:
            steps.append((held.attempt[0], 0, held.attempt[1]))
        held.attempt, held.statuses, held.new_statuses = None, [], []
        held.attempt_changed, held.released = False, True
        for at, _, step in sorted(steps, key=lambda s: (s[0], s[1])):
            at = max(at, routed.routed_at)
            if isinstance(step, LeadStatusChanged):
                self.status_changed(step.model_copy(update={"changed_at": at}))
            else:
                self.count_attempts(routed.lead_id, at, step)

    def change(self, timer: dict[str, Any], **values: Any) -> None:  # noqa: ANN401
        timer.update(values, version=timer["version"] + 1)
        if timer["id"] not in self.opened:
            self.changed[timer["id"]] = timer

    def stop(self, lead_id: uuid.UUID, sla: str, at: datetime, *, add_attempts: int = 0) -> bool:
        """Meet the lead's `sla` clock (for a cadence: count attempts, meet at the Nth).

        False if the lead has no such clock."""
        timer = self.timers.get(lead_id, {}).get(sla)
        if timer is None:
            return False
        if timer["state"] == "cancelled":
            return True
        attempts = timer["attempts"] + add_attempts
        required = timer["attempts_required"]
        if timer["met_at"] is not None or (add_attempts and required and attempts < required):
            # Not met yet, or met already: the touch still counts (past the cap it warns once).
            if add_attempts:
                self.change(timer, attempts=attempts)
                self.warn_if_over_cap(timer, attempts, at)
            return True
        state = "met" if timer["state"] == "open" else timer["state"]
        self.change(timer, state=state, met_at=at, attempts=attempts, next_fire_at=None)
        self.touched = True
        took = measured(
            timer["clock"], self.calendar(timer["calendar"]), timer["started_at"], at
        ).total_seconds()
        if sla == FIRST_RESPONSE:
            self.responses.append(
                ((timer["channel"] or "unknown", timer["team"] or "unknown"), took)
            )
        met = SlaMet(
            **_about(timer),
            level=state,
            met_at=at,
            business_seconds=took,
        )
        self.events.append((met, timer["policy_version"]))
        if add_attempts:
            self.warn_if_over_cap(timer, attempts, at)
        return True

    def warn_if_over_cap(self, timer: dict[str, Any], attempts: int, at: datetime) -> None:
        """One warning, the first time a lead got more touches than its cadence allows."""
        allowed = timer["attempts_allowed"]
        if allowed is None or attempts <= allowed or timer["attempts_exceeded_at"] is not None:
            return
        timer["attempts_exceeded_at"] = at  # the version stays: no level moves
        if timer["id"] not in self.opened:
            self.changed[timer["id"]] = timer
        warning = SlaWarning(
            **_about(timer),
            party=timer["party"],
            level=ATTEMPTS_EXCEEDED,
        )
        self.events.append((warning, timer["policy_version"]))
        self.warned[(timer["sla"], timer["channel"] or "unknown", timer["team"] or "unknown")] += 1

    def count_attempts(self, lead_id: uuid.UUID, at: datetime, n: int = 1) -> bool:
        """Apply `n` contact attempts (the earliest at `at`); False if the lead has no clocks yet."""
        found = False
        for sla in MET_BY_ATTEMPT:
            found |= self.stop(lead_id, sla, at)
        found |= self.stop(lead_id, CONTACT_CADENCE, at, add_attempts=n)
        return found

    def cancel_all(self, lead_id: uuid.UUID) -> None:
        """The lead left the funnel: open clocks end without an event, pending escalations drop."""
        for timer in self.timers.get(lead_id, {}).values():
            if timer["next_fire_at"] is not None:
                state = "cancelled" if timer["state"] == "open" else timer["state"]
                self.change(timer, state=state, next_fire_at=None)
        self.touched = True

    def status_changed(self, change: LeadStatusChanged) -> None:
        for sla in MEETS.get(change.status, ()):
            self.stop(change.lead_id, sla, change.changed_at)
        if change.status in ENDS_ALL:
            self.cancel_all(change.lead_id)
        if (sla := OPENS.get(change.status)) is not None:
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

    # --- writing ---------------------------------------------------------------------

    async def write(self) -> None:
        session = self.session
        if self.opened:
            await session.execute(_open_timers, list(self.opened.values()))
        if self.changed:
            moved = list(self.changed.values())
            await session.execute(
                _move_timers,
                {
                    "ids": [t["id"] for t in moved],
                    "states": [t["state"] for t in moved],
                    "met_ats": [t["met_at"] for t in moved],
                    "attempts": [t["attempts"] for t in moved],
                    "next_fire_ats": [t["next_fire_at"] for t in moved],
                    "versions": [t["version"] for t in moved],
                    "attempts_exceeded_ats": [t["attempts_exceeded_at"] for t in moved],
                },
            )
        await self.write_held()
        await self.rt.outbox.emit_many(session, self.events)
        if self.touched:
            touch(session, TIMERS_TAG)
        for labels, n in self.started.items():
            metrics.count_on_commit(session, metrics.sla_timers_started.labels(*labels), n)
        for labels, n in self.warned.items():
            metrics.count_on_commit(session, metrics.sla_warnings.labels(*labels), n)
        if self.responses:
            metrics.observe_on_commit(
                session,
                [(metrics.lead_response.labels(*labels), s) for labels, s in self.responses],
            )

    async def write_held(self) -> None:
        session = self.session
        released = [i for i, h in self.held.items() if h.released]
        if gone := [i for i in released if self.held[i].stored_attempt]:
            await session.execute(_release_attempts, {"ids": gone})
        if gone := [i for i in released if self.held[i].stored_statuses]:
            await session.execute(_release_statuses, {"ids": gone})
        attempts = [
            {"lead_id": i, "occurred_at": h.attempt[0], "attempts": h.attempt[1]}
            for i, h in self.held.items()
            if h.attempt_changed and h.attempt is not None
        ]
        if attempts:
            await session.execute(_hold_attempts, attempts)
        statuses = [row for h in self.held.values() for row in h.new_statuses]
        if statuses:
            await session.execute(_hold_statuses, statuses)


async def apply_timers(rt: Runtime, session: AsyncSession, checked: list[tuple]) -> None:
    """Apply a unit of work's checked events, (type, payload, event id), in arrival order."""
    clocks = Clocks(rt, session)
    await clocks.load(sorted({payload.lead_id for _, payload, _ in checked}))
    for kind, payload, event_id in checked:
        if kind == "lead.routed":
            clocks.routed(payload)
        elif kind == "lead.contact_attempt":
            clocks.attempt(payload)
        else:
            clocks.status(event_id, payload)
    await clocks.write()


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def check_routed(event: CloudEvent, session: AsyncSession) -> None:
        routed = LeadRouted.model_validate(event.data)
        try:
            cached_calendar(rt, session, routed.calendar)
        except ValueError as exc:  # a calendar it can never be scheduled on
            raise Reject(f"calendar of lead.routed invalid: {exc}") from exc
        session.info.setdefault(TIMERS_BATCH, {})[event.id] = (event.type, routed, event.id)

    async def check_attempt(event: CloudEvent, session: AsyncSession) -> None:
        attempt = LeadContactAttempt.model_validate(event.data)
        session.info.setdefault(TIMERS_BATCH, {})[event.id] = (event.type, attempt, event.id)

    async def check_status(event: CloudEvent, session: AsyncSession) -> None:
        change = LeadStatusChanged.model_validate(event.data)
        session.info.setdefault(TIMERS_BATCH, {})[event.id] = (event.type, change, event.id)

    async def timers_batch(events: list[CloudEvent], session: AsyncSession) -> None:
        checked = session.info.pop(TIMERS_BATCH, {})
        await apply_timers(rt, session, [checked[event.id] for event in events])

    async def check_mql(event: CloudEvent, session: AsyncSession) -> None:
        row = mql_row(rt, LeadMql.model_validate(event.data))
        session.info.setdefault(MQLS_BATCH, {})[event.id] = row

    async def mqls_batch(events: list[CloudEvent], session: AsyncSession) -> None:
        checked = session.info.pop(MQLS_BATCH, {})
        await record_mqls(session, [checked[event.id] for event in events])

    async def on_erased(event: CloudEvent, session: AsyncSession) -> None:
        await erase(session, uuid.UUID(event.subject))

    return [
        Subscription(
            "timers",
            (TOPIC_ROUTING, TOPIC_FEEDBACK),
            handlers={
                "lead.routed": check_routed,
                "lead.contact_attempt": check_attempt,
                "lead.status_changed": check_status,
            },
            after_batch=timers_batch,
        ),
        Subscription(
            "commitments",
            (TOPIC_SCORING,),
            handlers={"lead.mql": check_mql},
            after_batch=mqls_batch,
        ),
        Subscription("erasure", (TOPIC_INGEST,), handlers={"lead.erased": on_erased}),
    ]


async def erase(session: AsyncSession, lead_id: uuid.UUID) -> None:
    """The lead's held-back status changes lose their notes; its outbox rows are forgotten.
    Timers and counted MQLs name nobody and stay for the reports."""
    held = (
        await session.execute(
            sa.select(early_statuses.c.event_id, early_statuses.c.change).where(
                early_statuses.c.lead_id == lead_id
            )
        )
    ).all()
    for row in held:
        if FREE_TEXT_OF_STATUS & row.change.keys():
            kept = {k: v for k, v in row.change.items() if k not in FREE_TEXT_OF_STATUS}
            await session.execute(
                sa.update(early_statuses)
                .where(early_statuses.c.event_id == row.event_id)
                .values(change=kept)
            )
    await forget_events(session, kernel_tables(metadata)[0], [lead_id])


def mql_row(rt: Runtime, mql: LeadMql) -> dict[str, Any]:
    """A promotion as marketing's period commitments count it."""
    return {
        "lead_id": mql.lead_id,
        "promoted_at": mql.promoted_at,
        "kind": mql.kind,
        "channel": mql.channel,
        "in_target": in_target(rt.policy, mql.company.model_dump(), mql.role),
        "context_missing": mql_context_missing(mql),
    }


async def record_mqls(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Remember promotions, in arrival order; a later promotion of the same lead (after a
    recycle) moves it to the later period, a replayed older one does not move it back."""
    latest: dict[uuid.UUID, dict[str, Any]] = {}
    for row in rows:
        known = latest.get(row["lead_id"])
        if known is None or known["promoted_at"] <= row["promoted_at"]:
            latest[row["lead_id"]] = row
    if latest:
        await session.execute(_record_mqls, [latest[i] for i in sorted(latest)])
