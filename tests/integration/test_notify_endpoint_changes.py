"""A webhook endpoint is read, changed and deleted through notify's API (in this process, real
PostgreSQL and broker): a change is checked as a creation is and audited; deleting an endpoint
that deliveries still wait for is a 409 saying how many, unless `force=true` cancels them."""

import uuid

from leadflow.contracts.events import TOPIC_SLA
from support.harness import (
    ADMIN,
    CONFIG_READER,
    eventually,
    publish_events,
    sample_breach,
    service_client,
)

CLOSED = "http://127.0.0.1:9/hooks"  # nothing listens: a delivery stays pending, retried later


async def create(notify, **body) -> dict:
    response = await notify.post(
        "/v1/webhook-endpoints", json={"url": CLOSED, **body}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return response.json()


async def audit_of(notify, endpoint_id: str) -> list[dict]:
    entries = await notify.get(
        "/v1/audit", params={"entity": "webhook-endpoint", "entity_id": endpoint_id}, headers=ADMIN
    )
    assert entries.status_code == 200, entries.text
    return entries.json()["items"]


async def test_an_endpoint_is_read_and_changed_as_it_was_created_and_each_change_audited(stack):
    settings = await stack.isolated_settings()
    team = str(uuid.uuid4())
    async with service_client("notify", settings) as notify:
        endpoint = await create(notify)
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        read = await notify.get(path)
        assert read.status_code == 200, read.text
        assert read.json() == {**endpoint, "secret": None}

        changed = await notify.patch(
            path,
            json={
                "url": "http://127.0.0.1:9/other",
                "event_types": ["sla.*", "lead.routed"],
                "team_id": team,
                "filters": {"channels": ["inbound"]},
                "enabled": False,
            },
            headers=ADMIN,
        )
        assert changed.status_code == 200, changed.text
        after = changed.json()
        assert (after["url"], after["event_types"], after["team_id"], after["enabled"]) == (
            "http://127.0.0.1:9/other",
            ["sla.*", "lead.routed"],
            team,
            False,
        )
        assert after["filters"] == {"channels": ["inbound"]} and after["secret"] is None
        assert (await notify.get(path)).json() == after

        cleared = await notify.patch(
            path, json={"team_id": None, "filters": None, "enabled": True}, headers=ADMIN
        )
        assert cleared.status_code == 200, cleared.text
        assert (cleared.json()["team_id"], cleared.json()["filters"]) == (None, None)
        assert cleared.json()["url"] == "http://127.0.0.1:9/other"  # what was not given stays

        [second, first, _] = await audit_of(notify, endpoint["id"])
        assert (first["action"], second["action"]) == ("changed", "changed")
        assert first["before"]["event_types"] == ["lead.routed"]
        assert first["after"]["event_types"] == ["sla.*", "lead.routed"]
        assert second["before"]["enabled"] is False and second["after"]["enabled"] is True


async def test_a_change_is_refused_as_a_creation_would_be_and_nothing_is_changed(stack):
    settings = await stack.isolated_settings()
    async with service_client("notify", settings) as notify:
        endpoint = await create(notify)
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        unknown_type = await notify.patch(path, json={"event_types": ["lead.eaten"]}, headers=ADMIN)
        no_url = await notify.patch(path, json={"url": None}, headers=ADMIN)
        bad_filter = await notify.patch(path, json={"filters": {"slas": ["nap"]}}, headers=ADMIN)
        stranger = await notify.patch(path, json={"secret": "x"}, headers=ADMIN)
        reader = await notify.patch(path, json={"enabled": False}, headers=CONFIG_READER)
        missing = await notify.patch(
            f"/v1/webhook-endpoints/{uuid.uuid4()}", json={"enabled": False}, headers=ADMIN
        )
        unchanged = (await notify.get(path)).json()
        entries = await audit_of(notify, endpoint["id"])
    assert unknown_type.status_code == 422
    assert "event_types" in unknown_type.text and "lead.eaten" in unknown_type.text
    assert no_url.status_code == 422 and no_url.json()["field"] == "url"
    assert bad_filter.status_code == 422 and "slas" in bad_filter.text
    assert stranger.status_code == 422 and "secret" in stranger.text
    assert reader.status_code == 403
    assert missing.status_code == 404
    assert unchanged == {**endpoint, "secret": None}
    assert [e["action"] for e in entries] == ["created"]


async def test_deleting_an_endpoint_deliveries_wait_for_is_a_409_unless_forced(stack):
    settings = await stack.isolated_settings()
    async with service_client("notify", settings) as notify:
        endpoint = await create(notify, event_types=["sla.breached"])
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        await publish_events(settings, TOPIC_SLA, [sample_breach()])

        async def pending() -> list | None:
            listed = await notify.get(
                "/v1/deliveries", params={"endpoint_id": endpoint["id"], "state": "pending"}
            )
            return listed.json()["items"] or None

        [waiting] = await eventually(pending, timeout=60)
        refused = await notify.delete(path, headers=ADMIN)
        assert refused.status_code == 409, refused.text
        assert refused.json()["uses"] == {"pending_deliveries": 1}
        assert "1 pending delivery" in refused.json()["detail"]
        assert (await notify.get(path)).status_code == 200  # nothing was deleted

        forced = await notify.delete(path, params={"force": "true"}, headers=ADMIN)
        assert forced.status_code == 204, forced.text
        assert (await notify.get(path)).status_code == 404
        gone = await notify.get("/v1/deliveries", params={"endpoint_id": endpoint["id"]})
        assert gone.json()["items"] == []
        [deleted, _] = await audit_of(notify, endpoint["id"])
        assert deleted["action"] == "deleted" and deleted["after"] is None
        assert deleted["before"]["pending_cancelled"] == 1
        assert deleted["before"]["url"] == CLOSED
        assert (await notify.delete(path, headers=ADMIN)).status_code == 404
    assert waiting["event_type"] == "sla.breached"


async def test_an_endpoint_nothing_waits_for_is_deleted_at_once(stack):
    settings = await stack.isolated_settings()
    async with service_client("notify", settings) as notify:
        endpoint = await create(notify)
        path = f"/v1/webhook-endpoints/{endpoint['id']}"
        assert (await notify.delete(path, headers=CONFIG_READER)).status_code == 403
        deleted = await notify.delete(path, headers=ADMIN)
        assert deleted.status_code == 204, deleted.text
        listed = await notify.get("/v1/webhook-endpoints")
    assert endpoint["id"] not in {e["id"] for e in listed.json()["items"]}
