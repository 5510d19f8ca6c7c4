"""The CRM round trip against a real HubSpot developer account or Salesforce sandbox, opt-in: run
only when the account's credentials are in the environment, skipped (with the variables named)
otherwise. Every service is a real process, as in test_crm_round_trip (which runs the same trip
against local servers implementing the vendors' documented contracts): a lead is routed, notify
writes the owner and a task into the CRM, the test reads both back through the CRM's API, logs a
call there, tells ingest as the CRM would, and sees the first-response clock met. Whatever the
test created in the CRM is deleted at the end, whether it passed or not.

HubSpot (a developer test account's private app with the scopes docs/integrations.md lists):
  LEADFLOW_LIVE_HUBSPOT_TOKEN      the private app's access token
  LEADFLOW_LIVE_HUBSPOT_OWNER_ID   optional: the owner the rep maps to (else the first owner)

Salesforce (a sandbox with the external id fields `Leadflow_Lead_Id__c` on Lead and
`Leadflow_Task_Id__c` on Task, and an external client app with the client-credentials flow):
  LEADFLOW_LIVE_SALESFORCE_LOGIN_URL      the sandbox's My Domain URL
  LEADFLOW_LIVE_SALESFORCE_CLIENT_ID      the app's consumer key
  LEADFLOW_LIVE_SALESFORCE_CLIENT_SECRET  its consumer secret
  LEADFLOW_LIVE_SALESFORCE_OWNER_ID       the user (005…) the rep maps to
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
import yaml
from leadflow_ingest.domain.hubspot import signature_v3
from support.harness import QUALIFIED_LEAD, eventually
from support.salesforce_outbound import SOAP_HEADERS, notification, outbound_message
from test_crm_round_trip import linked_in_ingest

HUBSPOT_VARIABLES = ("LEADFLOW_LIVE_HUBSPOT_TOKEN",)
SALESFORCE_VARIABLES = tuple(
    f"LEADFLOW_LIVE_SALESFORCE_{name}" for name in ("LOGIN_URL", "CLIENT_ID", "CLIENT_SECRET",
                                                    "OWNER_ID")
)  # fmt: skip
HUBSPOT_API = "https://api.hubapi.com"
SALESFORCE_API_VERSION = "62.0"
REP_EMAIL = "rep1@vendor.example"  # the rep `routed_leads` makes
WEBHOOK_SECRET = "leadflow-live-test-client-secret"  # ingest's; the test signs as HubSpot would
CONNECTED_CALL = "f240bbac-87c9-4f6e-bf70-924b57d47db7"  # HubSpot's default disposition id


def missing(variables: tuple[str, ...]) -> list[str]:
    return [name for name in variables if not os.environ.get(name)]


def _needs(variables: tuple[str, ...], account: str) -> pytest.MarkDecorator:
    absent = missing(variables)
    return pytest.mark.skipif(
        bool(absent), reason=f"a live {account}: set {', '.join(absent)} to run it"
    )


needs_hubspot = _needs(HUBSPOT_VARIABLES, "HubSpot developer account")
needs_salesforce = _needs(SALESFORCE_VARIABLES, "Salesforce sandbox")


def unique_email(system: str) -> str:
    return f"leadflow.live.{system}.{uuid.uuid4().hex[:12]}@analytical-engines.example"


# --- HubSpot -----------------------------------------------------------------------------------


@pytest.fixture
async def hubspot_api() -> AsyncIterator[httpx.AsyncClient]:
    token = os.environ["LEADFLOW_LIVE_HUBSPOT_TOKEN"]
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=HUBSPOT_API, headers=headers, timeout=30) as api:
        yield api


async def hubspot_owner(api: httpx.AsyncClient) -> str:
    if os.environ.get("LEADFLOW_LIVE_HUBSPOT_OWNER_ID"):
        return os.environ["LEADFLOW_LIVE_HUBSPOT_OWNER_ID"]
    owners = await api.get("/crm/v3/owners/", params={"limit": 1})
    assert owners.status_code == 200, owners.text
    assert owners.json()["results"], "the HubSpot account has no owner to give the lead"
    return owners.json()["results"][0]["id"]


async def post_hubspot_webhook(run, portal_id: int, **event) -> dict:
    body = orjson.dumps([{
        "eventId": int(time.time() * 1000), "subscriptionId": 1, "portalId": portal_id,
        "occurredAt": int(time.time() * 1000), "attemptNumber": 0, "changeSource": "CRM", **event,
    }])  # fmt: skip
    ts = str(int(time.time() * 1000))
    url = f"{run.urls['ingest']}/v1/sources/hubspot/webhook"
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": ts,
        "X-HubSpot-Signature-v3": signature_v3(WEBHOOK_SECRET, "POST", url, body, ts),
    }
    answer = await run.http.post(url, content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture
async def hubspot_owner_id(hubspot_api) -> str:
    return await hubspot_owner(hubspot_api)


@pytest.fixture
async def hubspot_settings(stack, hubspot_owner_id, tmp_path):
    owner = hubspot_owner_id
    connectors = {"hubspot": {"outbound": {"enabled": True, "owners": {REP_EMAIL: owner}},
                              "inbound": {"enabled": True, "engagements": ["calls"]}}}  # fmt: skip
    path = tmp_path / "connectors.yaml"
    path.write_text(yaml.safe_dump({"connectors": connectors}), encoding="utf-8")
    (tmp_path / "hubspot-token").write_text(os.environ["LEADFLOW_LIVE_HUBSPOT_TOKEN"])
    return await stack.isolated_settings(
        connectors_file=str(path),
        hubspot_client_secret=WEBHOOK_SECRET,
        hubspot_private_app_token_file=str(tmp_path / "hubspot-token"),
        hubspot_api_url=HUBSPOT_API,
    )


@pytest.fixture
def settings(request):
    """The services' settings: those of the account the test runs against."""
    return request.getfixturevalue(request.param)


@needs_hubspot
@pytest.mark.parametrize("settings", ["hubspot_settings"], indirect=True)
async def test_a_lead_routed_into_a_live_hubspot_account_and_a_call_logged_there(
    settings, lead_run, hubspot_api, hubspot_owner_id
):
    run, api, made = lead_run, hubspot_api, []
    email = unique_email("hubspot")
    try:
        contact = await api.post("/crm/v3/objects/contacts", json={"properties": {
            "email": email, "firstname": "Ada", "lastname": "Lovelace (Leadflow live test)"}})  # fmt: skip
        assert contact.status_code == 201, contact.text
        contact_id = contact.json()["id"]
        made.append(("contacts", contact_id))

        # the lead reaches Leadflow, is routed; notify finds the contact by its e-mail
        await run.ingest({**QUALIFIED_LEAD, "email": email})
        await run.first_response("open", timeout=90)

        async def owned_with_task() -> dict | None:
            read = await api.get(
                f"/crm/v3/objects/contacts/{contact_id}",
                params={"properties": "hubspot_owner_id,hs_lead_status", "associations": "tasks"},
            )
            tasks = read.json().get("associations", {}).get("tasks", {}).get("results", [])
            return read.json() if read.status_code == 200 and tasks else None

        written = await eventually(owned_with_task, timeout=90)
        assert written["properties"]["hubspot_owner_id"] == hubspot_owner_id
        made += [("tasks", t["id"]) for t in written["associations"]["tasks"]["results"]]
        # the link notify made travels through the broker to ingest: then the call matches
        await eventually(lambda: linked_in_ingest(settings, contact_id), timeout=60)

        # the rep logs a call on the contact; HubSpot's webhook tells ingest of it
        called = datetime.now(UTC) - timedelta(seconds=5)
        call = await api.post("/crm/v3/objects/calls", json={
            "properties": {"hs_timestamp": called.isoformat(), "hs_call_title": "Leadflow live",
                           "hs_call_disposition": CONNECTED_CALL, "hs_call_direction": "OUTBOUND"},
            "associations": [{"to": {"id": contact_id}, "types": [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]}],
        })  # fmt: skip
        assert call.status_code == 201, call.text
        made.append(("calls", call.json()["id"]))
        portal_id = await hubspot_portal(api)
        logged = await post_hubspot_webhook(
            run, portal_id, subscriptionType="object.creation", objectTypeId="0-48",
            objectId=int(call.json()["id"]),
        )  # fmt: skip
        assert logged["sales_reports"]["reported"] == 1, logged

        met = await run.first_response("met", timeout=60)
        assert met["met_at"] is not None
    finally:
        for kind, object_id in reversed(made):
            await api.delete(f"/crm/v3/objects/{kind}/{object_id}")


async def hubspot_portal(api: httpx.AsyncClient) -> int:
    details = await api.get("/account-info/v3/details")
    assert details.status_code == 200, details.text
    return int(details.json()["portalId"])


# --- Salesforce --------------------------------------------------------------------------------


@pytest.fixture
async def salesforce_api() -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A REST client of the sandbox with a client-credentials token, and the org's id."""
    login = os.environ["LEADFLOW_LIVE_SALESFORCE_LOGIN_URL"].rstrip("/")
    async with httpx.AsyncClient(timeout=30) as http:
        token = await http.post(f"{login}/services/oauth2/token", data={
            "grant_type": "client_credentials",
            "client_id": os.environ["LEADFLOW_LIVE_SALESFORCE_CLIENT_ID"],
            "client_secret": os.environ["LEADFLOW_LIVE_SALESFORCE_CLIENT_SECRET"],
        })  # fmt: skip
        assert token.status_code == 200, token.text
        answer = token.json()
        org_id = answer["id"].rstrip("/").split("/")[-2]  # …/id/<org id>/<user id>
    async with httpx.AsyncClient(
        base_url=f"{answer['instance_url']}/services/data/v{SALESFORCE_API_VERSION}",
        headers={"Authorization": f"Bearer {answer['access_token']}"},
        timeout=30,
    ) as api:
        yield api, org_id


@pytest.fixture
async def salesforce_settings(stack, salesforce_api, tmp_path):
    _, org_id = salesforce_api
    login = os.environ["LEADFLOW_LIVE_SALESFORCE_LOGIN_URL"].rstrip("/")
    owner = os.environ["LEADFLOW_LIVE_SALESFORCE_OWNER_ID"]
    connectors = {"salesforce": {
        "outbound": {"enabled": True, "login_url": login, "api_version": SALESFORCE_API_VERSION,
                     "owners": {REP_EMAIL: owner}},
        "inbound": {"enabled": True, "organization_id": org_id},
    }}  # fmt: skip
    path = tmp_path / "connectors.yaml"
    path.write_text(yaml.safe_dump({"connectors": connectors}), encoding="utf-8")
    (tmp_path / "salesforce-secret").write_text(
        os.environ["LEADFLOW_LIVE_SALESFORCE_CLIENT_SECRET"]
    )
    return await stack.isolated_settings(
        connectors_file=str(path),
        salesforce_client_id=os.environ["LEADFLOW_LIVE_SALESFORCE_CLIENT_ID"],
        salesforce_client_secret_file=str(tmp_path / "salesforce-secret"),
    )


async def soql(api: httpx.AsyncClient, query: str) -> list[dict]:
    answer = await api.get("/query", params={"q": query})
    assert answer.status_code == 200, answer.text
    return answer.json()["records"]


@needs_salesforce
@pytest.mark.parametrize("settings", ["salesforce_settings"], indirect=True)
async def test_a_lead_routed_into_a_salesforce_sandbox_and_a_call_logged_there(
    settings, lead_run, salesforce_api
):
    (api, org_id), run = salesforce_api, lead_run
    owner = os.environ["LEADFLOW_LIVE_SALESFORCE_OWNER_ID"]
    made: list[tuple[str, str]] = []
    try:
        await run.ingest({**QUALIFIED_LEAD, "email": unique_email("salesforce")})
        await run.first_response("open", timeout=90)

        async def lead_with_task() -> tuple[dict, list[dict]] | None:
            leads = await soql(api, "SELECT Id, OwnerId FROM Lead WHERE Leadflow_Lead_Id__c = "
                                    f"'{run.lead_id}'")  # fmt: skip
            if not leads:
                return None
            tasks = await soql(
                api, f"SELECT Id, OwnerId FROM Task WHERE WhoId = '{leads[0]['Id']}'"
            )
            return (leads[0], tasks) if tasks else None

        lead, tasks = await eventually(lead_with_task, timeout=90)
        made += [("Task", t["Id"]) for t in tasks] + [("Lead", lead["Id"])]
        assert lead["OwnerId"][:15] == owner[:15]
        assert tasks[0]["OwnerId"][:15] == owner[:15]

        # the rep logs a call on the Lead; the Flow's Outbound Message tells ingest of it
        call = await api.post("/sobjects/Task", json={
            "WhoId": lead["Id"], "Subject": "Call (Leadflow live test)", "TaskSubtype": "Call",
            "Status": "Completed", "CallDisposition": "Connected", "OwnerId": owner,
        })  # fmt: skip
        assert call.status_code == 201, call.text
        made.insert(0, ("Task", call.json()["id"]))
        message = outbound_message(
            [notification("04l000000000001AAA", "Task", {
                "Id": call.json()["id"], "WhoId": lead["Id"], "TaskSubtype": "Call",
                "CallDisposition": "Connected", "CreatedDate": datetime.now(UTC).isoformat(),
            })],
            organization_id=org_id,
        )  # fmt: skip
        # the link notify made travels through the broker to ingest: then the Task matches
        await eventually(lambda: linked_in_ingest(settings, lead["Id"]), timeout=60)
        url = f"{run.urls['ingest']}/v1/sources/salesforce/outbound-messages"
        answer = await run.http.post(url, content=message, headers=SOAP_HEADERS)
        assert answer.status_code == 200 and b"<Ack>true</Ack>" in answer.content, answer.text

        met = await run.first_response("met", timeout=60)
        assert met["met_at"] is not None
    finally:
        for kind, object_id in made:
            await api.delete(f"/sobjects/{kind}/{object_id}")
