"""Customer success after the signature through feedback and sla-timer, the real broker and
PostgreSQL: a won deal's hand-off meets its 48 h clock only with use case, promised outcomes,
risks and plan; the kickoff reported over the API meets the 5-day clock; the key feature's
first use (ingest's product usage) meets the 14-day clock; a churn with a policy reason ends
the customer's clocks; the report and the review show what customer success feeds back.

Promotions, routings and product usage are produced as events to their topics; sales' and
customer success's reports go through feedback's HTTP API, as in production; sla-timer reads
what feedback emits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from leadflow.contracts.events import (
    LeadActivity,
    LeadCompany,
    LeadSource,
)
from support import customers
from support.feedback_events import feedback_fed_by_events, status_is
from support.harness import ADMIN, READER, SALES, eventually, service_client

HANDOFF = {
    "use_case": "route inbound demo requests to the right rep",
    "promised_outcomes": "first response under 2 h for 90 % of MQLs",
    "risks": "the CRM integration is owned by a partner",
    "plan": "kickoff in week 1, CRM connected in week 2",
}
PAID = LeadSource(system="hubspot", channel="inbound", campaign="spring-paid", medium="cpc")
H = timedelta(hours=1)


@pytest.fixture(scope="module")
async def services(stack):
    """Feedback fed by events, with sla-timer beside it on the same database and topics."""
    async with feedback_fed_by_events(stack, "test-customer-success") as feedback:
        async with service_client("sla-timer", feedback.settings) as timer:
            feedback.timer = timer
            yield feedback


async def post(client, path: str, body: dict, headers: dict = SALES):
    return await client.post(path, json=body, headers=headers)


async def won_customer(client, *, company: LeadCompany | None = None) -> uuid.UUID:
    """A lead first seen under a paid campaign, promoted, routed, then SAL, SQL, SQO and won
    an hour ago."""
    return await customers.won_customer(client, company=company, source=PAID)


async def clock(client, lead_id: uuid.UUID, sla: str) -> dict | None:
    response = await client.timer.get(f"/v1/leads/{lead_id}/slas")
    if response.status_code != 200:
        return None
    return next((t for t in response.json()["timers"] if t["sla"] == sla), None)


async def clock_is(client, lead_id: uuid.UUID, sla: str, state: str) -> bool:
    found = await clock(client, lead_id, sla)
    return found is not None and found["state"] == state


async def test_a_hand_off_without_its_risks_is_refused_and_the_48h_clock_stays_open(services):
    lead_id = await won_customer(services)
    handoff = {k: v for k, v in HANDOFF.items() if k != "risks"}
    response = await post(
        services, f"/v1/leads/{lead_id}/status", {"status": "handed_off", "handoff": handoff}
    )
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["field"] == "handoff.risks"
    await eventually(lambda: clock_is(services, lead_id, "cs_handoff", "open"))
    assert await status_is(services, lead_id, "won")


async def test_a_complete_hand_off_meets_the_48h_clock_and_is_kept(services):
    lead_id = await won_customer(services)
    response = await post(
        services, f"/v1/leads/{lead_id}/status", {"status": "handed_off", "handoff": HANDOFF}
    )
    assert response.status_code == 200, response.text
    await eventually(lambda: clock_is(services, lead_id, "cs_handoff", "met"))
    kept = (await services.get(f"/v1/leads/{lead_id}/customer-success")).json()
    assert {k: kept["handoff"][k] for k in HANDOFF} == HANDOFF
    assert {c["sla"]: c["verdict"] for c in kept["clocks"]}["cs_handoff"] == "met"


async def test_the_kickoff_held_meets_the_5_day_clock_once(services):
    lead_id = await won_customer(services)
    held_at = datetime.now(UTC)
    path = f"/v1/leads/{lead_id}/onboarding/kickoff"
    assert (await post(services, path, {}, READER)).status_code == 403
    response = await post(services, path, {"held_at": held_at.isoformat()})
    assert response.status_code == 200, response.text
    assert datetime.fromisoformat(response.json()["kickoff_at"]) == held_at
    await eventually(lambda: clock_is(services, lead_id, "onboarding_kickoff", "met"))
    again = await post(services, path, {"held_at": (held_at + H).isoformat()})
    assert datetime.fromisoformat(again.json()["kickoff_at"]) == held_at
    assert await clock_is(services, lead_id, "key_feature_activation", "open")


async def usage(client, lead_id: uuid.UUID, feature: str, at: datetime) -> None:
    activity = LeadActivity(
        lead_id=lead_id, activity_id=uuid.uuid4(), activity_type="product_usage",
        occurred_at=at, properties={"feature": feature, "user": "u1"},
    )  # fmt: skip
    await client.publish(activity, at, "ingest")


async def activated_at(client, lead_id: uuid.UUID) -> str | None:
    response = await client.get(f"/v1/leads/{lead_id}/customer-success")
    return response.json()["activated_at"] if response.status_code == 200 else None


async def test_the_key_features_first_use_after_the_signature_meets_the_14_day_clock(services):
    lead_id = await won_customer(services)
    now = datetime.now(UTC)
    await usage(services, lead_id, "key_feature", now - 3 * H)  # before the won status: a trial
    await usage(services, lead_id, "dashboards", now)
    await usage(services, lead_id, "key_feature", now)
    await eventually(lambda: clock_is(services, lead_id, "key_feature_activation", "met"))
    assert datetime.fromisoformat(await activated_at(services, lead_id)) == now
    timer = await clock(services, lead_id, "key_feature_activation")
    assert datetime.fromisoformat(timer["met_at"]) == now


async def test_a_churn_needs_a_policy_reason_and_ends_the_customers_clocks(services):
    lead_id = await won_customer(services)
    path = f"/v1/leads/{lead_id}/churn"
    refused = await post(services, path, {"reason": "they hated us"})
    assert refused.status_code == 422
    assert refused.json()["field"] == "reason"
    assert "low_adoption" in refused.json()["allowed_reasons"]
    await eventually(lambda: clock_is(services, lead_id, "onboarding_kickoff", "open"))
    response = await post(services, path, {"reason": "low_adoption", "note": "never logged in"})
    assert response.status_code == 201, response.text
    for sla in ("cs_handoff", "onboarding_kickoff", "key_feature_activation"):
        await eventually(lambda sla=sla: clock_is(services, lead_id, sla, "cancelled"))
    story = {"title": "late", "outcome": "none"}
    assert (await post(services, f"/v1/leads/{lead_id}/success-stories", story)).status_code == 409
    assert (await post(services, path, {"reason": "price"})).status_code == 409
    audit = await services.get("/v1/audit", params={"entity": "churn"}, headers=ADMIN)
    assert [row["entity_id"] for row in audit.json()["items"]] == [str(lead_id)]


async def test_reports_show_churn_by_reason_and_source_low_usage_and_stories(services):
    churned = await won_customer(services)
    told = await won_customer(services)
    assert (await post(services, f"/v1/leads/{churned}/churn", {"reason": "price"})).is_success
    story = {"title": "Two-hour response", "outcome": "MQL→SQL up from 30 % to 36 %",
             "topics": ["speed to lead", "routing", "routing"]}  # fmt: skip
    response = await post(services, f"/v1/leads/{told}/success-stories", story)
    assert response.status_code == 201, response.text
    assert response.json()["topics"] == ["speed to lead", "routing"]
    report = (await services.get("/v1/reports/customer-success")).json()
    assert {"key": "price", "churned": 1, "label": "Price"} in report["churn"]["by_reason"]
    assert any(row["key"] == "paid" for row in report["churn"]["by_source"])
    assert "Two-hour response" in [s["title"] for s in report["stories"]]
    assert report["clocks"]["cs_handoff"]["pending"] >= 1
    page = await services.get("/review")
    assert page.status_code == 200
    assert 'id="customer-success"' in page.text
    assert "Two-hour response" in page.text
    assert 'data-by="source" data-key="paid"' in page.text
