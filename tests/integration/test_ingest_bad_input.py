"""Malformed input at ingest: every refusal is a 4xx problem+json naming the field, never a
5xx, and nothing is half-written."""

import json
import random
import uuid

import pytest
import sqlalchemy as sa
from leadflow.db import Database
from support.harness import ADMIN, QUALIFIED_LEAD, service_client

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
async def ingest(stack):
    settings = await stack.isolated_settings()
    async with service_client("ingest", settings) as client:
        client.settings = settings
        yield client


async def stored(settings) -> tuple[int, int]:
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            leads = await session.scalar(sa.text("SELECT count(*) FROM ingest.leads"))
            events = await session.scalar(sa.text("SELECT count(*) FROM ingest.outbox"))
            return leads, events
    finally:
        await db.dispose()


def raw(body: str | bytes) -> dict:
    content = body.encode() if isinstance(body, str) else body
    return {"content": content, "headers": {**ADMIN, "Content-Type": "application/json"}}


def fields(response) -> set[str]:
    problem = response.json()
    return {e["field"] for e in problem.get("errors", [])} | (
        {problem["field"]} if "field" in problem else set()
    )


CASES = [
    ("broken json", raw('{"email": "a@b.example",'), {"body"}),
    ("not an object", raw("[1, 2, 3]"), {"body"}),
    ("empty body", raw(""), {"body"}),
    ("missing email", {"json": {"first_name": "Ada"}}, {"email"}),
    ("email not a string", {"json": {"email": 5}}, {"email"}),
    ("email without a domain", {"json": {"email": "ada@"}}, {"email"}),
    ("intent tier out of range", {"json": {**QUALIFIED_LEAD, "intent_tier": 9}}, {"intent_tier"}),
    ("intent tier a word", {"json": {**QUALIFIED_LEAD, "intent_tier": "high"}}, {"intent_tier"}),
    ("company not an object", {"json": {**QUALIFIED_LEAD, "company": "Acme"}}, {"company"}),
    (
        "negative employees",
        {"json": {**QUALIFIED_LEAD, "company": {"employees": -3}}},
        {"company.employees"},
    ),
    (
        "absurd employees",
        {"json": {**QUALIFIED_LEAD, "company": {"employees": 10**30}}},
        {"company.employees"},
    ),
    (
        "unknown consent basis",
        {"json": {**QUALIFIED_LEAD, "consent": {"basis": "maybe"}}},
        {"consent.basis"},
    ),
    ("unknown channel", {"json": {**QUALIFIED_LEAD, "source": {"channel": "tv"}}},
     {"source.channel"}),
    ("unknown role", {"json": {**QUALIFIED_LEAD, "role": "king"}}, {"role"}),
    ("impossible date", {"json": {**QUALIFIED_LEAD, "occurred_at": "2026-13-45T25:00:00Z"}},
     {"occurred_at"}),
    ("huge first name", {"json": {**QUALIFIED_LEAD, "first_name": "x" * 10_000}}, {"first_name"}),
    ("NUL in a name", {"json": {**QUALIFIED_LEAD, "last_name": "Love\u0000lace"}}, {"last_name"}),
    (
        "lone surrogate in a nested field",
        raw('{"email": "a@b.example", "company": {"name": "Acme \\ud800"}}'),
        {"company.name"},
    ),
    (
        "NUL in an unknown field's key",
        raw('{"email": "a@b.example", "bad\\u0000key": 1}'),
        {"bad\\u0000key"},  # named, with the NUL written out (jsonb could not store it)
    ),
    (
        "NUL deep in unknown fields",
        {"json": {**QUALIFIED_LEAD, "crm": {"tags": ["ok", "no\u0000pe"]}}},
        {"crm.tags.1"},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "request_kwargs", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_malformed_lead_is_a_problem_naming_the_field(ingest, name, request_kwargs, expected):
    kwargs = dict(request_kwargs)
    kwargs.setdefault("headers", ADMIN)
    response = await ingest.post("/v1/leads", **kwargs)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert fields(response) == expected
    assert await stored(ingest.settings) == (0, 0)


async def test_bytes_that_are_not_utf8_are_refused(ingest):
    response = await ingest.post("/v1/leads", **raw(b'{"email": "\xff\xfe@b.example"}'))
    assert 400 <= response.status_code < 500
    assert response.headers["content-type"] == PROBLEM
    assert await stored(ingest.settings) == (0, 0)


async def test_an_oversize_body_is_413(ingest):
    body = json.dumps({**QUALIFIED_LEAD, "notes": "x" * 1_100_000})
    response = await ingest.post("/v1/leads", **raw(body))
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert await stored(ingest.settings) == (0, 0)


async def test_malformed_activities(ingest):
    cases = [
        ({"email": "a@b.example", "type": "telepathy"}, {"type"}),
        ({"lead_id": "not-a-uuid", "type": "demo_request"}, {"lead_id"}),
        ({"type": "demo_request"}, {"body"}),
        ({"email": "a@b.example", "type": "page_view", "page_category": "moon"}, {"page_category"}),
        ({"email": "a@b.example", "type": "demo_request", "properties": {"k": "\u0000"}},
         {"properties.k"}),
        ({"email": "a@b.example", "type": "demo_request", "extra": 1}, {"extra"}),
    ]  # fmt: skip
    for body, expected in cases:
        response = await ingest.post("/v1/activities", json=body, headers=ADMIN)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == PROBLEM
        assert fields(response) == expected, body
    assert await stored(ingest.settings) == (0, 0)


def junk(rng: random.Random):
    choices = [
        None,
        True,
        -1,
        0,
        10**20,
        3.5e300,
        "",
        " ",
        "x" * rng.randint(1, 5000),
        "ünïcödé ✓ 🚀",
        "\u0000",
        "\ud800",
        "'; DROP TABLE leads; --",
        [],
        [1, "a", None],
        {},
        {"nested": {"deeper": ["\u0000"]}},
        "2026-11-23T10:00:00Z",
        "not-a-date",
    ]
    return rng.choice(choices)


def mutate(rng: random.Random, value):
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        return {**value, key: mutate(rng, value[key])}
    if isinstance(value, dict) and rng.random() < 0.5:
        return {**value, rng.choice(["extra", "email", "company", "\u0000k"]): junk(rng)}
    return junk(rng)


async def test_random_malformed_leads_never_cause_a_5xx_or_a_half_write(ingest):
    rng = random.Random(20261123)
    before_leads, before_events = await stored(ingest.settings)
    accepted: set[str] = set()
    for n in range(250):
        body = mutate(rng, {**QUALIFIED_LEAD, "email": f"fuzz{n}@fuzz.example"})
        response = await ingest.post("/v1/leads", **raw(json.dumps(body)))
        assert response.status_code < 500, (body, response.text)
        if response.status_code == 202:
            accepted.add(response.json()["lead_id"])
        else:
            assert response.status_code in (400, 403, 413, 422), response.text
            assert response.headers["content-type"] == PROBLEM
    leads, events = await stored(ingest.settings)
    assert leads - before_leads == len(accepted)
    assert events - before_events >= len(accepted)


async def test_a_bad_item_in_a_batch_leaves_the_good_ones(ingest):
    items = [
        {**QUALIFIED_LEAD, "email": "good.one@batch-bad.example"},
        {**QUALIFIED_LEAD, "email": "bad@batch-bad.example", "first_name": "\u0000"},
        {**QUALIFIED_LEAD, "email": "good.two@batch-bad.example"},
    ]
    response = await ingest.post("/v1/leads:batch", json=items, headers=ADMIN)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == [202, 422, 202]
    assert results[1]["errors"] == [
        {"field": "first_name", "message": results[1]["errors"][0]["message"]}
    ]
    for result in (results[0], results[2]):
        got = await ingest.get(f"/v1/leads/{result['lead_id']}")
        assert got.status_code == 200
    assert (await ingest.get(f"/v1/leads/{uuid.uuid4()}")).status_code == 404


async def test_numbers_that_cannot_be_stored_are_refused(ingest):
    for text, field in (
        ('{"email": "n@num.example", "score": 100000000000000000000}', "score"),
        ('{"email": "n@num.example", "ratio": NaN}', "ratio"),
        ('{"email": "n@num.example", "limits": [1, Infinity]}', "limits.1"),
    ):
        response = await ingest.post("/v1/leads", **raw(text))
        assert response.status_code == 422, response.text
        assert fields(response) == {field}
