"""What HubSpot's contact properties mean to a lead: buying role to role, analytics source to
channel, medium and campaign, conversion to lead magnet, title to seniority; and the mapping file
that overrides them, refused with the line of each bad field."""

from __future__ import annotations

from pathlib import Path

import pytest
from leadflow.contracts.policy import default_policy
from leadflow_feedback.domain.reports import source_group
from leadflow_ingest.domain import hubspot
from leadflow_ingest.domain.hubspot_mapping import (
    BUYING_ROLES,
    DEFAULT_MAPPING,
    SOURCES,
    MappingError,
    mapping_from_yaml,
)
from leadflow_ingest.schemas import LeadIn


def contact(**values: str | None) -> dict[str, dict]:
    return {name: {"value": value, "occurred_at": 1_000} for name, value in values.items()}


@pytest.mark.parametrize(
    ("buying_role", "role"),
    [
        ("DECISION_MAKER", "decision_maker"),
        ("BUDGET_HOLDER", "decision_maker"),
        ("EXECUTIVE_SPONSOR", "decision_maker"),
        ("INFLUENCER", "influencer"),
        ("CHAMPION", "champion"),
        ("END_USER", "user"),
        ("LEGAL_AND_COMPLIANCE", "other"),
        ("BLOCKER", "other"),
        ("OTHER", "other"),
        ("A_VALUE_ADDED_IN_THE_PORTAL", "other"),
    ],
)
def test_each_hubspot_buying_role_is_a_leadflow_role(buying_role, role):
    assert DEFAULT_MAPPING.role_of(buying_role) == role


def test_several_buying_roles_count_as_the_strongest():
    assert DEFAULT_MAPPING.role_of("END_USER;CHAMPION;INFLUENCER") == "influencer"
    assert DEFAULT_MAPPING.role_of("CHAMPION;BUDGET_HOLDER") == "decision_maker"
    assert DEFAULT_MAPPING.role_of(" blocker ; end_user ") == "user"
    assert DEFAULT_MAPPING.role_of("") is None
    assert DEFAULT_MAPPING.role_of(None) is None


def test_every_role_the_mapping_gives_is_one_a_lead_may_have():
    for role in BUYING_ROLES.values():
        LeadIn(email="a@example.com", role=role)


@pytest.mark.parametrize(
    ("source", "group"),
    [
        ("PAID_SEARCH", "paid"),
        ("PAID_SOCIAL", "paid"),
        ("ORGANIC_SEARCH", "content"),
        ("SOCIAL_MEDIA", "content"),
        ("EMAIL_MARKETING", "content"),
        ("REFERRALS", "other"),
        ("AI_REFERRALS", "other"),
        ("DIRECT_TRAFFIC", "other"),
        ("OFFLINE", "other"),
        ("OTHER_CAMPAIGNS", "other"),
    ],
)
def test_each_hubspot_source_lands_in_the_review_s_source_mix_as_intended(source, group):
    groups = default_policy().commitments.marketing.source_mix
    mapped = DEFAULT_MAPPING.source_of({"hs_analytics_source": source})
    assert mapped["channel"] == "inbound"
    assert source_group(mapped, groups) == group


def test_every_documented_source_has_a_rule():
    assert set(SOURCES) == {
        "ORGANIC_SEARCH", "PAID_SEARCH", "PAID_SOCIAL", "SOCIAL_MEDIA", "EMAIL_MARKETING",
        "OTHER_CAMPAIGNS", "REFERRALS", "AI_REFERRALS", "DIRECT_TRAFFIC", "OFFLINE",
    }  # fmt: skip


def test_the_campaign_comes_from_the_drill_down_only_where_it_names_one():
    paid = {"hs_analytics_source": "PAID_SEARCH", "hs_analytics_source_data_1": "q4-brand"}
    assert DEFAULT_MAPPING.source_of(paid) == {
        "channel": "inbound", "medium": "paid_search", "campaign": "q4-brand",
    }  # fmt: skip
    # organic search's first drill-down is the search engine, not a campaign
    organic = {"hs_analytics_source": "ORGANIC_SEARCH", "hs_analytics_source_data_1": "google"}
    assert DEFAULT_MAPPING.source_of(organic) == {"channel": "inbound", "medium": "organic"}


def test_the_latest_source_stands_in_for_a_missing_original_one():
    assert DEFAULT_MAPPING.source_of({"hs_latest_source": "PAID_SOCIAL"})["medium"] == (
        "paid_social"
    )
    assert DEFAULT_MAPPING.source_of({"hs_analytics_source": None}) == {}
    # a source HubSpot adds later keeps its own name as the medium
    assert DEFAULT_MAPPING.source_of({"hs_analytics_source": "NEW_THING"})["medium"] == (
        "new_thing"
    )


def test_the_first_conversion_is_the_lead_magnet_else_the_latest():
    both = {
        "first_conversion_event_name": "SLA playbook: Landing page form",
        "recent_conversion_event_name": "Pricing: Contact us",
    }
    assert DEFAULT_MAPPING.lead_magnet_of(both) == "SLA playbook: Landing page form"
    assert DEFAULT_MAPPING.lead_magnet_of({"recent_conversion_event_name": "Demo form"}) == (
        "Demo form"
    )
    assert DEFAULT_MAPPING.lead_magnet_of({}) is None


def test_a_hubspot_contact_becomes_a_lead_with_role_seniority_source_and_lead_magnet():
    properties = contact(
        email="ada@example.com",
        jobtitle="Chief Technology Officer",
        hs_buying_role="CHAMPION;DECISION_MAKER",
        hs_analytics_source="PAID_SEARCH",
        hs_analytics_source_data_1="q4-brand",
        first_conversion_event_name="SLA playbook: Landing page form",
        lifecyclestage="lead",
    )
    lead = hubspot.lead_from_contact(62515, 901, properties)
    assert lead["title"] == "Chief Technology Officer"
    assert lead["seniority"] == "c_level"
    assert lead["role"] == "decision_maker"
    assert lead["source"] == {
        "system": "hubspot",
        "channel": "inbound",
        "medium": "paid_search",
        "campaign": "q4-brand",
        "lead_magnet": "SLA playbook: Landing page form",
    }
    assert lead["hubspot"] == {"lifecyclestage": "lead"}  # what the mapping reads is not kept twice
    LeadIn.model_validate(lead)


def test_a_title_no_rule_knows_clears_the_seniority_it_gave_before():
    lead = hubspot.lead_from_contact(1, 2, contact(email="a@example.com", jobtitle="Ninja"))
    assert "seniority" in lead and lead["seniority"] is None
    assert "role" not in hubspot.lead_from_contact(1, 2, contact(email="a@example.com"))


def test_a_contact_is_read_whole_until_every_property_a_lead_needs_is_known():
    wanted = hubspot.properties_read()
    assert {"email", "jobtitle", "hs_buying_role", "hs_analytics_source",
            "first_conversion_event_name", "hs_legal_basis"} <= set(wanted)  # fmt: skip
    assert hubspot.properties_missing([])
    assert hubspot.properties_missing(["email"])
    assert not hubspot.properties_missing(wanted)


def test_properties_read_from_hubspot_give_way_to_newer_changes_only():
    known = contact(jobtitle="CTO") | {"email": {"value": "new@example.com", "occurred_at": 9_000}}
    read = hubspot.with_read(known, {"jobtitle": "CEO", "email": "old@example.com"}, 5_000)
    assert read["jobtitle"] == {"value": "CEO", "occurred_at": 5_000}
    assert read["email"] == {"value": "new@example.com", "occurred_at": 9_000}


MAPPING_FILE = """\
# our portal's choices
titles:
  - pattern: '\\bgeschaftsfuhrer'
    seniority: c_level
buying_roles:
  legal_and_compliance: influencer
sources:
  OFFLINE: {channel: outbound, medium: offline}
  OTHER_CAMPAIGNS: {medium: events, campaign_property: hs_analytics_source_data_1}
lead_magnets:
  "SLA playbook: Landing page form": sla-playbook
"""


def test_a_mapping_file_s_entries_override_the_defaults_and_keep_the_rest():
    mapping = mapping_from_yaml(MAPPING_FILE, "hubspot-mapping.yaml")
    assert mapping.role_of("LEGAL_AND_COMPLIANCE") == "influencer"
    assert mapping.role_of("BUDGET_HOLDER") == "decision_maker"
    assert mapping.source_of({"hs_analytics_source": "OFFLINE"}) == {
        "channel": "outbound", "medium": "offline",
    }  # fmt: skip
    events = mapping.source_of(
        {"hs_analytics_source": "OTHER_CAMPAIGNS", "hs_analytics_source_data_1": "devday-2026"}
    )
    groups = default_policy().commitments.marketing.source_mix
    assert source_group(events, groups) == "events"
    assert mapping.source_of({"hs_analytics_source": "PAID_SEARCH"})["medium"] == "paid_search"
    assert (
        mapping.lead_magnet_of({"first_conversion_event_name": "SLA playbook: Landing page form"})
        == "sla-playbook"
    )
    lead = hubspot.lead_from_contact(
        1, 2, contact(email="a@example.com", jobtitle="Geschäftsführer"), mapping
    )
    assert lead["seniority"] == "c_level"
    assert mapping_from_yaml("", "empty.yaml") == DEFAULT_MAPPING


def test_an_unknown_field_in_the_mapping_file_is_refused_naming_its_line():
    text = MAPPING_FILE.replace("    seniority: c_level", "    seniorty: c_level").replace(
        "  OFFLINE: {channel: outbound, medium: offline}",
        "  OFFLINE: {channel: outbound, medium: offline, campain: x}",
    )
    with pytest.raises(MappingError) as refused:
        mapping_from_yaml(text + "lead_magnet: nope\n", "hubspot-mapping.yaml")
    problems = {(line, where) for line, where, _ in refused.value.problems}
    assert (4, "titles[0].seniorty") in problems
    assert (8, "sources.OFFLINE.campain") in problems
    assert (12, "lead_magnet") in problems
    assert (3, "titles[0].seniority") in problems  # now missing: named at its rule
    assert "line 4: titles[0].seniorty: Extra inputs are not permitted" in str(refused.value)


def test_a_bad_value_in_the_mapping_file_is_refused_naming_its_line():
    text = "buying_roles:\n  CHAMPION: hero\ntitles:\n  - {pattern: '(unclosed', seniority: vp}\n"
    with pytest.raises(MappingError) as refused:
        mapping_from_yaml(text, "m.yaml")
    lines = {where: line for line, where, _ in refused.value.problems}
    assert lines == {"buying_roles.CHAMPION": 2, "titles[0].pattern": 4}
    with pytest.raises(MappingError, match="not valid YAML"):
        mapping_from_yaml("titles: [", "m.yaml")
    with pytest.raises(MappingError, match="must be a YAML mapping"):
        mapping_from_yaml("- a\n- b\n", "m.yaml")


def test_the_example_mapping_file_is_valid():
    example = Path(__file__).parents[2] / "deploy" / "examples" / "hubspot-mapping.yaml"
    mapping = mapping_from_yaml(example.read_text(encoding="utf-8"), str(example))
    assert mapping.source_of({"hs_analytics_source": "OFFLINE"})["channel"] == "outbound"
    assert (
        hubspot.lead_from_contact(
            1, 2, contact(email="a@example.com", jobtitle="Head of Sales Operations"), mapping
        )["seniority"]
        == "manager"
    )
