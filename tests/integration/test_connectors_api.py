"""The CRM connectors changed through notify's API, over the real PostgreSQL and broker: a
document validated exactly as the connectors file is becomes the one in force in notify at once
and in ingest through `connectors.published`, without a restart; a refused one names the path
and line of each problem and changes nothing. HubSpot's CRM API is a local server implementing
its documented calls (leadflow_tools/hubspot_server.py)."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime

import orjson
import pytest
from leadflow_tools.hubspot_server import HubSpotApiServer
from support.harness import ADMIN, CONFIG_READER, eventually, service_client
from support.hubspot import settings_with_connectors, signed_webhook

SECRET = "hs-client-secret-for-connector-tests"
TOKEN = "pat-eu1-00000000-5555-6666-7777-888888888888"
PORTAL = 62516
UPDATED = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
YAML = {"Content-Type": "application/yaml"}

# What the file says: HubSpot's default lead statuses; CALLED_BACK is not one of them.
CONNECTORS_FILE = """
connectors:
  hubspot:
    inbound:
      enabled: true
"""
# The same, changed through the API: a portal's own status now means the lead is being worked.
CALLED_BACK_MAPPED = """
connectors:
  hubspot:
    outbound:
      lead_status: OPEN
    inbound:
      enabled: true
      properties:
        hs_lead_status:
          OPEN: null
          CALLED_BACK: {kind: status, status: working}
"""
UNKNOWN_FIELD = """
connectors:
  hubspot:
    inbound:
      enabled: true
      colour: blue
"""

_ids = itertools.count(50_000)


@pytest.fixture(scope="module")
async def hubspot():
    async with HubSpotApiServer(TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
async def services(stack, hubspot, tmp_path_factory):
    """Notify and ingest, both started with the connectors file."""
    folder = tmp_path_factory.mktemp("connectors")
    settings = await settings_with_connectors(
        stack, hubspot, folder, CONNECTORS_FILE, secret=SECRET, token=TOKEN
    )
    async with (
        service_client("notify", settings) as notify,
        service_client("ingest", settings) as ingest,
    ):
        yield notify, ingest


def hs_event(kind: str, object_id: int, **extra) -> dict:
    return {
        "eventId": next(_ids), "subscriptionId": 12, "portalId": PORTAL,
        "occurredAt": int(time.time() * 1000) + next(_ids), "subscriptionType": kind,
        "attemptNumber": 0, "objectId": object_id, "changeSource": "CRM", **extra,
    }  # fmt: skip


async def post_hubspot(ingest, events: list[dict]) -> dict:
    body, headers = signed_webhook(events, SECRET)
    answer = await ingest.post("/v1/sources/hubspot/webhook", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def status_called_back(ingest, contact_id: int) -> dict:
    change = hs_event(
        "contact.propertyChange", contact_id, propertyName="hs_lead_status",
        propertyValue="CALLED_BACK",
    )  # fmt: skip
    return (await post_hubspot(ingest, [change]))["sales_reports"]


async def test_a_status_mapping_changed_through_the_api_maps_ingests_next_webhook(
    services, hubspot
):
    notify, ingest = services
    contact_id = 8101
    hubspot.add_contact(
        contact_id,
        {"email": "connectors.api@analytical-engines.example", "firstname": "Ada",
         "lastname": "Lovelace", "company": "Analytical Engines"},
        UPDATED,
    )  # fmt: skip
    made = await post_hubspot(ingest, [hs_event("contact.creation", contact_id)])
    lead_id = made["leads"][0]["lead_id"]
    before = await status_called_back(ingest, contact_id)
    assert before["unmapped"] == 1  # the file does not map it

    put = await notify.put("/v1/connectors", content=CALLED_BACK_MAPPED, headers=ADMIN | YAML)
    assert put.status_code == 200, put.text
    assert put.json()["publication"] == 1

    async def mapped() -> dict | None:
        reports = await status_called_back(ingest, contact_id)
        return reports if (reports["reported"], reports["unmapped"]) == (1, 0) else None

    reports = await eventually(mapped)
    assert reports["lead_ids"] == [lead_id]

    shown = await notify.get("/v1/connectors", headers=CONFIG_READER)
    assert shown.status_code == 200, shown.text
    statuses = shown.json()["document"]["hubspot"]["inbound"]["properties"]["hs_lead_status"]
    assert statuses["CALLED_BACK"] == {
        "kind": "status", "channel": "call", "outcome": None, "status": "working", "reason": None,
    }  # fmt: skip
    assert shown.json()["publication"] == 1

    audited = (await notify.get("/v1/audit", headers=ADMIN)).json()["items"]
    entry = next(e for e in audited if e["entity"] == "connectors")
    assert (entry["action"], entry["actor"]) == ("published", "key:admin")
    assert entry["after"]["hubspot"]["inbound"]["properties"]["hs_lead_status"]["CALLED_BACK"]


async def test_a_document_with_an_unknown_field_is_refused_naming_its_path_and_line(services):
    notify, _ = services
    before = (await notify.get("/v1/connectors")).json()
    refused = await notify.put("/v1/connectors", content=UNKNOWN_FIELD, headers=ADMIN | YAML)
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    [problem] = refused.json()["errors"]
    assert problem["field"] == "connectors.hubspot.inbound.colour"
    assert problem["line"] == 6
    assert (await notify.get("/v1/connectors")).json() == before


async def test_changing_the_connectors_needs_admin(services):
    notify, _ = services
    refused = await notify.put(
        "/v1/connectors", content=CALLED_BACK_MAPPED, headers=CONFIG_READER | YAML
    )
    assert refused.status_code == 403, refused.text


async def test_a_json_document_is_taken_as_yaml_is(services):
    notify, _ = services
    document = {"connectors": {"hubspot": {"inbound": {"enabled": True, "engagements": []}}}}
    put = await notify.put(
        "/v1/connectors",
        content=orjson.dumps(document),
        headers=ADMIN | {"Content-Type": "application/json"},
    )
    assert put.status_code == 200, put.text
    assert put.json()["document"]["hubspot"]["inbound"]["engagements"] == []
    assert put.json()["publication"] > 1
