"""What a routed lead becomes in a CRM (the owner, the deadline, the records' fields), the
connectors file's out parts, HubSpot's 10-second window and what each CRM answer means."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from leadflow.contracts.connectors import ConnectorsError, parse_connectors
from leadflow.contracts.policy import default_policy
from leadflow.retry import WEBHOOK_SCHEDULE
from leadflow.settings import Settings
from leadflow_notify.crm import CredentialsUnreadable, CrmOut, _failure
from leadflow_notify.domain.context import body
from leadflow_notify.domain.crm import (
    RollingWindow,
    RoutedLead,
    crm_facts,
    first_response_due,
    hubspot_contact_id,
    hubspot_task,
    owner_for,
    salesforce_lead,
    salesforce_task,
    task_text,
    token_fresh,
)

REP = "6f1d6c2e-0a55-4c9b-8d7e-3b2a1c0d9e8f"


def out(**sections):
    return parse_connectors({"connectors": sections})


def lead(**fields) -> RoutedLead:
    values = dict(
        lead_id=str(uuid.uuid4()), assignment_id="a1", rep_id=REP, rep_email="ola@vendor.example",
        rep_name="Ola Nowak", team="Inbound", due_at=datetime(2026, 12, 2, 8, 30, tzinfo=UTC),
        email="zoe@acme.example", first_name="Zoe", last_name="Quant", title="CTO",
        company="Acme", source="hubspot", hubspot_contact_id=None,
    )  # fmt: skip
    return RoutedLead(**{**values, **fields})


# --- the deadline ---------------------------------------------------------------------------


def test_the_task_is_due_at_the_first_response_deadline_in_business_hours():
    # Tuesday 15:30 in Warsaw + 2 business hours (9:00–17:00) = Wednesday 9:30
    due = first_response_due(
        default_policy(), "mql", "inbound", None, datetime(2026, 12, 1, 14, 30, tzinfo=UTC)
    )
    assert due == datetime(2026, 12, 2, 8, 30, tzinfo=UTC)


def test_a_friday_afternoon_lead_is_due_on_monday_and_a_team_calendar_counts():
    friday = datetime(2026, 12, 4, 15, 30, tzinfo=UTC)  # 16:30 in Warsaw
    assert first_response_due(default_policy(), "mql", "inbound", None, friday) == datetime(
        2026, 12, 7, 9, 30, tzinfo=UTC
    )
    days = ("mon", "tue", "wed", "thu", "fri")
    new_york = {"timezone": "America/New_York", "hours": {d: ["09:00-17:00"] for d in days}}
    due = first_response_due(default_policy(), "mql", "inbound", new_york, friday)
    assert due == datetime(2026, 12, 4, 17, 30, tzinfo=UTC)  # 10:30 to 12:30 in New York
    broken = {"timezone": "Mars/Olympus"}  # the policy's calendar stands in
    assert first_response_due(default_policy(), "mql", "inbound", broken, friday) == datetime(
        2026, 12, 7, 9, 30, tzinfo=UTC
    )


def test_a_pql_is_due_at_the_earliest_clock_its_first_attempt_meets():
    routed = datetime(2026, 12, 1, 14, 30, tzinfo=UTC)
    assert first_response_due(default_policy(), "pql", "plg", None, routed) <= datetime(
        2026, 12, 2, 14, 30, tzinfo=UTC
    )


# --- who owns it, and the CRM record intake knows -------------------------------------------


def test_the_owner_is_found_by_rep_id_first_then_by_email_in_any_case():
    owners = out(hubspot={"outbound": {"owners": {REP: "1", "Ola@Vendor.example": "2"}}})
    mapping = owners.hubspot.outbound.owners
    assert owner_for(mapping, REP, "ola@vendor.example") == "1"
    assert owner_for(mapping, "another", "OLA@vendor.example") == "2"
    assert owner_for(mapping, "another", None) is None


def test_a_hubspot_contact_is_known_from_intakes_external_id_only():
    assert hubspot_contact_id("hubspot:62515:7001") == "7001"
    assert hubspot_contact_id("crm-zq-1") is None
    assert hubspot_contact_id("hubspot:62515:not-a-number") is None
    assert hubspot_contact_id(None) is None


def test_a_crm_body_is_the_webhook_body_plus_the_deadline_the_reps_email_and_the_contact():
    lead_id = str(uuid.uuid4())
    data = {
        "lead_id": lead_id, "assignment_id": "a1", "team": "Inbound", "rep_id": REP,
        "rep_name": "Ola Nowak",
        "mql": {"email": "zoe@acme.example", "first_name": "Zoe", "company": {"name": "Acme"},
                "source": {"system": "hubspot"}},
    }  # fmt: skip
    message = body("lead.routed", "2026-12-01T14:30:00+00:00", {}, data)
    due = datetime(2026, 12, 2, 8, 30, tzinfo=UTC)
    message["data"]["crm"] = crm_facts(due, "ola@vendor.example", "hubspot:1:7001")

    read = RoutedLead.from_body(message)

    assert (read.lead_id, read.assignment_id, read.due_at) == (lead_id, "a1", due)
    assert (read.rep_email, read.hubspot_contact_id) == ("ola@vendor.example", "7001")
    assert (read.name, read.company, read.source) == ("Zoe", "Acme", "hubspot")


# --- what is written ------------------------------------------------------------------------


def test_a_hubspot_task_is_the_reps_due_at_the_deadline_on_the_contact_with_its_marker():
    config = out(hubspot={"outbound": {"task_subject": "Call {lead_name} at {company}"}})
    task = hubspot_task(config.hubspot.outbound, lead(), "41001", "7001")
    properties = task["properties"]
    assert properties["hs_timestamp"] == "2026-12-02T08:30:00Z"
    assert properties["hs_task_subject"] == "Call Zoe Quant at Acme"
    assert properties["hubspot_owner_id"] == "41001"
    assert properties["hs_task_body"].endswith("[leadflow:a1]")
    [association] = task["associations"]
    assert association["to"] == {"id": "7001"}
    assert association["types"][0]["associationTypeId"] == 204


def test_a_salesforce_lead_has_what_salesforce_requires_and_the_task_reminds_at_the_deadline():
    config = out(salesforce={"outbound": {"lead_status": "Working - Contacted"}})
    fields = salesforce_lead(
        config.salesforce.outbound, lead(last_name=None, company=None), "005000000000123AAA"
    )
    assert (fields["LastName"], fields["Company"]) == ("zoe", "(unknown)")
    assert (fields["OwnerId"], fields["Status"]) == ("005000000000123AAA", "Working - Contacted")
    task = salesforce_task(config.salesforce.outbound, lead(), "005000000000123AAA", "00Q1")
    assert (task["WhoId"], task["ActivityDate"]) == ("00Q1", "2026-12-02")
    assert task["ReminderDateTime"] == "2026-12-02T08:30:00Z" and task["IsReminderSet"]


def test_task_texts_name_only_known_fields():
    assert task_text("{lead_name} due {due_at}", lead()) == "Zoe Quant due 2026-12-02 08:30 UTC"
    for template in ("{lead.__class__}", "{password}", "{0}", "{lead_name"):
        with pytest.raises(ConnectorsError) as refused:
            out(hubspot={"outbound": {"task_subject": template}})
        assert refused.value.problems[0][0] == "hubspot.outbound.task_subject"


def test_the_connectors_file_refuses_bad_owner_ids_and_field_names_naming_the_path():
    with pytest.raises(ConnectorsError) as refused:
        out(
            hubspot={"outbound": {"owners": {REP: "owner-one"}}},
            salesforce={"outbound": {"owners": {REP: "00Qnotauser"}, "api_version": "62"}},
        )
    paths = {path for path, _ in refused.value.problems}
    assert paths == {
        f"hubspot.outbound.owners.{REP}",
        f"salesforce.outbound.owners.{REP}",
        "salesforce.outbound.api_version",
    }
    with pytest.raises(ConnectorsError):
        out(salesforce={"outbound": {"lead_external_id_field": "Id; DROP"}})


def test_connectors_are_off_unless_enabled():
    connectors = out()
    assert not connectors.hubspot.outbound.enabled and not connectors.salesforce.outbound.enabled


# --- pace and answers -----------------------------------------------------------------------


def test_hubspots_window_lets_limit_calls_through_in_any_ten_seconds():
    window = RollingWindow(limit=3)
    for at in (0.0, 1.0, 2.0):
        assert window.wait(at) == 0
        window.take(at)
    assert window.wait(3.0) == pytest.approx(7.0)  # the first call leaves the window at 10 s
    assert window.wait(10.0) == 0


def test_hubspots_answers_tighten_the_window_and_a_429_blocks_it():
    window = RollingWindow(limit=100)
    window.observe(0.0, limit=10, remaining=5)
    assert window.limit == 10
    window.observe(0.0, limit=500)
    assert window.limit == 100  # never above what the connectors file allows
    window.observe(1.0, remaining=0, interval=10.0)
    assert window.wait(1.0) == pytest.approx(10.0)
    window.refused(2.0, retry_after=30.0)
    assert window.wait(2.0) == pytest.approx(30.0)


def test_a_salesforce_token_is_taken_again_a_tenth_of_its_lifetime_before_it_ends():
    assert token_fresh(0.0, 7200, 6479.0)
    assert not token_fresh(0.0, 7200, 6480.0)


def test_a_crm_that_fails_is_retried_and_one_that_refuses_is_dead_lettered():
    request = httpx.Request("POST", "https://api.hubapi.com/crm/v3/objects/tasks")
    busy = _failure("hubspot", "create the task", httpx.Response(503, request=request))
    refused = _failure(
        "hubspot",
        "create the task",
        httpx.Response(
            400, json={"category": "VALIDATION_ERROR", "message": "bad"}, request=request
        ),
    )
    assert not busy.permanent and refused.permanent
    assert str(refused) == "hubspot answered 400 to create the task: VALIDATION_ERROR: bad"


def test_the_retry_schedule_outlasts_a_crm_down_for_a_day():
    assert sum(WEBHOOK_SCHEDULE) > 24 * 3600


def test_an_unreadable_credential_file_stops_notify_and_a_disabled_connector_reads_none(tmp_path):
    settings = Settings(
        hubspot_private_app_token_file=str(tmp_path / "missing"),
        salesforce_client_id="3MVG9",
        salesforce_client_secret_file=str(tmp_path / "missing-too"),
    )
    with pytest.raises(CredentialsUnreadable, match="LEADFLOW_HUBSPOT_PRIVATE_APP_TOKEN"):
        CrmOut.build(out(hubspot={"outbound": {"enabled": True}}), settings)
    with pytest.raises(CredentialsUnreadable, match="LEADFLOW_SALESFORCE_CLIENT_SECRET"):
        CrmOut.build(out(salesforce={"outbound": {"enabled": True}}), settings)
    assert CrmOut.build(out(), settings).systems == ()


def test_credentials_from_a_file_are_secret(tmp_path):
    (tmp_path / "secret").write_text("sf-secret-value\n")
    settings = Settings(
        salesforce_client_id="3MVG9", salesforce_client_secret_file=str(tmp_path / "secret")
    )
    crm = CrmOut.build(out(salesforce={"outbound": {"enabled": True}}), settings)
    assert crm.systems == ("salesforce",) and crm.salesforce.credentials_present
    assert "sf-secret-value" not in repr(crm.salesforce.__dict__)
