"""Hostile request bodies at every write endpoint of every service (read from the OpenAPI): deeply
nested JSON, bytes that are not UTF-8, bodies over the size limit (with and without a
Content-Length), JSON that is not JSON. Each is refused with a 4xx problem+json, never a 5xx,
and nothing is written. (Ingest's field-level cases are in tests/integration/
test_ingest_bad_input.py.)"""

import uuid
from contextlib import AsyncExitStack

import pytest
import sqlalchemy as sa
from leadflow.db import Database
from leadflow_tools.registry import SERVICE_ORDER
from support.harness import ADMIN, service_client

PROBLEM = "application/problem+json"
WRITE_METHODS = ("post", "put", "patch")


def deep(depth: int) -> bytes:
    return b'{"a": ' + b"[" * depth + b"]" * depth + b"}"


async def _oversize_stream(size: int):
    chunk = b'{"pad": "' + b"x" * 65_536
    sent = 0
    while sent < size:
        yield chunk
        sent += len(chunk)


BODIES = {
    "nested 100,000 deep": lambda limit: deep(100_000),
    "nested within the limit, 5,000 deep": lambda limit: deep(5_000),
    "latin-1, not UTF-8": lambda limit: '{"name": "Jürgen Müller"}'.encode("latin-1"),
    "invalid UTF-8 sequence": lambda limit: b'{"name": "\xc3\x28\xff"}',
    "truncated JSON": lambda limit: b'{"name": "A',
    "over the size limit": lambda limit: b'{"pad": "' + b"x" * (limit + 10) + b'"}',
}


@pytest.fixture
async def clients(settings):
    async with AsyncExitStack() as stack:
        yield {
            name: await stack.enter_async_context(service_client(name, settings))
            for name in SERVICE_ORDER
        }


def writes(clients) -> list[tuple[str, str, str]]:
    found = []
    for name, client in clients.items():
        for path, operations in client.app.openapi()["paths"].items():
            for method, operation in operations.items():
                if method in WRITE_METHODS and "requestBody" in operation:
                    url = path
                    while "{" in url:
                        url = url[: url.index("{")] + str(uuid.uuid4()) + url[url.index("}") + 1 :]
                    found.append((name, method, url))
    return found


# Written only by consumers, never by a request: the policy feedback publishes at its first
# start reaches every service while the test runs.
CONSUMERS_ONLY = {
    "inbox",
    "consumer_positions",
    "relay_positions",
    "current_policy",
    "current_connectors",
    "api_keys",
}


async def row_counts(settings) -> dict[str, int]:
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            tables = (
                await session.execute(
                    sa.text(
                        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
                        "WHERE table_schema IN ('ingest','scoring','routing','sla_timer','feedback')"
                        " AND table_type = 'BASE TABLE'"
                    )
                )
            ).scalars().all()
            return {
                t: await session.scalar(sa.text(f"SELECT count(*) FROM {t}"))
                for t in tables
            }
    finally:
        await db.dispose()


async def test_hostile_bodies_are_a_clean_4xx_at_every_write_endpoint(clients, settings):
    targets = writes(clients)
    assert len(targets) >= 12
    before = await row_counts(settings)
    limit = settings.max_body_bytes
    wrong = []
    for name, method, url in targets:
        for label, make in BODIES.items():
            response = await clients[name].request(
                method,
                url,
                content=make(limit),
                headers={**ADMIN, "Content-Type": "application/json"},
            )
            ok = 400 <= response.status_code < 500 and response.headers.get(
                "content-type", ""
            ).startswith(PROBLEM)
            if not ok:
                wrong.append((name, method, url, label, response.status_code, response.text[:200]))
        streamed = await clients[name].request(  # no Content-Length: the limit still holds
            method,
            url,
            content=_oversize_stream(limit + 65_536),
            headers={**ADMIN, "Content-Type": "application/json"},
        )
        if streamed.status_code != 413:
            wrong.append((name, method, url, "streamed oversize", streamed.status_code))
    assert not wrong, wrong
    after = await row_counts(settings)
    changed = {
        t: (before[t], after[t])
        for t in before
        if before[t] != after[t] and t.split(".")[1] not in CONSUMERS_ONLY
    }
    assert not changed, changed
