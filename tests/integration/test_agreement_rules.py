"""The agreement's example rules, run by the services over the real PostgreSQL and broker under
the example policy (tests/fixtures/policies/agreement_example.yaml): an MQL must also have
downloaded a resource and visited the pricing page; the inbound cadence is 5 attempts in 10
days, 3 calls and 2 e-mails, on at least 2 days."""

from __future__ import annotations

import csv
import io
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from leadflow.clock import Clock
from leadflow.contracts.events import (
    CloudEvent,
    LeadCompany,
    LeadContactAttempt,
    LeadMql,
    LeadRouted,
    LeadSource,
    Payload,
    make_event,
)
from leadflow.db import Database
from leadflow.kafka import make_producer
from support.harness import (
    ADMIN,
    QUALIFIED_LEAD,
    SALES,
    eventually,
    sample_routed,
    service_client,
)

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


# --- cadence with a channel mix --------------------------------------------------------------

# Tuesday 3 March 2026, 09:00 in Warsaw: the lead is routed then; the simulated clock starts there.
ROUTED_AT = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


async def publish(settings, producer, payload: Payload, at: datetime, source: str) -> None:
    event = make_event(payload, source=source, time=at)
    await producer.send_and_wait(
        settings.topic_prefix + payload.topic, event.to_bytes(), key=str(payload.lead_id).encode()
    )


async def cadence_clock(sla_timer, lead_id: uuid.UUID, check) -> dict:
    async def clock():
        response = await sla_timer.get(f"/v1/leads/{lead_id}/slas")
        found = [t for t in response.json().get("timers", []) if t["sla"] == "contact_cadence"]
        return found[0] if found and check(found[0]) else None

    return await eventually(clock, timeout=60)


async def test_the_cadence_is_met_by_number_mix_and_spread_and_the_report_shows_the_channels(
    stack,
):
    settings = await stack.isolated_settings(
        policy_file=str(EXAMPLE_POLICY),
        clock_start=ROUTED_AT,
        clock_speed=1.0,
        clock_anchor=time.time(),
    )
    lead_id, rep_id = uuid.uuid4(), uuid.uuid4()
    mql = LeadMql(
        lead_id=lead_id,
        fit=100,
        engagement=60.0,
        intent_tier=2,
        channel="inbound",
        source=LeadSource(system="hubspot", channel="inbound", campaign="spring", medium="paid"),
        company=LeadCompany(industry="software", employees=250),
        role="decision_maker",
        seniority="c_level",
        promoted_at=ROUTED_AT - H,
    )
    routed = LeadRouted(
        lead_id=lead_id,
        assignment_id=uuid.uuid4(),
        team_id=uuid.uuid4(),
        team="cee",
        rep_id=rep_id,
        channel="inbound",
        routed_at=ROUTED_AT,
    )
    producer = make_producer(settings, "test-agreement")
    await producer.start()
    try:
        async with (
            service_client("feedback", settings) as feedback,
            service_client("sla-timer", settings) as sla_timer,
        ):
            await publish(settings, producer, mql, ROUTED_AT - H, "scoring")
            await publish(settings, producer, routed, ROUTED_AT, "routing")

            async def known_to_feedback():
                response = await feedback.get(f"/v1/leads/{lead_id}/lifecycle")
                return response.status_code == 200 and response.json()["status"] == "routed"

            await eventually(known_to_feedback, timeout=60)
            clock = await cadence_clock(sla_timer, lead_id, lambda t: True)
            assert (clock["attempts_required"], clock["min_distinct_days"]) == (5, 2)
            assert clock["min_per_channel"] == {"call": 3, "email": 2}
            assert clock["missing"] == ["3 more calls", "2 more e-mails", "attempts on 2 more days"]

            async def attempt(channel: str, at: datetime) -> None:
                body = {"channel": channel, "rep_id": str(rep_id), "occurred_at": at.isoformat()}
                response = await feedback.post(
                    f"/v1/leads/{lead_id}/attempts", json=body, headers=SALES
                )
                assert response.status_code == 202, response.text

            # Four attempts on the Tuesday: three calls and an e-mail.
            for n, channel in enumerate(["call", "email", "call", "call"], start=1):
                await attempt(channel, ROUTED_AT + n * H)
            clock = await cadence_clock(sla_timer, lead_id, lambda t: t["attempts"] == 4)
            assert clock["state"] == "open"
            assert clock["attempts_by_channel"] == {"call": 3, "email": 1}
            assert clock["attempt_days"] == 1
            assert clock["missing"] == ["1 more e-mail", "attempts on 1 more day"]

            # The fifth, an e-mail on the Wednesday, completes number, mix and spread.
            wednesday = ROUTED_AT + timedelta(days=1, hours=1)
            await attempt("email", wednesday)
            clock = await cadence_clock(sla_timer, lead_id, lambda t: t["state"] == "met")
            assert clock["met_at"] == wednesday.isoformat()
            assert clock["attempts_by_channel"] == {"call": 3, "email": 2}
            assert (clock["attempt_days"], clock["missing"]) == (2, [])

            # Feedback's SLA report of the week counts the attempts of each channel.
            week = {"from": "2026-03-02", "to": "2026-03-08", "granularity": "week"}
            report = (await feedback.get("/v1/reports/sla", params=week)).json()
            sales = report["periods"][-1]["sales"]
            assert sales["attempts_by_channel"]["call"] == {"attempts": 3, "per_mql": 3.0}
            assert sales["attempts_by_channel"]["email"] == {"attempts": 2, "per_mql": 2.0}
            assert sales["attempts_by_channel"]["linkedin"] == {"attempts": 0, "per_mql": 0.0}

            response = await feedback.get(
                "/v1/reports/sla", params=week, headers={"Accept": "text/csv"}
            )
            rows = list(csv.DictReader(io.StringIO(response.text)))
            by_channel = {
                r["key"]: r["value"] for r in rows if r["metric"] == "attempts_by_channel"
            }
            assert by_channel == {"call": "3", "email": "2", "linkedin": "0", "meeting": "0"}

            page = await feedback.get("/review", params={"week": "2026-03-02"})
            assert page.status_code == 200, page.text
            assert 'data-figure="attempts_call" data-value="3"' in page.text
            assert 'data-figure="attempts_email" data-value="2"' in page.text
    finally:
        await producer.stop()


async def test_the_cadences_warning_and_breach_name_what_its_attempts_lack(stack):
    # Ten simulated days pass in about ten real seconds.
    settings = await stack.isolated_settings(
        policy_file=str(EXAMPLE_POLICY),
        clock_start=ROUTED_AT,
        clock_speed=86400.0,
        clock_anchor=time.time(),
    )
    clock = Clock(settings.clock_start, settings.clock_speed, settings.clock_anchor)
    lead_id = uuid.uuid4()
    producer = make_producer(settings, "test-agreement-breach")
    await producer.start()
    try:
        async with service_client("sla-timer", settings) as sla_timer:
            now = clock.now()
            routed = sample_routed(lead_id, now, team="cee")
            await publish(settings, producer, routed, now, "routing")
            await cadence_clock(sla_timer, lead_id, lambda t: True)
            # Two calls on the first day, nothing more: 75 % of 10 days later a warning, at
            # 10 days the breach, each saying what the cadence still lacked.
            for n in (1, 2):
                call = LeadContactAttempt(
                    lead_id=lead_id,
                    attempt_id=uuid.uuid4(),
                    channel="call",
                    occurred_at=now + n * H,
                )
                await publish(settings, producer, call, now + n * H, "feedback")
            await cadence_clock(sla_timer, lead_id, lambda t: t["attempts"] == 2)

            async def cadence_events(type_: str) -> list[CloudEvent]:
                found = await outbox_events(settings, "sla_timer", type_, str(lead_id))
                return [e for e in found if e.data["sla"] == "contact_cadence"]

            async def breached():
                return await cadence_events("sla.breached") or None

            [breach] = await eventually(breached, timeout=60)
            lacking = ["1 more call", "2 more e-mails", "attempts on 1 more day"]
            assert breach.data["outcome"] == "unreachable"
            assert breach.data["missing"] == lacking
            [warning] = await cadence_events("sla.warning")
            assert warning.data["missing"] == lacking
            # The other clocks' events carry no such list.
            others = await outbox_events(settings, "sla_timer", "sla.breached", str(lead_id))
            acceptance = [e for e in others if e.data["sla"] == "sal_acceptance"]
            assert acceptance and acceptance[0].data["missing"] is None
    finally:
        await producer.stop()
