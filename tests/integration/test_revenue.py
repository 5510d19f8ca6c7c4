"""Revenue against the goal through the real broker and PostgreSQL, on the Slovak seed's worked
example: a goal of 100,000 EUR a month (1.2 M€ a year), deals of 40,000 EUR and a coverage
target of 4× (its 25 % win rate). One deal won in March leaves 60,000 EUR to win; six open
SQOs of 40,000 EUR cover it exactly 4×; an SQO in PLN is listed apart, never summed.

Promotions, routings and ingest's snapshot are produced as events to their topics; sales'
statuses go through feedback's HTTP API, as in production.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from leadflow.contracts.events import (
    LeadCompany,
    LeadCreated,
    LeadMql,
    LeadRouted,
    LeadSource,
)
from support.feedback_events import feedback_fed_by_events, status_is, status_of
from support.harness import SALES, eventually

WAW = ZoneInfo("Europe/Warsaw")
QUALIFIED = {"problem": True, "impact": "cuts response time", "authority": True}
EUR_DEAL = {"value": 40000, "currency": "EUR", "stage": "proposal", "close_date": "2026-06-30"}
PLN_DEAL = {"value": 170000, "currency": "PLN", "stage": "proposal", "close_date": "2026-06-30"}
PAID = LeadSource(system="hubspot", channel="inbound", campaign="spring-paid", medium="cpc")
WEBINAR = LeadSource(system="hubspot", channel="inbound", campaign="webinar-q1", medium="webinar")
MARCH = {"from": "2026-03-01", "to": "2026-03-31", "granularity": "month"}


def march(day: int, hour: int = 9) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=WAW)


@pytest.fixture(scope="module")
async def feedback(stack):
    async with feedback_fed_by_events(stack, "test-revenue") as client:
        yield client


async def set_status(client, lead_id, status: str, at: datetime, **body) -> None:
    response = await client.post(
        f"/v1/leads/{lead_id}/status",
        json={"status": status, "occurred_at": at.isoformat(), **body},
        headers=SALES,
    )
    assert response.status_code == 200, response.text


async def to_sqo(client, lead_id, opportunity: dict, *, source: LeadSource = PAID) -> None:
    """Promoted on 2 March 09:00, routed an hour later, then SAL, SQL and SQO on 3–5 March."""
    promoted = LeadMql(
        lead_id=lead_id, fit=100, engagement=60.0, intent_tier=1, channel="inbound",
        source=source, company=LeadCompany(industry="software", employees=250),
        role="decision_maker", seniority="c_level", intent_note="evaluating routing tools",
        key_activities=[{"type": "demo_request"}], promoted_at=march(2),
    )  # fmt: skip
    await client.publish(promoted, march(2), "scoring")
    await eventually(lambda: status_is(client, lead_id, "mql"))
    routed = LeadRouted(
        lead_id=lead_id, assignment_id=uuid.uuid4(), team_id=uuid.uuid4(), team="cee",
        rep_id=uuid.uuid4(), routed_at=march(2, 10),
    )  # fmt: skip
    await client.publish(routed, march(2, 10), "routing")
    await eventually(lambda: status_is(client, lead_id, "routed"))
    await set_status(client, lead_id, "sal", march(3))
    await set_status(client, lead_id, "sql", march(4), qualification=QUALIFIED)
    await set_status(client, lead_id, "sqo", march(5), opportunity=opportunity)


@pytest.fixture(scope="module")
async def march_deals(feedback):
    won = uuid.uuid4()
    # ingest saw the lead first under the webinar (its first touch); it was promoted as paid
    first_seen = LeadCreated(lead_id=won, email="won@big.example", occurred_at=march(1),
                             source=WEBINAR)  # fmt: skip
    await feedback.publish(first_seen, march(1), "ingest")
    await to_sqo(feedback, won, EUR_DEAL)
    # won without an amount: the SQO's 40,000 EUR stand
    await set_status(feedback, won, "won", march(20))
    open_eur = [uuid.uuid4() for _ in range(6)]
    for lead_id in open_eur:
        await to_sqo(feedback, lead_id, EUR_DEAL)
    open_pln = uuid.uuid4()
    await to_sqo(feedback, open_pln, PLN_DEAL)
    return {"won": won, "open_eur": open_eur, "open_pln": open_pln}


async def month_revenue(feedback) -> dict:
    response = await feedback.get("/v1/reports/sla", params=MARCH)
    assert response.status_code == 200, response.text
    return response.json()["revenue"]


async def _first_touch_known(feedback) -> bool:
    revenue = await month_revenue(feedback)
    return [r["key"] for r in revenue["attribution"]["first_touch"]["campaign"]] == ["webinar-q1"]


async def test_won_against_the_months_goal_with_the_pipeline_covering_the_rest(
    feedback, march_deals
):
    revenue = await month_revenue(feedback)
    assert revenue["currency"] == "EUR"
    [month] = revenue["periods"]
    assert (month["goal"], month["won"], month["deals"]) == (100000, 40000, 1)
    assert (month["attainment"], month["met"]) == (0.4, False)
    assert revenue["pipeline"] == {"value": 240000, "deals": 6}
    assert revenue["remaining_goal"] == 60000
    assert revenue["coverage"] == {"value": 4.0, "target": 4.0, "met": True}


async def test_an_sqo_in_another_currency_is_listed_apart(feedback, march_deals):
    revenue = await month_revenue(feedback)
    assert revenue["other_currencies"] == [
        {
            "lead_id": str(march_deals["open_pln"]),
            "kind": "pipeline",
            "value": 170000,
            "currency": "PLN",
        }
    ]


async def test_cycle_time_from_mql_to_won(feedback, march_deals):
    revenue = await month_revenue(feedback)
    # promoted 2 March 09:00, won 20 March 09:00
    assert revenue["cycle_time_days"] == {"median": 18.0, "p90": 18.0, "deals": 1}


async def test_first_touch_is_the_original_source_and_last_touch_the_promotions(
    feedback, march_deals
):
    await eventually(lambda: _first_touch_known(feedback))
    attribution = (await month_revenue(feedback))["attribution"]
    assert attribution["first_touch"]["source"] == [{"key": "events", "value": 40000, "deals": 1}]
    assert attribution["last_touch"]["source"] == [{"key": "paid", "value": 40000, "deals": 1}]
    assert attribution["last_touch"]["campaign"] == [
        {"key": "spring-paid", "value": 40000, "deals": 1}
    ]


async def test_the_csv_carries_the_revenue_rows(feedback, march_deals):
    response = await feedback.get("/v1/reports/sla", params={**MARCH, "format": "csv"})
    assert response.status_code == 200
    rows = [r for r in csv.DictReader(io.StringIO(response.text)) if r["section"] == "revenue"]
    won = next(r for r in rows if r["metric"] == "revenue_won")
    assert (won["key"], float(won["value"]), float(won["target"]), won["met"]) == (
        "EUR",
        40000,
        100000,
        "false",
    )
    coverage = next(r for r in rows if r["metric"] == "coverage")
    assert (float(coverage["value"]), float(coverage["target"]), coverage["met"]) == (4, 4, "true")
    assert any(r["metric"] == "other_currency.pipeline" and r["value"] == "170000 PLN"
               for r in rows)  # fmt: skip


async def test_a_won_deal_with_a_bad_amount_is_422_naming_it(feedback, march_deals):
    lead_id = march_deals["open_eur"][0]
    for opportunity, field in (
        ({"value": 45000, "currency": "eur"}, "opportunity.currency"),
        ({"value": 0}, "opportunity.value"),
    ):
        response = await feedback.post(
            f"/v1/leads/{lead_id}/status",
            json={"status": "won", "opportunity": opportunity},
            headers=SALES,
        )
        assert response.status_code == 422, response.text
        assert field in response.text
    assert await status_of(feedback, lead_id) == "sqo"
