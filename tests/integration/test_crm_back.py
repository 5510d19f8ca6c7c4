"""What sales does in its CRM comes back to Leadflow, over the real PostgreSQL and broker: ingest
takes HubSpot's webhook (status properties, calls logged on a contact, read through a local
server implementing HubSpot's documented CRM API, leadflow_tools/hubspot_server.py), Salesforce's
Outbound Messages (SOAP bodies as Salesforce documents them, tests/support/salesforce_outbound.py)
and a generic webhook signed with an HMAC; each becomes `lead.sales_reported`, which feedback
applies with the same use cases as its API. The same report delivered again changes nothing."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from leadflow.contracts.events import LeadCrmLinked, LeadMql, LeadRouted, LeadSource
from leadflow_tools.hubspot_server import HubSpotApiServer
from support.harness import SOURCE, eventually, publish_events, rows_in, service_client
from support.hubspot import settings_with_connectors, signed_webhook
from support.salesforce_outbound import ORG_ID, SOAP_HEADERS, notification, outbound_message

SECRET = "hs-client-secret-for-tests"
TOKEN = "pat-eu1-00000000-1111-2222-3333-444444444444"
PORTAL = 62515
WEBHOOK_SECRET = "pipedrive-shared-secret-for-tests"
WEBHOOK_SECRET_ENV = "LEADFLOW_TEST_PIPEDRIVE_SECRET"
UPDATED = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
CONNECTED_CALL = "f240bbac-87c9-4f6e-bf70-924b57d47db7"

CONNECTORS = f"""
connectors:
  hubspot:
    inbound:
      enabled: true
  salesforce:
    inbound:
      enabled: true
      organization_id: {ORG_ID}
      lead_id_field: Leadflow_Lead_Id__c
  webhooks:
    - name: pipedrive
      signature:
        header: X-Pipedrive-Signature
        prefix: "sha256="
        secret_env: {WEBHOOK_SECRET_ENV}
      record_id: $.current.id
      lead: {{by: email, path: $.current.person.email}}
      occurred_at: $.current.done_at
      mappings:
        - value: $.current.type
          values:
            call: {{kind: attempt, channel: call}}
            email: {{kind: attempt, channel: email}}
          outcome: $.current.outcome
        - value: $.current.status
          values:
            lost: {{kind: status, status: returned, reason: no_need}}
"""


def contact(n: int) -> dict[str, str]:
    return {
        "email": f"crm.back.{n}@analytical-engines.example",
        "firstname": "Grace",
        "lastname": f"Hopper {n}",
        "jobtitle": "CEO",
        "company": "Analytical Engines",
    }


@pytest.fixture(scope="module")
async def hubspot():
    async with HubSpotApiServer(TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
async def crm(stack, hubspot, tmp_path_factory):
    """Ingest and feedback, with every back path configured."""
    folder = tmp_path_factory.mktemp("connectors")
    settings = await settings_with_connectors(
        stack, hubspot, folder, CONNECTORS, secret=SECRET, token=TOKEN
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(WEBHOOK_SECRET_ENV, WEBHOOK_SECRET)
        async with (
            service_client("ingest", settings) as ingest,
            service_client("feedback", settings) as feedback,
        ):
            ingest.settings = feedback.settings = settings
            ingest.feedback = feedback
            yield ingest


def hubspot_request(events, *, secret=SECRET):
    return signed_webhook(events, secret)


async def post_hubspot(ingest, events, *, secret=SECRET):
    body, headers = hubspot_request(events, secret=secret)
    return await ingest.post("/v1/sources/hubspot/webhook", content=body, headers=headers)


_ids = iter(range(10_000, 1_000_000))


def hs_event(kind, object_id, *, prop=None, value=None, object_type=None, at=None):
    event = {
        "eventId": next(_ids), "subscriptionId": 11, "portalId": PORTAL,
        "occurredAt": at or int(time.time() * 1000), "subscriptionType": kind,
        "attemptNumber": 0, "objectId": object_id, "changeSource": "CRM",
    }  # fmt: skip
    if prop:
        event |= {"propertyName": prop, "propertyValue": value}
    if object_type:
        event["objectTypeId"] = object_type
    return event


async def routed_in_feedback(ingest, lead_id: uuid.UUID) -> None:
    """Scoring promotes the lead and routing assigns it: feedback holds it as `routed`."""
    now = datetime.now(UTC)
    await publish_events(ingest.settings, LeadMql.topic, [LeadMql(
        lead_id=lead_id, fit=100, engagement=60.0, intent_tier=1, channel="inbound",
        source=LeadSource(system="hubspot"), promoted_at=now - timedelta(minutes=2),
    )])  # fmt: skip
    await eventually(lambda: status_is(ingest, lead_id, "mql"))
    await publish_events(ingest.settings, LeadRouted.topic, [LeadRouted(
        lead_id=lead_id, assignment_id=uuid.uuid4(), team_id=uuid.uuid4(), team="cee",
        rep_id=uuid.uuid4(), routed_at=now - timedelta(minutes=1),
    )])  # fmt: skip
    await eventually(lambda: status_is(ingest, lead_id, "routed"))


async def lifecycle(ingest, lead_id) -> dict:
    answer = await ingest.feedback.get(f"/v1/leads/{lead_id}/lifecycle")
    return answer.json() if answer.status_code == 200 else {}


async def status_is(ingest, lead_id, status) -> bool:
    return (await lifecycle(ingest, lead_id)).get("status") == status


async def hubspot_lead(ingest, hubspot, contact_id: int) -> uuid.UUID:
    """A HubSpot contact that became a routed lead."""
    hubspot.add_contact(contact_id, contact(contact_id), UPDATED)
    made = await post_hubspot(ingest, [hs_event("contact.creation", contact_id)])
    assert made.status_code == 200, made.text
    lead_id = uuid.UUID(made.json()["leads"][0]["lead_id"])
    await routed_in_feedback(ingest, lead_id)
    return lead_id


async def lead_by_email(ingest, email: str) -> uuid.UUID:
    made = await ingest.post("/v1/leads", json={"email": email}, headers=SOURCE)
    assert made.status_code == 202, made.text
    lead_id = uuid.UUID(made.json()["lead_id"])
    await routed_in_feedback(ingest, lead_id)
    return lead_id


async def timeline_reports(ingest, lead_id) -> list[dict]:
    import sqlalchemy as sa
    from leadflow.db import Database

    db = Database(ingest.settings.database_url)
    try:
        async with db.unit_of_work() as session:
            rows = await session.execute(
                sa.text(
                    "SELECT details FROM feedback.timeline WHERE lead_id = :lead "
                    "AND type = 'lead.sales_reported' ORDER BY occurred_at"
                ),
                {"lead": lead_id},
            )
            return [r.details for r in rows]
    finally:
        await db.dispose()


# --- HubSpot ---------------------------------------------------------------------------------


async def test_a_hubspot_lead_status_of_connected_makes_the_lead_working(crm, hubspot):
    lead_id = await hubspot_lead(crm, hubspot, 7001)
    change = hs_event("contact.propertyChange", 7001, prop="hs_lead_status", value="CONNECTED")
    answer = await post_hubspot(crm, [change])
    assert answer.status_code == 200, answer.text
    assert answer.json()["sales_reports"]["reported"] == 1
    assert answer.json()["sales_reports"]["lead_ids"] == [str(lead_id)]
    await eventually(lambda: status_is(crm, lead_id, "working"))

    # the same webhook again, and the same change under a new event id: nothing changes
    again = await post_hubspot(crm, [change])
    assert again.json()["duplicates"] == 1
    assert again.json()["sales_reports"]["reported"] == 0
    redelivered = await post_hubspot(crm, [{**change, "eventId": next(_ids)}])
    assert redelivered.json()["sales_reports"] == {
        "reported": 0, "duplicates": 1, "unmatched": 0, "ignored": 0, "unmapped": 0,
        "lead_ids": [],
    }  # fmt: skip
    history = (await lifecycle(crm, lead_id))["history"]
    assert [h["status"] for h in history] == ["mql", "routed", "working"]
    # a status property is sales' report, not the contact's data: the lead is not updated
    lead = (await crm.get(f"/v1/leads/{lead_id}")).json()
    assert "hs_lead_status" not in (lead.get("properties") or {}).get("hubspot", {})


async def test_a_call_logged_on_the_contact_becomes_a_contact_attempt(crm, hubspot):
    lead_id = await hubspot_lead(crm, hubspot, 7002)
    called = UPDATED + timedelta(days=1)
    hubspot.add_engagement(
        "calls", 55501,
        {"hs_timestamp": str(int(called.timestamp() * 1000)),
         "hs_call_disposition": CONNECTED_CALL, "hs_call_direction": "OUTBOUND"},
        [7002], created_at=called,
    )  # fmt: skip
    logged = hs_event("object.creation", 55501, object_type="0-48")
    answer = await post_hubspot(crm, [logged])
    assert answer.status_code == 200, answer.text
    assert answer.json()["sales_reports"]["reported"] == 1
    read = hubspot.engagement_reads()[-1]
    assert read["path"] == "/crm/v3/objects/calls/55501"
    assert read["headers"]["authorization"] == f"Bearer {TOKEN}"

    await eventually(lambda: status_is(crm, lead_id, "working"))
    assert (await lifecycle(crm, lead_id))["attempts"] == 1
    [report] = await eventually(lambda: timeline_reports(crm, lead_id))
    assert report | {"applied": True} == report
    assert (report["kind"], report["channel"], report["outcome"]) == (
        "attempt",
        "call",
        "connected",
    )

    again = await post_hubspot(crm, [logged, {**logged, "eventId": next(_ids)}])
    assert again.json()["sales_reports"]["duplicates"] == 2
    assert (await lifecycle(crm, lead_id))["attempts"] == 1


async def test_a_call_hubspot_cannot_be_read_for_is_not_lost_and_one_on_a_stranger_is_kept(
    crm, hubspot
):
    lead_id = await hubspot_lead(crm, hubspot, 7004)
    called = UPDATED + timedelta(days=2)
    hubspot.add_engagement("calls", 55502, {"hs_timestamp": str(int(called.timestamp() * 1000))},
                           [7004], created_at=called)  # fmt: skip
    logged = hs_event("object.creation", 55502, object_type="0-48")
    before = await rows_in(crm.settings, "ingest.sales_reports")
    hubspot.down = True
    try:
        refused = await post_hubspot(crm, [logged])
    finally:
        hubspot.down = False
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) >= 1
    assert await rows_in(crm.settings, "ingest.sales_reports") == before

    # HubSpot delivers the batch again: now it is read, and nothing of it was taken before
    again = await post_hubspot(crm, [logged])
    assert again.json()["sales_reports"]["reported"] == 1, again.text
    await eventually(lambda: status_is(crm, lead_id, "working"))

    # a call on a contact no lead came from is kept (a redelivery stays a duplicate), no more
    hubspot.add_engagement("calls", 55503, {}, [99999], created_at=called)
    stranger = hs_event("object.creation", 55503, object_type="0-48")
    assert (await post_hubspot(crm, [stranger])).json()["sales_reports"]["unmatched"] == 1
    repeat = await post_hubspot(crm, [{**stranger, "eventId": next(_ids)}])
    assert repeat.json()["sales_reports"]["duplicates"] == 1


async def test_unqualified_returns_the_lead_with_its_reason_and_a_refused_change_is_kept(
    crm, hubspot
):
    lead_id = await hubspot_lead(crm, hubspot, 7003)
    unqualified = hs_event(
        "contact.propertyChange", 7003, prop="hs_lead_status", value="UNQUALIFIED"
    )
    assert (await post_hubspot(crm, [unqualified])).json()["sales_reports"]["reported"] == 1
    await eventually(lambda: status_is(crm, lead_id, "returned"))
    assert (await lifecycle(crm, lead_id))["history"][-1]["reason"] == "not_in_target"

    # a returned lead cannot become sales-accepted: recorded on its timeline, not lost
    sqlead = hs_event("contact.propertyChange", 7003, prop="lifecyclestage",
                      value="salesqualifiedlead")  # fmt: skip
    assert (await post_hubspot(crm, [sqlead])).json()["sales_reports"]["reported"] == 1
    reports = await eventually(lambda: _with(timeline_reports(crm, lead_id), lambda r: len(r) == 2))
    assert reports[1]["applied"] is False
    assert "cannot move to 'sal'" in reports[1]["refused"]
    assert await status_is(crm, lead_id, "returned")
    page = await crm.feedback.get(f"/review/leads/{lead_id}")
    assert page.status_code == 200, page.text
    assert "hubspot reported status sal" in page.text and "not applied" in page.text


async def _with(awaitable, condition):
    value = await awaitable
    return value if condition(value) else None


async def test_a_bad_hubspot_signature_is_401_and_records_nothing(crm):
    before = await rows_in(crm.settings, "ingest.sales_reports")
    change = hs_event("contact.propertyChange", 7001, prop="hs_lead_status", value="CONNECTED")
    answer = await post_hubspot(crm, [change], secret="not-the-app-secret")
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert await rows_in(crm.settings, "ingest.sales_reports") == before


# --- Salesforce ------------------------------------------------------------------------------


async def test_an_outbound_message_of_another_organisation_is_refused(crm):
    lead_id = uuid.uuid4()
    body = outbound_message(
        [notification("04l5e000000AAA1AAA", "Lead", {
            "Id": "00Q5e000001AbCdEAF", "Status": "Closed - Not Converted",
            "Leadflow_Lead_Id__c": str(lead_id),
        })],
        organization_id="00D5e000000ZzZzEAF",
    )  # fmt: skip
    before = await rows_in(crm.settings, "ingest.sales_reports")
    answer = await crm.post(
        "/v1/sources/salesforce/outbound-messages", content=body, headers=SOAP_HEADERS
    )
    assert answer.status_code == 403
    assert answer.json()["field"] == "notifications.OrganizationId"
    assert await rows_in(crm.settings, "ingest.sales_reports") == before


async def test_an_outbound_message_is_acknowledged_mapped_and_taken_once(crm):
    lead_id = await lead_by_email(crm, "sf.back@analytical-engines.example")
    closed = notification("04l5e000000AAA2AAA", "Lead", {
        "Id": "00Q5e000001AbCeEAF", "Status": "Closed - Not Converted",
        "LastModifiedDate": "2026-12-01T09:30:00.000Z", "Leadflow_Lead_Id__c": str(lead_id),
    })  # fmt: skip
    body = outbound_message([closed])
    answer = await crm.post(
        "/v1/sources/salesforce/outbound-messages", content=body, headers=SOAP_HEADERS
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/xml")
    assert b"<Ack>true</Ack>" in answer.content
    assert b"notificationsResponse" in answer.content
    await eventually(lambda: status_is(crm, lead_id, "returned"))
    history = (await lifecycle(crm, lead_id))["history"]

    again = await crm.post(
        "/v1/sources/salesforce/outbound-messages", content=body, headers=SOAP_HEADERS
    )
    assert again.status_code == 200 and b"<Ack>true</Ack>" in again.content
    assert (await lifecycle(crm, lead_id))["history"] == history
    assert len(await timeline_reports(crm, lead_id)) == 1


async def test_a_task_on_a_lead_notify_linked_becomes_an_attempt(crm):
    lead_id = await lead_by_email(crm, "sf.task@analytical-engines.example")
    await publish_events(crm.settings, LeadCrmLinked.topic, [LeadCrmLinked(
        lead_id=lead_id, system="salesforce", object_type="Lead",
        object_id="00Q5e000001AbCfEAF", linked_at=datetime.now(UTC),
    )])  # fmt: skip
    task = notification("04l5e000000AAA3AAA", "Task", {
        "Id": "00T5e000002XyZaEAK", "WhoId": "00Q5e000001AbCfEAF", "TaskSubtype": "Call",
        "CallDisposition": "Left voicemail", "CreatedDate": "2026-12-01T10:00:00.000Z",
    })  # fmt: skip

    # the link travels through the broker (notify's topic) to ingest
    await eventually(lambda: rows_in(crm.settings, "ingest.crm_links"))
    answer = await crm.post(
        "/v1/sources/salesforce/outbound-messages",
        content=outbound_message([task]), headers=SOAP_HEADERS,
    )  # fmt: skip
    assert answer.status_code == 200 and b"<Ack>true</Ack>" in answer.content
    await eventually(lambda: status_is(crm, lead_id, "working"))
    [report] = await timeline_reports(crm, lead_id)
    assert (report["channel"], report["outcome"]) == ("call", "Left voicemail")


# --- any other sales tool --------------------------------------------------------------------


def signed(body: dict, secret: str = WEBHOOK_SECRET) -> tuple[bytes, dict]:
    raw = orjson.dumps(body)
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "X-Pipedrive-Signature": f"sha256={digest}"}


async def test_a_generic_webhook_is_checked_and_mapped_by_configuration(crm):
    email = "webhook.back@analytical-engines.example"
    lead_id = await lead_by_email(crm, email)
    activity = {"meta": {"action": "added"}, "current": {
        "id": 9001, "type": "call", "outcome": "no answer",
        "done_at": "2026-12-01T11:00:00Z", "person": {"email": email.upper()},
    }}  # fmt: skip
    raw, headers = signed(activity)

    forged = await crm.post("/v1/sources/webhooks/pipedrive", content=raw,
                            headers={**headers, "X-Pipedrive-Signature": "sha256=00"})  # fmt: skip
    assert forged.status_code == 401
    assert forged.json()["field"] == "X-Pipedrive-Signature"

    answer = await crm.post("/v1/sources/webhooks/pipedrive", content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    assert answer.json()["reported"] == 1 and answer.json()["lead_ids"] == [str(lead_id)]
    await eventually(lambda: status_is(crm, lead_id, "working"))
    again = await crm.post("/v1/sources/webhooks/pipedrive", content=raw, headers=headers)
    assert again.json()["duplicates"] == 1
    assert (await lifecycle(crm, lead_id))["attempts"] == 1

    lost = {"current": {"id": 9002, "status": "lost", "done_at": "2026-12-02T11:00:00Z",
                        "person": {"email": email}}}  # fmt: skip
    raw, headers = signed(lost)
    assert (await crm.post("/v1/sources/webhooks/pipedrive", content=raw,
                           headers=headers)).status_code == 202  # fmt: skip
    await eventually(lambda: status_is(crm, lead_id, "returned"))
    assert (await lifecycle(crm, lead_id))["history"][-1]["reason"] == "no_need"


async def test_a_body_without_a_configured_field_is_a_clear_422(crm):
    raw, headers = signed({"current": {"type": "call", "person": {"email": "x@example.com"}}})
    answer = await crm.post("/v1/sources/webhooks/pipedrive", content=raw, headers=headers)
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["field"] == "$.current.id"
    assert "$.current.id" in answer.json()["detail"]
    unknown = await crm.post("/v1/sources/webhooks/close", content=raw, headers=headers)
    assert unknown.status_code == 404
