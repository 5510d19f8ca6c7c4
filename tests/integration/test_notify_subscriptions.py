"""Any event to any subscriber: notify (in this process, real PostgreSQL and broker) delivers each
event type to the endpoints whose patterns and filters it meets, once per endpoint however often
the event arrives, with the lead's context built from the events before it."""

import uuid
from datetime import UTC, datetime, timedelta

import orjson
import sqlalchemy as sa
from leadflow.contracts.events import (
    TOPIC_INGEST,
    TOPIC_ROUTING,
    TOPIC_SCORING,
    TOPIC_SLA,
    LeadCompany,
    LeadCreated,
    LeadRouted,
    LeadSource,
    SlaWarning,
    make_event,
)
from leadflow.db import Database
from leadflow.kafka import make_producer
from leadflow_tools.receiver import WebhookReceiver
from support.harness import (
    ADMIN,
    eventually,
    publish_events,
    sample_breach,
    sample_mql,
    service_client,
)

TEAM = uuid.uuid4()
REP = uuid.uuid4()


def lead_story(lead_id: uuid.UUID, team_id: uuid.UUID = TEAM) -> dict[str, list]:
    """A lead's events before its clock breaches, by topic: created, promoted, routed."""
    now = datetime.now(UTC)
    mql = sample_mql(7).model_copy(
        update={
            "lead_id": lead_id,
            "first_name": "Ada",
            "last_name": "Byron",
            "email": "ada@co.example",
        }
    )
    return {
        TOPIC_INGEST: [
            LeadCreated(
                lead_id=lead_id,
                email="ada@co.example",
                first_name="Ada",
                last_name="Byron",
                company=LeadCompany(name="Analytical Co", country="PL"),
                source=LeadSource(system="hubspot", channel="inbound", campaign="q4"),
                occurred_at=now - timedelta(hours=4),
            )
        ],
        TOPIC_SCORING: [mql],
        TOPIC_ROUTING: [
            LeadRouted(
                lead_id=lead_id,
                assignment_id=uuid.uuid4(),
                team_id=team_id,
                team="Inbound",
                rep_id=REP,
                rep_name="Rep One",
                routed_at=now - timedelta(hours=3),
                mql=mql.model_dump(mode="json"),
            )
        ],
    }


async def subscribe(notify, url: str, event_types: list[str], **extra) -> str:
    response = await notify.post(
        "/v1/webhook-endpoints",
        json={"url": url, "event_types": event_types, **extra},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def consumed(settings, event_ids: set) -> bool:
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            done = set(
                await session.scalars(
                    sa.text("SELECT event_id FROM notify.inbox WHERE event_id = ANY(:ids)"),
                    {"ids": list(event_ids)},
                )
            )
        return done == event_ids
    finally:
        await db.dispose()


async def publish(settings, topic: str, payloads: list) -> set:
    """Publish, and return the events' ids (to wait until notify took them)."""
    producer = make_producer(settings, "test-notify")
    await producer.start()
    ids = set()
    try:
        for payload in payloads:
            event = make_event(payload, source="test")
            ids.add(event.id)
            await producer.send_and_wait(
                settings.topic_prefix + topic, event.to_bytes(), key=str(payload.lead_id).encode()
            )
    finally:
        await producer.stop()
    return ids


async def test_patterns_and_filters_choose_the_events_and_the_body_carries_the_leads_context(stack):
    settings = await stack.isolated_settings()
    lead_id = uuid.uuid4()
    async with (
        WebhookReceiver() as everything,
        WebhookReceiver() as breaches,
        WebhookReceiver() as other_team,
        service_client("notify", settings) as notify,
    ):
        await subscribe(notify, everything.url, ["*"])
        await subscribe(
            notify,
            breaches.url,
            ["sla.*"],
            filters={"slas": ["first_response"], "levels": ["breached"], "teams": ["Inbound"]},
        )
        await subscribe(notify, other_team.url, ["sla.*", "lead.routed"], team_id=str(uuid.uuid4()))
        seen = set()
        for topic, payloads in lead_story(lead_id).items():
            seen |= await publish(settings, topic, payloads)  # in the order they happen
            await eventually(lambda ids=set(seen): consumed(settings, ids), timeout=60)
        breach = sample_breach(lead_id)
        warning = SlaWarning(
            **breach.model_dump(include=set(SlaWarning.model_fields)) | {"level": "warning"}
        )
        seen |= await publish(settings, TOPIC_SLA, [warning, breach])
        await eventually(lambda: len(everything.received) == 5 or None, timeout=60)
        await eventually(lambda: breaches.received or None, timeout=60)
        await eventually(lambda: consumed(settings, seen), timeout=60)

    types = sorted(orjson.loads(body)["type"] for _, body in everything.received)
    assert types == ["lead.created", "lead.mql", "lead.routed", "sla.breached", "sla.warning"]
    [(_, raw)] = breaches.received  # the breach only: not the warning
    body = orjson.loads(raw)
    assert body["type"] == "sla.breached"
    data = body["data"]
    assert (data["sla"], data["level"], data["lead_id"]) == (
        "first_response",
        "breached",
        str(lead_id),
    )
    lead = data["lead"]
    assert (lead["first_name"], lead["last_name"], lead["email"]) == (
        "Ada",
        "Byron",
        "ada@co.example",
    )
    assert lead["source"]["campaign"] == "q4" and lead["fit"] == 100
    assignment = data["assignment"]
    assert (assignment["rep_name"], assignment["team"], assignment["team_id"]) == (
        "Rep One",
        "Inbound",
        str(TEAM),
    )
    assert data["due_at"]
    # an endpoint of another team hears nothing of this lead
    assert other_team.received == []


async def test_an_event_arriving_twice_is_delivered_once_per_endpoint(stack):
    settings = await stack.isolated_settings()
    lead_id = uuid.uuid4()
    breach = make_event(sample_breach(lead_id), source="test")
    async with (
        WebhookReceiver() as first,
        WebhookReceiver() as second,
        service_client("notify", settings) as notify,
    ):
        await subscribe(notify, first.url, ["sla.breached"])
        await subscribe(notify, second.url, ["sla.*"])
        producer = make_producer(settings, "test-notify-twice")
        await producer.start()
        try:
            for _ in range(3):  # the same event, as a relay re-sending after a crash would
                await producer.send_and_wait(
                    settings.topic_prefix + TOPIC_SLA, breach.to_bytes(), key=str(lead_id).encode()
                )
        finally:
            await producer.stop()
        await eventually(lambda: consumed(settings, {breach.id}), timeout=60)

        async def both_recorded_delivered() -> list[str] | None:
            # the receiver answers before notify records the answer: wait for the record
            listed = await notify.get("/v1/deliveries", params={"lead_id": str(lead_id)})
            states = sorted(d["state"] for d in listed.json()["items"])
            return states if states == ["delivered", "delivered"] else None

        assert await eventually(both_recorded_delivered, timeout=60)
    assert len(first.received) == len(second.received) == 1
    assert first.received[0][0]["webhook-id"] != second.received[0][0]["webhook-id"]


async def test_an_endpoint_for_every_team_gets_the_events_of_leads_it_never_saw_routed(stack):
    settings = await stack.isolated_settings()
    async with WebhookReceiver() as receiver, service_client("notify", settings) as notify:
        await subscribe(notify, receiver.url, ["sla.breached"])
        await publish_events(settings, TOPIC_SLA, [sample_breach()])
        await eventually(lambda: receiver.received or None, timeout=60)
    data = orjson.loads(receiver.received[0][1])["data"]
    assert data["lead"]["lead_id"] == data["lead_id"]  # known only by its id: no context yet
    assert "assignment" not in data


async def test_a_team_directory_is_delivered_without_its_channel_webhooks(stack):
    from leadflow.contracts.events import Person, TeamDirectory

    settings = await stack.isolated_settings()
    team = uuid.uuid4()
    directory = TeamDirectory(
        lead_id=team,
        team_id=team,
        team="Inbound",
        team_lead=Person(name="Tom Lead", email="tom@vendor.example"),
        slack_webhook_url="https://hooks.slack.com/services/T0/B0/secret",
        changed_at=datetime.now(UTC),
    )
    async with WebhookReceiver() as receiver, service_client("notify", settings) as notify:
        await subscribe(notify, receiver.url, ["team.*"], filters={"teams": ["Inbound"]})
        await publish_events(settings, TOPIC_ROUTING, [directory])
        await eventually(lambda: receiver.received or None, timeout=60)
    data = orjson.loads(receiver.received[0][1])["data"]
    assert data["team_lead"]["name"] == "Tom Lead" and "lead" not in data
    assert "slack_webhook_url" not in data and b"secret" not in receiver.received[0][1]
