"""What a CRM sends that Leadflow cannot take, over the real PostgreSQL and broker: a value the
connectors file does not list is kept on the lead's timeline as unmapped and counted
(`leadflow_sales_reports_total{outcome="unmapped"}`), never a 500; an unsigned, forged or stale
callback is 401 and writes nothing. HubSpot's CRM API is the local server implementing its
documented contract (leadflow_tools/hubspot_server.py), as in test_crm_back."""

from __future__ import annotations

import time

import orjson
import pytest
import test_crm_back
from leadflow import metrics
from leadflow.contracts.connectors import ConnectorsError
from leadflow_ingest.domain.hubspot import signature_v3
from support.harness import eventually, rows_in, service_client
from support.salesforce_outbound import SOAP_HEADERS, notification, outbound_message
from test_crm_back import (
    SECRET,
    hs_event,
    hubspot_lead,
    lead_by_email,
    post_hubspot,
    signed,
    status_is,
    timeline_reports,
)

# the same configured ingest and feedback, and HubSpot's local server, as test_crm_back
crm = test_crm_back.crm
hubspot = test_crm_back.hubspot

WEBHOOK = "/v1/sources/webhooks/pipedrive"
HUBSPOT_WEBHOOK = "/v1/sources/hubspot/webhook"


def counted(system: str, outcome: str) -> float:
    return metrics.sales_reports.labels(system, outcome)._value.get()


async def unmapped_on_timeline(ingest, lead_id) -> dict | None:
    rows = await timeline_reports(ingest, lead_id)
    return next((r for r in rows if r.get("kind") == "unmapped"), None)


async def test_an_unknown_hubspot_lead_status_is_kept_on_the_timeline_as_unmapped(crm, hubspot):
    lead_id = await hubspot_lead(crm, hubspot, 7101)
    before = counted("hubspot", "unmapped")
    change = hs_event("contact.propertyChange", 7101, prop="hs_lead_status", value="NURTURING")
    answer = await post_hubspot(crm, [change])
    assert answer.status_code == 200, answer.text
    sales = answer.json()["sales_reports"]
    assert (sales["reported"], sales["unmapped"], sales["lead_ids"]) == (1, 1, [str(lead_id)])
    assert counted("hubspot", "unmapped") == before + 1

    row = await eventually(lambda: unmapped_on_timeline(crm, lead_id))
    assert (row["field"], row["value"], row["applied"]) == ("hs_lead_status", "NURTURING", False)
    assert "unmapped" in row["refused"]
    assert await status_is(crm, lead_id, "routed")
    page = await crm.feedback.get(f"/review/leads/{lead_id}")
    assert "unmapped" in page.text and "NURTURING" in page.text

    # what notify writes on a routed contact (OPEN) is listed as saying nothing: not reported
    own = hs_event("contact.propertyChange", 7101, prop="hs_lead_status", value="OPEN")
    assert (await post_hubspot(crm, [own])).json()["sales_reports"]["ignored"] == 1


async def test_an_unknown_salesforce_status_is_acknowledged_and_kept_as_unmapped(crm):
    lead_id = await lead_by_email(crm, "sf.unmapped@analytical-engines.example")
    before = counted("salesforce", "unmapped")
    nurturing = notification("04l5e000000AAA9AAA", "Lead", {
        "Id": "00Q5e000001AbCzEAF", "Status": "Nurturing",
        "LastModifiedDate": "2026-12-01T09:30:00.000Z", "Leadflow_Lead_Id__c": str(lead_id),
    })  # fmt: skip
    answer = await crm.post(
        "/v1/sources/salesforce/outbound-messages",
        content=outbound_message([nurturing]), headers=SOAP_HEADERS,
    )  # fmt: skip
    assert answer.status_code == 200 and b"<Ack>true</Ack>" in answer.content
    assert counted("salesforce", "unmapped") == before + 1
    row = await eventually(lambda: unmapped_on_timeline(crm, lead_id))
    assert (row["system"], row["field"], row["value"]) == ("salesforce", "Status", "Nurturing")
    assert row["applied"] is False
    assert await status_is(crm, lead_id, "routed")


async def test_an_unknown_generic_webhook_value_is_kept_as_unmapped(crm):
    email = "webhook.unmapped@analytical-engines.example"
    lead_id = await lead_by_email(crm, email)
    before = counted("webhook:pipedrive", "unmapped")
    lunch = {"current": {"id": 9101, "type": "lunch", "done_at": "2026-12-01T12:00:00Z",
                         "person": {"email": email}}}  # fmt: skip
    raw, headers = signed(lunch)
    answer = await crm.post(WEBHOOK, content=raw, headers=headers)
    assert answer.status_code == 202, answer.text
    assert (answer.json()["reported"], answer.json()["unmapped"]) == (1, 1)
    assert counted("webhook:pipedrive", "unmapped") == before + 1
    row = await eventually(lambda: unmapped_on_timeline(crm, lead_id))
    assert (row["field"], row["value"]) == ("$.current.type", "lunch")
    again = await crm.post(WEBHOOK, content=raw, headers=headers)
    assert again.json()["duplicates"] == 1
    assert len(await timeline_reports(crm, lead_id)) == 1


def stale_hubspot_request(events, age_seconds: int) -> tuple[bytes, dict]:
    body = orjson.dumps(events)
    ts = str(int((time.time() - age_seconds) * 1000))
    uri = f"http://ingest{HUBSPOT_WEBHOOK}"
    return body, {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": ts,
        "X-HubSpot-Signature-v3": signature_v3(SECRET, "POST", uri, body, ts),
    }


async def test_a_correctly_signed_hubspot_request_older_than_five_minutes_is_401(crm):
    before = await rows_in(crm.settings, "ingest.sales_reports")
    change = hs_event("contact.propertyChange", 7101, prop="hs_lead_status", value="CONNECTED")
    body, headers = stale_hubspot_request([change], age_seconds=6 * 60)
    answer = await crm.post(HUBSPOT_WEBHOOK, content=body, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["field"] == "X-HubSpot-Request-Timestamp"
    assert await rows_in(crm.settings, "ingest.sales_reports") == before

    # the same request within the five minutes is taken: only its age refused it
    body, headers = stale_hubspot_request([change], age_seconds=60)
    assert (await crm.post(HUBSPOT_WEBHOOK, content=body, headers=headers)).status_code == 200


async def test_an_unsigned_hubspot_request_is_401_and_writes_nothing(crm):
    before = await rows_in(crm.settings, "ingest.hubspot_events")
    change = hs_event("contact.propertyChange", 7101, prop="hs_lead_status", value="CONNECTED")
    answer = await crm.post(
        HUBSPOT_WEBHOOK, content=orjson.dumps([change]),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert await rows_in(crm.settings, "ingest.hubspot_events") == before


async def test_an_unsigned_or_forged_generic_webhook_is_401_and_writes_nothing(crm):
    email = "webhook.forged@analytical-engines.example"
    lead_id = await lead_by_email(crm, email)
    before = await rows_in(crm.settings, "ingest.sales_reports")
    call = {"current": {"id": 9102, "type": "call", "done_at": "2026-12-01T12:00:00Z",
                        "person": {"email": email}}}  # fmt: skip
    raw, headers = signed(call)
    unsigned = await crm.post(WEBHOOK, content=raw, headers={"Content-Type": "application/json"})
    forged = await crm.post(WEBHOOK, content=raw, headers=signed(call, "not-the-secret")[1])
    tampered = await crm.post(WEBHOOK, content=raw.replace(b"9102", b"9103"), headers=headers)
    for answer in (unsigned, forged, tampered):
        assert answer.status_code == 401, answer.text
        assert answer.json()["field"] == "X-Pipedrive-Signature"
    assert await rows_in(crm.settings, "ingest.sales_reports") == before
    assert await timeline_reports(crm, lead_id) == []


async def test_a_connectors_file_with_an_unknown_field_stops_ingest_naming_the_line(
    stack, tmp_path
):
    path = tmp_path / "connectors.yaml"
    path.write_text(
        "connectors:\n  hubspot:\n    inbound:\n      enabeld: true\n", encoding="utf-8"
    )
    settings = await stack.isolated_settings(connectors_file=str(path))
    with pytest.raises(ConnectorsError) as refused:
        async with service_client("ingest", settings):
            pass
    assert str(path) in str(refused.value)
    assert "line 4: connectors.hubspot.inbound.enabeld: Extra inputs are not permitted" in str(
        refused.value
    )
