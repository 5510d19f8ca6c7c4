"""All of feedback's SQL: the read model of each lead, its contact attempts, status history and
timeline, and the batched reads and writes a poll batch of events needs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from leadflow.db import ManyRows
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback.domain.facts import Fact, Known
from leadflow_feedback.domain.observed_rates import Arrival
from leadflow_feedback.domain.reports import LeadFacts, StatusStep
from leadflow_feedback.models import attempts, leads, status_history, team_directory, timeline

# Every column of a lead but its key, as a batch writes it back.
LEAD_COLUMNS = tuple(c.name for c in leads.c if c.name != "lead_id")
REPORT_COLUMNS = frozenset(LeadFacts.__dataclass_fields__)

_ids = sa.bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
# A lead not known yet gets its row first, so that every touched lead can be locked and read
# (the batch then writes its facts into it): one statement over the array of the batch's ids,
# not one execution per lead (most are known already: a lead's events arrive in several batches).
_create_leads = (
    insert(leads)
    .from_select(
        ["lead_id", "updated_at"],
        sa.select(sa.func.unnest(_ids), sa.bindparam("at", type_=sa.DateTime(timezone=True))),
    )
    .on_conflict_do_nothing(index_elements=[leads.c.lead_id])
)
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
# A batch's changed leads written back with one statement, not one execution per lead.
_lead_rows = ManyRows(leads, ["lead_id", *LEAD_COLUMNS])
_write_leads = _lead_rows.update("lead_id")
_history_rows = ManyRows(status_history, ["lead_id", "from_status", "status", "changed_at"])
_add_history = _history_rows.insert()
_timeline_rows = ManyRows(
    timeline, ["event_id", "lead_id", "type", "source", "occurred_at", "details"]
)
_add_timeline = _timeline_rows.insert().on_conflict_do_nothing(index_elements=[timeline.c.event_id])


# --- a poll batch of events ----------------------------------------------------------------


async def lock_leads(
    session: AsyncSession, facts: list[Fact], at: datetime
) -> dict[uuid.UUID, Known]:
    """Create the leads not known yet, lock every touched lead (in key order, so that two
    batches never wait on each other in a circle) and read them, with their last recycle and
    contact attempts when a fact will settle them."""
    ids = sorted({fact.lead_id for fact in facts})
    await session.execute(_create_leads, {"ids": ids, "at": at})
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


async def add_to_timeline(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Add timeline rows in this order; an event already there is left as it is."""
    if rows:
        await session.execute(_add_timeline, _timeline_rows.params(rows))


async def add_history(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_add_history, _history_rows.params(rows))


async def write_leads(session: AsyncSession, known: dict[uuid.UUID, Known]) -> None:
    """Write back every lead the batch changed, with one statement."""
    changed = [
        {"lead_id": lead_id, **{name: k.lead[name] for name in LEAD_COLUMNS}}
        for lead_id, k in known.items()
        if k.lead != k.stored
    ]
    if changed:
        await session.execute(_write_leads, _lead_rows.params(changed))


# --- one lead ------------------------------------------------------------------------------


async def lock_lead(session: AsyncSession, lead_id: uuid.UUID) -> str | None:
    """The lead's status, its row locked until the unit of work ends; None when unknown."""
    return await session.scalar(
        sa.select(leads.c.status).where(leads.c.lead_id == lead_id).with_for_update()
    )


async def add_attempt(
    session: AsyncSession,
    *,
    attempt_id: uuid.UUID,
    lead_id: uuid.UUID,
    channel: str,
    occurred_at: datetime,
    rep_id: uuid.UUID | None,
    outcome: str | None,
) -> None:
    await session.execute(
        sa.insert(attempts).values(
            id=attempt_id,
            lead_id=lead_id,
            channel=channel,
            occurred_at=occurred_at,
            rep_id=rep_id,
            outcome=outcome,
        )
    )


async def write_status(
    session: AsyncSession,
    lead_id: uuid.UUID,
    *,
    from_status: str | None,
    status: str,
    changed_at: datetime,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    set_reason: bool = True,
) -> None:
    """Set the lead's status (and its latest reason, unless `set_reason` is off) and add the
    history row of the change."""
    values: dict[str, Any] = {"status": status, "updated_at": changed_at}
    if set_reason:
        values["reason"] = reason
    await session.execute(sa.update(leads).where(leads.c.lead_id == lead_id).values(**values))
    await session.execute(
        sa.insert(status_history).values(
            lead_id=lead_id,
            from_status=from_status,
            status=status,
            reason=reason,
            details=details,
            changed_at=changed_at,
        )
    )


async def lifecycle_of(
    session: AsyncSession, lead_id: uuid.UUID
) -> tuple[Row, list[Row], int] | None:
    """The lead, its status history in order and its number of contact attempts."""
    lead = (await session.execute(sa.select(leads).where(leads.c.lead_id == lead_id))).first()
    if lead is None:
        return None
    history = (
        await session.execute(
            sa.select(
                status_history.c.from_status,
                status_history.c.status,
                status_history.c.reason,
                status_history.c.changed_at,
            )
            .where(status_history.c.lead_id == lead_id)
            .order_by(status_history.c.id)
        )
    ).all()
    n_attempts = await session.scalar(
        sa.select(sa.func.count()).select_from(attempts).where(attempts.c.lead_id == lead_id)
    )
    return lead, list(history), n_attempts or 0


async def lead_summary(session: AsyncSession, lead_id: uuid.UUID) -> dict[str, Any] | None:
    """What the lead's timeline page shows of the lead itself."""
    row = (
        await session.execute(
            sa.select(
                leads.c.status, leads.c.display_name, leads.c.team, leads.c.channel, leads.c.source
            ).where(leads.c.lead_id == lead_id)
        )
    ).first()
    return dict(row._mapping) if row else None


async def timeline_of(session: AsyncSession, lead_id: uuid.UUID) -> list[dict[str, Any]]:
    """The lead's timeline, oldest first (ties in the order the events were recorded)."""
    rows = await session.execute(
        sa.select(
            timeline.c.event_id,
            timeline.c.type,
            timeline.c.source,
            timeline.c.occurred_at,
            timeline.c.details,
        )
        .where(timeline.c.lead_id == lead_id)
        .order_by(timeline.c.occurred_at, timeline.c.id)
    )
    return [dict(row._mapping) for row in rows]


# --- reports -------------------------------------------------------------------------------


async def report_facts(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    team: str | None = None,
    scored_too: bool = False,
) -> list[LeadFacts]:
    """The leads promoted to MQL in [start, end) (and, for calibration, the leads scored in
    it), with their attempts and status history."""
    in_window = leads.c.mql_at.between(start, end)
    if scored_too:
        in_window = in_window | leads.c.scored_at.between(start, end)
    query = sa.select(leads).where(in_window)
    if team is not None:
        query = query.where(leads.c.team == team)
    rows = (await session.execute(query)).mappings().all()
    facts = {
        row["lead_id"]: LeadFacts(**{k: v for k, v in row.items() if k in REPORT_COLUMNS})
        for row in rows
    }
    if not facts:
        return []
    ids = list(facts)
    tried = await session.execute(
        sa.select(
            attempts.c.lead_id,
            attempts.c.channel,
            sa.func.count(),
            sa.func.min(attempts.c.occurred_at),
        )
        .where(attempts.c.lead_id.in_(ids))
        .group_by(attempts.c.lead_id, attempts.c.channel)
    )
    for lead_id, channel, count, first in tried:
        lead = facts[lead_id]
        lead.attempts += count
        lead.attempts_by_channel[channel] = count
        if lead.first_attempt_at is None or first < lead.first_attempt_at:
            lead.first_attempt_at = first
    await _add_history_of(session, facts)
    return list(facts.values())


async def _add_history_of(session: AsyncSession, facts: dict[uuid.UUID, LeadFacts]) -> None:
    history = await session.execute(
        sa.select(
            status_history.c.lead_id,
            status_history.c.status,
            status_history.c.reason,
            status_history.c.changed_at,
            status_history.c.details,
        )
        .where(status_history.c.lead_id.in_(list(facts)))
        .order_by(status_history.c.id)
    )
    for lead_id, status, reason, changed_at, details in history:
        facts[lead_id].history.append(StatusStep(status, reason, changed_at, details))


# The events whose source the timeline keeps: revenue's first and last touch.
_TOUCHES = ("lead.created", "lead.updated", "lead.mql")


async def revenue_facts(
    session: AsyncSession, *, start: datetime, end: datetime, team: str | None = None
) -> list[LeadFacts]:
    """The leads won in [start, end) and every open SQO, with their status history (the
    opportunities) and the sources their timeline recorded, oldest first."""
    won = sa.select(status_history.c.lead_id).where(
        status_history.c.status == "won",
        status_history.c.changed_at >= start,
        status_history.c.changed_at < end,
    )
    query = sa.select(leads).where((leads.c.status == "sqo") | leads.c.lead_id.in_(won))
    if team is not None:
        query = query.where(leads.c.team == team)
    rows = (await session.execute(query)).mappings().all()
    facts = {
        row["lead_id"]: LeadFacts(**{k: v for k, v in row.items() if k in REPORT_COLUMNS})
        for row in rows
    }
    if not facts:
        return []
    await _add_history_of(session, facts)
    touches = await session.execute(
        sa.select(timeline.c.lead_id, timeline.c.occurred_at, timeline.c.details)
        .where(timeline.c.lead_id.in_(list(facts)), timeline.c.type.in_(_TOUCHES))
        .order_by(timeline.c.occurred_at, timeline.c.id)
    )
    for lead_id, at, details in touches:
        source = (details or {}).get("source")
        if source:
            facts[lead_id].touches.append((at, source))
    return list(facts.values())


async def teams(session: AsyncSession) -> list[str]:
    """Every team a lead was routed to, by name."""
    names = await session.scalars(
        sa.select(leads.c.team).distinct().where(leads.c.team.isnot(None))
    )
    return sorted(names.all())


async def display_names(session: AsyncSession, ids: set[uuid.UUID]) -> dict[str, str]:
    """How people recognise these leads (erased ones and those without a name are left out)."""
    rows = await session.execute(
        sa.select(leads.c.lead_id, leads.c.display_name).where(leads.c.lead_id.in_(ids))
    )
    return {str(row.lead_id): row.display_name for row in rows if row.display_name}


async def arrivals(session: AsyncSession, *, start: datetime, end: datetime) -> list[Arrival]:
    """The leads that arrived in [start, end) (their `lead.created` on the timeline), with
    their channel and campaign and whether they were promoted to MQL: the planner's lead→MQL."""
    arrived = (
        sa.select(timeline.c.lead_id)
        .where(timeline.c.type == "lead.created", timeline.c.occurred_at.between(start, end))
        .distinct()
        .subquery()
    )
    rows = await session.execute(
        sa.select(leads.c.channel, leads.c.source, leads.c.mql_at).join(
            arrived, arrived.c.lead_id == leads.c.lead_id
        )
    )
    return [
        Arrival(row.channel, (row.source or {}).get("campaign"), row.mql_at is not None)
        for row in rows
    ]


async def save_directories(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Each team's reps as published; an older copy than the one kept changes nothing."""
    if not rows:
        return
    query = insert(team_directory)
    await session.execute(
        query.on_conflict_do_update(
            index_elements=[team_directory.c.team_id],
            set_={
                "team": query.excluded.team,
                "reps": query.excluded.reps,
                "changed_at": query.excluded.changed_at,
            },
            where=team_directory.c.changed_at < query.excluded.changed_at,
        ),
        rows,
    )


async def directories(session: AsyncSession, team: str | None = None) -> list[dict[str, Any]]:
    """The teams' reps as routing last published them (one team's, when named)."""
    query = sa.select(team_directory.c.team, team_directory.c.reps).order_by(team_directory.c.team)
    if team is not None:
        query = query.where(team_directory.c.team == team)
    return [dict(row._mapping) for row in await session.execute(query)]
