"""Scoring over the real PostgreSQL and broker, fed by ingest: the lead.mql a rep gets and
its explanation, decay of leads that receive no events, re-promotion after a recycle, the
PQL path and refusing a broken policy at start."""

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import yaml
from aiokafka import AIOKafkaProducer
from leadflow.contracts.events import TOPIC_FEEDBACK, CloudEvent, LeadStatusChanged, make_event
from leadflow.contracts.policy import PolicyError, default_policy
from leadflow.db import Database
from leadflow_scoring.use_cases import review_due
from support.harness import ADMIN, QUALIFIED_LEAD, eventually, service_client

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday morning


def lead(**changes) -> dict:
    return {**QUALIFIED_LEAD, **changes}


async def scoring_events(settings, type_: str, lead_id: str | None = None) -> list[CloudEvent]:
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            rows = (
                await session.execute(sa.text("SELECT payload FROM scoring.outbox ORDER BY id"))
            ).all()
    finally:
        await db.dispose()
    found = [CloudEvent.from_bytes(row.payload) for row in rows]
    return [
        e for e in found if e.type == type_ and (lead_id is None or e.data["lead_id"] == lead_id)
    ]


def codes(reasons: list[str]) -> list[str]:
    return [reason.split(":")[0] for reason in reasons]


async def post_lead(ingest, body: dict) -> str:
    response = await ingest.post("/v1/leads", json=body, headers=ADMIN)
    assert response.status_code == 202, response.text
    return response.json()["lead_id"]


async def post_activity(ingest, lead_id: str, type_: str, **fields) -> None:
    body = {"lead_id": lead_id, "type": type_, **fields}
    response = await ingest.post("/v1/activities", json=body, headers=ADMIN)
    assert response.status_code == 202, response.text


async def wait_for_score(scoring, lead_id: str, check=lambda score: True, timeout=60) -> dict:
    async def scored():
        response = await scoring.get(f"/v1/leads/{lead_id}/score")
        if response.status_code != 200:
            return None
        score = response.json()
        return score if check(score) else None

    return await eventually(scored, timeout=timeout)


async def wait_for_events(settings, type_, lead_id, count, timeout=60) -> list[CloudEvent]:
    async def enough():
        found = await scoring_events(settings, type_, lead_id)
        return found if len(found) >= count else None

    return await eventually(enough, timeout=timeout)


@pytest.fixture
async def fixed_clock_settings(stack):
    # Simulated time from T0 at real speed: the stack sits at T0 while tests jump ahead by
    # reviewing at a later instant.
    return await stack.isolated_settings(clock_start=T0, clock_speed=1.0, clock_anchor=time.time())


async def test_an_mql_carries_its_score_context_and_explanation(stack):
    settings = await stack.isolated_settings()
    async with (
        service_client("ingest", settings) as ingest,
        service_client("scoring", settings) as scoring,
    ):
        lead_id = await post_lead(ingest, lead(intent_tier=0, email="grace@hopper.example"))
        score = await wait_for_score(scoring, lead_id)
        assert (score["fit"], score["engagement"], score["is_mql"]) == (100, 0, False)
        assert codes(score["reasons"]) == ["interest_below_min"]

        await post_activity(ingest, lead_id, "demo_request")
        await post_activity(ingest, lead_id, "page_view", page_category="pricing")
        await post_activity(ingest, lead_id, "page_view", page_category="docs")
        [mql] = await wait_for_events(settings, "lead.mql", lead_id, 1)

        assert mql.source == "scoring"
        assert mql.subject == lead_id
        assert mql.leadflowpolicyversion == "2026.11-default"
        data = mql.data
        assert data["kind"] == "mql"
        assert data["channel"] == "inbound"
        assert (data["fit"], data["engagement"], data["intent_tier"]) == (100, 52.0, 0)
        assert codes(data["reasons"]) == ["fit_met", "engagement_met", "role_eligible"]
        assert data["reasons"][1] == "engagement_met: engagement 52 ≥ 50"
        assert {item["rule"]: item["points"] for item in data["breakdown"]} == {
            "fit.industry": 15,
            "fit.size": 10,
            "fit.seniority": 12,
            "engagement.demo_request": 30,
            "engagement.pricing_page": 12,
            "engagement.docs_page": 10,
        }
        assert [a["kind"] for a in data["key_activities"]] == [
            "demo_request",
            "pricing_page",
            "docs_page",
        ]
        assert data["source"]["campaign"] == "q4-webinar"
        assert data["company"]["name"] == "Analytical Engines"
        assert data["email"] == "grace@hopper.example"
        assert data["intent_note"] == "researching lead routing tools"

        score = await wait_for_score(scoring, lead_id, lambda s: s["mql_at"] is not None)
        assert score["is_mql"] is True
        assert score["mql_kind"] == "mql"
        assert score["policy_version"] == "2026.11-default"
        assert any(item["rule"] == "engagement.demo_request" for item in score["breakdown"])
        assert score["next_review_at"] is not None  # engagement will decay

        # More activity re-scores the lead but does not send it to sales twice.
        await post_activity(ingest, lead_id, "webinar_attended")
        await wait_for_score(scoring, lead_id, lambda s: s["engagement"] == 67)
        assert len(await scoring_events(settings, "lead.mql", lead_id)) == 1
        scored = await scoring_events(settings, "lead.scored", lead_id)
        assert [e.data["engagement"] for e in scored] == [0, 30, 42, 52, 67]


async def test_unknown_lead_score_is_a_problem_not_an_error(stack):
    settings = await stack.isolated_settings()
    async with service_client("scoring", settings) as scoring:
        missing = await scoring.get("/v1/leads/00000000-0000-0000-0000-000000000000/score")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        bad = await scoring.get("/v1/leads/not-a-uuid/score")
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"


async def test_the_reviewer_decays_leads_that_receive_no_events(stack):
    # One simulated week passes in 6 real seconds; nothing but the scoring worker acts.
    week = 6.0
    settings = await stack.isolated_settings(
        clock_start=T0, clock_speed=timedelta(weeks=1).total_seconds() / week,
        clock_anchor=time.time(),
    )  # fmt: skip
    async with (
        service_client("ingest", settings) as ingest,
        service_client("scoring", settings) as scoring,
    ):
        promoted = await post_lead(ingest, lead(intent_tier=0, email="hot@decay.example"))
        cooling = await post_lead(ingest, lead(intent_tier=0, email="warm@decay.example"))
        await post_activity(ingest, promoted, "demo_request")
        await post_activity(ingest, promoted, "demo_request")
        await post_activity(ingest, cooling, "demo_request")
        await wait_for_events(settings, "lead.mql", promoted, 1)

        # Two full weeks without interaction: 60 → 54 → 48.6, below the MQL rule.
        async def decayed_twice():
            found = await scoring_events(settings, "lead.scored", promoted)
            values = [e.data["engagement"] for e in found]
            return values if 48.6 in values else None

        values = await eventually(decayed_twice, timeout=6 * week)
        assert values[-3:] == [60, 54, 48.6]
        decayed = [e for e in await scoring_events(settings, "lead.scored", promoted)][-1]
        assert decayed.data["is_mql"] is False
        assert codes(decayed.data["reasons"]) == ["interest_below_min"]
        decay_line = [b for b in decayed.data["breakdown"] if b["rule"] == "engagement.decay"]
        assert decay_line[0]["points"] == -11.4
        # It was sales' already: losing the rule does not take it back or send it again.
        score = (await scoring.get(f"/v1/leads/{promoted}/score")).json()
        assert score["mql_at"] is not None and score["is_mql"] is False
        assert len(await scoring_events(settings, "lead.mql", promoted)) == 1

        # The never-promoted lead decayed too (30 → 27 …), and new activity promotes it.
        await wait_for_score(scoring, cooling, lambda s: s["engagement"] < 30)
        assert await scoring_events(settings, "lead.mql", cooling) == []
        await post_activity(ingest, cooling, "demo_request")
        [mql] = await wait_for_events(settings, "lead.mql", cooling, 1)
        assert mql.data["engagement"] == 60  # decay counts from the last interaction


async def test_review_rescores_only_leads_whose_decay_boundary_passed(fixed_clock_settings):
    settings = fixed_clock_settings
    async with (
        service_client("ingest", settings) as ingest,
        service_client("scoring", settings) as scoring,
    ):
        rt = scoring.app.state.runtime
        active = await post_lead(ingest, lead(intent_tier=0, email="a@review.example"))
        idle = await post_lead(ingest, lead(intent_tier=0, email="b@review.example"))
        await post_activity(ingest, active, "demo_request")
        await wait_for_score(scoring, active, lambda s: s["engagement"] == 30)
        await wait_for_score(scoring, idle)

        assert await review_due(rt, now=T0 + timedelta(days=6)) == 0
        assert await review_due(rt, now=T0 + timedelta(days=8)) == 1  # only the engaged lead
        score = (await scoring.get(f"/v1/leads/{active}/score")).json()
        assert score["engagement"] == 27
        next_review = datetime.fromisoformat(score["next_review_at"])
        assert T0 + timedelta(weeks=2) < next_review < T0 + timedelta(weeks=2, minutes=1)
        assert await review_due(rt, now=T0 + timedelta(days=8)) == 0  # nothing twice
        scored = await scoring_events(settings, "lead.scored", active)
        assert [e.data["engagement"] for e in scored] == [0, 30, 27]


async def publish_status(settings, lead_id: str, status: str, reason: str, at: datetime) -> None:
    change = LeadStatusChanged(
        lead_id=lead_id, from_status="working", status=status, reason=reason, changed_at=at
    )
    event = make_event(change, source="feedback", time=at)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            settings.topic_prefix + TOPIC_FEEDBACK, event.to_bytes(), key=lead_id.encode()
        )
    finally:
        await producer.stop()


async def test_a_recycled_lead_comes_back_only_after_nurture_on_renewed_interest(
    fixed_clock_settings,
):
    settings = fixed_clock_settings
    nurture = default_policy().nurture_for("unreachable")
    assert nurture == timedelta(days=45)
    async with (
        service_client("ingest", settings) as ingest,
        service_client("scoring", settings) as scoring,
    ):
        rt = scoring.app.state.runtime
        lead_id = await post_lead(ingest, lead(email="back@recycle.example"))  # intent tier 2
        await wait_for_events(settings, "lead.mql", lead_id, 1)

        await publish_status(settings, lead_id, "recycled", "unreachable", T0)
        score = await wait_for_score(scoring, lead_id, lambda s: s["recycle_reason"] is not None)
        assert score["recycle_reason"] == "unreachable"
        assert datetime.fromisoformat(score["nurture_until"]) == T0 + nurture
        assert datetime.fromisoformat(score["next_review_at"]) == T0 + nurture

        # Nurture over, still an MQL on the rules, but no renewed interest: it stays out.
        assert await review_due(rt, now=T0 + nurture + timedelta(days=1)) == 1
        assert len(await scoring_events(settings, "lead.mql", lead_id)) == 1

        # Intent rises (2 → 3) while the lead still rests in nurture: not yet …
        await post_lead(ingest, {"email": "back@recycle.example", "intent_tier": 3})
        score = await wait_for_score(scoring, lead_id, lambda s: s["intent_tier"] == 3)
        assert len(await scoring_events(settings, "lead.mql", lead_id)) == 1
        assert datetime.fromisoformat(score["next_review_at"]) == T0 + nurture

        # … once the window has passed, the review brings it back to sales.
        assert await review_due(rt, now=T0 + nurture + timedelta(days=1)) == 1
        first, again = await scoring_events(settings, "lead.mql", lead_id)
        assert again.data["kind"] == "mql"
        assert again.data["reasons"][-1] == "intent_rose: intent tier 2 → 3"
        promoted_at = datetime.fromisoformat(again.data["promoted_at"])
        assert promoted_at == T0 + nurture + timedelta(days=1)
        score = (await scoring.get(f"/v1/leads/{lead_id}/score")).json()
        assert score["nurture_until"] is None
        assert score["recycle_reason"] == "unreachable"
        assert await review_due(rt, now=T0 + nurture + timedelta(days=2)) == 0


async def test_product_usage_promotes_a_pql_on_the_plg_channel_once_per_account(stack):
    settings = await stack.isolated_settings()
    async with (
        service_client("ingest", settings) as ingest,
        service_client("scoring", settings) as scoring,
    ):
        # A product user: not a decision maker, no intent, so never an MQL.
        body = lead(email="dev@acme-prod.example", role="user", intent_tier=0)
        user = await post_lead(ingest, body)
        usage = {"feature": "sla_reports", "user_id": "u-1", "account": "acme"}
        await post_activity(ingest, user, "product_usage", properties=usage)
        await post_activity(ingest, user, "product_usage", properties=usage)
        await wait_for_score(scoring, user)
        assert await scoring_events(settings, "lead.mql", user) == []

        await post_activity(ingest, user, "product_usage", properties=usage)
        [pql] = await wait_for_events(settings, "lead.mql", user, 1)
        assert pql.data["kind"] == "pql"
        assert pql.data["channel"] == "plg"
        assert pql.data["reasons"] == [
            "feature_uses_met: sla_reports used 3× ≥ 3 in account acme within 30 days"
        ]
        score = await wait_for_score(scoring, user, lambda s: s["mql_kind"] == "pql")
        assert score["is_mql"] is False  # the MQL rule still says no; the product said yes

        # A colleague in the same account: the account was handed over already.
        colleague = await post_lead(ingest, {**body, "email": "ops@acme-prod.example"})
        for n in range(3):
            await post_activity(
                ingest, colleague, "product_usage", properties={**usage, "user_id": f"u-{n}"}
            )
        await wait_for_score(scoring, colleague, lambda s: s["scored_at"] is not None)

        # Five active users of another account make it a PQL too.
        other = await post_lead(ingest, {**body, "email": "lead@globex.example"})
        for n in range(5):
            await post_activity(
                ingest, other, "product_usage",
                properties={"feature": f"f{n}", "user_id": f"g-{n}", "account": "globex"},
            )  # fmt: skip
        [by_users] = await wait_for_events(settings, "lead.mql", other, 1)
        assert codes(by_users.data["reasons"]) == ["active_users_met"]
        assert await scoring_events(settings, "lead.mql", colleague) == []
        assert len(await scoring_events(settings, "lead.mql", user)) == 1


@pytest.mark.parametrize("service", ["scoring", "ingest", "sla-timer"])
async def test_a_broken_policy_file_is_refused_at_start(stack, tmp_path, service):
    path = tmp_path / "policy.yaml"
    data = default_policy().model_dump(mode="json")
    data["scoring"]["mql"]["fit_min"] = "seventy"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    settings = await stack.isolated_settings(policy_file=str(path))
    with pytest.raises(PolicyError) as refused:
        async with service_client(service, settings):
            pass
    assert "scoring.mql.fit_min: Input should be a valid number" in str(refused.value)
