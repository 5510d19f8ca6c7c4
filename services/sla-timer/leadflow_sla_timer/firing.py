"""Fires due SLA timer levels: batched SKIP LOCKED claims, events written in the same transaction."""

from __future__ import annotations

import asyncio
from datetime import datetime

import sqlalchemy as sa
from leadflow import metrics
from leadflow.events import SlaBreached, SlaEscalated, SlaWarning
from leadflow.service import Runtime

from leadflow_sla_timer import sla_policy
from leadflow_sla_timer.models import TIMERS_TAG, timers
from leadflow_sla_timer.timers import due_levels

BATCH = 500
MAX_IDLE = 1.0  # real seconds between looks at the table when nothing is due sooner


async def fire_due(rt: Runtime) -> int:
    """Fire every due level of up to BATCH timers; returns how many timers advanced."""
    now = rt.clock.now()
    t = timers.c
    async with rt.db.unit_of_work() as session:
        rows = (
            await session.execute(
                sa.select(timers)
                .where(t.next_fire_at <= now)
                .order_by(t.next_fire_at)
                .limit(BATCH)
                .with_for_update(skip_locked=True)
            )
        ).all()
        for row in rows:
            fired = due_levels(row.ladder, row.level, now)
            state = row.state
            for index in fired:
                step = row.ladder[index]
                at = datetime.fromisoformat(step["at"])
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
                    level=step["level"],
                )
                labels = (row.sla, row.channel or "unknown", row.team or "unknown")
                if step["level"] == "warning":
                    await rt.outbox.emit(
                        session, SlaWarning(**common), policy_version=row.policy_version
                    )
                    metrics.sla_warnings.labels(*labels).inc()
                elif step["level"] == "breached":
                    state = "breached"
                    await rt.outbox.emit(
                        session, SlaBreached(**common), policy_version=row.policy_version
                    )
                    await rt.outbox.emit(
                        session,
                        SlaEscalated(
                            **common,
                            escalate_to="team_lead",
                            reassign=sla_policy.reassign_on_breach(rt.policy),
                        ),
                        policy_version=row.policy_version,
                    )
                    metrics.sla_breaches.labels(*labels).inc()
                else:
                    await rt.outbox.emit(
                        session,
                        SlaEscalated(**common, escalate_to="manager"),
                        policy_version=row.policy_version,
                    )
                metrics.sla_fire_lag.observe(rt.clock.real_seconds(now - at))
            level = (fired[-1] + 1) if fired else row.level
            next_at = row.ladder[level]["at"] if level < len(row.ladder) else None
            await session.execute(
                sa.update(timers)
                .where(t.id == row.id)
                .values(
                    state=state,
                    level=level,
                    version=t.version + 1,
                    next_fire_at=datetime.fromisoformat(next_at) if next_at else None,
                )
            )
    return len(rows)


async def next_due(rt: Runtime) -> datetime | None:
    async with rt.db.unit_of_work() as session:
        return await session.scalar(sa.select(sa.func.min(timers.c.next_fire_at)))


async def run_firing(rt: Runtime) -> None:
    """Worker: fire what is due, then sleep until the next due instant (woken early by new timers)."""
    wake = asyncio.Event()
    rt.db.on_commit(TIMERS_TAG, wake.set)  # a timer was opened, met or moved
    while not rt.stop:
        wake.clear()
        if await fire_due(rt) >= BATCH:
            continue
        upcoming = await next_due(rt)
        delay = (
            MAX_IDLE
            if upcoming is None
            else min(rt.clock.real_seconds(upcoming - rt.clock.now()), MAX_IDLE)
        )
        await rt.stop.pause(max(delay, 0.01), wake)


async def count_open(rt: Runtime) -> None:
    """Worker: keep the open-timers gauge current."""
    while not rt.stop:
        async with rt.db.unit_of_work() as session:
            rows = (
                await session.execute(
                    sa.select(timers.c.sla, sa.func.count())
                    .where(timers.c.next_fire_at.is_not(None))
                    .group_by(timers.c.sla)
                )
            ).all()
        metrics.sla_open_timers.clear()
        for sla, n in rows:
            metrics.sla_open_timers.labels(sla).set(n)
        await rt.stop.pause(15)
