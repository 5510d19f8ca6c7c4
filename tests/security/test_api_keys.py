"""Every write endpoint of every service takes only a key holding its scope, and keys are kept as
SHA-256 digests only: never in the database, in another process's environment or in an answer.

The write endpoints are read from each service's OpenAPI, so a new one is covered (and expected
to need `admin`) until it is given its own row below."""

import uuid
from contextlib import AsyncExitStack

import pytest
import sqlalchemy as sa
from leadflow.db import Database
from leadflow.settings import DEV_API_KEY
from leadflow_tools.supervisor import settings_env
from support.harness import ADMIN, MARKETO, SALES, SOURCE, TEST_KEYS, sample_lead, service_client

WRITE_METHODS = ("post", "put", "patch", "delete")
KEYS = {"admin": ADMIN, "source": SOURCE, "sales": SALES, "marketo": MARKETO}
HOLDERS = {  # scope -> the test keys that hold it
    "leads:write": {"admin", "source", "marketo"},
    "sales:write": {"admin", "sales"},
    "alerts:write": {"admin"},
    "admin": {"admin"},
}
# Writes that take no API key: platform webhooks carry their own signature (tests/integration/
# test_ingest.py checks it), and pure computations change no state.
SIGNED = {("ingest", "/v1/sources/hubspot/webhook")}
COMPUTATIONS = {("routing", "/v1/routing:dry-run"), ("feedback", "/v1/plan")}
SCOPES = {
    ("ingest", "/v1/leads"): "leads:write",
    ("ingest", "/v1/leads:batch"): "leads:write",
    ("ingest", "/v1/activities"): "leads:write",
    ("feedback", "/v1/leads/{lead_id}/attempts"): "sales:write",
    ("feedback", "/v1/leads/{lead_id}/status"): "sales:write",
    ("notify", "/v1/alerts/alertmanager"): "alerts:write",
}  # everything else: admin
SERVICES = ("ingest", "scoring", "routing", "sla-timer", "feedback", "notify")


@pytest.fixture
async def settings(stack):
    return await stack.isolated_settings(hubspot_client_secret="hubspot-app-secret")


@pytest.fixture
async def clients(settings):
    async with AsyncExitStack() as stack:
        yield {
            name: await stack.enter_async_context(service_client(name, settings))
            for name in SERVICES
        }


def write_routes(clients) -> list[tuple[str, str, str]]:
    routes = []
    for name, client in clients.items():
        for path, operations in client.app.openapi()["paths"].items():
            routes += [(name, method, path) for method in operations if method in WRITE_METHODS]
    return routes


def concrete(path: str) -> str:
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        path = path[:start] + str(uuid.uuid4()) + path[end + 1 :]
    return path


async def test_every_write_endpoint_takes_only_keys_with_its_scope(clients):
    routes = write_routes(clients)
    assert len(routes) >= 21  # the OpenAPI was read, not an empty list
    wrong = []
    for name, method, path in routes:
        client, url = clients[name], concrete(path)
        if (name, path) in SIGNED | COMPUTATIONS:
            continue
        scope = SCOPES.get((name, path), "admin")
        anonymous = await client.request(method, url, json={})
        if anonymous.status_code != 401:
            wrong.append((name, method, path, "no key", anonymous.status_code))
        for key, headers in KEYS.items():
            response = await client.request(method, url, json={}, headers=headers)
            allowed = key in HOLDERS[scope]
            refused = response.status_code == 403
            if allowed == refused or response.status_code == 401:
                wrong.append((name, method, path, key, response.status_code))
            if refused:
                assert f"lacks the scope '{scope}'" in response.json()["detail"]
    assert not wrong, wrong


async def test_signed_platform_webhooks_refuse_api_keys_without_a_signature(clients):
    for name, path in SIGNED:
        for headers in (ADMIN, SOURCE, {}):
            response = await clients[name].post(path, json=[], headers=headers)
            assert response.status_code == 401, (path, headers, response.text)


async def test_a_source_key_cannot_write_status_and_a_sales_key_cannot_create_leads(clients):
    created = await clients["ingest"].post("/v1/leads", json=sample_lead(1), headers=SOURCE)
    assert created.status_code == 202
    lead_id = created.json()["lead_id"]
    status = await clients["feedback"].post(
        f"/v1/leads/{lead_id}/status", json={"status": "working"}, headers=SOURCE
    )
    assert status.status_code == 403, status.text
    lead = await clients["ingest"].post("/v1/leads", json=sample_lead(2), headers=SALES)
    assert lead.status_code == 403, lead.text
    batch = await clients["ingest"].post(
        "/v1/leads:batch", json={"leads": [sample_lead(3)]}, headers=SALES
    )
    assert batch.status_code == 403, batch.text
    found = await clients["ingest"].get(f"/v1/leads/{lead_id}")
    assert found.status_code == 200


async def test_plain_keys_are_nowhere_but_in_the_callers_hands(clients, settings):
    plain = [spec.key for spec in TEST_KEYS]
    assert DEV_API_KEY in plain and all(plain)
    # Use every key for real writes, and once each as a wrong key, so each had every chance to leak.
    for n, (key, headers) in enumerate(KEYS.items()):
        if key != "sales":
            await clients["ingest"].post("/v1/leads", json=sample_lead(n), headers=headers)
        await clients["ingest"].post(
            "/v1/leads", json=sample_lead(n), headers={**headers, "Idempotency-Key": f"k{n}"}
        )
        answer = await clients["ingest"].post(
            "/v1/leads", json=sample_lead(n), headers={"X-API-Key": headers["Authorization"][7:] + "x"}
        )
        assert answer.status_code == 401
        assert headers["Authorization"][7:] not in answer.text
    # another process gets digests only
    environment = settings_env(settings)
    for key in plain:
        assert key not in str(environment)
    assert all(spec.sha256 in environment["LEADFLOW_API_KEYS"] for spec in TEST_KEYS)
    # and no table of any schema holds a plain key
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            tables = (
                await session.execute(
                    sa.text(
                        "SELECT table_schema, table_name FROM information_schema.tables "
                        "WHERE table_schema IN ('ingest','scoring','routing','sla_timer','feedback')"
                    )
                )
            ).all()
            assert len(tables) >= 10
            leaks = []
            rows = 0
            for schema, table in tables:
                dump = (
                    await session.execute(
                        sa.text(f'SELECT t::text FROM "{schema}"."{table}" t')
                    )
                ).scalars().all()
                rows += len(dump)
                leaks += [(schema, table) for row in dump for key in plain if key in row]
    finally:
        await db.dispose()
    assert rows > 0  # the writes above are in there
    assert not leaks, leaks
