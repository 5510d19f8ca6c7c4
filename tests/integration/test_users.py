"""People's accounts on feedback (real PostgreSQL and broker): an admin key makes, lists, changes
and disables them through `/v1/users`, each change in the audit log without the password or its
hash; `leadflow users create` makes one from the command line; only an admin key may."""

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from support.harness import ADMIN, READER, service_client

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery staple"


@pytest.fixture
async def feedback(settings):
    async with service_client("feedback", settings) as client:
        yield client


async def test_an_admin_makes_lists_changes_and_disables_a_person(feedback):
    made = await feedback.post(
        "/v1/users",
        json={"email": "Ana.Nowak@Example.com", "name": "Ana Nowak", "role": "viewer",
              "password": PASSWORD},
        headers=ADMIN,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    person = made.json()
    assert (person["email"], person["role"], person["has_password"]) == (
        "ana.nowak@example.com", "viewer", True,
    )  # fmt: skip
    assert "password" not in person and "password_hash" not in person
    listed = (await feedback.get("/v1/users", headers=ADMIN)).json()["items"]
    assert [p["id"] for p in listed] == [person["id"]]
    changed = await feedback.patch(
        f"/v1/users/{person['id']}",
        json={"role": "sales_manager", "teams": ["Inbound CEE"]},
        headers=ADMIN,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["role"], changed.json()["teams"]) == ("sales_manager", ["Inbound CEE"])
    disabled = await feedback.patch(
        f"/v1/users/{person['id']}", json={"disabled": True}, headers=ADMIN
    )
    assert disabled.json()["disabled_at"] is not None


async def test_every_change_of_a_person_is_audited_without_the_password(feedback):
    made = await feedback.post(
        "/v1/users",
        json={"email": "ops@example.com", "name": "Ops", "role": "admin", "password": PASSWORD},
        headers=ADMIN,
    )
    user_id = made.json()["id"]
    await feedback.patch(f"/v1/users/{user_id}", json={"password": PASSWORD + " 2"}, headers=ADMIN)
    audit = await feedback.get(
        "/v1/audit", params={"entity": "user", "entity_id": user_id}, headers=ADMIN
    )
    entries = audit.json()["items"]
    assert [e["action"] for e in entries] == ["changed", "created"]
    assert all(e["actor"] == "key:admin" for e in entries)
    assert entries[0]["after"]["password_changed"] is True
    text = audit.text
    assert PASSWORD not in text and "argon2" not in text and "ops@example.com" not in text


async def test_a_second_person_with_the_same_email_is_refused(feedback):
    body = {"email": "same@example.com", "name": "One", "role": "viewer"}
    assert (await feedback.post("/v1/users", json=body, headers=ADMIN)).status_code == 201
    again = await feedback.post(
        "/v1/users", json={**body, "email": "SAME@example.com"}, headers=ADMIN
    )
    assert again.status_code == 409 and again.json()["field"] == "email"


async def test_a_short_password_and_an_unknown_role_are_refused_naming_the_field(feedback):
    short = await feedback.post(
        "/v1/users",
        json={"email": "a@example.com", "name": "A", "role": "viewer", "password": "short"},
        headers=ADMIN,
    )
    assert short.status_code == 422 and short.json()["errors"][0]["field"] == "password"
    role = await feedback.post(
        "/v1/users", json={"email": "b@example.com", "name": "B", "role": "root"}, headers=ADMIN
    )
    assert role.status_code == 422 and role.json()["errors"][0]["field"] == "role"


async def test_a_value_the_database_cannot_store_is_refused_naming_it(feedback):
    body = r'{"email": "c@example.com", "name": "C\u0000", "role": "viewer", "teams": ["T\ud800"]}'
    nul = await feedback.post(
        "/v1/users",
        content=body.encode(),
        headers={**ADMIN, "Content-Type": "application/json"},
    )
    assert nul.status_code == 422, nul.text
    assert {e["field"] for e in nul.json()["errors"]} >= {"name"}
    assert (await feedback.get("/v1/users", headers=ADMIN)).json()["items"] == []


async def test_only_an_admin_key_manages_people(feedback):
    for method, path in (("get", "/v1/users"), ("post", "/v1/users")):
        refused = await feedback.request(
            method, path, json={} if method == "post" else None, headers=READER
        )
        assert refused.status_code == 403 and refused.json()["scope"] == "admin"


async def test_leadflow_users_create_reads_the_password_from_stdin(settings, unused_tcp_port):
    import uvicorn
    from leadflow.service import create_app
    from leadflow_tools.registry import service_spec

    app = create_app(service_spec("feedback"), settings)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=unused_tcp_port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{unused_tcp_port}"
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "leadflow_tools.cli", "users", "--url", url, "create",
             "--email", "cli@example.com", "--name", "From CLI", "--role", "marketing_ops",
             "--password-stdin"],
            input=PASSWORD + "\n", capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "email: cli@example.com" in done.stdout
        assert f"{url}/login with the password given" in done.stdout
        assert PASSWORD not in done.stdout + done.stderr
        listed = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "leadflow_tools.cli", "users", "--url", url, "list"],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
        assert "cli@example.com" in listed.stdout and "marketing_ops" in listed.stdout
    finally:
        server.should_exit = True
        await serving
