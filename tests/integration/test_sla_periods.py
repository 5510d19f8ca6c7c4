"""sla-timer judges both parties' period commitments once per period, on simulated time.

sla-timer runs in-process against its own database and topics; the test publishes the MQLs,
routings and contact attempts the other services would publish during September and October,
then moves the simulated clock into November and reads the period events from the outbox.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import yaml
from leadflow.contracts.events import (
    TOPIC_FEEDBACK,
    TOPIC_ROUTING,
    TOPIC_SCORING,
    CloudEvent,
    LeadCompany,
    LeadContactAttempt,
    LeadMql,
    LeadRouted,
    LeadSource,
)
from leadflow_sla_timer import use_cases
from leadflow_sla_timer.models import mqls, period_evaluations, timers
from support.harness import eventually, publish_events, service_client

START = datetime(2026, 9, 10, 12, 0, tzinfo=UTC)  # a Thursday, 14:00 in Warsaw
NOVEMBER = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
WARSAW = ZoneInfo("Europe/Warsaw")
SEPTEMBER, OCTOBER, NOVEMBER_1 = (datetime(2026, m, 1, tzinfo=WARSAW) for m in (9, 10, 11))
IN_TARGET = LeadCompany(name="Example Robotics", industry="software", employees=400)
TOO_BIG = LeadCompany(name="Mega Corp", industry="software", employees=5000)
FULL = LeadSource(channel="inbound", campaign="q3-webinar", lead_magnet="roi-guide")


def promoted(lead: uuid.UUID, at: datetime, *, company=IN_TARGET, note="wants a demo") -> LeadMql:
    return LeadMql(
        lead_id=lead,
        fit=100,
        engagement=60,
        intent_tier=2,
        source=FULL,
        company=company,
        role="decision_maker",
        intent_note=note,
        key_activities=[{"type": "demo_request", "at": at.isoformat()}],
        promoted_at=at,
    )


def routed(lead: uuid.UUID, at: datetime) -> LeadRouted:
    return LeadRouted(
        lead_id=lead, assignment_id=uuid.uuid4(), team_id=None, team="emea", rep_id=None,
        routed_at=at,
    )  # fmt: skip


def attempt(lead: uuid.UUID, at: datetime) -> LeadContactAttempt:
    return LeadContactAttempt(lead_id=lead, attempt_id=uuid.uuid4(), channel="call", occurred_at=at)


def small_plan(tmp_path: Path) -> Path:
    """The default policy with a plan of 4 MQLs a month (3.6 to meet it)."""
    data = yaml.safe_load(
        (Path(__file__).parents[2] / "shared/leadflow/contracts/policy_default.yaml").read_text()
    )
    data["version"] = "2026.09-small-plan"
    data["commitments"]["marketing"]["mql_plan_per_month"] = 4
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


async def period_events(rt) -> list[CloudEvent]:
    async with rt.db.unit_of_work() as session:
        raw = await session.execute(sa.text("SELECT payload FROM sla_timer.outbox ORDER BY id"))
        events = [CloudEvent.from_bytes(row.payload) for row in raw]
    return [
        e
        for e in events
        if e.type == "sla.corrective_plan_required" or e.data.get("actual") is not None
    ]


async def count(rt, query) -> int:
    async with rt.db.unit_of_work() as session:
        return await session.scalar(query)


async def test_missed_periods_breach_once_and_two_in_a_row_owe_a_corrective_plan(stack, tmp_path):
    settings = await stack.isolated_settings(
        clock_start=START, clock_speed=1.0, clock_anchor=time.time(), policy_file=str(small_plan(tmp_path))
    )  # fmt: skip
    s1, s2 = uuid.uuid4(), uuid.uuid4()  # September
    o1, o2, o3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()  # October
    sept = START
    octo = datetime(2026, 10, 7, 8, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Warsaw
    async with service_client("sla-timer", settings) as client:
        rt = client.app.state.runtime
        await publish_events(
            settings,
            TOPIC_SCORING,
            [
                promoted(s1, sept),
                promoted(s2, sept, company=TOO_BIG, note=None),  # outside target, no note
                *(promoted(lead, octo) for lead in (o1, o2, o3)),
            ],
        )
        await publish_events(
            settings, TOPIC_ROUTING, [routed(lead, sept) for lead in (s1, s2)]
            + [routed(lead, octo) for lead in (o1, o2, o3)],
        )  # fmt: skip
        # First responses (2 business hours): s1 and o1 in time, s2 and o3 days late, o2 never.
        await publish_events(
            settings,
            TOPIC_FEEDBACK,
            [
                attempt(s1, datetime(2026, 9, 10, 12, 30, tzinfo=UTC)),
                attempt(s2, datetime(2026, 9, 14, 12, 0, tzinfo=UTC)),
                attempt(o1, datetime(2026, 10, 7, 8, 30, tzinfo=UTC)),
                attempt(o3, datetime(2026, 10, 9, 8, 0, tzinfo=UTC)),
            ],
        )
        recorded = sa.select(sa.func.count()).select_from(mqls)
        met = sa.select(sa.func.count()).where(
            timers.c.sla == "first_response", timers.c.met_at.is_not(None)
        )
        await eventually(lambda: _is(count(rt, recorded), 5), timeout=60)
        await eventually(lambda: _is(count(rt, met), 4), timeout=60)
        # Mid-September nothing has ended yet: nothing is judged.
        assert await use_cases.evaluate_due(rt) == 0
        assert await period_events(rt) == []

    # Two instances come up on 10 November: September and October are due, each judged once.
    november = settings.model_copy(
        update={"clock_anchor": settings.clock_anchor - (NOVEMBER - START).total_seconds()}
    )
    async with AsyncExitStack() as instances:
        clients = [
            await instances.enter_async_context(service_client("sla-timer", november))
            for _ in range(2)
        ]
        rt = clients[0].app.state.runtime
        judged = sa.select(sa.func.count()).select_from(period_evaluations)
        await asyncio.gather(*(use_cases.evaluate_due(c.app.state.runtime) for c in clients))
        await eventually(lambda: _is(count(rt, judged), 4), timeout=60)
        events = await period_events(rt)

    breaches = sorted(
        (e.data["party"], at(e.data["started_at"]), at(e.data["due_at"]), e.data["sla"],
         e.data["planned"], e.data["target"], e.data["actual"])
        for e in events if e.type == "sla.breached"
    )  # fmt: skip
    # Periods are local months of the policy calendar (Warsaw). The commitments are the one
    # list feedback's report judges too: the MQLs name no medium, so the whole mix is "other"
    # (a drift of 1.0 against the 0.1 allowed); one attempt per contacted MQL against 5, and no
    # MQL has a status yet.
    assert breaches == [
        ("marketing", SEPTEMBER, OCTOBER, "full_context_share", 0.9, 0.9, 0.5),
        ("marketing", SEPTEMBER, OCTOBER, "in_target_share", 0.8, 0.8, 0.5),
        ("marketing", SEPTEMBER, OCTOBER, "mql_volume", 4.0, 3.6, 2.0),
        ("marketing", SEPTEMBER, OCTOBER, "source_mix", 0.0, 0.1, 1.0),
        ("marketing", OCTOBER, NOVEMBER_1, "mql_volume", 4.0, 3.6, 3.0),
        ("marketing", OCTOBER, NOVEMBER_1, "source_mix", 0.0, 0.1, 1.0),
        ("sales", SEPTEMBER, OCTOBER, "attempts_per_mql", 5.0, 5.0, 1.0),
        ("sales", SEPTEMBER, OCTOBER, "contacted_within_limit_share", 0.9, 0.9, 0.5),
        ("sales", SEPTEMBER, OCTOBER, "status_share", 0.95, 0.95, 0.0),
        ("sales", OCTOBER, NOVEMBER_1, "attempts_per_mql", 5.0, 5.0, 0.67),
        ("sales", OCTOBER, NOVEMBER_1, "contacted_within_limit_share", 0.9, 0.9, 0.3333),
        ("sales", OCTOBER, NOVEMBER_1, "status_share", 0.95, 0.95, 0.0),
    ]
    plans = sorted(
        (
            e.data["party"],
            at(e.data["period_start"]),
            e.data["consecutive_misses"],
            e.data["missed"],
        )
        for e in events
        if e.type == "sla.corrective_plan_required"
    )
    assert plans == [
        ("marketing", OCTOBER, 2, ["mql_volume", "source_mix"]),
        ("sales", OCTOBER, 2, ["contacted_within_limit_share", "attempts_per_mql", "status_share"]),
    ]
    # Every period event names the period, not a lead, and carries the policy that judged it.
    assert {e.leadflowpolicyversion for e in events} == {"2026.09-small-plan"}
    assert all(e.subject == e.data.get("timer_id", e.data["lead_id"]) for e in events)

    # A restart judges nothing again.
    async with service_client("sla-timer", november) as client:
        rt = client.app.state.runtime
        assert await use_cases.evaluate_due(rt) == 0
        assert len(await period_events(rt)) == len(events) == 14


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def _is(awaitable, value) -> bool:
    return (await awaitable) == value
