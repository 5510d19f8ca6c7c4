"""Feedback's lead timeline and review page over the real PostgreSQL and broker: every event
of a lead recorded once, in order, without personal data, and erased names gone.

Events of the other services are produced as CloudEvents to their topics and consumed by the
running feedback service, as in production; attempts and statuses go through its HTTP API.
"""

from __future__ import annotations

import html
import re
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from leadflow.contracts.events import (
    LeadActivity,
    LeadCompany,
    LeadCreated,
    LeadErased,
    LeadMql,
    LeadRouted,
    LeadScored,
    LeadSource,
    SlaBreached,
    SlaWarning,
    make_event,
)
from leadflow_feedback import store, use_cases
from leadflow_feedback.models import leads
from leadflow_feedback.models import timeline as timeline_table
from leadflow_tools.devstack import free_port
from support.feedback_events import feedback_fed_by_events
from support.harness import SALES, eventually

WAW = ZoneInfo("Europe/Warsaw")
EMAIL = "grace.hopper@example-robotics.example"


@pytest.fixture(scope="module")
async def feedback(stack):
    # routing is not running: the timeline must still answer, saying so
    routing_url = f"http://127.0.0.1:{free_port()}"
    async with feedback_fed_by_events(stack, "test-feeder", routing_url=routing_url) as client:
        yield client


async def rows_of(client, lead_id: uuid.UUID) -> list[dict]:
    async with client.db.unit_of_work() as session:
        return await store.timeline_of(session, lead_id)


async def timeline_types(client, lead_id: uuid.UUID) -> list[str]:
    return [row["type"] for row in await rows_of(client, lead_id)]


def company() -> LeadCompany:
    return LeadCompany(name="Example Robotics", industry="software", employees=400, country="PL")


async def walk_a_lead(feedback, lead_id: uuid.UUID, t0: datetime) -> dict[str, object]:
    """A lead's whole path, its events published out of order across topics."""
    source = LeadSource(system="hubspot", channel="inbound", campaign="q4-webinar")
    routed = LeadRouted(
        lead_id=lead_id, assignment_id=uuid.uuid4(), team_id=uuid.uuid4(), team="CEE",
        rep_id=uuid.uuid4(), routed_at=t0 + timedelta(minutes=3),
    )  # fmt: skip
    sla = {"timer_id": uuid.uuid4(), "sla": "first_response", "started_at": routed.routed_at,
           "due_at": routed.routed_at + timedelta(hours=2)}  # fmt: skip
    # SLA events first: they travel on another topic and may overtake the lead's creation
    await feedback.publish(
        SlaWarning(lead_id=lead_id, level="warning", **sla), t0 + timedelta(minutes=93), "sla-timer"
    )
    await feedback.publish(
        SlaBreached(lead_id=lead_id, level="breach", **sla), t0 + timedelta(minutes=123), "sla-timer"
    )
    await feedback.publish(
        LeadCreated(
            lead_id=lead_id, email=EMAIL, first_name="Grace", last_name="Hopper",
            phone="+48 600 000 000", company=company(), source=source, role="decision_maker",
            intent_tier=2, intent_note="asked Grace's team for a demo", occurred_at=t0,
        ),
        t0, "ingest",
    )  # fmt: skip
    await feedback.publish(
        LeadActivity(
            lead_id=lead_id, activity_id=uuid.uuid4(), activity_type="page_view",
            page_category="pricing", occurred_at=t0 + timedelta(minutes=1),
        ),
        t0 + timedelta(minutes=1), "ingest",
    )  # fmt: skip
    await feedback.publish(
        LeadScored(
            lead_id=lead_id, fit=100, engagement=12, intent_tier=2, is_mql=True,
            breakdown=[{"rule": "industry", "points": 15, "detail": "software"}],
            reasons=["mql: fit 100 ≥ 70"], scored_at=t0 + timedelta(minutes=2),
        ),
        t0 + timedelta(minutes=2), "scoring",
    )  # fmt: skip
    await feedback.publish(
        LeadMql(
            lead_id=lead_id, fit=100, engagement=12, intent_tier=2, channel="inbound",
            source=source, company=company(), email=EMAIL, first_name="Grace",
            last_name="Hopper", role="decision_maker", intent_note="asked Grace's team",
            promoted_at=t0 + timedelta(minutes=2, seconds=1),
        ),
        t0 + timedelta(minutes=2, seconds=1), "scoring",
    )  # fmt: skip
    await feedback.publish(routed, routed.routed_at, "routing")
    await eventually(
        lambda: _has(feedback, lead_id, "lead.routed", "sla.breached", "lead.created"), timeout=30
    )
    return {"routed": routed}


async def _has(feedback, lead_id, *types) -> bool:
    seen = await timeline_types(feedback, lead_id)
    return all(t in seen for t in types)


async def test_every_event_of_a_lead_is_on_its_timeline_in_order(feedback):
    lead_id = uuid.uuid4()
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=WAW)
    await walk_a_lead(feedback, lead_id, t0)
    attempt = await feedback.post(
        f"/v1/leads/{lead_id}/attempts",
        json={"channel": "call", "outcome": "left voicemail",
              "occurred_at": (t0 + timedelta(hours=3)).isoformat()},
        headers=SALES,
    )  # fmt: skip
    assert attempt.status_code == 202, attempt.text
    sal = await feedback.post(
        f"/v1/leads/{lead_id}/status",
        json={"status": "sal", "occurred_at": (t0 + timedelta(hours=4)).isoformat()},
        headers=SALES,
    )
    assert sal.status_code == 200, sal.text

    rows = await rows_of(feedback, lead_id)
    assert [r["type"] for r in rows] == [
        "lead.created",
        "lead.activity",
        "lead.scored",
        "lead.mql",
        "lead.routed",
        "sla.warning",
        "sla.breached",
        "lead.contact_attempt",
        "lead.status_changed",
    ]
    instants = [r["occurred_at"] for r in rows]
    assert instants == sorted(instants)
    scored = rows[2]["details"]
    assert scored["breakdown"] == [{"rule": "industry", "points": 15, "detail": "software"}]
    assert scored["reasons"] == ["mql: fit 100 ≥ 70"]
    assert rows[-1]["details"]["status"] == "sal"
    assert rows[-2]["details"]["outcome"] == "left voicemail"


async def test_the_timeline_keeps_no_personal_data(feedback):
    lead_id = uuid.uuid4()
    await walk_a_lead(feedback, lead_id, datetime(2026, 3, 3, 9, 0, tzinfo=WAW))
    stored = repr([row["details"] for row in await rows_of(feedback, lead_id)])
    for personal in (EMAIL, "Grace", "Hopper", "+48 600", "asked Grace"):
        assert personal not in stored
    assert "software" in stored and "q4-webinar" in stored


async def test_a_replayed_event_is_recorded_once(feedback):
    lead_id = uuid.uuid4()
    t0 = datetime(2026, 3, 4, 9, 0, tzinfo=WAW)
    activity = LeadActivity(
        lead_id=lead_id, activity_id=uuid.uuid4(), activity_type="demo_request", occurred_at=t0
    )
    event_id = uuid.uuid4()
    for _ in range(3):  # redelivered by the broker
        await feedback.publish(activity, t0, "ingest", event_id=event_id)
    await eventually(lambda: _has(feedback, lead_id, "lead.activity"), timeout=30)
    # and replayed past the inbox, e.g. by a second consumer of the same events
    event = make_event(activity, source="ingest", time=t0, event_id=event_id)
    for _ in range(2):
        async with feedback.db.unit_of_work() as session:
            await use_cases.add_to_timeline(session, event, activity)
    later = LeadActivity(
        lead_id=lead_id, activity_id=uuid.uuid4(), activity_type="page_view",
        occurred_at=t0 + timedelta(minutes=5),
    )  # fmt: skip
    await feedback.publish(later, t0 + timedelta(minutes=5), "ingest")
    await eventually(lambda: _count(feedback, lead_id, 2), timeout=30)
    rows = await rows_of(feedback, lead_id)
    assert [r["details"]["activity_type"] for r in rows] == ["demo_request", "page_view"]
    async with feedback.db.unit_of_work() as session:
        copies = await session.scalar(
            sa.select(sa.func.count()).where(timeline_table.c.event_id == event_id)
        )
    assert copies == 1


async def _count(feedback, lead_id, n) -> bool:
    return len(await rows_of(feedback, lead_id)) == n


async def test_an_erased_lead_loses_its_name(feedback):
    lead_id = uuid.uuid4()
    t0 = datetime(2026, 3, 5, 9, 0, tzinfo=WAW)
    await walk_a_lead(feedback, lead_id, t0)
    async with feedback.db.unit_of_work() as session:
        name = await session.scalar(
            sa.select(leads.c.display_name).where(leads.c.lead_id == lead_id)
        )
    assert name == "Grace Hopper · Example Robotics"
    page = await feedback.get(f"/review/leads/{lead_id}")
    assert "Grace Hopper · Example Robotics" in html.unescape(page.text)

    await feedback.publish(LeadErased(lead_id=lead_id), t0 + timedelta(days=1), "ingest")
    await eventually(lambda: _has(feedback, lead_id, "lead.erased"), timeout=30)
    async with feedback.db.unit_of_work() as session:
        name = await session.scalar(
            sa.select(leads.c.display_name).where(leads.c.lead_id == lead_id)
        )
    assert name is None
    page = await feedback.get(f"/review/leads/{lead_id}")
    assert page.status_code == 200
    assert "Grace" not in page.text and "Erased lead" in page.text


async def test_period_commitment_breaches_are_not_put_on_a_lead_timeline(feedback):
    period_id = uuid.uuid4()
    t0 = datetime(2026, 3, 9, 1, 0, tzinfo=WAW)
    await feedback.publish(
        SlaBreached(
            lead_id=period_id, timer_id=period_id, sla="mql_volume", party="marketing",
            started_at=t0 - timedelta(days=7), due_at=t0, level="breach",
        ),
        t0, "sla-timer",
    )  # fmt: skip
    marker = uuid.uuid4()
    await feedback.publish(
        LeadActivity(lead_id=marker, activity_id=uuid.uuid4(), activity_type="page_view",
                     occurred_at=t0),
        t0, "ingest",
    )  # fmt: skip
    await eventually(lambda: _has(feedback, marker, "lead.activity"), timeout=30)
    assert await rows_of(feedback, period_id) == []


async def test_the_timeline_page_lists_the_events_and_says_when_routing_is_away(feedback):
    lead_id = uuid.uuid4()
    await walk_a_lead(feedback, lead_id, datetime(2026, 3, 6, 9, 0, tzinfo=WAW))
    page = await feedback.get(f"/review/leads/{lead_id}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    types = re.findall(r'data-type="([^"]+)"', page.text)
    assert types[:5] == ["lead.created", "lead.activity", "lead.scored", "lead.mql", "lead.routed"]
    assert "did not answer" in page.text  # routing's trace and deliveries could not be read


async def test_an_unknown_lead_timeline_is_a_404_problem(feedback):
    response = await feedback.get(f"/review/leads/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    bad = await feedback.get("/review/leads/not-a-uuid")
    assert bad.status_code == 422
    assert "lead_id" in bad.text


async def test_the_review_page_shows_the_json_reports_figures(feedback):
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=WAW)  # the week the other tests' leads are in
    await walk_a_lead(feedback, uuid.uuid4(), t0 + timedelta(hours=2))
    report = (await feedback.get("/v1/reports/sla", params={"from": "2026-03-02", "to": "2026-03-02"})).json()
    page = await feedback.get("/review", params={"week": "2026-03-04"})
    assert page.status_code == 200
    shown = dict(re.findall(r'data-figure="([^"]+)" data-value="([^"]*)"', page.text))
    period = report["periods"][-1]
    assert int(shown["mql"]) == period["mql"] >= 1
    assert float(shown["attempts_per_mql"]) == period["sales"]["attempts_per_mql"]["value"]
    assert int(shown["breaches"]) == len(report["exceptions"]["first_response_breaches"]) >= 1
    for item in report["exceptions"]["first_response_breaches"]:
        assert f'/review/leads/{item["lead_id"]}' in page.text
    assert "Weekly SLA review — week of 2026-03-02" in html.unescape(page.text)


async def test_a_bad_week_is_a_422_naming_it(feedback):
    response = await feedback.get("/review", params={"week": "last tuesday"})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "week" in response.text
