"""Feedback's read model whatever order a lead's events arrive in, over the real PostgreSQL and
broker. Topics are ordered per lead but not across topics (after a broker outage they catch up
in any order), so the same lead's events are published in every order, each one consumed by the
running feedback service before the next is sent, and the end states must be identical: status,
status history, the facts the reports use and the SLA report's figures.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from leadflow.contracts.events import (
    CloudEvent,
    LeadCompany,
    LeadCreated,
    LeadErased,
    LeadMql,
    LeadRouted,
    LeadScored,
    LeadSource,
    Payload,
    SlaBreached,
)
from leadflow_feedback.models import leads, status_history
from leadflow_feedback.models import timeline as timeline_table
from support.feedback_events import feedback_fed_by_events
from support.harness import SALES, eventually

WAW = ZoneInfo("Europe/Warsaw")
FIRST_WEEK = date(2025, 1, 6)  # a Monday; lead k of a run is promoted in week k
REP = uuid.UUID("0b6e8f5c-3a52-4c1e-9d55-6f7f0a1d2e3c")
SOURCE = LeadSource(system="hubspot", channel="inbound", campaign="order-test", medium="paid")
KINDS = ("created", "scored", "mql", "routed")
CHAIN = [("lead", "mql"), ("mql", "routed")]


@pytest.fixture(scope="module")
async def feedback(stack):
    async with feedback_fed_by_events(stack, "test-feeder") as client:
        yield client


def events_of(lead_id: uuid.UUID, t0: datetime) -> dict[str, tuple[Payload, datetime, str]]:
    """A lead's pipeline events: created at t0, scored and promoted a minute later, routed
    after two; and the first-response breach two hours after routing."""
    company = LeadCompany(name="Order Test", industry="software", employees=250, country="PL")
    scored_at, routed_at = t0 + timedelta(minutes=1), t0 + timedelta(minutes=2)
    return {
        "created": (
            LeadCreated(lead_id=lead_id, email="ada@order.example", first_name="Ada",
                        last_name="Lovelace", company=company, source=SOURCE,
                        role="decision_maker", occurred_at=t0),
            t0, "ingest",
        ),
        "scored": (
            LeadScored(lead_id=lead_id, fit=90, engagement=40.0, intent_tier=1, is_mql=True,
                       scored_at=scored_at),
            scored_at, "scoring",
        ),
        "mql": (
            LeadMql(lead_id=lead_id, fit=90, engagement=40.0, intent_tier=1, channel="inbound",
                    source=SOURCE, company=company, email="ada@order.example", first_name="Ada",
                    last_name="Lovelace", role="decision_maker", seniority="c_level",
                    intent_note="wants a demo", key_activities=[{"type": "demo_request"}],
                    promoted_at=scored_at),
            scored_at, "scoring",
        ),
        "routed": (
            LeadRouted(lead_id=lead_id, assignment_id=uuid.uuid4(), team_id=uuid.uuid4(),
                       team="cee", rep_id=REP, routed_at=routed_at),
            routed_at, "routing",
        ),
        "sla": (
            SlaBreached(lead_id=lead_id, timer_id=uuid.uuid4(), sla="first_response",
                        channel="inbound", started_at=routed_at,
                        due_at=routed_at + timedelta(hours=2), level="breached"),
            routed_at + timedelta(hours=2), "sla-timer",
        ),
    }  # fmt: skip


async def consumed(feedback, events: list[CloudEvent]) -> bool:
    """Every one of `events` was handled (each lands on the timeline with its effects)."""
    async with feedback.db.unit_of_work() as session:
        seen = await session.scalar(
            sa.select(sa.func.count()).where(
                timeline_table.c.event_id.in_([e.id for e in events])
            )
        )
    return seen == len(events)


async def play(feedback, runs: dict[uuid.UUID, list[tuple[Payload, datetime, str]]]) -> None:
    """Step i of every run is published, and consumed, before step i + 1 of any run."""
    for step in range(max(len(r) for r in runs.values())):
        sent = [
            await feedback.publish(*run[step]) for run in runs.values() if step < len(run)
        ]
        await eventually(lambda sent=sent: consumed(feedback, sent), timeout=60)


async def state_of(feedback, lead_id: uuid.UUID, t0: datetime) -> dict:
    """The lead's end state, its instants relative to t0 so that leads of any week compare."""
    lifecycle = (await feedback.get(f"/v1/leads/{lead_id}/lifecycle")).json()
    async with feedback.db.unit_of_work() as session:
        row = (
            await session.execute(sa.select(leads).where(leads.c.lead_id == lead_id))
        ).mappings().one()
    facts = {
        name: (row[name] - t0 if isinstance(row[name], datetime) else row[name])
        for name in ("status", "channel", "source", "role", "team", "rep_id", "mql_at",
                     "routed_at", "fit", "engagement", "intent_tier", "scored_at", "mql_fit",
                     "in_target", "mql_context_missing", "context_missing", "sla_due_at",
                     "sla_breached", "display_name")  # fmt: skip
    }
    return {
        "status": lifecycle["status"],
        "chain": [(h["from_status"], h["status"]) for h in lifecycle["history"]],
        "facts": facts,
    }


def week_start(k: int) -> datetime:
    day = FIRST_WEEK + timedelta(weeks=k)
    return datetime(day.year, day.month, day.day, 10, tzinfo=WAW)


async def sla_report(feedback, first_week: int, weeks: int) -> dict:
    last = FIRST_WEEK + timedelta(weeks=first_week + weeks) - timedelta(days=1)
    params = {"from": (FIRST_WEEK + timedelta(weeks=first_week)).isoformat(),
              "to": last.isoformat(), "granularity": "week"}  # fmt: skip
    response = await feedback.get("/v1/reports/sla", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_every_arrival_order_ends_in_the_same_state(feedback):
    orders = list(itertools.permutations(KINDS))
    assert len(orders) == 24
    runs, starts = {}, {}
    for k, order in enumerate(orders):
        for sla_first in (False, True):  # and each order again behind an SLA event
            lead_id, t0 = uuid.uuid4(), week_start(k + (len(orders) if sla_first else 0))
            events = events_of(lead_id, t0)
            runs[lead_id] = [events[kind] for kind in (("sla",) if sla_first else ()) + order]
            starts[lead_id] = (t0, sla_first)
    await play(feedback, runs)

    states = {i: await state_of(feedback, i, t0) for i, (t0, _) in starts.items()}
    plain = [s for i, s in states.items() if not starts[i][1]]
    behind_sla = [s for i, s in states.items() if starts[i][1]]
    expected = plain[0]
    assert expected["status"] == "routed"
    assert expected["chain"] == CHAIN
    facts = expected["facts"]
    assert (facts["mql_at"], facts["routed_at"], facts["scored_at"]) == (
        timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=1))  # fmt: skip
    assert (facts["team"], facts["rep_id"], facts["fit"], facts["channel"]) == (
        "cee", REP, 90, "inbound")  # fmt: skip
    assert facts["display_name"] == "Ada Lovelace · Order Test"
    assert facts["in_target"] is True and facts["sla_breached"] is False
    for state in plain:
        assert state == expected
    # the SLA event first adds only its own facts
    with_sla = {**expected, "facts": {**facts, "sla_breached": True,
                                      "sla_due_at": timedelta(minutes=2, hours=2)}}  # fmt: skip
    for state in behind_sla:
        assert state == with_sla

    for first_week, sla_first_group in ((0, False), (24, True)):
        report = await sla_report(feedback, first_week, 24)
        periods = [p for p in report["periods"] if p["mql"]]
        assert len(periods) == 24  # one lead a week, each counted once
        figures = [(p["mql"], p["marketing"], p["sales"]) for p in periods]
        assert all(f == figures[0] for f in figures)
        assert figures[0][2]["response_time"]["routed"] == 1
        assert figures[0][1]["mql_volume"]["value"] == 1
        [paid] = report["conversion"]["by_source"]
        assert (paid["key"], paid["mql"], paid["sal"]) == ("paid", 24, 0)
        late = {item["lead_id"] for item in report["exceptions"]["first_response_breaches"]}
        assert late == {str(i) for i, (_, sla_first) in starts.items() if sla_first == sla_first_group}


async def test_late_pipeline_events_never_undo_what_sales_did(feedback):
    lead_id, t0 = uuid.uuid4(), week_start(60)
    events = events_of(lead_id, t0)
    await play(feedback, {lead_id: [events["routed"]]})
    assert (await state_of(feedback, lead_id, t0))["chain"] == CHAIN
    accepted = await feedback.post(
        f"/v1/leads/{lead_id}/status",
        json={"status": "sal", "occurred_at": (t0 + timedelta(hours=1)).isoformat()},
        headers=SALES,
    )
    assert accepted.status_code == 200, accepted.text
    await play(feedback, {lead_id: [events["created"], events["scored"], events["mql"]]})
    state = await state_of(feedback, lead_id, t0)
    assert (state["status"], state["chain"]) == ("sal", [*CHAIN, ("routed", "sal")])
    assert state["facts"]["mql_at"] == timedelta(minutes=1)  # the late facts are kept

    # recycled by sales: an old promotion arriving again does not re-open the lead ...
    for status, extra in (("recycled", {"reason": "timing_next_quarter"}),):
        changed = await feedback.post(
            f"/v1/leads/{lead_id}/status",
            json={"status": status, **extra,
                  "occurred_at": (t0 + timedelta(hours=2)).isoformat()},
            headers=SALES,
        )  # fmt: skip
        assert changed.status_code == 200, changed.text
    await play(feedback, {lead_id: [events["mql"], events["routed"]]})
    assert (await state_of(feedback, lead_id, t0))["status"] == "recycled"
    # ... a new one does, and its routing, arriving first, routes it again
    again = events_of(lead_id, t0 + timedelta(days=7))
    await play(feedback, {lead_id: [again["routed"], again["mql"]]})
    state = await state_of(feedback, lead_id, t0)
    assert state["status"] == "routed"
    assert state["chain"] == [*CHAIN, ("routed", "sal"), ("sal", "recycled"),
                              ("recycled", "mql"), ("mql", "routed")]  # fmt: skip
    assert state["facts"]["mql_at"] == timedelta(days=7, minutes=1)


async def test_an_attempt_recorded_before_the_routing_arrives_makes_the_lead_working(feedback):
    lead_id, t0 = uuid.uuid4(), week_start(61)
    events = events_of(lead_id, t0)
    await play(feedback, {lead_id: [events["mql"]]})
    attempt = await feedback.post(
        f"/v1/leads/{lead_id}/attempts",
        json={"channel": "call", "occurred_at": (t0 + timedelta(minutes=30)).isoformat()},
        headers=SALES,
    )
    assert attempt.status_code == 202, attempt.text
    assert attempt.json()["status"] == "mql"  # feedback has not seen the routing yet
    await play(feedback, {lead_id: [events["routed"]]})
    state = await state_of(feedback, lead_id, t0)
    assert (state["status"], state["chain"]) == ("working", [*CHAIN, ("routed", "working")])


async def test_a_cadence_exhausted_before_the_routing_arrives_still_recycles_the_lead(feedback):
    lead_id, t0 = uuid.uuid4(), week_start(62)
    events = events_of(lead_id, t0)
    routed_at = t0 + timedelta(minutes=2)
    exhausted = SlaBreached(
        lead_id=lead_id, timer_id=uuid.uuid4(), sla="contact_cadence", channel="inbound",
        started_at=routed_at, due_at=routed_at + timedelta(days=12), level="breached",
        outcome="unreachable",
    )  # fmt: skip
    cadence = (exhausted, routed_at + timedelta(days=12), "sla-timer")
    await play(feedback, {lead_id: [cadence, events["mql"]]})
    assert (await state_of(feedback, lead_id, t0))["status"] == "mql"
    await play(feedback, {lead_id: [events["routed"], events["created"], cadence]})
    state = await state_of(feedback, lead_id, t0)
    assert state["status"] == "recycled"
    assert state["chain"] == [*CHAIN, ("routed", "unreachable"), ("unreachable", "recycled")]
    async with feedback.db.unit_of_work() as session:
        reasons = (
            await session.execute(
                sa.select(status_history.c.reason)
                .where(status_history.c.lead_id == lead_id)
                .order_by(status_history.c.id)
            )
        ).scalars().all()
    assert reasons[-2:] == ["unreachable", "unreachable"]


async def test_a_promotion_arriving_after_the_erasure_does_not_bring_the_name_back(feedback):
    lead_id, t0 = uuid.uuid4(), week_start(63)
    events = events_of(lead_id, t0)
    erased = (LeadErased(lead_id=lead_id), t0 + timedelta(minutes=5), "ingest")
    await play(feedback, {lead_id: [events["created"], erased, events["mql"], events["routed"]]})
    state = await state_of(feedback, lead_id, t0)
    assert (state["status"], state["facts"]["display_name"]) == ("routed", None)
