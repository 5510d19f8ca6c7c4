"""Webhook delivery to a real local receiver: Standard Webhooks signatures checked with the
official `standardwebhooks` package, retries, dead letters, replay, restarts, rotation. Routing
decides (in this process), notify delivers (in this process too)."""

import sqlalchemy as sa
from leadflow.contracts.events import TOPIC_SCORING
from leadflow.db import Database
from leadflow_tools.devstack import free_port
from leadflow_tools.receiver import WebhookReceiver
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from support.harness import (
    ADMIN,
    eventually,
    publish_events,
    routing_and_notify,
    sample_mql,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST = (0, 0.3, 0.3, 0.3)  # four tries, a third of a second apart


async def setup(client, url, secret=SECRET) -> str:
    rep = await client.routing.post("/v1/reps", json={"name": "Ada"}, headers=ADMIN)
    assert rep.status_code == 201
    endpoint = await client.post(
        "/v1/webhook-endpoints", json={"url": url, "secret": secret}, headers=ADMIN
    )
    assert endpoint.status_code == 201, endpoint.text
    return endpoint.json()["id"]


async def delivery_states(settings) -> list[tuple[str, int]]:
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            rows = await session.execute(
                sa.text("SELECT state, attempts FROM notify.deliveries ORDER BY created_at")
            )
            return [(r.state, r.attempts) for r in rows]
    finally:
        await db.dispose()


async def test_signature_verifies_with_the_official_library_and_500_then_200_arrives_once(stack):
    settings = await stack.isolated_settings(webhook_retry_schedule=FAST)
    async with WebhookReceiver(status=500) as receiver, routing_and_notify(settings) as rt:
        await setup(rt, receiver.url)
        await publish_events(settings, TOPIC_SCORING, [sample_mql(1)])
        await eventually(lambda: len(receiver.received) >= 1 or None, timeout=60)
        receiver.status = 200
        await eventually(lambda: (len(receiver.received) >= 2) or None, timeout=30)

        async def settled():  # the row's final state: no try is due any more
            states = await delivery_states(settings)
            return states if states and states[0][0] != "pending" else None

        states = await eventually(settled, timeout=30)
    assert states == [("delivered", 2)]
    assert len(receiver.received) == 2
    ids = {headers["webhook-id"] for headers, _ in receiver.received}
    assert len(ids) == 1  # the receiver's idempotency key is stable across retries
    headers, body = receiver.received[-1]
    payload = Webhook(SECRET).verify(body, headers)
    assert payload["type"] == "lead.routed"
    try:
        Webhook("whsec_" + "A" * 32).verify(body, headers)
    except WebhookVerificationError:
        pass
    else:
        raise AssertionError("a wrong secret must not verify")


async def test_a_receiver_down_for_every_try_dead_letters_and_replay_delivers(stack):
    settings = await stack.isolated_settings(webhook_retry_schedule=FAST)
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/leads"
    async with routing_and_notify(settings) as rt:
        await setup(rt, url)
        await publish_events(settings, TOPIC_SCORING, [sample_mql(1)])

        async def dead():
            response = await rt.get("/v1/deliveries", params={"state": "dead"})
            return response.json()["items"] or None

        [delivery] = await eventually(dead, timeout=60)
        assert delivery["attempts"] == len(FAST)
        assert "ConnectError" in delivery["last_error"]
        outbox = Database(settings.database_url)
        try:
            async with outbox.unit_of_work() as session:
                dead_events = await session.scalar(
                    sa.text(
                        "SELECT count(*) FROM notify.outbox WHERE convert_from(payload, 'UTF8')"
                        "::jsonb->>'type' = 'webhook.dead_lettered'"
                    )
                )
        finally:
            await outbox.dispose()
        assert dead_events == 1
        receiver = WebhookReceiver(status=204)
        receiver.port = port
        async with receiver:
            replay = await rt.post(f"/v1/deliveries/{delivery['id']}/replay", headers=ADMIN)
            assert replay.status_code == 202
            await eventually(lambda: receiver.received or None, timeout=30)
        assert receiver.received[0][0]["webhook-id"] == delivery["id"]
        assert (await delivery_states(settings))[0][0] == "delivered"


async def test_a_retry_due_survives_a_restart_of_notify(stack):
    settings = await stack.isolated_settings(webhook_retry_schedule=(0, 3, 3))
    async with WebhookReceiver(status=503) as receiver:
        async with routing_and_notify(settings) as rt:
            await setup(rt, receiver.url)
            await publish_events(settings, TOPIC_SCORING, [sample_mql(1)])
            await eventually(lambda: receiver.received or None, timeout=60)
        assert await delivery_states(settings) == [("pending", 1)]
        receiver.status = 200
        async with routing_and_notify(settings):
            await eventually(lambda: len(receiver.received) >= 2 or None, timeout=30)
        assert await delivery_states(settings) == [("delivered", 2)]
        assert receiver.received[0][0]["webhook-id"] == receiver.received[1][0]["webhook-id"]


async def test_secret_rotation_signs_with_both_until_it_ends(stack):
    settings = await stack.isolated_settings(webhook_retry_schedule=FAST)
    async with WebhookReceiver(status=204) as receiver, routing_and_notify(settings) as rt:
        endpoint = await setup(rt, receiver.url)
        rotated = await rt.post(f"/v1/webhook-endpoints/{endpoint}/rotate-secret", headers=ADMIN)
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new.startswith("whsec_") and new != SECRET
        await publish_events(settings, TOPIC_SCORING, [sample_mql(1)])
        await eventually(lambda: receiver.received or None, timeout=60)
        headers, body = receiver.received[0]
        assert len(headers["webhook-signature"].split()) == 2
        Webhook(SECRET).verify(body, headers)  # receivers still on the old secret
        Webhook(new).verify(body, headers)  # and those already switched
        done = await rt.delete(f"/v1/webhook-endpoints/{endpoint}/previous-secret", headers=ADMIN)
        assert done.status_code == 204
        await publish_events(settings, TOPIC_SCORING, [sample_mql(2)])
        await eventually(lambda: len(receiver.received) >= 2 or None, timeout=60)
        headers, body = receiver.received[1]
        assert len(headers["webhook-signature"].split()) == 1
        Webhook(new).verify(body, headers)
