"""What sales tools report back, decided without a database: HubSpot's status properties and
logged activities, Salesforce's Outbound Messages, the generic webhook's field paths, value
tables and signature, and the connectors file that configures them."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from leadflow.contracts.connectors import ConnectorsError, GenericWebhook, parse_connectors
from leadflow.errors import Unauthorized, Unprocessable
from leadflow_ingest.domain import salesforce
from leadflow_ingest.domain.sales_reports import (
    PathMissing,
    hubspot_engagement_kind,
    hubspot_engagement_report,
    hubspot_property_report,
    value_at,
    verify_webhook,
    webhook_report,
    webhook_signature,
)
from support.salesforce_outbound import ORG_ID, notification, outbound_message

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ENABLED = parse_connectors({"hubspot": {"inbound": {"enabled": True}}})
HUBSPOT = ENABLED.hubspot.inbound
SALESFORCE = parse_connectors(
    {"salesforce": {"inbound": {"enabled": True, "organization_id": ORG_ID,
                                "lead_id_field": "Leadflow_Lead_Id__c"}}}
).salesforce.inbound  # fmt: skip


def webhook(**changes) -> GenericWebhook:
    config = {
        "name": "close",
        "signature": {"header": "Close-Sig-Hash", "secret_env": "CLOSE_SECRET"},
        "record_id": "data.id",
        "lead": {"by": "email", "path": "data.contact.emails[0].email"},
        "occurred_at": "$.data.date_created",
        "mappings": [
            {"value": "data.direction", "values": {"outbound": {"kind": "attempt"}},
             "outcome": "data.disposition"},
            {"value": "data.status_label", "values": {
                "Bad Fit": {"kind": "status", "status": "returned", "reason": "not_in_target"}}},
        ],
    } | changes  # fmt: skip
    return parse_connectors({"webhooks": [config]}).webhooks[0]


# --- HubSpot ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prop", "value", "expected"),
    [
        ("hs_lead_status", "ATTEMPTED_TO_CONTACT", ("attempt", "call", None)),
        ("hs_lead_status", "CONNECTED", ("status", "working", None)),
        ("hs_lead_status", "UNQUALIFIED", ("status", "returned", "not_in_target")),
        ("lifecyclestage", "salesqualifiedlead", ("status", "sal", None)),
    ],
)
def test_a_status_property_maps_by_its_table(prop, value, expected):
    report = hubspot_property_report(HUBSPOT, 62515, 901, prop, value, 1_764_590_400_000)
    fields = report.fields()
    second = fields["channel"] if fields["kind"] == "attempt" else fields["status"]
    third = fields.get("reason")
    assert (fields["kind"], second, third) == expected
    assert fields["system"] == "hubspot"
    assert fields["occurred_at"] == datetime(2025, 12, 1, 12, 0, tzinfo=UTC)
    # the record is the change: the same change under another event id is the same record
    assert fields["record_id"] == f"62515:contact:901:{prop}:1764590400000"


def test_a_status_value_the_table_lists_as_nothing_or_a_cleared_one_says_nothing():
    assert hubspot_property_report(HUBSPOT, 1, 2, "hs_lead_status", "NEW", 0) is None
    assert hubspot_property_report(HUBSPOT, 1, 2, "hs_lead_status", "OPEN", 0) is None
    assert hubspot_property_report(HUBSPOT, 1, 2, "hs_lead_status", None, 0) is None


def test_a_status_value_the_table_does_not_list_is_reported_as_unmapped():
    report = hubspot_property_report(HUBSPOT, 1, 2, "hs_lead_status", "NURTURING", 5)
    assert report.kind == "unmapped"
    assert report.fields() | {"occurred_at": None} == {
        "kind": "unmapped", "system": "hubspot", "record_id": "1:contact:2:hs_lead_status:5",
        "occurred_at": None, "field": "hs_lead_status", "value": "NURTURING",
    }  # fmt: skip


def test_the_tables_are_the_connectors_file_s():
    mine = parse_connectors({"hubspot": {"inbound": {"enabled": True, "properties": {
        "hs_lead_status": {"NEW": {"kind": "status", "status": "sal"}}}}}}).hubspot.inbound  # fmt: skip
    assert hubspot_property_report(mine, 1, 2, "hs_lead_status", "NEW", 0).reported.status == "sal"
    assert hubspot_property_report(mine, 1, 2, "hs_lead_status", "CONNECTED", 0).kind == (
        "unmapped"
    )


def test_calls_emails_and_meetings_are_engagements_when_listed():
    assert hubspot_engagement_kind(HUBSPOT, "0-48") == "calls"
    assert hubspot_engagement_kind(HUBSPOT, "0-49") == "emails"
    assert hubspot_engagement_kind(HUBSPOT, "0-47") == "meetings"
    assert hubspot_engagement_kind(HUBSPOT, "0-27") is None  # a task is not an attempt
    calls_only = parse_connectors(
        {"hubspot": {"inbound": {"enabled": True, "engagements": ["calls"]}}}
    ).hubspot.inbound
    assert hubspot_engagement_kind(calls_only, "0-49") is None
    assert hubspot_engagement_kind(parse_connectors({}).hubspot.inbound, "0-48") is None


def test_a_call_is_an_attempt_at_its_own_time_with_its_disposition_by_name():
    report = hubspot_engagement_report(
        HUBSPOT, 62515, "calls", 555,
        {"hs_timestamp": "1764590400000",
         "hs_call_disposition": "b2cf5968-551e-4856-9783-52b3da59a7d0"},
        [901, 902], created_ms=0,
    )  # fmt: skip
    fields = report.fields()
    assert (fields["kind"], fields["channel"], fields["outcome"]) == (
        "attempt", "call", "left_voicemail",
    )  # fmt: skip
    assert fields["occurred_at"] == datetime(2025, 12, 1, 12, 0, tzinfo=UTC)
    assert fields["record_id"] == "62515:calls:555"
    assert [ref.value for ref in report.leads] == ["62515:901", "62515:902"]


def test_an_email_the_lead_sent_is_no_attempt_and_a_meeting_keeps_its_outcome():
    incoming = {"hs_email_direction": "INCOMING_EMAIL", "hs_timestamp": "1"}
    assert hubspot_engagement_report(HUBSPOT, 1, "emails", 9, incoming, [2], created_ms=0) is None
    meeting = hubspot_engagement_report(
        HUBSPOT, 1, "meetings", 9, {"hs_meeting_outcome": "NO_SHOW"}, [2], created_ms=5_000
    )
    assert (meeting.fields()["channel"], meeting.fields()["outcome"]) == ("meeting", "no_show")
    assert meeting.occurred_at == datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC)


# --- Salesforce ------------------------------------------------------------------------------


def test_an_outbound_message_is_parsed_with_its_notifications():
    body = outbound_message([
        notification("04l1", "Lead", {"Id": "00Q1", "Status": "Working - Contacted",
                                      "Phone": None}),
        notification("04l2", "Task", {"Id": "00T1", "WhoId": "00Q1", "TaskSubtype": "Call"}),
    ])  # fmt: skip
    message = salesforce.parse_outbound_message(body)
    assert message.organization_id == ORG_ID
    assert [(n.id, n.object_type) for n in message.notifications] == [
        ("04l1", "Lead"), ("04l2", "Task"),
    ]  # fmt: skip
    assert message.notifications[0].fields == {"Id": "00Q1", "Status": "Working - Contacted"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not xml", "body"),
        (b"<a/>", "Envelope.Body"),
        (outbound_message([]), "notifications.Notification"),
        (outbound_message([]).replace(ORG_ID.encode(), b""), "notifications.OrganizationId"),
        (b'<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY a "a">]><a>&a;</a>', "body"),
        (outbound_message(["<Notification><Id>1</Id></Notification>"]),
         "notifications.Notification[0].sObject"),
    ],
)  # fmt: skip
def test_a_body_that_is_not_an_outbound_message_is_refused_naming_what(body, field):
    with pytest.raises(Unprocessable) as refused:
        salesforce.parse_outbound_message(body)
    assert refused.value.extra["field"] == field


def test_the_ack_is_salesforce_s_notifications_response():
    assert '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">' in (
        salesforce.ACK
    )
    assert "<Ack>true</Ack>" in salesforce.ACK


def test_an_organisation_id_matches_in_either_length():
    assert salesforce.same_organization(ORG_ID, ORG_ID[:15])
    assert salesforce.same_organization(ORG_ID[:15], ORG_ID)
    assert not salesforce.same_organization(ORG_ID, "00D5e000000ZzZzEAF")


def test_a_lead_status_maps_by_its_table_and_names_its_lead_both_ways():
    lead = salesforce.Notification("04l1", "Lead", {
        "Id": "00Q1", "Status": "Closed - Not Converted",
        "LastModifiedDate": "2026-12-01T09:30:00.000Z",
        "Leadflow_Lead_Id__c": "0b5a3c52-5f0e-4a43-9d8e-2a3f3a1f0c11",
    })  # fmt: skip
    report = salesforce.notification_report(SALESFORCE, lead, now=NOW)
    assert (report.reported.status, report.reported.reason) == ("returned", "not_in_target")
    assert report.occurred_at == datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    assert [(r.by, r.value) for r in report.leads] == [
        ("lead_id", "0b5a3c52-5f0e-4a43-9d8e-2a3f3a1f0c11"), ("crm", "00Q1"),
    ]  # fmt: skip
    assert report.record_id.startswith("Lead:00Q1:Status:Closed - Not Converted:2026-12-01")
    # what notify writes on a routed Lead says nothing; a status the table lacks is unmapped
    untouched = salesforce.Notification("04l2", "Lead", {"Id": "00Q1",
                                                         "Status": "Open - Not Contacted"})  # fmt: skip
    assert salesforce.notification_report(SALESFORCE, untouched, now=NOW) is None
    open_lead = salesforce.Notification("04l2", "Lead", {"Id": "00Q1", "Status": "Open"})
    unmapped = salesforce.notification_report(SALESFORCE, open_lead, now=NOW)
    assert (unmapped.kind, unmapped.reported.field, unmapped.reported.value) == (
        "unmapped", "Status", "Open",
    )  # fmt: skip


def test_a_task_is_an_attempt_on_its_channel_and_other_tasks_say_nothing():
    task = salesforce.Notification("04l3", "Task", {
        "Id": "00T1", "WhoId": "00Q1", "TaskSubtype": "Email", "Status": "Completed",
    })  # fmt: skip
    report = salesforce.notification_report(SALESFORCE, task, now=NOW)
    assert (report.reported.channel, report.outcome, report.record_id) == (
        "email", "Completed", "Task:00T1",
    )  # fmt: skip
    assert report.occurred_at == NOW
    todo = salesforce.Notification("04l4", "Task", {"Id": "00T2", "WhoId": "00Q1",
                                                    "TaskSubtype": "Task"})  # fmt: skip
    assert salesforce.notification_report(SALESFORCE, todo, now=NOW) is None
    meeting = salesforce.Notification("04l5", "Event", {"Id": "00U1", "WhoId": "00Q1"})
    assert salesforce.notification_report(SALESFORCE, meeting, now=NOW).reported.channel == (
        "meeting"
    )


def test_an_enabled_salesforce_inbound_needs_its_organisation():
    with pytest.raises(ConnectorsError) as refused:
        parse_connectors({"salesforce": {"inbound": {"enabled": True}}})
    assert "organization_id" in str(refused.value)


# --- field paths and the generic webhook -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data.person.email", "ada@example.com"),
        ("$.data.person.email", "ada@example.com"),
        ("data.items[1].id", 8),
        ("data.items.0.id", 7),
        ("$.data.flag", False),
    ],
)
def test_a_field_path_reads_into_objects_and_lists(path, expected):
    body = {"data": {"person": {"email": "ada@example.com"}, "items": [{"id": 7}, {"id": 8}],
                     "flag": False}}  # fmt: skip
    assert value_at(body, path) == expected


@pytest.mark.parametrize("path", ["data.nobody", "data.items[5].id", "data.person.email.x",
                                  "data.none"])  # fmt: skip
def test_a_field_path_the_body_lacks_is_missing(path):
    body = {"data": {"person": {"email": "ada@example.com"}, "items": [], "none": None}}
    with pytest.raises(PathMissing):
        value_at(body, path)


def test_a_field_path_that_is_not_one_stops_the_configuration_naming_it():
    with pytest.raises(ConnectorsError) as refused:
        webhook(record_id="data..id")
    assert "connectors.webhooks.0.record_id" in str(refused.value)
    assert "is not a field path" in str(refused.value)


def test_a_webhook_secret_is_named_never_written():
    with pytest.raises(ConnectorsError):
        webhook(signature={"header": "X-Sig", "secret": "s3cr3t"})
    with pytest.raises(ConnectorsError):
        webhook(signature={"header": "X-Sig"})


BODY = {"data": {"id": "acti_1", "direction": "outbound", "disposition": "answered",
                 "date_created": "2026-12-01T10:00:00+00:00",
                 "contact": {"emails": [{"email": "Ada@Example.com"}]}}}  # fmt: skip


def test_a_webhook_body_maps_by_the_first_mapping_whose_value_is_listed():
    report = webhook_report(webhook(), BODY, now=NOW)
    assert report.fields() | {"occurred_at": None} == {
        "kind": "attempt", "system": "webhook:close", "record_id": "acti_1",
        "occurred_at": None, "channel": "call", "outcome": "answered",
    }  # fmt: skip
    assert report.occurred_at == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert [(r.by, r.value) for r in report.leads] == [("email", "Ada@Example.com")]
    lead_status = {"data": {**BODY["data"], "direction": None, "status_label": "Bad Fit"}}
    status = webhook_report(webhook(), lead_status, now=NOW)
    assert (status.reported.status, status.reported.reason) == ("returned", "not_in_target")
    assert status.record_id == "acti_1:Bad Fit:2026-12-01T10:00:00+00:00"
    other = {"data": {**BODY["data"], "direction": "inbound"}}
    unmapped = webhook_report(webhook(), other, now=NOW)
    assert (unmapped.kind, unmapped.reported.field, unmapped.reported.value) == (
        "unmapped", "data.direction", "inbound",
    )  # fmt: skip
    assert unmapped.record_id == "acti_1:data.direction:inbound:2026-12-01T10:00:00+00:00"
    quiet = webhook(mappings=[{"value": "data.direction", "values": {"inbound": None}}])
    assert webhook_report(quiet, other, now=NOW) is None
    nothing = {"data": {key: v for key, v in BODY["data"].items() if key != "direction"}}
    assert webhook_report(webhook(), nothing, now=NOW) is None


@pytest.mark.parametrize(
    ("drop", "field"),
    [("id", "data.id"), ("contact", "data.contact.emails[0].email"),
     ("date_created", "$.data.date_created")],
)  # fmt: skip
def test_a_webhook_body_without_a_configured_field_is_refused_naming_its_path(drop, field):
    body = {"data": {k: v for k, v in BODY["data"].items() if k != drop}}
    with pytest.raises(Unprocessable) as refused:
        webhook_report(webhook(), body, now=NOW)
    assert refused.value.extra["field"] == field


def test_a_lead_id_that_is_not_a_uuid_is_refused():
    by_id = webhook(lead={"by": "lead_id", "path": "data.id"})
    with pytest.raises(Unprocessable) as refused:
        webhook_report(by_id, BODY, now=NOW)
    assert "not a UUID" in refused.value.detail


def test_the_signature_is_the_body_s_hmac_in_the_configured_header_and_encoding():
    hooked = webhook(signature={"header": "X-Sig", "algorithm": "sha512", "encoding": "base64",
                                "prefix": "v1=", "secret_env": "S"})  # fmt: skip
    body = b'{"data": 1}'
    expected = "v1=" + base64.b64encode(hmac.new(b"k", body, hashlib.sha512).digest()).decode()
    assert webhook_signature(hooked, "k", body) == expected
    verify_webhook(hooked, "k", body, {"x-sig": expected})
    for headers in ({}, {"x-sig": expected + "x"}, {"x-sig": webhook_signature(hooked, "j", body)}):
        with pytest.raises(Unauthorized):
            verify_webhook(hooked, "k", body, headers)
    hexed = webhook()
    upper = webhook_signature(hexed, "k", body).upper()
    verify_webhook(hexed, "k", body, {"close-sig-hash": upper})  # hex in any case


def test_two_webhooks_may_not_share_a_name():
    config = webhook().model_dump()
    with pytest.raises(ConnectorsError):
        parse_connectors({"webhooks": [config, config]})


def test_a_reason_the_policy_does_not_list_is_named_with_its_path():
    from leadflow.contracts.policy import default_policy
    from leadflow_ingest.domain.sales_reports import unknown_reasons

    reasons = default_policy().reasons
    assert unknown_reasons(ENABLED, reasons) == []  # the shipped tables use the policy's
    config = parse_connectors({
        "hubspot": {"inbound": {"enabled": True, "properties": {"hs_lead_status": {
            "UNQUALIFIED": {"kind": "status", "status": "returned", "reason": "too_small"}}}}},
        "webhooks": [webhook(mappings=[{"value": "s", "values": {
            "lost": {"kind": "status", "status": "lost", "reason": "price"}}}]).model_dump()],
    })  # fmt: skip
    assert unknown_reasons(config, reasons) == [
        "connectors.hubspot.inbound.properties.hs_lead_status.UNQUALIFIED.reason: 'too_small' "
        "is not a reason of the policy",
        "connectors.webhooks.0.mappings.0.values.lost.reason: 'price' is not a reason of the "
        "policy",
    ]
