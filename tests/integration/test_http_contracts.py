"""The HTTP contracts every service keeps: problem+json errors, API keys, body limits, idempotency."""

from __future__ import annotations

import asyncio
import re
from contextlib import AsyncExitStack

import httpx
import pytest
import sqlalchemy as sa
from leadflow.db import kernel_tables
from leadflow_ingest.models import leads
from leadflow_ingest.models import metadata as ingest_metadata
from leadflow_tools.registry import SERVICE_ORDER
from prometheus_client.parser import text_string_to_metric_families
from support.harness import ADMIN, SALES, SOURCE, eventually, service_client

PROBLEM = "application/problem+json"
BODY_LIMIT = 4096
INGEST_OUTBOX, _ = kernel_tables(ingest_metadata)
UNKNOWN = "5d0c1c7e-9d7f-4f57-8a55-0f4b8c3e2a10"


def plain_lead(n: str) -> dict:
    """A lead that scoring does not promote, so nothing downstream acts on it."""
    return {"email": f"reader.{n}@contracts.example", "source": {"system": "hubspot"}}


@pytest.fixture(scope="module")
async def services(stack):
    """Every service in this process, sharing one database and one set of topics, all ready."""
    settings = await stack.isolated_settings(max_body_bytes=BODY_LIMIT)
    async with AsyncExitStack() as apps:
        clients = {}
        for name in SERVICE_ORDER:
            clients[name] = await apps.enter_async_context(service_client(name, settings))

        async def all_ready() -> bool:
            answers = [await c.get("/readyz") for c in clients.values()]
            return all(r.status_code == 200 for r in answers)

        # Tests, and the shutdown after them, start from a steady state: every consumer assigned.
        await eventually(all_ready, timeout=90)
        yield clients


@pytest.fixture(scope="module")
def ingest(services) -> httpx.AsyncClient:
    return services["ingest"]


def assert_problem(response: httpx.Response, status: int, title: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == status
    assert problem["title"] == title
    assert problem["type"] == "https://leadflow.dev/problems/" + title.lower().replace(" ", "-")
    assert isinstance(problem["detail"], str) and problem["detail"]
    assert problem["instance"] == response.request.url.path
    return problem


async def rows(client: httpx.AsyncClient, query):
    async with client.app.state.runtime.db.unit_of_work() as session:
        return await session.scalar(query)


async def ingest_counts(client: httpx.AsyncClient, email: str) -> tuple[int, int]:
    """(leads with this email, events ingest wrote about them)."""
    lead_ids = sa.select(sa.cast(leads.c.id, sa.Text)).where(leads.c.email == email)
    n_leads = await rows(
        client, sa.select(sa.func.count()).select_from(leads).where(leads.c.email == email)
    )
    n_events = await rows(
        client,
        sa.select(sa.func.count())
        .select_from(INGEST_OUTBOX)
        .where(INGEST_OUTBOX.c.key.in_(lead_ids.scalar_subquery())),
    )
    return n_leads, n_events


# --- operations endpoints --------------------------------------------------------------------


async def test_a_replica_without_a_partition_is_ready_and_one_that_left_its_group_is_not(stack):
    """More replicas than partitions: every member joined the group, one holds no partition,
    and all are ready (the HTTP API scales past the partition count). A member whose consumer
    left the group answers 503 `waiting` until it has joined again."""
    settings = await stack.isolated_settings()  # topics of 3 partitions
    async with AsyncExitStack() as apps:
        replicas = [
            await apps.enter_async_context(service_client("ingest", settings)) for _ in range(4)
        ]

        async def settled() -> list[str] | None:
            answers = [await r.get("/readyz") for r in replicas]
            if any(a.status_code != 200 for a in answers):
                return None
            checks = [a.json()["checks"]["consumer:inbound"] for a in answers]
            counts = [int(c.split()[1]) for c in checks]
            return checks if sum(counts) == 3 else None  # one partition, one member

        checks = await eventually(settled, timeout=120, interval=0.5)
        assert "joined, 0 partitions" in checks
        assert all(re.fullmatch(r"joined, [0-3] partitions", c) for c in checks)

        idle = replicas[checks.index("joined, 0 partitions")]
        [runner] = [r for r in idle.app.state.runtime.consumers if r.sub.name == "inbound"]
        await runner.stop()  # leaves the group; the supervised loop joins it again
        left = await idle.get("/readyz")
        assert left.status_code == 503
        assert left.json()["status"] == "not ready"
        assert left.json()["checks"]["consumer:inbound"] == "waiting"
        assert left.json()["checks"]["database"] == "ok"
        await eventually(lambda: _ready(idle), timeout=120, interval=0.5)


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


@pytest.mark.parametrize("name", SERVICE_ORDER)
async def test_every_service_answers_healthz_readyz_metrics_and_openapi(services, name: str):
    client = services[name]
    health = await client.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "service": name}

    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    checks = ready.json()["checks"]
    assert checks["database"] == "ok" and checks["broker"] == "ok"
    consumers = [v for k, v in checks.items() if k.startswith("consumer:")]
    # the only member of each group holds every partition of its topics (3 per topic here)
    assert consumers and all(
        re.fullmatch(r"joined, \d+ partitions", v) and int(v.split()[1]) >= 3 for v in consumers
    )

    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    healthz = {"service": name, "method": "GET", "route": "/healthz", "status": "200"}
    healthz_counts = [
        sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "leadflow_http_request_duration_seconds_count"
        and sample.labels == healthz
    ]
    assert healthz_counts and healthz_counts[0] >= 1

    openapi = await client.get("/openapi.json")
    assert openapi.json()["info"]["title"] == f"Leadflow {name}"


# --- validation errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"first_name": "Ada"}, {"email"}),
        ({"email": "not-an-address"}, {"email"}),
        (
            {
                "email": "ada@contracts.example",
                "role": "ceo",
                "intent_tier": 7,
                "company": {"employees": -1},
                "source": {"channel": "carrier-pigeon"},
                "consent": {"basis": "maybe"},
            },
            {"role", "intent_tier", "company.employees", "source.channel", "consent.basis"},
        ),
        ([{"email": "ada@contracts.example"}], {"body"}),
    ],
)
async def test_an_invalid_lead_is_422_problem_json_naming_each_field(
    ingest, body, fields: set[str]
):
    response = await ingest.post("/v1/leads", json=body, headers=SOURCE)
    problem = assert_problem(response, 422, "Invalid request")
    assert {e["field"] for e in problem["errors"]} == fields
    assert all(e["message"] for e in problem["errors"])
    for field in fields:
        assert field in problem["detail"]


async def test_an_invalid_activity_is_422_naming_the_field(ingest):
    body = {"email": "ada@contracts.example", "type": "fax_sent", "colour": "red"}
    response = await ingest.post("/v1/activities", json=body, headers=SOURCE)
    problem = assert_problem(response, 422, "Invalid request")
    assert {e["field"] for e in problem["errors"]} == {"type", "colour"}


async def test_a_lead_id_that_is_not_a_uuid_is_422_naming_lead_id(services):
    response = await services["scoring"].get("/v1/leads/42/score")
    problem = assert_problem(response, 422, "Invalid request")
    assert [e["field"] for e in problem["errors"]] == ["lead_id"]


def string_parameters(openapi: dict) -> list[tuple[str, str, str]]:
    """(path, parameter, where) for every GET parameter the OpenAPI types as text."""
    found = []
    for path, item in openapi["paths"].items():
        for parameter in item.get("get", {}).get("parameters", []):
            schema = parameter.get("schema", {})
            types = {schema.get("type")} | {s.get("type") for s in schema.get("anyOf", [])}
            formats = {schema.get("format")} | {s.get("format") for s in schema.get("anyOf", [])}
            if "string" in types and not formats & {"uuid", "date", "date-time"}:
                found.append((path, parameter["name"], parameter["in"]))
    return found


@pytest.mark.parametrize("name", SERVICE_ORDER)
async def test_a_nul_in_any_text_parameter_is_422_naming_it(services, name: str):
    client = services[name]
    openapi = (await client.get("/openapi.json")).json()
    checked = 0
    for path, parameter, where in string_parameters(openapi):
        url = re.sub(r"\{[^}]+\}", UNKNOWN, path)
        if where == "path":
            url = path.replace("{" + parameter + "}", "a%00b")
            url = re.sub(r"\{[^}]+\}", UNKNOWN, url)
            response = await client.get(url, headers=ADMIN)
        else:
            response = await client.get(url, params={parameter: "a\x00b"}, headers=ADMIN)
        problem = assert_problem(response, 422, "Invalid request")
        assert parameter in {e["field"] for e in problem["errors"]}, (path, problem)
        checked += 1
    # A NUL in a parameter the route does not declare is refused the same way, not ignored.
    problem = assert_problem(
        await client.get("/healthz", params={"x\x00": "1"}), 422, "Invalid request"
    )
    assert [e["field"] for e in problem["errors"]] == ["x\\u0000"]
    if name in ("notify", "feedback"):
        assert checked, f"{name} declares text filters; none found in its OpenAPI"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/v1/reports/sla", {"from": "0001-01-01"}, "from"),
        ("/v1/reports/sla", {"to": "9999-12-31"}, "to"),
        ("/v1/reports/calibration", {"to": "0001-01-01"}, "to"),
        ("/review", {"week": "0001-01-01"}, "week"),
        ("/review", {"week": "9999-12-31"}, "week"),
    ],
)
async def test_a_report_day_at_the_ends_of_the_calendar_is_422_naming_it(
    services, path: str, params: dict, field: str
):
    response = await services["feedback"].get(path, params=params, headers=ADMIN)
    problem = assert_problem(response, 422, "Invalid request")
    assert [e["field"] for e in problem["errors"]] == [field]
    assert "between 1900-01-01 and 2999-12-31" in problem["errors"][0]["message"]


async def test_malformed_json_is_422_about_the_body(ingest):
    response = await ingest.post(
        "/v1/leads", content=b'{"email": ', headers={**SOURCE, "content-type": "application/json"}
    )
    problem = assert_problem(response, 422, "Invalid request")
    assert [e["field"] for e in problem["errors"]] == ["body"]


async def test_unknown_routes_and_methods_are_problem_json(ingest):
    assert_problem(await ingest.get("/v1/nowhere"), 404, "Not found")
    assert_problem(await ingest.delete("/v1/leads"), 405, "Method not allowed")


# --- API keys ----------------------------------------------------------------------------------

WRITES = [
    ("ingest", "/v1/leads", plain_lead("auth")),
    ("ingest", "/v1/activities", {"email": "reader.auth@contracts.example", "type": "page_view"}),
    ("routing", "/v1/teams", {"name": "Never created"}),
    ("notify", "/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hooks"}),
    ("feedback", f"/v1/leads/{UNKNOWN}/attempts", {"channel": "call"}),
]


@pytest.mark.parametrize(("name", "path", "body"), WRITES)
async def test_a_write_without_an_api_key_is_401(services, name: str, path: str, body: dict):
    response = await services[name].post(path, json=body)
    problem = assert_problem(response, 401, "Unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert "API key is required" in problem["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer lf_not_a_key"},
        {"X-API-Key": "lf_not_a_key"},
        {"Authorization": "Basic bGZfZGV2X2tleTo="},
    ],
)
@pytest.mark.parametrize(("name", "path", "body"), WRITES[:3])
async def test_a_write_with_a_wrong_api_key_is_401(services, name, path, body, headers: dict):
    response = await services[name].post(path, json=body, headers=headers)
    assert_problem(response, 401, "Unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("name", "path", "body", "headers", "scope"),
    [
        ("ingest", "/v1/leads", plain_lead("scope"), SALES, "leads:write"),
        ("ingest", "/v1/activities", WRITES[1][2], SALES, "leads:write"),
        ("routing", "/v1/teams", {"name": "Never created"}, SOURCE, "admin"),
        ("routing", "/v1/reps", {"name": "Never created"}, SALES, "admin"),
        ("feedback", f"/v1/leads/{UNKNOWN}/attempts", {"channel": "call"}, SOURCE, "sales:write"),
    ],
)
async def test_a_key_without_the_scope_is_403_naming_it(services, name, path, body, headers, scope):
    response = await services[name].post(path, json=body, headers=headers)
    problem = assert_problem(response, 403, "Forbidden")
    assert f"lacks the scope '{scope}'" in problem["detail"]


async def test_a_refused_write_changes_nothing(ingest):
    body = plain_lead("refused")
    await ingest.post("/v1/leads", json=body, headers=SALES)
    await ingest.post("/v1/leads", json=body)
    assert await ingest_counts(ingest, body["email"]) == (0, 0)


async def test_a_key_is_accepted_as_bearer_or_x_api_key(ingest):
    by_bearer = await ingest.post("/v1/leads", json=plain_lead("bearer"), headers=SOURCE)
    by_header = await ingest.post(
        "/v1/leads", json=plain_lead("header"), headers={"X-API-Key": "lf_test_source"}
    )
    assert by_bearer.status_code == by_header.status_code == 202


# --- body limit --------------------------------------------------------------------------------


def oversize_lead(n: str) -> bytes:
    body = httpx.Request("POST", "/", json={**plain_lead(n), "notes": "x" * BODY_LIMIT})
    assert len(body.content) > BODY_LIMIT
    return body.content


async def test_an_oversize_body_is_413_and_not_processed(ingest):
    email = plain_lead("big")["email"]
    response = await ingest.post(
        "/v1/leads",
        content=oversize_lead("big"),
        headers={**SOURCE, "content-type": "application/json"},
    )
    problem = assert_problem(response, 413, "Payload too large")
    assert str(BODY_LIMIT) in problem["detail"]
    assert await ingest_counts(ingest, email) == (0, 0)


async def test_a_body_just_under_the_limit_is_accepted(ingest):
    body = plain_lead("fits")
    body["notes"] = "x" * (BODY_LIMIT - len(httpx.Request("POST", "/", json=body).content) - 20)
    raw = httpx.Request("POST", "/", json=body).content
    assert BODY_LIMIT - 64 < len(raw) <= BODY_LIMIT
    response = await ingest.post(
        "/v1/leads", content=raw, headers={**SOURCE, "content-type": "application/json"}
    )
    assert response.status_code == 202, response.text


async def test_an_oversize_body_without_content_length_is_413(ingest):
    raw = oversize_lead("chunked")

    async def chunks():
        for i in range(0, len(raw), 1024):
            yield raw[i : i + 1024]

    response = await ingest.post(
        "/v1/leads", content=chunks(), headers={**SOURCE, "content-type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "Payload too large")


# --- idempotency -------------------------------------------------------------------------------


async def test_an_idempotency_key_replays_the_first_answer_and_creates_nothing_twice(ingest):
    body = plain_lead("idem")
    headers = {**SOURCE, "Idempotency-Key": "lead-idem-1"}
    first = await ingest.post("/v1/leads", json=body, headers=headers)
    again = await ingest.post("/v1/leads", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["duplicate"] is False
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await ingest_counts(ingest, body["email"]) == (1, 1)

    # Without the key, the same lead is an update with an event of its own.
    update = await ingest.post("/v1/leads", json=body, headers=SOURCE)
    assert update.json()["lead_id"] == first.json()["lead_id"]
    assert update.json()["duplicate"] is True
    assert update.json()["event_id"] != first.json()["event_id"]
    assert await ingest_counts(ingest, body["email"]) == (1, 2)


async def test_idempotency_keys_belong_to_the_api_key_that_sent_them(ingest):
    body = plain_lead("idem-scope")
    first = await ingest.post(
        "/v1/leads", json=body, headers={**SOURCE, "Idempotency-Key": "shared-key"}
    )
    other = await ingest.post(
        "/v1/leads", json=body, headers={**ADMIN, "Idempotency-Key": "shared-key"}
    )
    assert "idempotent-replayed" not in other.headers
    assert other.json()["event_id"] != first.json()["event_id"]
    assert await ingest_counts(ingest, body["email"]) == (1, 2)


async def test_concurrent_retries_with_one_idempotency_key_get_one_answer(ingest):
    body = plain_lead("race")
    headers = {**SOURCE, "Idempotency-Key": "race-1"}
    waiting = sa.text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    # Hold back lead inserts (reads still pass) until both retries are in flight, as two
    # retries racing through a slow moment would be.
    async with ingest.app.state.runtime.db.unit_of_work() as session:
        await session.execute(sa.text("LOCK TABLE ingest.leads IN SHARE ROW EXCLUSIVE MODE"))
        retries = [
            asyncio.create_task(ingest.post("/v1/leads", json=body, headers=headers))
            for _ in range(2)
        ]

        async def both_in_flight():
            return await rows(ingest, waiting) >= 2 or any(r.done() for r in retries)

        await eventually(both_in_flight, timeout=30, interval=0.05)
    a, b = await asyncio.gather(*retries)
    answers = [r for r in (a, b) if r.status_code == 202]
    assert {a.status_code, b.status_code} <= {202, 409}
    assert answers and all(r.json() == answers[0].json() for r in answers)
    assert await ingest_counts(ingest, body["email"]) == (1, 1)


# --- unknown leads -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "method", "path", "headers", "body"),
    [
        ("ingest", "GET", f"/v1/leads/{UNKNOWN}", {}, None),
        ("scoring", "GET", f"/v1/leads/{UNKNOWN}/score", {}, None),
        ("routing", "GET", f"/v1/leads/{UNKNOWN}/assignment", {}, None),
        ("feedback", "GET", f"/v1/leads/{UNKNOWN}/lifecycle", {}, None),
        ("feedback", "POST", f"/v1/leads/{UNKNOWN}/attempts", SALES, {"channel": "call"}),
    ],
)
async def test_an_unknown_lead_is_404_problem_json_naming_it(
    services, name, method, path, headers, body
):
    response = await services[name].request(method, path, headers=headers, json=body)
    problem = assert_problem(response, 404, "Not found")
    assert UNKNOWN in problem["detail"]
    if method == "POST":  # a report on a lead routed moments ago: worth retrying, and says when
        assert response.headers["retry-after"] == "5"
        assert problem["field"] == "lead_id"


async def test_an_activity_for_an_unknown_lead_is_404_naming_the_lead_id_field(ingest):
    body = {"lead_id": UNKNOWN, "type": "page_view"}
    response = await ingest.post("/v1/activities", json=body, headers=SOURCE)
    problem = assert_problem(response, 404, "Not found")
    assert problem["field"] == "lead_id"


async def test_a_known_lead_is_found(ingest):
    body = plain_lead("known")
    lead_id = (await ingest.post("/v1/leads", json=body, headers=SOURCE)).json()["lead_id"]
    response = await ingest.get(f"/v1/leads/{lead_id}")
    assert response.status_code == 200
    assert response.json()["lead_id"] == lead_id
    assert response.json()["email"] == body["email"]


# --- webhook endpoints -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/hooks", "http://169.254.169.254/latest/meta-data/"]
)
async def test_a_private_webhook_target_is_422_naming_url_when_not_allowed(
    services, monkeypatch, url: str
):
    notify = services["notify"]
    monkeypatch.setattr(notify.app.state.runtime.settings, "webhook_allow_private", False)
    response = await notify.post(
        "/v1/webhook-endpoints", json={"url": url, "event_types": ["sla.*"]}, headers=ADMIN
    )
    problem = assert_problem(response, 422, "Invalid request")
    assert [e["field"] for e in problem["errors"]] == ["url"]
    assert "non-public address" in problem["detail"]


async def test_a_webhook_secret_that_cannot_be_decoded_is_422_naming_secret(services):
    body = {
        "url": "http://127.0.0.1:9/hooks",
        "event_types": ["lead.routed"],
        "secret": "whsec_" + "A" * 25,
    }
    response = await services["notify"].post("/v1/webhook-endpoints", json=body, headers=ADMIN)
    problem = assert_problem(response, 422, "Invalid request")
    assert [e["field"] for e in problem["errors"]] == ["secret"]


async def test_an_unknown_event_type_is_422_listing_the_known_ones(services):
    body = {"url": "http://127.0.0.1:9/hooks", "event_types": ["sla.*", "lead.routd", "nope.*"]}
    response = await services["notify"].post("/v1/webhook-endpoints", json=body, headers=ADMIN)
    problem = assert_problem(response, 422, "Invalid request")
    [error] = problem["errors"]
    assert error["field"] == "event_types"
    assert "'lead.routd'" in error["message"] and "'nope.*'" in error["message"]
    assert "sla.breached" in error["message"] and "lead.routed" in error["message"]
    listed = await services["notify"].get("/v1/event-types")
    assert "sla.escalated" in listed.json()["event_types"]


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"slas": ["first_responce"]}, "filters.slas"),
        ({"channels": ["fax"]}, "filters.channels.0"),
        ({"colour": ["red"]}, "filters.colour"),
        ({"levels": []}, "filters.levels"),
    ],
)
async def test_a_bad_filter_is_422_naming_it(services, filters: dict, field: str):
    body = {"url": "http://127.0.0.1:9/hooks", "event_types": ["sla.*"], "filters": filters}
    response = await services["notify"].post("/v1/webhook-endpoints", json=body, headers=ADMIN)
    problem = assert_problem(response, 422, "Invalid request")
    assert [e["field"] for e in problem["errors"]] == [field]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/reps", {"name": "A", "email": "not-an-address"}, "email"),
        ("/v1/reps", {"name": "A", "slack_member_id": "@ola"}, "slack_member_id"),
        ("/v1/reps", {"name": "A", "teams_upn": "ola"}, "teams_upn"),
        ("/v1/reps", {"name": "A", "language": "de"}, "language"),
        ("/v1/teams", {"name": "T", "slack_webhook_url": "hooks.slack.com"}, "slack_webhook_url"),
        ("/v1/teams", {"name": "T", "team_lead": {"name": "L", "email": "l@"}}, "team_lead.email"),
        ("/v1/teams", {"name": "T", "manager": {"email": "m@x.example"}}, "manager.name"),
    ],
)
async def test_a_bad_address_or_handle_of_a_person_is_422_naming_it(
    services, path: str, body: dict, field: str
):
    response = await services["routing"].post(path, json=body, headers=ADMIN)
    problem = assert_problem(response, 422, "Invalid request")
    assert [e["field"] for e in problem["errors"]] == [field]
