"""Every list of every service is read the same way (leadflow.paging): notify's endpoints,
deliveries and notices, feedback's people and policy versions, and the API keys every service
knows page with a cursor and an RFC 8288 `Link` header, each item once, in the order asked for;
a sort a list does not have is a 422 naming `sort`. Real PostgreSQL and broker, each service in
this process."""

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from leadflow.contracts.events import TOPIC_SLA
from leadflow.db import Database
from leadflow_notify.models import notices
from support.harness import (
    ADMIN,
    CONFIG_READER,
    eventually,
    publish_events,
    sample_breach,
    service_client,
)

CLOSED = "http://127.0.0.1:9/hooks"  # nothing listens: deliveries stay pending
DEFAULT_TEXT = (
    Path(__file__).parents[2] / "shared/leadflow/contracts/policy_default.yaml"
).read_text()
DEFAULT_VERSION = "2026.11-default"
YAML = {**ADMIN, "Content-Type": "application/yaml"}

# (service, path, the key that may read it)
LISTS = [
    ("notify", "/v1/webhook-endpoints", CONFIG_READER),
    ("notify", "/v1/deliveries", CONFIG_READER),
    ("notify", "/v1/notices", CONFIG_READER),
    ("feedback", "/v1/users", ADMIN),
    ("feedback", "/v1/policy/versions", CONFIG_READER),
    ("feedback", "/v1/keys", ADMIN),
    ("routing", "/v1/keys", ADMIN),
]


async def every_page(client, path: str, headers: dict, **params) -> list[list[dict]]:
    """The pages of a list, two items at a time, each but the last naming the next in its
    `Link` header and `next_cursor` alike."""
    pages: list[list[dict]] = []
    query = {"limit": 2, **params}
    while True:
        response = await client.get(path, params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"items", "next_cursor"}
        pages.append(page["items"])
        link = response.headers.get("link")
        if page["next_cursor"] is None:
            assert link is None
            return pages
        assert link is not None and link.endswith('>; rel="next"')
        assert f"cursor={page['next_cursor']}" in link
        query["cursor"] = page["next_cursor"]


@pytest.mark.parametrize(("service", "path", "key"), LISTS)
async def test_a_sort_the_list_does_not_have_is_a_422_naming_sort(stack, service, path, key):
    settings = await stack.isolated_settings()
    async with service_client(service, settings) as client:
        refused = await client.get(path, params={"sort": "shoe_size"}, headers=key)
        bad_cursor = await client.get(path, params={"cursor": "not-a-cursor"}, headers=key)
        too_many = await client.get(path, params={"limit": 501}, headers=key)
    assert refused.status_code == 422, refused.text
    assert "sort" in {e["field"].split(".")[-1] for e in refused.json()["errors"]}
    assert bad_cursor.status_code == 422 and bad_cursor.json()["field"] == "cursor"
    assert too_many.status_code == 422 and "limit" in too_many.text


async def test_webhook_endpoints_page_with_a_cursor_and_a_link_header(stack):
    settings = await stack.isolated_settings()
    async with service_client("notify", settings) as notify:
        made = []
        for n in range(5):
            response = await notify.post(
                "/v1/webhook-endpoints", json={"url": f"{CLOSED}/{n}"}, headers=ADMIN
            )
            assert response.status_code == 201, response.text
            made.append(response.json()["id"])
        await notify.patch(f"/v1/webhook-endpoints/{made[1]}", json={"enabled": False},
                           headers=ADMIN)  # fmt: skip
        pages = await every_page(notify, "/v1/webhook-endpoints", CONFIG_READER)
        by_url = await every_page(notify, "/v1/webhook-endpoints", CONFIG_READER, sort="-url")
        disabled = await every_page(notify, "/v1/webhook-endpoints", CONFIG_READER, enabled=False)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [e["id"] for p in pages for e in p] == made  # oldest first, each once
    assert [e["url"] for p in by_url for e in p] == [f"{CLOSED}/{n}" for n in reversed(range(5))]
    assert [e["id"] for p in disabled for e in p] == [made[1]]


async def test_deliveries_page_and_filter_by_state_endpoint_event_type_and_lead(stack):
    settings = await stack.isolated_settings()
    breaches = [sample_breach() for _ in range(3)]
    async with service_client("notify", settings) as notify:
        endpoint = await notify.post(
            "/v1/webhook-endpoints", json={"url": CLOSED, "event_types": ["sla.*"]}, headers=ADMIN
        )
        endpoint_id = endpoint.json()["id"]
        await publish_events(settings, TOPIC_SLA, breaches)

        async def all_queued():
            listed = await notify.get("/v1/deliveries", headers=CONFIG_READER)
            return listed.json()["items"] if len(listed.json()["items"]) == 3 else None

        await eventually(all_queued, timeout=60)
        pages = await every_page(notify, "/v1/deliveries", CONFIG_READER)
        one_lead = await every_page(
            notify, "/v1/deliveries", CONFIG_READER, lead_id=str(breaches[1].lead_id),
            endpoint_id=endpoint_id, event_type="sla.breached", state="pending",
        )  # fmt: skip
        other_type = await every_page(
            notify, "/v1/deliveries", CONFIG_READER, event_type="sla.warning"
        )
        bad_lead = await notify.get(
            "/v1/deliveries", params={"lead_id": "someone"}, headers=CONFIG_READER
        )
    assert [len(p) for p in pages] == [2, 1]
    assert {d["lead_id"] for p in pages for d in p} == {str(b.lead_id) for b in breaches}
    assert [d["lead_id"] for p in one_lead for d in p] == [str(breaches[1].lead_id)]
    assert other_type == [[]]
    assert bad_lead.status_code == 422 and "lead_id" in bad_lead.text


async def notices_of(settings, count: int) -> list[uuid.UUID]:
    """`count` notices someone could not be told (no channel reaches them), oldest first."""
    db = Database(settings.database_url)
    start = datetime.now(UTC) - timedelta(minutes=count)
    rows = [
        {"id": uuid.uuid4(), "recipient": f"rep:{n}", "person": {}, "channel": "none",
         "lead_id": uuid.uuid4(), "timer_id": uuid.uuid4(), "level": "warning",
         "event_type": "sla.warning", "notice": {}, "state": "undeliverable",
         "created_at": start + timedelta(minutes=n)}
        for n in range(count)
    ]  # fmt: skip
    try:
        async with db.unit_of_work() as session:
            await session.execute(sa.insert(notices), rows)
    finally:
        await db.dispose()
    return [r["id"] for r in rows]


async def test_notices_page_with_a_cursor_and_a_link_header(stack):
    settings = await stack.isolated_settings()
    async with service_client("notify", settings) as notify:
        made = await notices_of(settings, 3)
        pages = await every_page(notify, "/v1/notices", CONFIG_READER)
        newest_first = await every_page(notify, "/v1/notices", CONFIG_READER, sort="-created_at")
        one = await every_page(notify, "/v1/notices", CONFIG_READER, recipient="rep:1")
    assert [[n["id"] for n in p] for p in pages] == [[str(made[0]), str(made[1])], [str(made[2])]]
    assert [n["id"] for p in newest_first for n in p] == [str(i) for i in reversed(made)]
    assert [n["id"] for p in one for n in p] == [str(made[1])]


async def test_people_page_with_a_cursor_and_a_link_header(stack):
    settings = await stack.isolated_settings()
    async with service_client("feedback", settings) as feedback:
        for n, role in enumerate(("viewer", "admin", "viewer")):
            made = await feedback.post(
                "/v1/users",
                json={"email": f"p{n}@example.com", "name": f"Person {n}", "role": role},
                headers=ADMIN,
            )
            assert made.status_code == 201, made.text
        pages = await every_page(feedback, "/v1/users", ADMIN, sort="-email")
        viewers = await every_page(feedback, "/v1/users", ADMIN, role="viewer")
        bad_role = await feedback.get("/v1/users", params={"role": "root"}, headers=ADMIN)
    assert [[p["email"] for p in page] for page in pages] == [
        ["p2@example.com", "p1@example.com"],
        ["p0@example.com"],
    ]
    assert [p["email"] for page in viewers for p in page] == ["p0@example.com", "p2@example.com"]
    assert bad_role.status_code == 422 and "role" in bad_role.text


async def test_policy_versions_page_with_a_cursor_and_a_link_header(stack):
    settings = await stack.isolated_settings()
    async with service_client("feedback", settings) as feedback:
        for label in ("2026.12-a", "2026.12-b"):
            text = DEFAULT_TEXT.replace(f'version: "{DEFAULT_VERSION}"', f'version: "{label}"', 1)
            made = await feedback.post("/v1/policy/versions", content=text, headers=YAML)
            assert made.status_code == 201, made.text
        pages = await every_page(feedback, "/v1/policy/versions", CONFIG_READER)
        drafts = await every_page(feedback, "/v1/policy/versions", CONFIG_READER, state="draft")
    assert [[v["number"] for v in p] for p in pages] == [[1, 2], [3]]
    assert [v["version"] for p in drafts for v in p] == ["2026.12-a", "2026.12-b"]
    assert "text" not in pages[0][0]  # a list, not the documents


async def test_api_keys_page_with_a_cursor_and_a_link_header_in_every_service(stack):
    settings = await stack.isolated_settings()
    async with (
        service_client("feedback", settings) as feedback,
        service_client("routing", settings) as routing,
    ):
        made = []
        for name in ("c", "a", "b"):
            key = await feedback.post(
                "/v1/keys", json={"name": name, "scopes": ["reports:read"]}, headers=ADMIN
            )
            assert key.status_code == 201, key.text
            made.append(key.json()["id"])
        await feedback.delete(f"/v1/keys/{made[2]}", headers=ADMIN)
        pages = await every_page(feedback, "/v1/keys", ADMIN)
        by_name = await every_page(feedback, "/v1/keys", ADMIN, sort="name")
        valid = await every_page(feedback, "/v1/keys", ADMIN, revoked=False)

        async def routing_knows_all():
            listed = await routing.get("/v1/keys", headers=ADMIN)
            return listed.json()["items"] if len(listed.json()["items"]) == 3 else None

        await eventually(routing_knows_all, timeout=60)
        in_routing = await every_page(routing, "/v1/keys", ADMIN)
    assert [[k["id"] for k in p] for p in pages] == [made[:2], made[2:]]
    assert [k["name"] for p in by_name for k in p] == ["a", "b", "c"]
    assert [k["id"] for p in valid for k in p] == made[:2]
    assert [k["id"] for p in in_routing for k in p] == made
