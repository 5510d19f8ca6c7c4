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
the clocks open. Routing and holding back take a per-lead lock, so that they cannot interleave
across instances (an event held back while the routing commits would be lost).

Contact attempts keep counting after the cadence is met; the first one beyond the cadence's cap
(the policy's max_attempts of the channel) emits one `sla.warning` at level attempts_exceeded.

lead.mql records each promotion for marketing's period commitments (see evaluation.py).

Nothing here names a person. A held-back status change is kept without its qualification notes
and opportunity (the clocks need neither); on lead.erased the lead's held changes lose them too,
for changes held before that rule, and its outbox rows are forgotten.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from leadflow import metrics
from leadflow.calendar import BusinessCalendar, policy_calendar
from leadflow.commitments import in_target, mql_context_missing
from leadflow.consumer import Subscription
from leadflow.db import kernel_tables, touch
from leadflow.erasure import forget_events
from leadflow.events import (
    TOPIC_FEEDBACK,
    TOPIC_INGEST,
    TOPIC_ROUTING,
    TOPIC_SCORING,
    CloudEvent,
    LeadContactAttempt,
    LeadMql,
    LeadRouted,
    LeadStatusChanged,
    SlaMet,
    SlaWarning,
)
from leadflow.policy import Policy
from leadflow.service import Runtime
from sqlalchemy.dialects.postgresql import insert
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


async def lock_lead(session: AsyncSession, lead_id: uuid.UUID) -> None:
    """Serialise this transaction with every other one about the same lead (until it ends)."""
    key = int.from_bytes(lead_id.bytes[:8], "big", signed=True)
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


async def has_clocks(session: AsyncSession, lead_id: uuid.UUID) -> bool:
    return (
        await session.scalar(sa.select(timers.c.id).where(timers.c.lead_id == lead_id).limit(1))
    ) is not None


def calendar_of(rt: Runtime, spec: dict | None) -> BusinessCalendar:
    return BusinessCalendar.from_spec(spec) if spec else policy_calendar(rt.policy)


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


async def open_timer(
    rt: Runtime,
    session: AsyncSession,
    *,
    lead_id: uuid.UUID,
    sla: str,
    started_at: datetime,
    channel: str | None,
    team: str | None,
    rep_id: uuid.UUID | None,
    calendar: dict | None,
) -> bool:
    """Start the lead's `sla` clock; False when it already runs (or ran) for this lead."""
    terms, ladder, due_at = schedule(rt.policy, sla, channel, calendar_of(rt, calendar), started_at)
    created = await session.scalar(
        insert(timers)
        .values(
            id=uuid.uuid4(),
            lead_id=lead_id,
            sla=sla,
            channel=channel,
            team=team,
            rep_id=rep_id,
            clock=terms.clock,
            calendar=calendar,
            limit_seconds=terms.limit.total_seconds(),
            started_at=started_at,
            due_at=due_at,
            ladder=ladder,
            next_fire_at=datetime.fromisoformat(ladder[0]["at"]),
            policy_version=rt.policy.version,
            attempts_required=terms.attempts_required,
            attempts_allowed=terms.attempts_allowed,
        )
        .on_conflict_do_nothing()  # re-routing keeps the clock that started with the first routing
        .returning(timers.c.id)
    )
    if created is None:
        return False
    metrics.count_on_commit(
        session, metrics.sla_timers_started.labels(sla, channel or "unknown", team or "unknown")
    )
    touch(session, TIMERS_TAG)
    return True


async def on_lead_routed(rt: Runtime, session: AsyncSession, routed: LeadRouted) -> None:
    slas = [FIRST_RESPONSE, CONTACT_CADENCE, SAL_ACCEPTANCE]
    if routed.kind == "pql":
        slas.append(PQL_CONTACT)
    opened = False
    for sla in slas:
        opened |= await open_timer(
            rt,
            session,
            lead_id=routed.lead_id,
            sla=sla,
            started_at=routed.routed_at,
            channel=routed.channel,
            team=routed.team,
            rep_id=routed.rep_id,
            calendar=routed.calendar,
        )
    if opened:
        await apply_held(rt, session, routed)


async def apply_held(rt: Runtime, session: AsyncSession, routed: LeadRouted) -> None:
    """Apply the attempts and status changes that came before the clocks, in time order (an
    attempt first at a tie); what happened before the routing counts as at the routing."""
    early = (
        await session.execute(
            sa.delete(early_attempts)
            .where(early_attempts.c.lead_id == routed.lead_id)
            .returning(early_attempts.c.occurred_at, early_attempts.c.attempts)
        )
    ).first()
    held = (
        await session.execute(
            sa.delete(early_statuses)
            .where(early_statuses.c.lead_id == routed.lead_id)
            .returning(early_statuses.c.change)
        )
    ).scalars()
    steps: list[tuple[datetime, int, object]] = [
        (change.changed_at, 1, change)
        for change in (LeadStatusChanged.model_validate(data) for data in held)
    ]
    if early is not None:
        steps.append((early.occurred_at, 0, early))
    for at, _, step in sorted(steps, key=lambda s: (s[0], s[1])):
        at = max(at, routed.routed_at)
        if isinstance(step, LeadStatusChanged):
            await on_status_changed(rt, session, step.model_copy(update={"changed_at": at}))
        else:
            await count_attempts(rt, session, routed.lead_id, at, step.attempts)


async def stop(
    rt: Runtime,
    session: AsyncSession,
    lead_id: uuid.UUID,
    sla: str,
    at: datetime,
    *,
    add_attempts: int = 0,
) -> bool:
    """Meet the lead's `sla` clock (for a cadence: count attempts, meet at the Nth).

    False if the lead has no such clock."""
    timer = (
        await session.execute(
            sa.select(timers)
            .where(timers.c.lead_id == lead_id, timers.c.sla == sla)
            # Locked: the firing loop cannot breach this timer between the read and the write.
            .with_for_update()
        )
    ).first()
    if timer is None:
        return False
    if timer.state == "cancelled":
        return True
    attempts = timer.attempts + add_attempts
    if timer.met_at is not None or (
        add_attempts and timer.attempts_required and attempts < timer.attempts_required
    ):
        # Not met yet, or met already: the touch still counts (past the cap it warns once).
        if add_attempts:
            await session.execute(
                sa.update(timers)
                .where(timers.c.id == timer.id)
                .values(attempts=attempts, version=timers.c.version + 1)
            )
            await warn_if_over_cap(rt, session, timer, attempts, at)
        return True
    state = "met" if timer.state == "open" else timer.state
    await session.execute(
        sa.update(timers)
        .where(timers.c.id == timer.id)
        .values(
            state=state,
            met_at=at,
            attempts=attempts,
            next_fire_at=None,
            version=timers.c.version + 1,
        )
    )
    touch(session, TIMERS_TAG)
    calendar = calendar_of(rt, timer.calendar)
    took = measured(timer.clock, calendar, timer.started_at, at)
    if sla == FIRST_RESPONSE:
        metrics.lead_response.labels(timer.channel or "unknown", timer.team or "unknown").observe(
            took.total_seconds()
        )
    await rt.outbox.emit(
        session,
        SlaMet(
            lead_id=lead_id,
            timer_id=timer.id,
            sla=timer.sla,
            channel=timer.channel,
            team=timer.team,
            rep_id=timer.rep_id,
            started_at=timer.started_at,
            due_at=timer.due_at,
            level=state,
            met_at=at,
            business_seconds=took.total_seconds(),
        ),
        policy_version=timer.policy_version,
    )
    if add_attempts:
        await warn_if_over_cap(rt, session, timer, attempts, at)
    return True


async def warn_if_over_cap(
    rt: Runtime, session: AsyncSession, timer: sa.Row, attempts: int, at: datetime
) -> None:
    """One warning, the first time a lead got more touches than its cadence allows."""
    if (
        timer.attempts_allowed is None
        or attempts <= timer.attempts_allowed
        or timer.attempts_exceeded_at is not None
    ):
        return
    await session.execute(
        sa.update(timers).where(timers.c.id == timer.id).values(attempts_exceeded_at=at)
    )
    await rt.outbox.emit(
        session,
        SlaWarning(
            lead_id=timer.lead_id,
            timer_id=timer.id,
            sla=timer.sla,
            party=timer.party,
            channel=timer.channel,
            team=timer.team,
            rep_id=timer.rep_id,
            started_at=timer.started_at,
            due_at=timer.due_at,
            level=ATTEMPTS_EXCEEDED,
        ),
        policy_version=timer.policy_version,
    )
    metrics.count_on_commit(
        session,
        metrics.sla_warnings.labels(timer.sla, timer.channel or "unknown", timer.team or "unknown"),
    )


async def meet(rt: Runtime, session: AsyncSession, lead_id: uuid.UUID, at: datetime) -> bool:
    """Stop the first-response clock; False if there is no timer yet (the attempt came early)."""
    return await stop(rt, session, lead_id, FIRST_RESPONSE, at)


async def count_attempts(
    rt: Runtime, session: AsyncSession, lead_id: uuid.UUID, at: datetime, n: int = 1
) -> bool:
    """Apply `n` contact attempts (the earliest at `at`); False if the lead has no clocks yet."""
    found = False
    for sla in MET_BY_ATTEMPT:
        found |= await stop(rt, session, lead_id, sla, at)
    found |= await stop(rt, session, lead_id, CONTACT_CADENCE, at, add_attempts=n)
    return found


async def cancel_all(session: AsyncSession, lead_id: uuid.UUID) -> None:
    """The lead left the funnel: open clocks end without an event, pending escalations drop."""
    t = timers.c
    await session.execute(
        sa.update(timers)
        .where(t.lead_id == lead_id, t.next_fire_at.is_not(None))
        .values(
            state=sa.case((t.state == "open", "cancelled"), else_=t.state),
            next_fire_at=None,
            version=t.version + 1,
        )
    )
    touch(session, TIMERS_TAG)


async def on_status_changed(rt: Runtime, session: AsyncSession, change: LeadStatusChanged) -> None:
    for sla in MEETS.get(change.status, ()):
        await stop(rt, session, change.lead_id, sla, change.changed_at)
    if change.status in ENDS_ALL:
        await cancel_all(session, change.lead_id)
    if (sla := OPENS.get(change.status)) is not None:
        # The lead's routing (channel, team, calendar) comes from the clocks routing started.
        routed = (
            await session.execute(
                sa.select(timers.c.channel, timers.c.team, timers.c.rep_id, timers.c.calendar)
                .where(timers.c.lead_id == change.lead_id)
                .order_by(timers.c.started_at)
                .limit(1)
            )
        ).first()
        await open_timer(
            rt,
            session,
            lead_id=change.lead_id,
            sla=sla,
            started_at=change.changed_at,
            channel=routed.channel if routed else None,
            team=routed.team if routed else None,
            rep_id=change.rep_id or (routed.rep_id if routed else None),
            calendar=routed.calendar if routed else None,
        )


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def on_routed(event: CloudEvent, session: AsyncSession) -> None:
        routed = LeadRouted.model_validate(event.data)
        await lock_lead(session, routed.lead_id)
        await on_lead_routed(rt, session, routed)

    async def on_attempt(event: CloudEvent, session: AsyncSession) -> None:
        attempt = LeadContactAttempt.model_validate(event.data)
        if await count_attempts(rt, session, attempt.lead_id, attempt.occurred_at):
            return
        # No clocks yet: look again under the lead's lock (the routing may be committing).
        await lock_lead(session, attempt.lead_id)
        if not await count_attempts(rt, session, attempt.lead_id, attempt.occurred_at):
            await session.execute(
                insert(early_attempts)
                .values(lead_id=attempt.lead_id, occurred_at=attempt.occurred_at, attempts=1)
                .on_conflict_do_update(
                    index_elements=[early_attempts.c.lead_id],
                    set_={
                        "occurred_at": sa.func.least(
                            early_attempts.c.occurred_at, attempt.occurred_at
                        ),
                        "attempts": early_attempts.c.attempts + 1,
                    },
                )
            )

    async def on_status(event: CloudEvent, session: AsyncSession) -> None:
        change = LeadStatusChanged.model_validate(event.data)
        clocks = await has_clocks(session, change.lead_id)
        if not clocks:  # look again under the lead's lock, as for attempts
            await lock_lead(session, change.lead_id)
            clocks = await has_clocks(session, change.lead_id)
        if clocks:
            await on_status_changed(rt, session, change)
            return
        await session.execute(
            insert(early_statuses)
            .values(
                event_id=event.id,
                lead_id=change.lead_id,
                changed_at=change.changed_at,
                change=change.model_dump(mode="json", exclude=FREE_TEXT_OF_STATUS),
            )
            .on_conflict_do_nothing()
        )

    async def on_erased(event: CloudEvent, session: AsyncSession) -> None:
        await erase(session, uuid.UUID(event.subject))

    async def on_mql(event: CloudEvent, session: AsyncSession) -> None:
        await record_mql(rt, session, LeadMql.model_validate(event.data))

    return [
        Subscription(
            "timers",
            (TOPIC_ROUTING, TOPIC_FEEDBACK),
            handlers={
                "lead.routed": on_routed,
                "lead.contact_attempt": on_attempt,
                "lead.status_changed": on_status,
            },
        ),
        Subscription("commitments", (TOPIC_SCORING,), handlers={"lead.mql": on_mql}),
        Subscription("erasure", (TOPIC_INGEST,), handlers={"lead.erased": on_erased}),
    ]


# What a status change may say about the person in free text; the clocks need none of it.
FREE_TEXT_OF_STATUS = {"qualification", "opportunity"}


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


async def record_mql(rt: Runtime, session: AsyncSession, mql: LeadMql) -> None:
    """Remember a promotion as marketing's period commitments count it; a later promotion of
    the same lead (after a recycle) moves it to the later period."""
    values = dict(
        promoted_at=mql.promoted_at,
        kind=mql.kind,
        channel=mql.channel,
        in_target=in_target(rt.policy, mql.company.model_dump(), mql.role),
        context_missing=mql_context_missing(mql),
    )
    await session.execute(
        insert(mqls)
        .values(lead_id=mql.lead_id, **values)
        .on_conflict_do_update(
            index_elements=[mqls.c.lead_id],
            set_=values,
            # a replayed older promotion does not move the lead back
            where=mqls.c.promoted_at <= mql.promoted_at,
        )
    )
