"""Judges each party's period commitments once per period, after the period ended (plus the
policy's evaluation_delay): each missed commitment becomes an `sla.breached` naming the party,
the commitment, the plan and what was delivered; a run of missed periods as long as the
policy's corrective_plan_after_misses becomes `sla.corrective_plan_required`.

Exactly once: the (party, period_start) key of period_evaluations is written in the same
transaction as the events, so another instance, a replay or a restart finds the period judged.
Periods are judged oldest first, from the period of the first MQL sla-timer recorded (or the
one after the last period judged), so none is skipped while sla-timer was down.
"""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from leadflow.contracts.commitments import period_of
from leadflow.contracts.events import SlaBreached, SlaCorrectivePlanRequired
from leadflow.service import Runtime
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_sla_timer.models import mqls, period_evaluations, timers
from leadflow_sla_timer.period_commitments import (
    MARKETING,
    PARTIES,
    Figure,
    MarketingCounts,
    SalesCounts,
    consecutive_misses,
    marketing_figures,
    missed,
    owes_corrective_plan,
    period_id,
    sales_figures,
)
from leadflow_sla_timer.sla_policy import FIRST_RESPONSE

log = logging.getLogger(__name__)

IDLE = 5.0  # real seconds between looks for a period that has come due


async def next_period(
    session: AsyncSession, party: str, granularity: str, tz: ZoneInfo
) -> tuple[datetime, datetime] | None:
    """The party's oldest period not judged yet; None while sla-timer has recorded no MQL."""
    e = period_evaluations.c
    last_end = await session.scalar(
        sa.select(e.period_end).where(e.party == party).order_by(e.period_start.desc()).limit(1)
    )
    if last_end is None:
        # Judging starts with the period of the first MQL sla-timer recorded: before it (a new
        # installation, or clocks older than the MQL record) there is nothing fair to judge.
        first_mql = await session.scalar(sa.select(sa.func.min(mqls.c.promoted_at)))
        return None if first_mql is None else period_of(first_mql, granularity, tz)
    return period_of(last_end, granularity, tz)


async def count_marketing(session: AsyncSession, start: datetime, end: datetime) -> MarketingCounts:
    m = mqls.c
    row = (
        await session.execute(
            sa.select(
                sa.func.count(),
                sa.func.count().filter(m.in_target),
                sa.func.count().filter(sa.func.jsonb_array_length(m.context_missing) == 0),
            ).where(m.promoted_at >= start, m.promoted_at < end)
        )
    ).one()
    return MarketingCounts(*row)


async def count_sales(
    session: AsyncSession, start: datetime, end: datetime, now: datetime
) -> SalesCounts:
    """First responses of the MQLs promoted in the period (routing time for a lead whose
    promotion sla-timer did not see); a cancelled clock (returned, left the funnel) owes none."""
    t, m = timers.c, mqls.c
    at = sa.func.coalesce(m.promoted_at, t.started_at)
    within = sa.and_(t.met_at.is_not(None), t.met_at <= t.due_at)
    late = sa.or_(
        t.met_at > t.due_at,
        sa.and_(t.met_at.is_(None), t.state != "cancelled", t.due_at <= now),
    )
    row = (
        await session.execute(
            sa.select(sa.func.count().filter(within), sa.func.count().filter(late))
            .select_from(timers.outerjoin(mqls, m.lead_id == t.lead_id))
            .where(t.sla == FIRST_RESPONSE, at >= start, at < end)
        )
    ).one()
    return SalesCounts(decided=row[0] + row[1], within_limit=row[0])


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
                await count_marketing(session, start, end), policy, c.period
            )
        else:
            figures = sales_figures(await count_sales(session, start, end, now), policy)
        misses = missed(figures)
        e = period_evaluations.c
        previous = await session.scalar(
            sa.select(e.consecutive_misses).where(e.party == party, e.period_end == start)
        )
        streak = consecutive_misses(previous or 0, bool(misses))
        corrective = owes_corrective_plan(streak, policy)
        pid = period_id(party, start)
        judged = await session.scalar(
            insert(period_evaluations)
            .values(
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
            .on_conflict_do_nothing()
            .returning(e.id)
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


def breach(party: str, pid, start: datetime, end: datetime, figure: Figure) -> SlaBreached:  # noqa: ANN001
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
        await rt.stop.pause(IDLE)
