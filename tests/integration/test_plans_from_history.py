"""Plans from history through the services: leads arrive and are promoted, routed and worked
by sales as events on the real broker and calls to feedback's API, and `POST /v1/plan` with
`rates: observed` plans on the rates feedback observed in its own read model (real PostgreSQL).

One campaign's history: 20 leads arrive, 10 become MQLs (lead→MQL 50 %); 3 of the 8 decided
MQLs become SQL (5 returned, 2 still being worked: MQL→SQL 37.5 %); 2 of the 3 SQL become SQO
(1 lost: 66.7 %); 1 SQO is won and the other is still open (SQO→won 100 % of 1 outcome).

Sales capacity from routing: a `team.directory` as routing publishes it, on routing's topic.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from leadflow.contracts.events import (
    LeadCompany,
    LeadCreated,
    LeadMql,
    LeadRouted,
    LeadSource,
    Person,
    TeamDirectory,
)
from support.feedback_events import feedback_fed_by_events, status_is
from support.harness import REPORTS_READER, SALES, eventually

QUALIFIED = {"problem": True, "impact": "cuts response time", "authority": True}
OPPORTUNITY = {"value": 40000, "currency": "EUR", "stage": "proposal", "close_date": "2027-06-30"}


@pytest.fixture(scope="module")
async def feedback(stack):
    """Feedback with the default policy on a database and topics of its own."""
    async with feedback_fed_by_events(stack, "test-history") as client:
        yield client


async def set_status(client, lead_id, status, **body) -> None:
    response = await client.post(
        f"/v1/leads/{lead_id}/status", json={"status": status, **body}, headers=SALES
    )
    assert response.status_code == 200, response.text


def problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()


async def promote_and_route(client, lead_id, at: datetime, campaign: str) -> None:
    source = LeadSource(system="hubspot", channel="inbound", campaign=campaign, medium="paid")
    promoted = LeadMql(
        lead_id=lead_id, fit=100, engagement=60.0, intent_tier=1, channel="inbound",
        source=source, company=LeadCompany(industry="software", employees=250),
        role="decision_maker", seniority="c_level", promoted_at=at,
    )  # fmt: skip
    await client.publish(promoted, at, "scoring")
    await eventually(lambda: status_is(client, lead_id, "mql"))
    assignment = LeadRouted(
        lead_id=lead_id, assignment_id=uuid.uuid4(), team_id=uuid.uuid4(), team="cee",
        rep_id=uuid.uuid4(), routed_at=at + timedelta(minutes=5),
    )  # fmt: skip
    await client.publish(assignment, at + timedelta(minutes=5), "routing")
    await eventually(lambda: status_is(client, lead_id, "routed"))


GOAL = {
    "revenue_goal": 1_200_000,
    "avg_deal_size": 40_000,
    "touches_per_mql": 6,
    "sdr_activities_per_week": 300,
}


@pytest.fixture(scope="module")
async def campaign(feedback):
    """The campaign's history, built once; its name is unique to this module's run."""
    name = f"history-{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC) - timedelta(days=3)
    arrived = [uuid.uuid4() for _ in range(20)]
    for lead_id in arrived:
        created = LeadCreated(
            lead_id=lead_id,
            email=f"{lead_id.hex[:8]}@history.example",
            role="decision_maker",
            source=LeadSource(system="hubspot", channel="inbound", campaign=name),
            occurred_at=at,
        )
        await feedback.publish(created, at, "ingest")
    mqls = arrived[:10]
    for lead_id in mqls:
        await promote_and_route(feedback, lead_id, at + timedelta(hours=1), name)
    sqls, returned = mqls[:3], mqls[3:8]  # mqls[8:] are still being worked
    for lead_id in sqls:
        await set_status(feedback, lead_id, "sal")
        await set_status(feedback, lead_id, "sql", qualification=QUALIFIED)
    for lead_id in returned:
        await set_status(feedback, lead_id, "returned", reason="no_need")
    await set_status(feedback, sqls[0], "sqo", opportunity=OPPORTUNITY)
    await set_status(feedback, sqls[1], "sqo", opportunity=OPPORTUNITY)
    await set_status(feedback, sqls[2], "lost", reason="no_need")
    await set_status(feedback, sqls[0], "won")
    return name


async def observed_plan(feedback, **body):
    response = await feedback.post(
        "/v1/plan", json={**GOAL, "rates": "observed", **body}, headers=REPORTS_READER
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_plan_takes_each_rate_from_history_with_the_outcomes_it_rests_on(
    feedback, campaign
):
    async def planned():
        answer = await observed_plan(feedback, campaign=campaign, window_days=30)
        rates = {r["stage"]: r for r in answer["rates"]}
        # the arrivals are consumed apart from the API's statuses: wait for all of them
        return answer if rates["lead_to_mql"]["outcomes"] == 20 else None

    answer = await eventually(planned)
    rates = {
        r["stage"]: (r["converted"], r["outcomes"], r["open"], r["rate"]) for r in answer["rates"]
    }
    assert rates == {
        "lead_to_mql": (10, 20, 0, 0.5),
        "mql_to_sql": (3, 8, 2, 0.375),
        "sql_to_sqo": (2, 3, 0, 0.6667),
        "win_rate": (1, 1, 1, 1.0),
    }
    # 30 deals at a win rate of 1/1 → 30 SQO; at 2/3 → 45 SQL; at 3/8 → 120 MQL; at 1/2 → 240
    assert (answer["deals"], answer["sqo"], answer["sql"], answer["mql"]) == (30, 30, 45, 120)
    assert answer["leads"] == 240
    assert "visits" not in answer
    assert answer["history"]["window_days"] == 30
    assert answer["history"]["campaign"] == campaign
    # every rate rests on fewer outcomes than the policy's 30
    thin = {w["stage"] for w in answer["warnings"] if w["kind"] == "few_outcomes"}
    assert thin == {"lead_to_mql", "mql_to_sql", "sql_to_sqo", "win_rate"}


async def test_a_goal_that_needs_a_better_rate_than_history_is_warned_about(feedback, campaign):
    async def planned():
        answer = await observed_plan(feedback, campaign=campaign, mql_to_sql=0.5)
        rates = {r["stage"]: r for r in answer["rates"]}
        return answer if rates["mql_to_sql"]["outcomes"] == 8 else None

    answer = await eventually(planned)
    assert answer["history"]["window_days"] == 90  # the policy's default window
    better = [w for w in answer["warnings"] if w["kind"] == "better_than_history"]
    assert [(w["stage"], w["needed"], w["observed"]) for w in better] == [
        ("mql_to_sql", 0.5, 0.375)
    ]
    typed = next(r for r in answer["rates"] if r["stage"] == "mql_to_sql")
    assert (typed["source"], typed["rate"]) == ("typed", 0.5)


async def test_a_campaign_without_history_is_refused_naming_the_rate_to_type_in(
    feedback,
):
    response = await feedback.post(
        "/v1/plan",
        json={**GOAL, "rates": "observed", "campaign": "never-run"},
        headers=REPORTS_READER,
    )
    assert problem(response, 422)["field"] == "mql_to_sql"


async def test_typed_rates_plan_as_before_and_refuse_a_history_window(feedback):
    typed = {**GOAL, "win_rate": 0.25, "sql_to_sqo": 0.8, "mql_to_sql": 0.3, "visit_to_mql": 0.015}
    answer = (await feedback.post("/v1/plan", json=typed, headers=REPORTS_READER)).json()
    assert (answer["mql"], answer["visits"]) == (500, 33334)
    assert "rates" not in answer and "warnings" not in answer
    response = await feedback.post(
        "/v1/plan", json={**typed, "window_days": 30}, headers=REPORTS_READER
    )
    assert problem(response, 422)["field"] == "window_days"


# --- sales capacity from routing's reps --------------------------------------------------------

SEED_RATES = {"win_rate": 0.25, "sql_to_sqo": 0.8, "mql_to_sql": 0.3, "visit_to_mql": 0.015}


async def test_sales_capacity_is_counted_from_the_reps_routing_published(feedback):
    """Two full-time reps work the Slovak seed's 500 MQL (10 SDR-weeks) in 5 weeks; the
    directory's newer copy with a third rep makes 750."""
    name = f"team-{uuid.uuid4().hex[:8]}"
    team_id = uuid.uuid4()

    def directory(reps: int, at: datetime) -> TeamDirectory:
        people = [Person(id=uuid.uuid4(), name=f"rep {i}", capacity=1000) for i in range(reps)]
        return TeamDirectory(
            lead_id=team_id, team_id=team_id, team=name, reps=people, changed_at=at
        )

    now = datetime.now(UTC)
    await feedback.publish(directory(2, now), now, "routing")
    body = {**GOAL, **SEED_RATES, "sales_capacity": "routing", "capacity_weeks": 5, "team": name}

    async def planned(mql: int):
        response = await feedback.post("/v1/plan", json=body, headers=REPORTS_READER)
        if response.status_code != 200:
            return None
        answer = response.json()
        return answer if answer["sales_capacity"]["mql"] == mql else None

    answer = await eventually(lambda: planned(500))
    assert [r["by_hours"] for r in answer["sales_capacity"]["reps"]] == [250, 250]
    assert answer["capacity"]["verdict"] == "within_capacity"
    assert "name" not in answer["sales_capacity"]["reps"][0]  # feedback keeps no rep's name
    later = now + timedelta(seconds=1)
    await feedback.publish(directory(3, later), later, "routing")
    answer = await eventually(lambda: planned(750))
    assert answer["capacity"]["headroom_mql"] == 250


async def test_sales_capacity_from_routing_needs_weeks_and_a_team_with_reps(feedback):
    body = {**GOAL, **SEED_RATES, "sales_capacity": "routing"}
    response = await feedback.post("/v1/plan", json=body, headers=REPORTS_READER)
    assert problem(response, 422)["field"] == "capacity_weeks"
    unknown = {**body, "capacity_weeks": 4, "team": "no-such-team"}
    response = await feedback.post("/v1/plan", json=unknown, headers=REPORTS_READER)
    assert problem(response, 422)["field"] == "team"
