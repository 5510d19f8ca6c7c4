"""Keys issued through the API (real PostgreSQL and broker, the six services in this process):
a key made on feedback works in every service within seconds, a rotation keeps the old key for
its grace period beside the new one, a revoked key stops working everywhere within 5 seconds,
and neither a key nor its digest is ever shown again, listed or audited."""

import time

import pytest
from support.harness import ADMIN, NO_KEY, READER, eventually, service_clients


@pytest.fixture
async def clients(settings):
    async with service_clients(settings) as clients:
        yield clients


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def statuses(clients, key: str) -> dict[str, int]:
    """What each service answers the key on its list of keys (an `admin` read)."""
    return {
        name: (await client.get("/v1/keys", headers=bearer(key))).status_code
        for name, client in clients.items()
    }


async def everywhere(clients, key: str, status: int) -> dict[str, int]:
    async def check():
        seen = await statuses(clients, key)
        return seen if set(seen.values()) == {status} else None

    return await eventually(check, timeout=30, interval=0.1)


async def test_a_key_made_on_feedback_works_everywhere_and_is_shown_only_once(clients):
    feedback = clients["feedback"]
    made = await feedback.post(
        "/v1/keys", json={"name": "ops console", "scopes": ["admin"]}, headers=ADMIN
    )
    assert made.status_code == 201, made.text
    body = made.json()
    key, key_id = body["key"], body["id"]
    assert key.startswith("lf_") and len(key) > 40
    assert (body["name"], body["scopes"], body["created_by"]) == (
        "ops console",
        ["admin"],
        "key:admin",
    )
    assert "sha256" not in body

    await everywhere(clients, key, 200)
    for name, client in clients.items():
        listed = (await client.get("/v1/keys", headers=ADMIN)).json()["items"]
        assert [k["id"] for k in listed] == [key_id], name
        assert key not in str(listed) and "sha256" not in str(listed)

    # the key is what the audit log names for what it changes
    team = await clients["routing"].post("/v1/teams", json={"name": "nordics"}, headers=bearer(key))
    assert team.status_code == 201, team.text
    entries = (await clients["routing"].get("/v1/audit", headers=ADMIN)).json()["items"]
    assert entries[0]["actor"] == "key:ops console"

    async def used_on_routing():
        listed = (await clients["routing"].get("/v1/keys", headers=ADMIN)).json()["items"]
        return listed[0]["last_used_at"]

    assert await eventually(used_on_routing, timeout=15)
    audit = (await feedback.get("/v1/audit", headers=ADMIN)).json()["items"]
    assert [(e["action"], e["entity"]) for e in audit] == [("created", "api-key")]
    assert key not in str(audit)


async def test_a_rotation_keeps_the_old_key_for_its_grace_and_a_revoked_key_stops_within_5_s(
    clients,
):
    feedback = clients["feedback"]
    made = await feedback.post(
        "/v1/keys", json={"name": "crm sync", "scopes": ["admin"]}, headers=ADMIN
    )
    old, old_id = made.json()["key"], made.json()["id"]
    await everywhere(clients, old, 200)

    rotated = await feedback.post(
        f"/v1/keys/{old_id}/rotate", json={"grace_seconds": 3600}, headers=ADMIN
    )
    assert rotated.status_code == 201, rotated.text
    new, new_id = rotated.json()["key"], rotated.json()["id"]
    assert new != old and rotated.json()["name"] == "crm sync"
    await everywhere(clients, new, 200)
    assert set((await statuses(clients, old)).values()) == {200}  # the grace period

    revoked = await feedback.delete(f"/v1/keys/{old_id}", headers=ADMIN)
    assert revoked.status_code == 204
    started = time.monotonic()
    await everywhere(clients, old, 401)
    took = time.monotonic() - started
    assert took < 5, f"the revoked key still worked somewhere {took:.1f} s later"
    assert set((await statuses(clients, new)).values()) == {200}
    again = await feedback.delete(f"/v1/keys/{old_id}", headers=ADMIN)
    assert again.status_code == 204  # revoking again changes nothing

    audit = (await feedback.get("/v1/audit", headers=ADMIN)).json()["items"]
    assert [(e["action"], e["entity_id"]) for e in audit] == [
        ("revoked", old_id),
        ("created", new_id),
        ("changed", old_id),
        ("created", old_id),
    ]
    assert audit[1]["after"]["rotates"] == old_id
    assert old not in str(audit) and new not in str(audit)
    # the bootstrap key of the settings still works beside them
    assert set((await statuses(clients, "lf_dev_key")).values()) == {200}


async def test_a_rotation_without_grace_ends_the_old_key_at_once(clients):
    feedback = clients["feedback"]
    made = await feedback.post(
        "/v1/keys", json={"name": "zapier", "scopes": ["admin"]}, headers=ADMIN
    )
    old, old_id = made.json()["key"], made.json()["id"]
    await everywhere(clients, old, 200)
    rotated = await feedback.post(
        f"/v1/keys/{old_id}/rotate", json={"grace_seconds": 0}, headers=ADMIN
    )
    await everywhere(clients, rotated.json()["key"], 200)
    await everywhere(clients, old, 401)


async def test_bad_requests_about_keys_name_the_field_and_change_nothing(clients):
    feedback = clients["feedback"]
    unknown_scope = await feedback.post(
        "/v1/keys", json={"name": "x", "scopes": ["leads:erase"]}, headers=ADMIN
    )
    assert unknown_scope.status_code == 422
    assert unknown_scope.headers["content-type"].startswith("application/problem+json")
    assert "scopes" in unknown_scope.text
    no_scope = await feedback.post("/v1/keys", json={"name": "x", "scopes": []}, headers=ADMIN)
    assert no_scope.status_code == 422 and "scopes" in no_scope.text
    ended = await feedback.post(
        "/v1/keys",
        json={"name": "x", "scopes": ["config:read"], "expires_at": "2020-01-01T00:00:00Z"},
        headers=ADMIN,
    )
    assert ended.status_code == 422 and "expires_at" in ended.text
    missing = "00000000-0000-4000-8000-000000000000"
    assert (await feedback.delete(f"/v1/keys/{missing}", headers=ADMIN)).status_code == 404
    rotate_missing = await feedback.post(f"/v1/keys/{missing}/rotate", json={}, headers=ADMIN)
    assert rotate_missing.status_code == 404
    # only admin issues keys; only the issuing service has the endpoint
    assert (
        await feedback.post("/v1/keys", json={"name": "x", "scopes": ["admin"]}, headers=READER)
    ).status_code == 403
    assert (
        await feedback.post("/v1/keys", json={"name": "x", "scopes": ["admin"]}, headers=NO_KEY)
    ).status_code == 401
    elsewhere = await clients["routing"].post(
        "/v1/keys", json={"name": "x", "scopes": ["admin"]}, headers=ADMIN
    )
    assert elsewhere.status_code == 405
    assert (await feedback.get("/v1/keys", headers=ADMIN)).json()["items"] == []
    assert (await feedback.get("/v1/audit", headers=ADMIN)).json()["items"] == []
