"""Every endpoint of every service, reads included, takes only a key holding the scope its
OpenAPI operation declares, and keys are kept as SHA-256 digests only: never in the database, in
another process's environment or in an answer.

The routes and their scopes are read from each service's OpenAPI document (the security
requirement of each operation names its scope), so a new endpoint is covered as soon as it
exists; one that declares no security must be in PUBLIC below."""

import base64
import json
import uuid

import pytest
import sqlalchemy as sa
from leadflow.db import Database
from leadflow.settings import DEV_API_KEY
from leadflow_tools.supervisor import settings_env
from support.harness import (
    ADMIN,
    NO_KEY,
    REPORTS_READER,
    SALES,
    SOURCE,
    TEST_KEYS,
    eventually,
    sample_lead,
    service_clients,
)

KEYS = {spec.name: {"Authorization": f"Bearer {spec.key}"} for spec in TEST_KEYS}
SPECS = {spec.name: spec for spec in TEST_KEYS}
# Operations that take no API key: probes and metrics (no personal data, tests/e2e/
# test_metrics_after_run.py), and platform webhooks, which carry their own signature
# (tests/integration/test_ingest.py checks it), or an organisation id checked against the
# configuration (Salesforce's Outbound Messages; tests/integration/test_crm_back.py).
PUBLIC = {"/healthz", "/readyz", "/metrics"}
SIGNED = {
    ("ingest", "/v1/sources/hubspot/webhook"),
    ("ingest", "/v1/sources/salesforce/outbound-messages"),
    ("ingest", "/v1/sources/webhooks/{name}"),
}


# A sales tool's webhook signed with an HMAC (connectors file), to show a key is no signature.
ACME = {"webhooks": [{
    "name": "acme", "signature": {"header": "X-Acme-Signature", "secret_env": "ACME_SECRET"},
    "record_id": "id", "lead": {"by": "email", "path": "email"},
    "mappings": [{"value": "type", "values": {"call": {"kind": "attempt"}}}],
}]}  # fmt: skip
# The signed ones as requests name them, besides the HubSpot webhook.
SIGNED_AT = {"/v1/sources/webhooks/{name}": "/v1/sources/webhooks/acme"}


@pytest.fixture
async def settings(stack, tmp_path, monkeypatch):
    connectors = tmp_path / "connectors.yaml"
    connectors.write_text(json.dumps({"connectors": ACME}))
    monkeypatch.setenv("ACME_SECRET", "acme-shared-secret")
    return await stack.isolated_settings(
        hubspot_client_secret="hubspot-app-secret", connectors_file=str(connectors)
    )


@pytest.fixture
async def clients(settings):
    async with service_clients(settings) as clients:
        yield clients


def operations(clients) -> list[tuple[str, str, str, dict]]:
    """(service, method, path, operation) of every operation of every service's OpenAPI."""
    return [
        (name, method, path, operation)
        for name, client in clients.items()
        for path, item in client.app.openapi()["paths"].items()
        for method, operation in item.items()
    ]


def declared_scope(operation: dict) -> str | None:
    """The one scope every accepted scheme of the operation asks for; None: no key needed."""
    requirements = operation.get("security")
    if not requirements:
        return None
    scopes = {scope for requirement in requirements for s in requirement.values() for scope in s}
    assert len(scopes) == 1, (operation.get("operationId"), requirements)
    return scopes.pop()


def secured(clients) -> list[tuple[str, str, str, str, bool]]:
    """(service, method, path, scope, is a page) of every operation that needs a key."""
    routes = []
    for name, method, path, operation in operations(clients):
        scope = declared_scope(operation)
        if scope is None:
            assert path in PUBLIC or (name, path) in SIGNED, f"{name} {method} {path} takes no key"
            continue
        schemes = {scheme for requirement in operation["security"] for scheme in requirement}
        routes.append((name, method, path, scope, "basicKey" in schemes))
    return routes


def concrete(path: str, lead_id: str | None = None) -> str:
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        value = lead_id if path[start:end] == "{lead_id" and lead_id else str(uuid.uuid4())
        path = path[:start] + value + path[end + 1 :]
    return path


def basic(key: str, user: str = "anyone") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{key}".encode()).decode()}


async def test_every_operation_declares_a_scope_and_takes_only_keys_holding_it(clients):
    routes = secured(clients)
    reads = [r for r in routes if r[1] == "get"]
    assert len(routes) >= 40 and len(reads) >= 18  # the OpenAPI was read, reads included
    wrong = []
    for name, method, path, scope, page in routes:
        client, url = clients[name], concrete(path)
        body = {} if method != "get" else None
        anonymous = await client.request(method, url, json=body, headers=NO_KEY)
        challenge = 'Basic realm="Leadflow"' if page else "Bearer"
        if (anonymous.status_code, anonymous.headers.get("www-authenticate")) != (401, challenge):
            wrong.append((name, method, path, "no key", anonymous.status_code))
        for key, headers in KEYS.items():
            response = await client.request(method, url, json=body, headers=headers)
            allowed = SPECS[key].allows(scope)
            if allowed and response.status_code in (401, 403):
                wrong.append((name, method, path, key, response.status_code, response.text))
            if not allowed:
                if response.status_code != 403:
                    wrong.append((name, method, path, key, response.status_code))
                    continue
                assert response.headers["content-type"] == "application/problem+json"
                problem = response.json()
                assert problem["scope"] == scope
                assert f"lacks the scope '{scope}'" in problem["detail"]
    assert not wrong, wrong


async def test_a_refusal_says_nothing_of_whether_the_lead_exists(clients):
    created = await clients["ingest"].post("/v1/leads", json=sample_lead(7), headers=SOURCE)
    assert created.status_code == 202
    lead_id = created.json()["lead_id"]

    async def known_everywhere() -> bool:
        # the lead reached every service that keeps it, so a lookup would find it
        checks = [
            ("scoring", f"/v1/leads/{lead_id}/score"),
            ("feedback", f"/v1/leads/{lead_id}/lifecycle"),
        ]
        answers = [await clients[name].get(url, headers=ADMIN) for name, url in checks]
        return all(a.status_code == 200 for a in answers)

    await eventually(known_everywhere, timeout=60)
    about_a_lead = [r for r in secured(clients) if "{lead_id}" in r[2]]
    assert len(about_a_lead) >= 8
    for name, method, path, scope, _ in about_a_lead:
        lacking = next(h for k, h in KEYS.items() if not SPECS[k].allows(scope))
        body = {} if method != "get" else None
        for headers in (NO_KEY, lacking, basic("lf_not_a_key")):
            answers = []
            for lead in (lead_id, str(uuid.uuid4())):
                response = await clients[name].request(
                    method, concrete(path, lead), json=body, headers=headers
                )
                problem = {k: v for k, v in response.json().items() if k != "instance"}
                answers.append(
                    (response.status_code, problem, response.headers.get("www-authenticate"))
                )
            known, unknown = answers
            assert known == unknown, (name, method, path, headers, known, unknown)
            assert known[0] in (401, 403), (name, method, path, known)


async def test_pages_take_a_key_as_the_password_of_http_basic(clients):
    feedback = clients["feedback"]
    for user in ("anyone", "", "ana@example.com"):
        page = await feedback.get("/review", headers=basic(DEV_API_KEY, user))
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
    reader = await feedback.get("/review", headers=basic("lf_test_reports_reader"))
    assert reader.status_code == 200, reader.text
    prompted = await feedback.get("/review", headers=NO_KEY)
    assert prompted.status_code == 401
    assert prompted.headers["www-authenticate"] == 'Basic realm="Leadflow"'
    wrong = await feedback.get("/review", headers=basic("lf_not_a_key"))
    assert wrong.status_code == 401  # the browser asks again
    assert wrong.headers["www-authenticate"] == 'Basic realm="Leadflow"'
    lacking = await feedback.get("/review", headers=basic("lf_test_sales"))
    assert lacking.status_code == 403 and lacking.json()["scope"] == "reports:read"
    # Bearer and X-API-Key open pages too; Basic opens no API operation
    assert (await feedback.get("/review", headers=REPORTS_READER)).status_code == 200
    by_header = await feedback.get("/review", headers={"X-API-Key": "lf_test_reports_reader"})
    assert by_header.status_code == 200
    api = await feedback.get("/v1/reports/sla", headers=basic(DEV_API_KEY))
    assert api.status_code == 401 and api.headers["www-authenticate"] == "Bearer"


async def test_reads_take_a_key_as_bearer_or_x_api_key(clients):
    for headers in (REPORTS_READER, {"X-API-Key": "lf_test_reports_reader"}):
        report = await clients["feedback"].get("/v1/reports/sla", headers=headers)
        assert report.status_code == 200, report.text


async def test_the_api_documents_are_open_and_carry_the_scopes(clients):
    """The OpenAPI and AsyncAPI documents describe the contract and hold no data, so they are
    served without a key, like the probes; what each operation needs is written in them."""
    for name, client in clients.items():
        for path in ("/openapi.json", "/docs", "/asyncapi.json"):
            response = await client.get(path, headers=NO_KEY)
            assert response.status_code == 200, (name, path, response.status_code)
        schemes = (await client.get("/openapi.json", headers=NO_KEY)).json()["components"][
            "securitySchemes"
        ]
        assert schemes["bearerKey"] == {
            "type": "http",
            "scheme": "bearer",
            "description": schemes["bearerKey"]["description"],
        }
        assert (
            schemes["headerKey"]["in"] == "header" and schemes["headerKey"]["name"] == "X-API-Key"
        )


async def test_signed_platform_webhooks_refuse_api_keys_without_a_signature(clients):
    for name, path in SIGNED:
        if path == "/v1/sources/salesforce/outbound-messages":
            continue  # no signature: the organisation id (tests/integration/test_crm_back.py)
        for headers in (ADMIN, SOURCE, {}):
            response = await clients[name].post(SIGNED_AT.get(path, path), json=[], headers=headers)
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
    # Use every key for real writes and reads, and once each as a wrong key, so each had every
    # chance to leak.
    for n, (key, headers) in enumerate(KEYS.items()):
        if SPECS[key].allows("leads:write"):
            await clients["ingest"].post("/v1/leads", json=sample_lead(n), headers=headers)
        await clients["feedback"].get("/review", headers=headers)
        await clients["routing"].get("/v1/reps", headers=headers)
        await clients["ingest"].post(
            "/v1/leads", json=sample_lead(n), headers={**headers, "Idempotency-Key": f"k{n}"}
        )
        answer = await clients["ingest"].post(
            "/v1/leads",
            json=sample_lead(n),
            headers={"X-API-Key": headers["Authorization"][7:] + "x"},
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
                    (await session.execute(sa.text(f'SELECT t::text FROM "{schema}"."{table}" t')))
                    .scalars()
                    .all()
                )
                rows += len(dump)
                leaks += [(schema, table) for row in dump for key in plain if key in row]
    finally:
        await db.dispose()
    assert rows > 0  # the writes above are in there
    assert not leaks, leaks
