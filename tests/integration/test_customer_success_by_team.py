"""The customer success part of the weekly review, and its report, of one team: with a team
chosen, the churns, success stories and clocks after the signature are those of the customers
routed to that team, as the rest of the review page; without one, every team's. Through
feedback, the real broker and PostgreSQL."""

from __future__ import annotations

import pytest
from support.customers import won_customer
from support.feedback_events import feedback_fed_by_events
from support.harness import SALES


@pytest.fixture(scope="module")
async def feedback(stack):
    async with feedback_fed_by_events(stack, "test-customer-success-by-team") as client:
        yield client


@pytest.fixture(scope="module")
async def customers(feedback):
    """One customer of each team, each churned for its own reason and told as a story."""
    ids = {}
    for team, reason in (("cee", "price"), ("dach", "low_adoption")):
        lead_id = await won_customer(feedback, team=team)
        story = {"title": f"{team} in two hours", "outcome": "SQLs doubled"}
        for path, body in (("success-stories", story), ("churn", {"reason": reason})):
            response = await feedback.post(f"/v1/leads/{lead_id}/{path}", json=body, headers=SALES)
            assert response.status_code == 201, response.text
        ids[team] = lead_id
    return ids


def churned_by_reason(report: dict) -> dict[str, int]:
    return {row["key"]: row["churned"] for row in report["churn"]["by_reason"] if row["churned"]}


async def test_the_customer_success_report_of_a_team_counts_only_its_customers(feedback, customers):
    report = (await feedback.get("/v1/reports/customer-success", params={"team": "cee"})).json()
    assert churned_by_reason(report) == {"price": 1}
    assert [s["lead_id"] for s in report["stories"]] == [str(customers["cee"])]
    decided = sum(c["met"] + c["missed"] + c["pending"] + c["cancelled"]
                  for c in report["clocks"].values())  # fmt: skip
    assert decided == 3  # one customer's three clocks after the signature
    everyone = (await feedback.get("/v1/reports/customer-success")).json()
    assert churned_by_reason(everyone) == {"price": 1, "low_adoption": 1}


async def test_the_reviews_customer_success_section_follows_the_team_chosen(feedback, customers):
    page = await feedback.get("/review", params={"team": "dach"})
    assert page.status_code == 200
    section = page.text[page.text.index('id="customer-success"') :]
    assert "dach in two hours" in section
    assert "cee in two hours" not in section
    assert 'data-key="low_adoption"' in section
    assert 'data-key="price"' not in section
    everyone = (await feedback.get("/review")).text
    assert "dach in two hours" in everyone and "cee in two hours" in everyone
