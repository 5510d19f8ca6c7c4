"""The agreement's example rules, run by the services over the real PostgreSQL and broker under
the example policy (tests/fixtures/policies/agreement_example.yaml): an MQL must also have
downloaded a resource and visited the pricing page."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from leadflow.contracts.events import CloudEvent
from leadflow.db import Database
from support.harness import ADMIN, QUALIFIED_LEAD, eventually, service_client

EXAMPLE_POLICY = Path(__file__).parents[1] / "fixtures" / "policies" / "agreement_example.yaml"
EXAMPLE_VERSION = "2026.12-agreement-example"


def codes(reasons: list[str]) -> list[str]:
    return [reason.split(":")[0] for reason in reasons]


async def outbox_events(settings, schema: str, type_: str, lead_id: str) -> list[CloudEvent]:
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            rows = (
                await session.execute(sa.text(f"SELECT payload FROM {schema}.outbox ORDER BY id"))
            ).all()
    finally:
        await db.dispose()
    found = [CloudEvent.from_bytes(row.payload) for row in rows]
    return [e for e in found if e.type == type_ and e.data["lead_id"] == lead_id]


async def post_activity(ingest, lead_id: str, type_: str, **fields) -> None:
    body = {"lead_id": lead_id, "type": type_, **fields}
    response = await ingest.post("/v1/activities", json=body, headers=ADMIN)
    assert response.status_code == 202, response.text


async def score_where(scoring, lead_id: str, check) -> dict:
    async def scored():
        response = await scoring.get(f"/v1/leads/{lead_id}/score")
        if response.status_code != 200:
            return None
        score = response.json()
        return score if check(score) else None

    return await eventually(scored, timeout=60)


# --- required behaviours ---------------------------------------------------------------------


async def test_a_lead_goes_to_sales_only_after_the_required_behaviours(stack):
    settings = await stack.isolated_settings(policy_file=str(EXAMPLE_POLICY))
    async with (
        service_client("ingest", settings) as ingest,
        service_client("scoring", settings) as scoring,
    ):
        # Fit 100, intent tier 2, a decision maker: over the thresholds from the start.
        created = await ingest.post(
            "/v1/leads", json={**QUALIFIED_LEAD, "email": "ada@behaviours.example"}, headers=ADMIN
        )
        assert created.status_code == 202, created.text
        lead_id = created.json()["lead_id"]

        score = await score_where(scoring, lead_id, lambda s: True)
        assert score["is_mql"] is False
        assert score["policy_version"] == EXAMPLE_VERSION
        assert score["reasons"] == [
            "behaviour_missing: content_download 0× < 1 in the last 30 days",
            "behaviour_missing: pricing_page 0× < 1 in the last 30 days",
        ]

        await post_activity(ingest, lead_id, "content_download")
        score = await score_where(scoring, lead_id, lambda s: len(s["reasons"]) == 1)
        assert score["is_mql"] is False and score["mql_at"] is None
        assert score["reasons"] == ["behaviour_missing: pricing_page 0× < 1 in the last 30 days"]
        assert await outbox_events(settings, "scoring", "lead.mql", lead_id) == []

        await post_activity(ingest, lead_id, "page_view", page_category="pricing")

        async def promoted():
            found = await outbox_events(settings, "scoring", "lead.mql", lead_id)
            return found or None

        [mql] = await eventually(promoted, timeout=60)
        assert mql.leadflowpolicyversion == EXAMPLE_VERSION
        assert codes(mql.data["reasons"]) == [
            "fit_met",
            "intent_met",
            "role_eligible",
            "behaviour_met",
            "behaviour_met",
        ]
        assert "behaviour_met: pricing_page 1× ≥ 1 in the last 30 days" in mql.data["reasons"]
        score = await score_where(scoring, lead_id, lambda s: s["mql_at"] is not None)
        assert score["is_mql"] is True
