"""Feedback's read model of each lead, kept from the events of the other services.

Topics are ordered per lead but not across topics (after a broker outage they catch up in any
order), so every event records the facts it carries: the lead is created when it is new, the
latest of each stamped fact (promotion, routing, score, exhausted cadence) is kept, and the
lifecycle status is derived from the facts (`settle`): a later-stage fact is never lost, an
earlier-stage event arriving late never moves the lead backwards, and a status set by sales
stays.

A poll batch is handled as a set: each event's handler only checks its payload and says what
it means (a timeline row and a `Fact`); the subscription's `after_batch` then applies the
whole batch with a fixed number of statements whatever its size. It locks the touched leads
and reads them (with what `settle` needs) once, replays the facts in arrival order in memory —
each promotion, routing or exhausted cadence settling its lead right away, exactly as if the
events had come one by one — and writes the timeline rows, the status history and the changed
leads with one statement each (a cadence's consequence, rare, is recorded on its own).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from leadflow.consumer import Subscription
from leadflow.contracts.commitments import in_target, mql_context_missing
from leadflow.contracts.events import (
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
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
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
# session.info key of the unit of work's checked events: event id -> (timeline row, fact).
BATCH = "leadflow_feedback.batch"
# Every column of a lead but its key, as the batch writes it back.
LEAD_COLUMNS = tuple(c.name for c in leads.c if c.name != "lead_id")

_ids = sa.bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
# A lead not known yet gets its row first, so that every touched lead can be locked and read
# (the batch then writes its facts into it).
_create_leads = insert(leads).on_conflict_do_nothing(index_elements=[leads.c.lead_id])
_lock_leads = (
    sa.select(leads).where(leads.c.lead_id == sa.any_(_ids)).order_by(leads.c.lead_id)
).with_for_update()
# What `settle` needs besides the lead: when it was last recycled, and its contact attempts.
_settle_history = sa.union_all(
    sa.select(status_history.c.lead_id, sa.true().label("recycled"), status_history.c.changed_at)
    .where(status_history.c.lead_id == sa.any_(_ids), status_history.c.status == "recycled"),
    sa.select(attempts.c.lead_id, sa.false(), attempts.c.occurred_at)
    .where(attempts.c.lead_id == sa.any_(_ids)),
)  # fmt: skip
_write_leads = (
    sa.update(leads)
    .where(leads.c.lead_id == sa.bindparam("key"))
    .values({name: sa.bindparam(name) for name in LEAD_COLUMNS})
)
_add_history = sa.insert(status_history)


@dataclass(frozen=True)
class Fact:
    """What one event says about one lead: the columns it sets (`updated_at` included).

    With a `stamp` (one of the columns), a fact older than the one already known leaves the
    lead as it is, so the latest wins whatever the arrival order; `keep(lead)` names columns
    the lead keeps as they are (e.g. its name once erased). A fact that `settles` is followed
    by `settle`."""

    lead_id: uuid.UUID
    values: dict[str, Any]
    stamp: str | None = None
    keep: Callable[[dict[str, Any]], Iterable[str]] | None = None
    settles: bool = False

    def apply(self, lead: dict[str, Any]) -> None:
        if self.stamp is not None and lead[self.stamp] is not None:
            if lead[self.stamp] > self.values[self.stamp]:
                return
        kept = set(self.keep(lead)) if self.keep is not None else ()
        for name, value in self.values.items():
            if name not in kept:
                lead[name] = value


@dataclass
class Known:
    """A lead as the batch found it and changes it, with what `settle` needs."""

    lead: dict[str, Any]
    stored: dict[str, Any]
    reopened_at: datetime | None = None  # the lead's last recycle
    attempts: list[datetime] = field(default_factory=list)


@dataclass
class Step:
    """A status change `settle` derived: a history row, or (`unreachable`) the cadence's
    consequence, written with `record_change`."""

    lead_id: uuid.UUID
    from_status: str
    status: str
    at: datetime
    unreachable: bool = False


def _snapshot_keeps(lead: dict[str, Any]) -> list[str]:
    kept = list(SNAPSHOT_UNTIL_MQL) if lead["mql_at"] is not None else []
    return [*kept, "display_name"] if lead["erased_at"] is not None else kept


def _mql_keeps(lead: dict[str, Any]) -> list[str]:
    # The name comes from ingest's snapshot; the MQL's fills it in only when it is missing,
    # and never after the lead was erased.
    named = lead["erased_at"] is not None or lead["display_name"] is not None
    return ["display_name"] if named else []


def fact_of(rt: Runtime, event: CloudEvent) -> Fact | None:
    """The fact an event records about its lead; None for an event only the timeline shows.
    Raises pydantic's ValidationError for a payload that does not hold its schema."""
    kind, at = event.type, event.time
    if kind in ("lead.created", "lead.updated"):
        source = event.data.get("source") or {}
        values = {
            "channel": source.get("channel"),
            "source": source,
            "role": event.data.get("role"),
            "context_missing": list(event.data.get("context_missing") or []),
            "display_name": timeline.display_name(event.data),
            "updated_at": at,
        }
        return Fact(uuid.UUID(event.subject), values, keep=_snapshot_keeps)
    if kind == "lead.erased":
        # The lead's personal data leaves feedback: the display name goes.
        values = {"erased_at": at, "display_name": None, "updated_at": at}
        return Fact(uuid.UUID(event.subject), values)
    if kind == "lead.scored":
        scored = LeadScored.model_validate(event.data)
        values = {
            "fit": scored.fit,
            "engagement": scored.engagement,
            "intent_tier": scored.intent_tier,
            "scored_at": scored.scored_at,
            "updated_at": at,
        }
        return Fact(scored.lead_id, values, stamp="scored_at")
    if kind == "lead.mql":
        mql = LeadMql.model_validate(event.data)
        values = {
            "channel": mql.channel,
            "source": mql.source.model_dump(mode="json", exclude_none=True),
            "role": mql.role,
            "mql_at": mql.promoted_at,
            "mql_fit": mql.fit,
            "mql_engagement": mql.engagement,
            "mql_intent_tier": mql.intent_tier,
            "in_target": in_target(rt.policy, mql.company.model_dump(), mql.role),
            "mql_context_missing": mql_context_missing(mql),
            "display_name": timeline.display_name(event.data),
            "updated_at": at,
        }
        return Fact(mql.lead_id, values, stamp="mql_at", keep=_mql_keeps, settles=True)
    if kind == "lead.routed":
        routed = LeadRouted.model_validate(event.data)
        values = {
            "team": routed.team,
            "rep_id": routed.rep_id,
            "routed_at": routed.routed_at,
            "calendar": routed.calendar,
            "updated_at": at,
        }
        return Fact(routed.lead_id, values, stamp="routed_at", settles=True)
    if kind == "sla.met":
        met = SlaMet.model_validate(event.data)
        if met.sla != FIRST_RESPONSE:
            return None
        values = {
            "sla_due_at": met.due_at,
            "sla_response_seconds": met.business_seconds,
            "updated_at": at,
        }
        return Fact(met.lead_id, values)
    if kind == "sla.breached":
        breached = SlaBreached.model_validate(event.data)
        if breached.sla == CONTACT_CADENCE and event.data.get("outcome") == UNREACHABLE:
            # applied now if the lead is routed here, or once its routing arrives
            values = {"cadence_exhausted_at": at, "updated_at": at}
            return Fact(breached.lead_id, values, stamp="cadence_exhausted_at", settles=True)
        if breached.sla != FIRST_RESPONSE:
            return None
        values = {"sla_due_at": breached.due_at, "sla_breached": True, "updated_at": at}
        return Fact(breached.lead_id, values)
    return None  # lead.activity, webhook.dead_lettered, sla.warning, sla.escalated


def settle(known: Known) -> list[Step]:
    """Bring the lead's status in line with the facts known about it, whatever order they
    arrived in: promotion and routing (`lifecycle.pipeline_steps`), then the consequences
    that wait for routing — a contact attempt already recorded makes it `working`, a cadence
    already exhausted makes it unreachable and recycles it. Facts from before the lead's last
    recycle are spent; a status set by sales is left as it is. Changes `known` and returns
    the status changes to record, in order."""
    lead, reopened_at = known.lead, known.reopened_at
    lead_id = lead["lead_id"]

    def fresh(at: datetime | None) -> bool:
        return at is not None and (reopened_at is None or at > reopened_at)

    steps: list[Step] = []

    def step(status: str, at: datetime) -> None:
        # the history row names the status it came from, so the history is an unbroken chain
        steps.append(Step(lead_id, lead["status"], status, at))
        lead["status"], lead["updated_at"] = status, at

    for status in pipeline_steps(
        lead["status"], mql_at=lead["mql_at"], routed_at=lead["routed_at"], reopened_at=reopened_at
    ):
        # a lead routed before its promotion arrived passes mql at the routing instant
        promoted = status == "mql" and fresh(lead["mql_at"])
        step(status, lead["mql_at"] if promoted else lead["routed_at"])
    if lead["status"] == "routed":
        first_attempt = min(
            (at for at in known.attempts if reopened_at is None or at > reopened_at), default=None
        )
        if first_attempt is not None:
            step("working", max(first_attempt, lead["routed_at"]))
    exhausted_at = lead["cadence_exhausted_at"]
    if lead["status"] in ("routed", "working") and fresh(exhausted_at):
        # The cadence ended without contact: the lead is marked unreachable and recycled to
        # nurture (DOMAIN.md).
        steps.append(Step(lead_id, lead["status"], UNREACHABLE, exhausted_at, unreachable=True))
        lead.update(status="recycled", reason=UNREACHABLE, updated_at=exhausted_at)
        known.reopened_at = exhausted_at  # the recycle's instant
    return steps


async def load(session: AsyncSession, facts: list[Fact], at: datetime) -> dict[uuid.UUID, Known]:
    """Create the leads not known yet, lock every touched lead (in key order, so that two
    batches never wait on each other in a circle) and read them, with their last recycle and
    contact attempts when a fact will settle them."""
    ids = sorted({fact.lead_id for fact in facts})
    await session.execute(_create_leads, [{"lead_id": i, "updated_at": at} for i in ids])
    rows = (await session.execute(_lock_leads, {"ids": ids})).mappings()
    known = {row["lead_id"]: Known(dict(row), dict(row)) for row in rows}
    settling = sorted({fact.lead_id for fact in facts if fact.settles})
    if settling:
        for lead_id, recycled, at in await session.execute(_settle_history, {"ids": settling}):
            lead = known[lead_id]
            if not recycled:
                lead.attempts.append(at)
            elif lead.reopened_at is None or at > lead.reopened_at:
                lead.reopened_at = at
    return known


async def apply_batch(
    rt: Runtime, session: AsyncSession, checked: list[tuple[dict | None, Fact | None]]
) -> None:
    """Apply a unit of work's checked events (timeline row, fact) in arrival order.

    The timeline and status history get their rows in the order handling the events one by
    one would give them, a cadence's consequence (`record_change`, which writes rows of its
    own) between the rows before and after its event; the changed leads are written last."""
    facts = [fact for _, fact in checked if fact is not None]
    known = (
        await load(session, facts, min(fact.values["updated_at"] for fact in facts))
        if facts
        else {}
    )
    entries: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []

    async def flush() -> None:
        nonlocal entries, history
        await timeline.add(session, entries)
        if history:
            await session.execute(_add_history, history)
        entries, history = [], []

    for entry, fact in checked:
        if entry is not None:
            entries.append(entry)
        if fact is None:
            continue
        lead = known[fact.lead_id]
        fact.apply(lead.lead)
        for step in settle(lead) if fact.settles else ():
            if not step.unreachable:
                history.append(
                    {"lead_id": step.lead_id, "from_status": step.from_status,
                     "status": step.status, "changed_at": step.at}
                )  # fmt: skip
                continue
            await flush()
            for from_status, status in ((step.from_status, UNREACHABLE), (UNREACHABLE, "recycled")):
                await record_change(
                    rt, session, step.lead_id, from_status=from_status, status=status,
                    reason=UNREACHABLE, changed_at=step.at,
                )  # fmt: skip
    await flush()
    # written last: a change recorded above wrote the status it made, the lead holds the last
    changed = [
        {"key": lead_id, **{name: k.lead[name] for name in LEAD_COLUMNS}}
        for lead_id, k in known.items()
        if k.lead != k.stored
    ]
    if changed:
        await session.execute(_write_leads, changed)


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def check(event: CloudEvent, session: AsyncSession) -> None:
        """Every event of a lead lands on its timeline in the same transaction as its effects;
        the batch pass writes both."""
        batch = session.info.setdefault(BATCH, {})
        batch[event.id] = (timeline.row_of(event), fact_of(rt, event))

    async def after_batch(events: list[CloudEvent], session: AsyncSession) -> None:
        checked = session.info.pop(BATCH, {})
        await apply_batch(rt, session, [checked[event.id] for event in events])

    kinds = (
        "lead.created", "lead.updated", "lead.activity", "lead.erased", "lead.scored",
        "lead.mql", "lead.routed", "webhook.dead_lettered", "sla.warning", "sla.escalated",
        "sla.met", "sla.breached",
    )  # fmt: skip
    return [
        Subscription(
            "lifecycle",
            (TOPIC_INGEST, TOPIC_SCORING, TOPIC_ROUTING, TOPIC_SLA),
            handlers=dict.fromkeys(kinds, check),
            after_batch=after_batch,
        )
    ]
