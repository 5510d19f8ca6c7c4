"""Fires due SLA timer levels: batched SKIP LOCKED claims, events written in the same transaction."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from datetime import datetime, timedelta

import orjson
import sqlalchemy as sa
from leadflow import metrics
from leadflow.contracts.events import Payload, SlaBreached, SlaEscalated, SlaWarning
from leadflow.db import touch
from leadflow.service import Runtime
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from leadflow_sla_timer import sla_policy
from leadflow_sla_timer.handlers import calendar_of, schedule
from leadflow_sla_timer.models import TIMERS_TAG, timers
from leadflow_sla_timer.sla_policy import CONTACT_CADENCE, SLAS
from leadflow_sla_timer.timers import due_levels

log = logging.getLogger(__name__)

BATCH = 500  # timers per claim
BACKLOG_BATCH = 1000  # timers per claim while a backlog is fired (fewer round trips per timer)
MAX_IDLE = 1.0  # real seconds between looks at the table when nothing is due sooner
OVERDUE_AFTER = 30.0  # real seconds past due after which an unfired level counts as overdue

# The claimed timers move on in one UPDATE joined to the unnested arrays of their new values:
# four array parameters, so one cached statement whatever the claim's size.
_moved = sa.func.unnest(
    sa.bindparam("ids", type_=ARRAY(UUID(as_uuid=True))),
    sa.bindparam("states", type_=ARRAY(sa.Text)),
    sa.bindparam("levels", type_=ARRAY(sa.Integer)),
    sa.bindparam("next_fire_ats", type_=ARRAY(sa.DateTime(timezone=True))),
).table_valued("id", "state", "level", "next_fire_at").render_derived(name="moved")
MOVE_ON = (
    sa.update(timers)
    .where(timers.c.id == _moved.c.id)
    .values(
        state=_moved.c.state,
        level=_moved.c.level,
        version=timers.c.version + 1,
        next_fire_at=_moved.c.next_fire_at,
    )
)


# What a claim reads of each timer (the ladder as text, parsed here: cheaper than the driver's
# JSON decoding), locked until the claim's transaction ends.
_t = timers.c
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


async def fire_due(rt: Runtime, limit: int = BATCH) -> int:
    """Fire every due level of up to `limit` timers; returns how many timers advanced."""
    now = rt.clock.now()
    reassign = sla_policy.reassign_on_breach(rt.policy)
    real_seconds = rt.clock.real_seconds
    fromisoformat = datetime.fromisoformat
    new_warning, new_breach = SlaWarning.model_construct, SlaBreached.model_construct
    new_escalation = SlaEscalated.model_construct
    async with rt.db.unit_of_work() as session:
        rows = (await session.execute(claim(now, limit))).all()
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
                )
                labels = (row.sla, row.channel or "unknown", row.team or "unknown")
            for index in fired:
                step = ladder[index]
                name = step["level"]
                if name == "warning":
                    events.append((new_warning(**common, level=name), row.policy_version))
                    warnings[labels] += 1
                elif name == "breached":
                    state = "breached"
                    # A cadence that ends without its attempts leaves the lead unreachable.
                    outcome = "unreachable" if row.sla == CONTACT_CADENCE else None
                    events.append(
                        (new_breach(**common, level=name, outcome=outcome), row.policy_version)
                    )
                    if step.get("escalate", True):
                        escalated = new_escalation(
                            **common, level=name, escalate_to="team_lead", reassign=reassign
                        )
                        events.append((escalated, row.policy_version))
                    breaches[labels] += 1
                else:
                    events.append(
                        (
                            new_escalation(**common, level=name, escalate_to="manager"),
                            row.policy_version,
                        )
                    )
                metrics.sla_fire_lag.observe(real_seconds(now - fromisoformat(step["at"])))
            level = (fired[-1] + 1) if fired else row.level
            ids.append(row.id)
            states.append(state)
            levels.append(level)
            next_fire_ats.append(
                fromisoformat(ladder[level]["at"]) if level < len(ladder) else None
            )
        # One outbox insert and one UPDATE for the whole claim. (An UPDATE ... FROM (VALUES ...)
        # measured slower: a new 2,000-parameter statement to compile for every claim.)
        await rt.outbox.emit_many(session, events)
        if rows:
            await session.execute(
                MOVE_ON,
                {"ids": ids, "states": states, "levels": levels, "next_fire_ats": next_fire_ats},
            )
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
        return await session.scalar(sa.select(sa.func.min(timers.c.next_fire_at)))


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
    t = timers.c
    cutoff = rt.clock.now() - timedelta(seconds=OVERDUE_AFTER * rt.clock.speed)
    async with rt.db.unit_of_work() as session:
        rows = (
            await session.execute(
                sa.select(t.sla, sa.func.count(), sa.func.count().filter(t.next_fire_at < cutoff))
                .where(t.next_fire_at.is_not(None))
                .group_by(t.sla)
            )
        ).all()
    metrics.sla_open_timers.clear()
    metrics.sla_timers_overdue.clear()
    for sla in SLAS:  # present at 0 rather than missing while none is open
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


async def reschedule_for_policy(rt: Runtime) -> int:
    """Move the clocks still running under another policy version onto the current policy.

    Each timer keeps its start and the levels already fired; its limit, due instant, attempt
    counts (required and the cadence's cap) and the levels still to come follow the current
    policy (a level that is now overdue fires at once).
    Returns how many timers moved."""
    t = timers.c
    moved = 0
    while True:
        async with rt.db.unit_of_work() as session:
            rows = (
                await session.execute(
                    sa.select(timers)
                    .where(
                        t.next_fire_at.is_not(None),
                        t.policy_version.is_distinct_from(rt.policy.version),
                    )
                    .limit(BATCH)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                terms, ladder, due_at = schedule(
                    rt.policy, row.sla, row.channel, calendar_of(rt, row.calendar), row.started_at
                )
                level = min(row.level, len(ladder))
                await session.execute(
                    sa.update(timers)
                    .where(t.id == row.id)
                    .values(
                        clock=terms.clock,
                        limit_seconds=terms.limit.total_seconds(),
                        due_at=due_at,
                        ladder=ladder,
                        level=level,
                        next_fire_at=(
                            datetime.fromisoformat(ladder[level]["at"])
                            if level < len(ladder)
                            else None
                        ),
                        attempts_required=terms.attempts_required,
                        attempts_allowed=terms.attempts_allowed,
                        policy_version=rt.policy.version,
                        version=t.version + 1,
                    )
                )
            if rows:
                touch(session, TIMERS_TAG)
        moved += len(rows)
        if len(rows) < BATCH:
            return moved


async def reschedule_on_start(rt: Runtime) -> None:
    moved = await reschedule_for_policy(rt)
    if moved:
        log.info("moved %d open SLA timers onto policy %s", moved, rt.policy.version)
