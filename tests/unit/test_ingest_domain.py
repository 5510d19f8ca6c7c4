"""Ingest's pure decisions: the identities a lead gains from an input or a merge, which writer
may write a lead, the lead after an input, and HubSpot contacts (their latest properties, the
lead they describe, the v3 signature)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from leadflow.contracts.events import LeadCreated
from leadflow.contracts.policy import default_policy
from leadflow.errors import Forbidden, Unauthorized
from leadflow_ingest.domain import hubspot
from leadflow_ingest.domain.identity import Identities, merged_identities, new_identities
from leadflow_ingest.domain.ownership import Writer
from leadflow_ingest.domain.snapshot import lead_snapshot, marks_job_seeker, with_job_seeker
from leadflow_ingest.schemas import LeadIn

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def test_a_merged_lead_s_email_becomes_an_alias_of_the_survivor():
    assert merged_identities("crm-1", "old@example.com", None) == Identities(
        aliases=[("email", "old@example.com")]
    )


def test_a_merged_lead_s_external_id_becomes_the_survivor_s_own_when_it_has_none():
    assert merged_identities(None, "old@example.com", "crm-2") == Identities(
        external_id="crm-2", aliases=[("email", "old@example.com")]
    )


def test_a_merged_lead_s_external_id_is_an_alias_when_the_survivor_has_one():
    assert merged_identities("crm-1", "old@example.com", "crm-2") == Identities(
        aliases=[("email", "old@example.com"), ("external_id", "crm-2")]
    )


def test_an_update_by_known_identities_teaches_nothing():
    assert (
        new_identities(
            "crm-1", "a@example.com", "crm-1", known_by_email=True, known_by_external_id=True
        )
        == Identities()
    )


def test_a_new_external_id_becomes_the_lead_s_own_or_an_alias():
    assert new_identities(
        None, "a@example.com", "crm-9", known_by_email=True, known_by_external_id=False
    ) == Identities(external_id="crm-9")
    assert new_identities(
        "crm-1", "a@example.com", "crm-9", known_by_email=True, known_by_external_id=False
    ) == Identities(aliases=[("external_id", "crm-9")])


def test_a_lead_known_by_external_id_under_another_address_keeps_both_addresses():
    assert new_identities(
        "crm-1", "new@example.com", "crm-1", known_by_email=False, known_by_external_id=True
    ) == Identities(aliases=[("email", "new@example.com")])


def test_a_key_bound_to_a_source_writes_only_that_source_s_leads():
    marketo = Writer(key_name="marketo-key", source="marketo")
    marketo.check_source_system(" Marketo ")
    marketo.check_owner("MARKETO", "email")
    with pytest.raises(Forbidden):
        marketo.check_source_system("hubspot")
    with pytest.raises(Forbidden):
        marketo.check_owner("hubspot", "email")
    Writer(key_name="admin").check_owner("hubspot", "email")  # an unbound key writes any lead


def test_the_snapshot_normalises_the_input_and_names_the_missing_context():
    body = LeadIn.model_validate(
        {
            "email": "ada@example.com",
            "company": {"industry": "SaaS", "country": "Polska", "employees": 120},
            "source": {"system": " HubSpot ", "campaign": "q1"},
            "consent": {"basis": "none"},
        }
    )
    lead_id = uuid.uuid4()
    snapshot = lead_snapshot(
        lead_id, "ada@example.com", body, None, default_policy(), now=NOW, kind=LeadCreated
    )
    assert isinstance(snapshot, LeadCreated)
    assert snapshot.lead_id == lead_id
    assert snapshot.company.industry == "software"
    assert snapshot.company.country == "PL"
    assert snapshot.company.size_band == "50-249"
    assert snapshot.company.domain == "example.com"
    assert snapshot.source.system == "hubspot"
    assert snapshot.routable is False
    assert snapshot.context_missing == ["source.lead_magnet", "intent_note"]
    assert snapshot.occurred_at == NOW


def test_an_update_keeps_what_it_does_not_mention():
    policy = default_policy()
    lead_id = uuid.uuid4()
    first = lead_snapshot(
        lead_id,
        "ada@example.com",
        LeadIn.model_validate({"email": "ada@example.com", "title": "CTO"}),
        None,
        policy,
        now=NOW,
    ).model_dump(mode="json")
    later = lead_snapshot(
        lead_id,
        "ada@example.com",
        LeadIn.model_validate({"email": "ada@example.com", "phone": "+48 1"}),
        first,
        policy,
        now=NOW,
        activity_flags={"job_seeker"},
    )
    assert (later.title, later.phone) == ("CTO", "+48 1")
    assert later.flags == ["job_seeker"]


def test_a_careers_page_visit_marks_a_job_seeker_once():
    policy = default_policy()
    assert marks_job_seeker("page_view", "careers", [], policy)
    assert not marks_job_seeker("page_view", "careers", ["job_seeker"], policy)
    assert not marks_job_seeker("page_view", "pricing", [], policy)
    assert not marks_job_seeker("content_download", "careers", [], policy)
    snapshot = {"lead_id": str(uuid.uuid4()), "email": "a@example.com", "flags": ["student"]}
    marked = with_job_seeker(snapshot, now=NOW)
    assert marked.flags == ["job_seeker", "student"]
    assert marked.occurred_at == NOW


def test_a_contact_property_keeps_its_latest_value_whatever_the_arrival_order():
    properties = hubspot.with_change({}, "jobtitle", "CTO", 2_000)
    assert hubspot.with_change(properties, "jobtitle", "Intern", 1_000) == properties
    newer = hubspot.with_change(properties, "jobtitle", "CEO", 3_000)
    assert newer["jobtitle"] == {"value": "CEO", "occurred_at": 3_000}
    assert hubspot.with_change(newer, None, None, 4_000) == newer  # a creation changes nothing
    assert hubspot.last_change(newer) == datetime.fromtimestamp(3, UTC)
    assert hubspot.last_change({}) is None


def test_a_contact_maps_onto_a_lead_of_the_hubspot_source():
    properties = {
        "email": {"value": "ada@example.com"},
        "company": {"value": "Analytical Engines"},
        "numberofemployees": {"value": "42.0"},
        "hs_legal_basis": {"value": "Legitimate interest – prospect/lead"},
        "favourite_colour": {"value": "green"},
        "phone": {"value": ""},
    }
    assert hubspot.lead_from_contact(62515, 901, properties) == {
        "external_id": "hubspot:62515:901",
        "source": {"system": "hubspot", "channel": "inbound"},
        "email": "ada@example.com",
        "company": {"name": "Analytical Engines", "employees": 42},
        "consent": {"basis": "legitimate_interest"},
        "hubspot": {"favourite_colour": "green"},
    }


def test_a_hubspot_request_is_taken_only_when_signed_and_fresh():
    body = b'[{"eventId": 1}]'
    uri = "https://leadflow.example/v1/sources/hubspot/webhook"
    sent = "1767000000000"
    headers = {
        "x-hubspot-request-timestamp": sent,
        "x-hubspot-signature-v3": hubspot.signature_v3("secret", "POST", uri, body, sent),
    }
    hubspot.verify_v3("secret", "POST", uri, body, headers, now=1_767_000_100)
    with pytest.raises(Unauthorized):
        hubspot.verify_v3("other", "POST", uri, body, headers, now=1_767_000_100)
    with pytest.raises(Unauthorized):  # more than five minutes later
        hubspot.verify_v3("secret", "POST", uri, body, headers, now=1_767_000_301)
    with pytest.raises(Unauthorized):
        hubspot.verify_v3("secret", "POST", uri, body, {}, now=1_767_000_100)
