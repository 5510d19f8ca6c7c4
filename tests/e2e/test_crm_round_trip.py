"""The CRM round trip, every service a real process: a lead becomes an MQL, is routed, notify
writes its owner and a task to the CRM, sales logs a call there, and the call comes back through
ingest and feedback to meet the first-response clock in sla-timer. HubSpot and Salesforce cannot
be reached from the tests: local servers implement their documented contracts of exactly the
calls Leadflow makes (leadflow_tools/hubspot_server.py, leadflow_tools/salesforce_server.py), and
Salesforce's Outbound Message is built as Salesforce documents it
(tests/support/salesforce_outbound.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import yaml
from leadflow_ingest.domain.hubspot import signature_v3
from leadflow_tools.hubspot_server import HubSpotApiServer
from leadflow_tools.salesforce_server import SalesforceServer
from support.harness import ADMIN, QUALIFIED_LEAD, eventually
from support.salesforce_outbound import ORG_ID, SOAP_HEADERS, notification, outbound_message

SECRET = "hs-client-secret-for-tests"
TOKEN = "pat-eu1-00000000-1111-2222-3333-444444444444"
PORTAL = 62515
CONTACT = 7101
REP_EMAIL = "rep1@vendor.example"  # the rep `routed_leads` makes
OWNER = "41001"
CLIENT_ID = "3MVG9round.trip.client"
CLIENT_SECRET = "F0E1D2C3B4A5968778695A4B3C2D1E0F"
USER = "005000000000123AAA"
UPDATED = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
GRACE = {
    "email": "grace.round@analytical-engines.example",
    "firstname": "Grace",
    "lastname": "Hopper",
    "jobtitle": "Prezes Zarządu",
    "hs_buying_role": "DECISION_MAKER",
    "company": "Analytical Engines",
    "industry": "Computer Software",
    "numberofemployees": "250",
    "country": "Poland",
    "hs_analytics_source": "PAID_SEARCH",
    "hs_legal_basis": "Freely given consent from contact",
}


@pytest.fixture
async def crms():
    async with (
        HubSpotApiServer(TOKEN) as hubspot,
        SalesforceServer(CLIENT_ID, CLIENT_SECRET) as salesforce,
    ):
        hubspot.owners[REP_EMAIL] = OWNER
        hubspot.add_contact(CONTACT, GRACE, UPDATED)
        salesforce.users.add(USER)
        yield hubspot, salesforce


@pytest.fixture
async def settings(stack, crms, tmp_path):
    """Both CRMs, out and back."""
    hubspot, salesforce = crms
    connectors = {
        "hubspot": {"outbound": {"enabled": True}, "inbound": {"enabled": True}},
        "salesforce": {
            "outbound": {"enabled": True, "login_url": salesforce.url, "owners": {REP_EMAIL: USER}},
            "inbound": {"enabled": True, "organization_id": ORG_ID},
        },
    }
    path = tmp_path / "connectors.yaml"
    path.write_text(yaml.safe_dump({"connectors": connectors}), encoding="utf-8")
    # the processes read their credentials from files, as from mounted secrets
    (tmp_path / "hubspot-token").write_text(TOKEN)
    (tmp_path / "salesforce-secret").write_text(CLIENT_SECRET)
    return await stack.isolated_settings(
        connectors_file=str(path),
        hubspot_client_secret=SECRET,
        hubspot_private_app_token_file=str(tmp_path / "hubspot-token"),
        hubspot_api_url=hubspot.url,
        salesforce_client_id=CLIENT_ID,
        salesforce_client_secret_file=str(tmp_path / "salesforce-secret"),
    )


_ids = iter(range(50_000, 1_000_000))


async def post_hubspot(run, kind: str, object_id: int, **fields) -> dict:
    event = {
        "eventId": next(_ids), "subscriptionId": 11, "portalId": PORTAL,
        "occurredAt": int(time.time() * 1000), "subscriptionType": kind, "attemptNumber": 0,
        "objectId": object_id, "changeSource": "CRM", **fields,
    }  # fmt: skip
    body = orjson.dumps([event])
    ts = str(int(time.time() * 1000))
    url = f"{run.urls['ingest']}/v1/sources/hubspot/webhook"
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": ts,
        "X-HubSpot-Signature-v3": signature_v3(SECRET, "POST", url, body, ts),
    }
    answer = await run.http.post(url, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_a_call_logged_in_hubspot_meets_the_first_response_clock(lead_run, crms):
    run, (hubspot, _) = lead_run, crms
    made = await post_hubspot(run, "contact.creation", CONTACT)
    run.lead_id = lead_id = made["leads"][0]["lead_id"]
    for activity in ({"type": "demo_request"},
                     {"type": "page_view", "page_category": "pricing"},
                     {"type": "page_view", "page_category": "docs"}):  # fmt: skip
        body = {"lead_id": lead_id, **activity}
        posted = await run.http.post(
            f"{run.urls['ingest']}/v1/activities", json=body, headers=ADMIN
        )
        assert posted.status_code == 202, posted.text

    # MQL, routed to the rep: the clock opens, notify sets the owner and leaves a task
    await run.first_response("open", timeout=90)
    contact = hubspot.contacts[str(CONTACT)]["properties"]
    await eventually(lambda: hubspot.contact_tasks(str(CONTACT)), timeout=60)
    assert contact["hubspot_owner_id"] == OWNER

    # the rep calls from HubSpot; HubSpot tells ingest a call was logged on the contact
    called = datetime.now(UTC) - timedelta(seconds=5)
    hubspot.add_engagement(
        "calls", 88001,
        {"hs_timestamp": str(int(called.timestamp() * 1000)),
         "hs_call_disposition": "f240bbac-87c9-4f6e-bf70-924b57d47db7"},
        [CONTACT], created_at=called,
    )  # fmt: skip
    logged = await post_hubspot(run, "object.creation", 88001, objectTypeId="0-48")
    assert logged["sales_reports"]["reported"] == 1, logged

    met = await run.first_response("met", timeout=60)
    assert met["met_at"] is not None
    lifecycle = (await run.http.get(f"{run.urls['feedback']}/v1/leads/{lead_id}/lifecycle")).json()
    assert (lifecycle["status"], lifecycle["attempts"]) == ("working", 1)


async def test_a_task_logged_in_salesforce_meets_the_first_response_clock(lead_run, crms, settings):
    run, (_, salesforce) = lead_run, crms
    await run.ingest({**QUALIFIED_LEAD, "email": "ada.round@analytical-engines.example"})
    await run.first_response("open", timeout=90)

    # notify writes the Lead (owned by the rep) and links it; ingest learns the link
    async def lead_written() -> dict | None:
        found = [lead for lead in salesforce.leads.values() if lead.get("OwnerId") == USER]
        return found[0] if found and salesforce.tasks else None

    lead = await eventually(lead_written, timeout=60)
    task = notification("04l5e000000RT01AAA", "Task", {
        "Id": "00T5e000009RoUnDAA", "WhoId": lead["Id"], "TaskSubtype": "Call",
        "CallDisposition": "Connected", "CreatedDate": datetime.now(UTC).isoformat(),
    })  # fmt: skip
    # the link travels through the broker (notify's topic) to ingest, then the Task matches
    await eventually(lambda: linked_in_ingest(settings, lead["Id"]), timeout=60)
    url = f"{run.urls['ingest']}/v1/sources/salesforce/outbound-messages"
    answer = await run.http.post(url, content=outbound_message([task]), headers=SOAP_HEADERS)
    assert answer.status_code == 200 and b"<Ack>true</Ack>" in answer.content, answer.text

    met = await run.first_response("met", timeout=60)
    assert met["met_at"] is not None
    lifecycle = await run.http.get(f"{run.urls['feedback']}/v1/leads/{run.lead_id}/lifecycle")
    assert (lifecycle.json()["status"], lifecycle.json()["attempts"]) == ("working", 1)


async def linked_in_ingest(settings, object_id: str) -> bool:
    import sqlalchemy as sa
    from leadflow.db import Database

    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            return bool(
                await session.scalar(
                    sa.text("SELECT count(*) FROM ingest.crm_links WHERE object_id = :id"),
                    {"id": object_id},
                )
            )
    finally:
        await db.dispose()
