"""The audit log over the real PostgreSQL: every configuration change is recorded in the
transaction of the change (who, what, before and after, personal data and secrets redacted), a
change that fails leaves no entry, the database refuses to alter or remove an entry, and
`GET /v1/audit` pages through it with filters on every service."""

import asyncpg
import pytest
from support.harness import ADMIN, NO_KEY, READER, SALES, service_client

SERVICES = ("ingest", "scoring", "routing", "sla-timer", "feedback", "notify")


def plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


async def test_each_change_of_teams_reps_and_rules_is_recorded_with_who_before_and_after(
    settings,
):
    async with service_client("routing", settings) as routing:
        team = await routing.post("/v1/teams", json={"name": "emea"}, headers=ADMIN)
        team_id = team.json()["id"]
        renamed = await routing.patch(
            f"/v1/teams/{team_id}", json={"name": "emea-north"}, headers=ADMIN
        )
        assert renamed.status_code == 200, renamed.text
        rep = await routing.post(
            "/v1/reps",
            json={"name": "Grace Hopper", "email": "grace@example.com", "team_id": team_id},
            headers=ADMIN,
        )
        rep_id = rep.json()["id"]
        await routing.patch(f"/v1/reps/{rep_id}", json={"capacity": 7}, headers=ADMIN)
        rule = await routing.post(
            "/v1/rules",
            json={"name": "poland", "team_id": team_id, "priority": 1,
                  "conditions": {"country": ["PL"]}},
            headers=ADMIN,
        )  # fmt: skip
        assert rule.status_code == 201, rule.text
        rule_id = rule.json()["id"]
        assert (await routing.delete(f"/v1/rules/{rule_id}", headers=ADMIN)).status_code == 204

        log = await routing.get("/v1/audit", headers=ADMIN)
        assert log.status_code == 200, log.text
        entries = log.json()["items"]

    # newest first, one entry per change
    assert [(e["action"], e["entity"], e["entity_id"]) for e in entries] == [
        ("deleted", "rule", rule_id),
        ("created", "rule", rule_id),
        ("changed", "rep", rep_id),
        ("created", "rep", rep_id),
        ("changed", "team", team_id),
        ("created", "team", team_id),
    ]
    assert {e["actor"] for e in entries} == {"key:admin"}
    deleted, created_rule, changed_rep, created_rep, renamed_team, created_team = entries
    assert created_team["before"] is None and created_team["after"]["id"] == team_id
    assert (renamed_team["before"]["id"], renamed_team["after"]["id"]) == (team_id, team_id)
    assert renamed_team["before"]["name"] == "[redacted]"  # a team's name is a `name` field
    assert changed_rep["before"]["capacity"] != 7 and changed_rep["after"]["capacity"] == 7
    # a rep's name and e-mail are personal data: never in the log
    assert created_rep["after"]["email"] == "[redacted]"
    assert created_rep["after"]["team_id"] == team_id
    assert "grace" not in str(entries).lower() and "hopper" not in str(entries).lower()
    assert deleted["after"] is None and deleted["before"]["conditions"] == {"country": ["PL"]}


async def test_a_change_that_fails_leaves_no_entry(settings):
    async with service_client("routing", settings) as routing:
        await routing.post("/v1/teams", json={"name": "dach"}, headers=ADMIN)
        again = await routing.post("/v1/teams", json={"name": "dach"}, headers=ADMIN)
        assert again.status_code == 409
        missing = await routing.patch(
            "/v1/reps/00000000-0000-4000-8000-000000000000", json={"capacity": 3}, headers=ADMIN
        )
        assert missing.status_code == 404
        entries = (await routing.get("/v1/audit", headers=ADMIN)).json()["items"]
    assert [(e["action"], e["entity"]) for e in entries] == [("created", "team")]


async def test_the_database_refuses_to_change_or_remove_an_entry(settings):
    async with service_client("routing", settings) as routing:
        await routing.post("/v1/teams", json={"name": "nordics"}, headers=ADMIN)
    conn = await asyncpg.connect(plain(settings.database_url))
    try:
        assert await conn.fetchval("SELECT count(*) FROM routing.audit_log") == 1
        for statement in (
            "UPDATE routing.audit_log SET actor = 'someone else'",
            "DELETE FROM routing.audit_log",
            "TRUNCATE routing.audit_log",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await conn.execute(statement)
        assert await conn.fetchval("SELECT actor FROM routing.audit_log") == "key:admin"
    finally:
        await conn.close()


async def test_the_log_pages_with_a_cursor_and_filters(settings):
    async with service_client("routing", settings) as routing:
        ids = []
        for name in ("a", "b", "c", "d", "e"):
            made = await routing.post("/v1/teams", json={"name": f"team-{name}"}, headers=ADMIN)
            ids.append(made.json()["id"])
        await routing.patch(f"/v1/teams/{ids[0]}", json={"strategy": "weighted"}, headers=ADMIN)

        first = await routing.get("/v1/audit", params={"limit": 2}, headers=ADMIN)
        assert first.status_code == 200
        page = first.json()
        assert len(page["items"]) == 2 and page["next_cursor"]
        assert 'rel="next"' in first.headers["link"]
        seen = [e["id"] for e in page["items"]]
        while page["next_cursor"]:
            more = await routing.get(
                "/v1/audit", params={"limit": 2, "cursor": page["next_cursor"]}, headers=ADMIN
            )
            page = more.json()
            seen += [e["id"] for e in page["items"]]
        assert len(seen) == 6 and seen == sorted(seen, reverse=True)

        changed = await routing.get("/v1/audit", params={"action": "changed"}, headers=ADMIN)
        assert [e["entity_id"] for e in changed.json()["items"]] == [ids[0]]
        of_one = await routing.get(
            "/v1/audit", params={"entity": "team", "entity_id": ids[0]}, headers=ADMIN
        )
        assert [e["action"] for e in of_one.json()["items"]] == ["changed", "created"]

        forged = await routing.get("/v1/audit", params={"cursor": "not-a-cursor"}, headers=ADMIN)
        assert forged.status_code == 422
        assert forged.headers["content-type"].startswith("application/problem+json")
        assert "cursor" in forged.text
        assert (await routing.get("/v1/audit", headers=SALES)).status_code == 403
        assert (await routing.get("/v1/audit", headers=READER)).status_code == 403
        assert (await routing.get("/v1/audit", headers=NO_KEY)).status_code == 401


@pytest.mark.parametrize("service", SERVICES)
async def test_every_service_answers_its_audit_log(settings, service):
    async with service_client(service, settings) as client:
        answer = await client.get("/v1/audit", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"items": [], "next_cursor": None}


async def test_webhook_endpoints_are_audited_without_their_secrets(stack):
    settings = await stack.isolated_settings(webhook_allow_private=True)
    secret = "whsec_" + "s3cret" * 6
    async with service_client("notify", settings) as notify:
        made = await notify.post(
            "/v1/webhook-endpoints",
            json={"url": "http://127.0.0.1:9/hook", "event_types": ["lead.routed"],
                  "secret": secret},
            headers=ADMIN,
        )  # fmt: skip
        assert made.status_code == 201, made.text
        endpoint_id = made.json()["id"]
        rotated = await notify.post(
            f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret", json={}, headers=ADMIN
        )
        assert rotated.status_code == 200, rotated.text
        new_secret = rotated.json()["secret"]
        dropped = await notify.delete(
            f"/v1/webhook-endpoints/{endpoint_id}/previous-secret", headers=ADMIN
        )
        assert dropped.status_code == 204
        entries = (await notify.get("/v1/audit", headers=ADMIN)).json()["items"]
    assert [(e["action"], e["entity"], e["entity_id"]) for e in entries] == [
        ("changed", "webhook-endpoint", endpoint_id),
        ("changed", "webhook-endpoint", endpoint_id),
        ("created", "webhook-endpoint", endpoint_id),
    ]
    assert entries[2]["after"]["secret"] == "[redacted]"
    assert entries[2]["after"]["url"] == "http://127.0.0.1:9/hook"
    assert secret not in str(entries) and new_secret not in str(entries)


async def test_an_erasure_is_audited_once_with_no_personal_data(settings):
    async with service_client("ingest", settings) as ingest:
        made = await ingest.post(
            "/v1/leads",
            json={"email": "erase.me@forgotten.example", "first_name": "Erase",
                  "last_name": "Me", "phone": "+48 600 100 200"},
            headers=ADMIN,
        )  # fmt: skip
        assert made.status_code == 202, made.text
        lead_id = made.json()["lead_id"]
        for _ in range(2):  # erasing again changes nothing
            erased = await ingest.delete(f"/v1/leads/{lead_id}", headers=ADMIN)
            assert erased.status_code == 202, erased.text
        entries = (await ingest.get("/v1/audit", headers=ADMIN)).json()["items"]
    assert [(e["action"], e["entity"], e["entity_id"], e["actor"]) for e in entries] == [
        ("erased", "lead", lead_id, "key:admin")
    ]
    assert entries[0]["after"] == {"erased_lead_ids": [lead_id]}
    assert "forgotten" not in str(entries) and "600" not in str(entries)
