"""An erased customer's words leave feedback, through the real broker and PostgreSQL: after
`lead.erased`, the hand-off's use case, promised outcomes, risks and plan, the churn's note and
the success story's title and outcome are in none of feedback's tables (the hand-off's copies in
the status history, the timeline and the published `lead.status_changed` included), while the
customer success report counts the hand-off, the churn by its reason and the story as before.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from leadflow.contracts.events import LeadErased
from support.customers import won_customer
from support.feedback_events import feedback_fed_by_events
from support.harness import SALES, eventually

# Every text a person wrote carries this word, so that no copy of it can hide.
WORDS = "Zanzibar"
HANDOFF = {
    "use_case": f"{WORDS} routes inbound demo requests",
    "promised_outcomes": f"{WORDS} answers 90 % of MQLs within 2 h",
    "risks": f"{WORDS}'s CRM is run by a partner",
    "plan": f"{WORDS} kickoff in week 1",
}
STORY = {"title": f"{WORDS} in two hours", "outcome": f"{WORDS} doubled SQLs", "topics": ["speed"]}
CHURN = {"reason": "price", "note": f"{WORDS}'s budget was cut"}
# feedback's tables that a customer's words could be copied into
TABLES = ("handoffs", "churns", "success_stories", "status_history", "timeline", "audit_log")


@pytest.fixture(scope="module")
async def feedback(stack):
    async with feedback_fed_by_events(stack, "test-customer-success-erasure") as client:
        yield client


async def copies_of_the_words(client, lead_id: uuid.UUID) -> dict[str, int]:
    """How many rows of each table (and of feedback's outbox) still hold the customer's words."""
    pattern = f"%{WORDS}%"
    found = {}
    async with client.db.unit_of_work() as session:
        for table in TABLES:
            found[table] = await session.scalar(
                sa.text(f"SELECT count(*) FROM feedback.{table} t WHERE t::text LIKE :p"),
                {"p": pattern},
            )
        found["outbox"] = await session.scalar(
            sa.text(
                "SELECT count(*) FROM feedback.outbox"
                " WHERE key = :key AND convert_from(payload, 'UTF8') LIKE :p"
            ),
            {"key": str(lead_id), "p": pattern},
        )
    return found


async def all_sent(client, lead_id: uuid.UUID) -> bool:
    async with client.db.unit_of_work() as session:
        waiting = await session.scalar(
            sa.text("SELECT count(*) FROM feedback.outbox WHERE key = :k AND published_at IS NULL"),
            {"k": str(lead_id)},
        )
    return waiting == 0


def counted(report: dict) -> dict:
    """What the customer success report counts, leaving out what it names."""
    return {
        "churn_by_reason": report["churn"]["by_reason"],
        "stories": len(report["stories"]),
        "topics": report["topics"],
        "clocks": {
            sla: {k: v for k, v in clock.items() if k != "missed_leads"}
            for sla, clock in report["clocks"].items()
        },
    }


async def test_an_erasure_removes_the_customers_words_and_the_report_still_counts_them(feedback):
    lead_id = await won_customer(feedback)
    base = f"/v1/leads/{lead_id}"
    steps = (
        ("/status", {"status": "handed_off", "handoff": HANDOFF}, 200),
        ("/success-stories", STORY, 201),
        ("/churn", CHURN, 201),
    )
    for path, body, status in steps:
        response = await feedback.post(base + path, json=body, headers=SALES)
        assert response.status_code == status, response.text
    await eventually(lambda: all_sent(feedback, lead_id))  # its words went out with the hand-off
    before = (await feedback.get("/v1/reports/customer-success")).json()
    assert [s["title"] for s in before["stories"]] == [STORY["title"]]
    assert (await copies_of_the_words(feedback, lead_id))["handoffs"] == 1

    await feedback.publish(LeadErased(lead_id=lead_id), datetime.now(UTC), "ingest")

    async def forgotten() -> bool:
        return not any((await copies_of_the_words(feedback, lead_id)).values())

    await eventually(forgotten)
    kept = (await feedback.get(f"{base}/customer-success")).json()
    assert kept["handoff"]["handed_off_at"] is not None
    assert {k: kept["handoff"][k] for k in HANDOFF} == dict.fromkeys(HANDOFF, "[erased]")
    assert (kept["churn"]["reason"], kept["churn"]["note"]) == ("price", None)
    assert [(s["title"], s["outcome"], s["topics"]) for s in kept["stories"]] == [
        ("[erased]", "[erased]", ["speed"])
    ]
    history = (await feedback.get(f"{base}/lifecycle")).json()["history"]
    assert "handed_off" in [step["status"] for step in history]
    after = (await feedback.get("/v1/reports/customer-success")).json()
    assert counted(after) == counted(before)
    assert [s["title"] for s in after["stories"]] == ["[erased]"]


async def test_a_story_told_after_the_erasure_keeps_no_words(feedback):
    lead_id = await won_customer(feedback)
    await feedback.publish(LeadErased(lead_id=lead_id), datetime.now(UTC), "ingest")

    async def erased() -> bool:
        async with feedback.db.unit_of_work() as session:
            return await session.scalar(
                sa.text("SELECT erased_at IS NOT NULL FROM feedback.leads WHERE lead_id = :id"),
                {"id": lead_id},
            )

    await eventually(erased)
    response = await feedback.post(f"/v1/leads/{lead_id}/success-stories", json=STORY,
                                   headers=SALES)  # fmt: skip
    assert response.status_code == 201, response.text
    stories = (await feedback.get(f"/v1/leads/{lead_id}/customer-success")).json()["stories"]
    assert [(s["title"], s["outcome"]) for s in stories] == [("[erased]", "[erased]")]
