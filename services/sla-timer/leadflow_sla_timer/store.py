"""All of sla-timer's SQL: the clocks of a batch's leads read and written with a fixed number of
statements, the firing claims, the held-back events, the recorded MQLs and the period counts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from leadflow.contracts.erasure import forget_events
from leadflow.contracts.slas import CONTACT_CADENCE, FIRST_RESPONSE, SAL_ACCEPTANCE
from leadflow.db import ManyRows, kernel_tables, lock_leads
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert
from sqlalchemy.engine import Row, RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_sla_timer.domain.periods import MarketingCounts, SalesCounts
from leadflow_sla_timer.models import (
    early_attempts,
    early_statuses,
    metadata,
    mqls,
    period_evaluations,
    timers,
)

OUTBOX, _ = kernel_tables(metadata)
_t = timers.c

# --- the clocks of a batch's leads --------------------------------------------------------

# The columns a unit of work may change on a timer it found (its key and the rest stay).
MOVED_COLUMNS = ("state", "met_at", "attempts", "next_fire_at", "version", "attempts_exceeded_at")
# ... and the cadence's counts per channel and day: JSON, handed over as text and cast back.
MOVED_JSON_COLUMNS = ("attempts_by_channel", "attempt_days")

_ids = sa.bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
_read_timers = (
    sa.select(timers)
    .where(_t.lead_id == sa.any_(_ids))
    .order_by(_t.lead_id, _t.sla)
    .with_for_update()
)
_read_early_attempts = sa.select(early_attempts).where(early_attempts.c.lead_id == sa.any_(_ids))
_read_early_statuses = (
    sa.select(early_statuses)
    .where(early_statuses.c.lead_id == sa.any_(_ids))
    .order_by(early_statuses.c.changed_at)
)
_timer_rows = ManyRows(
    timers,
    [
        "id", "lead_id", "sla", "party", "channel", "team", "rep_id", "clock", "calendar",
        "limit_seconds", "started_at", "due_at", "state", "level", "ladder", "next_fire_at",
        "version", "met_at", "policy_version", "attempts", "attempts_required",
        "attempts_allowed", "attempts_exceeded_at", "attempts_by_channel", "attempt_days",
        "min_per_channel", "min_distinct_days",
    ],
)  # fmt: skip
_open_timers = _timer_rows.insert()
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
        sa.bindparam("by_channel_texts", type_=ARRAY(sa.Text)),
        sa.bindparam("day_texts", type_=ARRAY(sa.Text)),
    )
    .table_valued("id", *MOVED_COLUMNS, *MOVED_JSON_COLUMNS)
    .render_derived(name="moved")
)
_move_timers = (
    sa.update(timers)
    .where(_t.id == _moved.c.id)
    .values(
        {name: _moved.c[name] for name in MOVED_COLUMNS}
        | {name: sa.cast(_moved.c[name], JSONB) for name in MOVED_JSON_COLUMNS}
    )
)
_hold_attempts = insert(early_attempts)
_hold_attempts = _hold_attempts.on_conflict_do_update(
    index_elements=[early_attempts.c.lead_id],
    set_={
        "occurred_at": _hold_attempts.excluded.occurred_at,
        "attempts": _hold_attempts.excluded.attempts,
        "by_channel": _hold_attempts.excluded.by_channel,
    },
)
_hold_statuses = insert(early_statuses).on_conflict_do_nothing()
_release_attempts = sa.delete(early_attempts).where(early_attempts.c.lead_id == sa.any_(_ids))
_release_statuses = sa.delete(early_statuses).where(early_statuses.c.lead_id == sa.any_(_ids))


async def lock_and_read_clocks(
    session: AsyncSession, lead_ids: list[uuid.UUID]
) -> tuple[list[RowMapping], list[Row], list[Row]]:
    """Lock the leads (in key order), then read their timers (`FOR UPDATE`: the firing loop
    cannot fire a level between this read and the batch's write), their held-back attempts and
    their held-back status changes (oldest first)."""
    await lock_leads(session, "sla-timer", lead_ids)
    clocks = list((await session.execute(_read_timers, {"ids": lead_ids})).mappings())
    attempts = list(await session.execute(_read_early_attempts, {"ids": lead_ids}))
    statuses = list(await session.execute(_read_early_statuses, {"ids": lead_ids}))
    return clocks, attempts, statuses


async def open_timers(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_open_timers, _timer_rows.params(rows))


async def move_timers(session: AsyncSession, moved: list[dict[str, Any]]) -> None:
    """Write the moved columns of these timers with one statement."""
    if not moved:
        return
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
            "by_channel_texts": [json.dumps(t["attempts_by_channel"]) for t in moved],
            "day_texts": [json.dumps(t["attempt_days"]) for t in moved],
        },
    )


async def release_held(
    session: AsyncSession, attempts_of: list[uuid.UUID], statuses_of: list[uuid.UUID]
) -> None:
    """Forget the held-back attempts and status changes of leads whose clocks applied them."""
    if attempts_of:
        await session.execute(_release_attempts, {"ids": attempts_of})
    if statuses_of:
        await session.execute(_release_statuses, {"ids": statuses_of})


async def hold(
    session: AsyncSession, attempts: list[dict[str, Any]], statuses: list[dict[str, Any]]
) -> None:
    """Keep attempts ({lead_id, occurred_at, attempts, by_channel}) and status changes
    ({event_id, lead_id, changed_at, change}) seen before the lead's clocks."""
    if attempts:
        await session.execute(_hold_attempts, attempts)
    if statuses:
        await session.execute(_hold_statuses, statuses)


# --- erasure ----------------------------------------------------------------------------------


async def held_statuses_of(session: AsyncSession, lead_id: uuid.UUID) -> list[Row]:
    return list(
        await session.execute(
            sa.select(early_statuses.c.event_id, early_statuses.c.change).where(
                early_statuses.c.lead_id == lead_id
            )
        )
    )


async def replace_held_status(
    session: AsyncSession, event_id: uuid.UUID, change: dict[str, Any]
) -> None:
    await session.execute(
        sa.update(early_statuses).where(early_statuses.c.event_id == event_id).values(change=change)
    )


async def forget_outbox_rows(session: AsyncSession, lead_ids: Sequence[uuid.UUID]) -> None:
    await forget_events(session, OUTBOX, lead_ids)


# --- recorded MQLs ----------------------------------------------------------------------------

_MQL_COLUMNS = ("promoted_at", "kind", "channel", "in_target", "context_missing", "medium")
# One statement over a batch's promotions (one row per lead: `latest_promotions`).
_mql_rows = ManyRows(mqls, ["lead_id", *_MQL_COLUMNS])
_record_mqls = _mql_rows.insert()
_record_mqls = _record_mqls.on_conflict_do_update(
    index_elements=[mqls.c.lead_id],
    set_={name: _record_mqls.excluded[name] for name in _MQL_COLUMNS},
    # a replayed older promotion does not move the lead back
    where=mqls.c.promoted_at <= _record_mqls.excluded.promoted_at,
)


async def record_mqls(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(_record_mqls, _mql_rows.params(rows))


# --- firing -----------------------------------------------------------------------------------

# The claimed timers move on in one UPDATE joined to the unnested arrays of their new values:
# four array parameters, so one cached statement whatever the claim's size.
_fired = (
    sa.func.unnest(
        sa.bindparam("ids", type_=ARRAY(UUID(as_uuid=True))),
        sa.bindparam("states", type_=ARRAY(sa.Text)),
        sa.bindparam("levels", type_=ARRAY(sa.Integer)),
        sa.bindparam("next_fire_ats", type_=ARRAY(sa.DateTime(timezone=True))),
    )
    .table_valued("id", "state", "level", "next_fire_at")
    .render_derived(name="moved")
)
MOVE_ON = (
    sa.update(timers)
    .where(_t.id == _fired.c.id)
    .values(
        state=_fired.c.state,
        level=_fired.c.level,
        version=_t.version + 1,
        next_fire_at=_fired.c.next_fire_at,
    )
)

# What a claim reads of each timer (the ladder as text, parsed by the caller: cheaper than the
# driver's JSON decoding), locked until the claim's transaction ends.
CLAIMED = (
    _t.id,
    _t.lead_id,
    _t.sla,
    _t.party,
    _t.channel,
    _t.team,
    _t.rep_id,
    _t.started_at,
    _t.due_at,
    _t.state,
    _t.level,
    sa.cast(_t.ladder, sa.Text).label("ladder"),
    _t.policy_version,
)


def claim(now: datetime, limit: int) -> sa.Select:
    """Up to `limit` due timers, most overdue first, skipping those another claim holds."""
    return (
        sa.select(*CLAIMED)
        .where(_t.next_fire_at <= now)
        .order_by(_t.next_fire_at)
        .limit(limit)
        .with_for_update(of=timers, skip_locked=True)
    )


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> list[Row]:
    return (await session.execute(claim(now, limit))).all()


# What a claimed cadence clock has counted and needs, read only for the claims that hold one.
_CADENCE_COUNTS = sa.select(
    _t.id,
    _t.state,
    _t.met_at,
    _t.attempts,
    _t.attempts_required,
    _t.attempts_by_channel,
    _t.attempt_days,
    _t.min_per_channel,
    _t.min_distinct_days,
).where(_t.id == sa.any_(_ids))


async def cadence_counts(session: AsyncSession, ids: list[uuid.UUID]) -> list[RowMapping]:
    return list((await session.execute(_CADENCE_COUNTS, {"ids": ids})).mappings())


async def move_fired(
    session: AsyncSession,
    ids: list[uuid.UUID],
    states: list[str],
    levels: list[int],
    next_fire_ats: list[datetime | None],
) -> None:
    """One UPDATE for a whole claim. (An UPDATE ... FROM (VALUES ...) measured slower: a new
    2,000-parameter statement to compile for every claim.)"""
    if ids:
        await session.execute(
            MOVE_ON,
            {"ids": ids, "states": states, "levels": levels, "next_fire_ats": next_fire_ats},
        )


async def next_due(session: AsyncSession) -> datetime | None:
    return await session.scalar(sa.select(sa.func.min(_t.next_fire_at)))


async def count_open(session: AsyncSession, overdue_before: datetime) -> list[Row]:
    """Per SLA: open timers (a level still to fire) and those whose next level came due before
    `overdue_before`."""
    return (
        await session.execute(
            sa.select(
                _t.sla, sa.func.count(), sa.func.count().filter(_t.next_fire_at < overdue_before)
            )
            .where(_t.next_fire_at.is_not(None))
            .group_by(_t.sla)
        )
    ).all()


# --- period commitments ----------------------------------------------------------------------

_e = period_evaluations.c


async def last_judged_end(session: AsyncSession, party: str) -> datetime | None:
    return await session.scalar(
        sa.select(_e.period_end).where(_e.party == party).order_by(_e.period_start.desc()).limit(1)
    )


async def first_mql_at(session: AsyncSession) -> datetime | None:
    return await session.scalar(sa.select(sa.func.min(mqls.c.promoted_at)))


async def count_marketing(session: AsyncSession, start: datetime, end: datetime) -> MarketingCounts:
    m = mqls.c
    rows = (
        await session.execute(
            sa.select(
                m.medium,
                sa.func.count(),
                sa.func.count().filter(m.in_target),
                sa.func.count().filter(sa.func.jsonb_array_length(m.context_missing) == 0),
            )
            .where(m.promoted_at >= start, m.promoted_at < end)
            .group_by(m.medium)
        )
    ).all()
    return MarketingCounts(
        mqls=sum(r[1] for r in rows),
        in_target=sum(r[2] for r in rows),
        full_context=sum(r[3] for r in rows),
        by_medium={r[0]: r[1] for r in rows},
    )


async def count_sales(
    session: AsyncSession, start: datetime, end: datetime, now: datetime
) -> SalesCounts:
    """First responses of the MQLs promoted in the period (routing time for a lead whose
    promotion sla-timer did not see); a cancelled clock (returned, left the funnel) owes none.
    Attempts are the contact cadence's, per MQL promoted in the period; an MQL has a status
    once its SAL-acceptance clock stopped (accepted, returned, or a later status) or a status
    ended all its clocks."""
    m = mqls.c
    at = sa.func.coalesce(m.promoted_at, _t.started_at)
    within = sa.and_(_t.met_at.is_not(None), _t.met_at <= _t.due_at)
    late = sa.or_(
        _t.met_at > _t.due_at,
        sa.and_(_t.met_at.is_(None), _t.state != "cancelled", _t.due_at <= now),
    )
    row = (
        await session.execute(
            sa.select(sa.func.count().filter(within), sa.func.count().filter(late))
            .select_from(timers.outerjoin(mqls, m.lead_id == _t.lead_id))
            .where(_t.sla == FIRST_RESPONSE, at >= start, at < end)
        )
    ).one()
    cadence = timers.alias("cadence")
    acceptance = timers.alias("acceptance")
    given = sa.or_(acceptance.c.met_at.is_not(None), acceptance.c.state == "cancelled")
    per_mql = (
        await session.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(cadence.c.attempts), 0),
                sa.func.count().filter(given),
            )
            .select_from(
                mqls.outerjoin(
                    cadence,
                    sa.and_(cadence.c.lead_id == m.lead_id, cadence.c.sla == CONTACT_CADENCE),
                ).outerjoin(
                    acceptance,
                    sa.and_(acceptance.c.lead_id == m.lead_id, acceptance.c.sla == SAL_ACCEPTANCE),
                )
            )
            .where(m.promoted_at >= start, m.promoted_at < end)
        )
    ).one()
    return SalesCounts(
        decided=row[0] + row[1],
        within_limit=row[0],
        mqls=per_mql[0],
        attempts=int(per_mql[1]),
        with_status=per_mql[2],
    )


async def misses_before(session: AsyncSession, party: str, period_start: datetime) -> int | None:
    """The miss streak of the party's period that ended when this one started."""
    return await session.scalar(
        sa.select(_e.consecutive_misses).where(_e.party == party, _e.period_end == period_start)
    )


async def record_evaluation(session: AsyncSession, **row: Any) -> uuid.UUID | None:
    """Write a period's evaluation; None when another instance judged it meanwhile."""
    return await session.scalar(
        insert(period_evaluations).values(**row).on_conflict_do_nothing().returning(_e.id)
    )


# --- the HTTP API ---------------------------------------------------------------------------

_LEAD_TIMERS = (
    sa.select(
        _t.id,
        _t.sla,
        _t.state,
        _t.channel,
        _t.team,
        _t.clock,
        _t.started_at,
        _t.due_at,
        _t.level,
        _t.ladder,
        _t.met_at,
        _t.next_fire_at,
        _t.policy_version,
        _t.attempts,
        _t.attempts_required,
        _t.attempts_allowed,
        _t.attempts_exceeded_at,
        _t.attempts_by_channel,
        _t.attempt_days,
        _t.min_per_channel,
        _t.min_distinct_days,
    )
    .where(_t.lead_id == sa.bindparam("lead_id"))
    .order_by(_t.started_at)
)


async def timers_of_lead(session: AsyncSession, lead_id: uuid.UUID) -> list[Row]:
    return (await session.execute(_LEAD_TIMERS, {"lead_id": lead_id})).all()
