"""Customer success after the signature, from the Slovak seed's numbers: the hand-off within 48 h
carries use case, promised outcomes, risks and plan (or it is refused, naming what is missing);
kickoff within 5 days; the key feature activated within 14 days, from product usage after the
won status; churn by reason and by source, low-usage segments and success stories for the
review; `leadflow policy check` names a bad value of these rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from leadflow.contracts import slas
from leadflow.contracts.policy import default_policy
from leadflow_feedback.domain.lifecycle import (
    HANDOFF_FIELDS,
    ChangeInvalid,
    StatusChange,
    check_change,
)
from leadflow_feedback.domain.review import render_review
from leadflow_feedback.success.rules import (
    Customer,
    CustomerSuccessRefused,
    Story,
    activation,
    check_churn_reason,
    check_customer,
    churn_summary,
    clock_result,
    customer_success_report,
    low_usage_segments,
)
from leadflow_tools.cli import main

POLICY = default_policy()
SHIPPED = Path(__file__).parents[2] / "shared/leadflow/contracts/policy_default.yaml"
H, D = timedelta(hours=1), timedelta(days=1)
# Monday 2 November 2026, 10:00 UTC: the deal is won.
WON = datetime(2026, 11, 2, 10, tzinfo=UTC)
HANDOFF = {
    "use_case": "route inbound demo requests to the right rep",
    "promised_outcomes": "first response under 2 h for 90 % of MQLs",
    "risks": "the CRM integration is owned by a partner",
    "plan": "kickoff in week 1, CRM connected in week 2, go-live in week 3",
}
PAID = {"system": "hubspot", "channel": "inbound", "campaign": "spring", "medium": "cpc"}
WEBINAR = {"system": "hubspot", "channel": "inbound", "campaign": "q1", "medium": "webinar"}


def customer(**values) -> Customer:
    return Customer(**{"lead_id": uuid.uuid4(), "won_at": WON, "channel": "inbound", **values})


# --- the hand-off ----------------------------------------------------------------------------


def test_a_hand_off_with_use_case_outcomes_risks_and_plan_is_accepted():
    check_change("won", StatusChange("handed_off", handoff=HANDOFF), POLICY.reasons)


@pytest.mark.parametrize("missing", HANDOFF_FIELDS)
def test_a_hand_off_missing_one_part_is_refused_naming_it(missing):
    handoff = {k: v for k, v in HANDOFF.items() if k != missing}
    with pytest.raises(ChangeInvalid) as refused:
        check_change("won", StatusChange("handed_off", handoff=handoff), POLICY.reasons)
    assert refused.value.field == f"handoff.{missing}"
    assert refused.value.extra["required"] == list(HANDOFF_FIELDS)


def test_a_blank_part_counts_as_missing():
    with pytest.raises(ChangeInvalid) as refused:
        check_change(
            "won", StatusChange("handed_off", handoff={**HANDOFF, "risks": "  "}), POLICY.reasons
        )
    assert refused.value.field == "handoff.risks"


def test_a_hand_off_without_any_content_is_refused_at_its_first_part():
    with pytest.raises(ChangeInvalid) as refused:
        check_change("won", StatusChange("handed_off"), POLICY.reasons)
    assert refused.value.field == "handoff.use_case"


# --- the clocks after the won status ---------------------------------------------------------


@pytest.mark.parametrize(
    ("sla", "reached", "verdict"),
    [
        (slas.CS_HANDOFF, {"handed_off_at": WON + 47 * H}, "met"),
        (slas.CS_HANDOFF, {"handed_off_at": WON + 48 * H}, "met"),
        (slas.CS_HANDOFF, {"handed_off_at": WON + 49 * H}, "missed"),
        (slas.ONBOARDING_KICKOFF, {"kickoff_at": WON + 5 * D}, "met"),
        (slas.ONBOARDING_KICKOFF, {"kickoff_at": WON + 6 * D}, "missed"),
        (slas.KEY_FEATURE_ACTIVATION, {"activated_at": WON + 14 * D}, "met"),
        (slas.KEY_FEATURE_ACTIVATION, {"activated_at": WON + 15 * D}, "missed"),
    ],
)
def test_a_clock_is_met_when_reached_by_its_due_instant(sla, reached, verdict):
    now = WON + 30 * D
    assert clock_result(customer(**reached), sla, POLICY, now).verdict == verdict


def test_the_due_instants_are_48_hours_5_days_and_14_days_after_the_won_status():
    lead = customer()
    due = {sla: clock_result(lead, sla, POLICY, WON).due_at for sla in slas.SLAS[-3:]}
    assert due == {
        slas.CS_HANDOFF: WON + 48 * H,
        slas.ONBOARDING_KICKOFF: WON + 5 * D,
        slas.KEY_FEATURE_ACTIVATION: WON + 14 * D,
    }


def test_a_clock_not_reached_is_pending_until_due_then_missed():
    lead = customer()
    assert clock_result(lead, slas.ONBOARDING_KICKOFF, POLICY, WON + 4 * D).verdict == "pending"
    assert clock_result(lead, slas.ONBOARDING_KICKOFF, POLICY, WON + 5 * D).verdict == "missed"


def test_a_customer_churned_before_the_due_instant_owes_nothing():
    lead = customer(churned_at=WON + 10 * D, churn_reason="price")
    result = clock_result(lead, slas.KEY_FEATURE_ACTIVATION, POLICY, WON + 30 * D)
    assert result.verdict == "cancelled"


# --- activation from product usage ----------------------------------------------------------


def test_the_first_use_of_the_key_feature_after_the_won_status_activates():
    uses = [
        ("key_feature", WON - 3 * D),  # during the trial: before the signature
        ("dashboards", WON + D),
        ("key_feature", WON + 9 * D),
        ("key_feature", WON + 4 * D),
    ]
    assert activation(uses, WON, "key_feature") == WON + 4 * D


def test_other_features_and_a_lead_not_won_activate_nothing():
    assert activation([("dashboards", WON + D)], WON, "key_feature") is None
    assert activation([("key_feature", WON + D)], None, "key_feature") is None


# --- who customer success reports about ------------------------------------------------------


@pytest.mark.parametrize("status", ["sqo", "lost", "routed"])
def test_only_a_won_customer_takes_onboarding_churn_and_stories(status):
    with pytest.raises(CustomerSuccessRefused) as refused:
        check_customer(status, None)
    assert refused.value.field == "status"
    check_customer("won", None)
    check_customer("handed_off", None)


def test_a_churned_customer_takes_nothing_more():
    with pytest.raises(CustomerSuccessRefused) as refused:
        check_customer("handed_off", WON + 40 * D)
    assert refused.value.field == "lead_id"


def test_a_churn_reason_comes_from_the_policys_list():
    check_churn_reason("low_adoption", POLICY)
    with pytest.raises(CustomerSuccessRefused) as refused:
        check_churn_reason("they hated us", POLICY)
    assert refused.value.field == "reason"
    assert refused.value.extra["allowed_reasons"] == sorted(POLICY.customer_success.churn_reasons)


# --- what marketing sees ---------------------------------------------------------------------


def test_churn_is_counted_by_reason_first_source_and_channel():
    churned = [
        customer(first_source=PAID, churn_reason="low_adoption"),
        customer(first_source=PAID, churn_reason="low_adoption"),
        customer(first_source=WEBINAR, channel="partner", churn_reason="price"),
    ]
    summary = churn_summary(churned, POLICY)
    assert summary["churned"] == 3
    assert summary["by_reason"] == [
        {"key": "low_adoption", "churned": 2, "label": "Low adoption / no value seen"},
        {"key": "price", "churned": 1, "label": "Price"},
    ]
    assert summary["by_source"] == [
        {"key": "paid", "churned": 2},
        {"key": "events", "churned": 1},
    ]
    assert summary["by_channel"] == [
        {"key": "inbound", "churned": 2},
        {"key": "partner", "churned": 1},
    ]


def test_low_usage_segments_are_those_customers_past_14_days_without_activation():
    now = WON + 20 * D
    software_mid = {"industry": "software", "size_band": "51-200"}
    customers = [
        customer(**software_mid, activated_at=WON + 3 * D),
        customer(**software_mid),  # 20 days, never used the key feature
        customer(industry="manufacturing", size_band="1001-5000"),
        customer(industry="manufacturing", size_band="1001-5000"),
        customer(industry="retail", size_band="11-50", won_at=WON + 10 * D),  # 10 days: too early
        customer(industry="retail", size_band="11-50", churned_at=WON + 15 * D),  # gone
    ]
    assert low_usage_segments(customers, POLICY, now) == [
        {"segment": "manufacturing · 1001-5000", "not_activated": 2, "customers": 2, "share": 1.0},
        {"segment": "software · 51-200", "not_activated": 1, "customers": 2, "share": 0.5},
    ]


def report_of_the_month() -> dict:
    start, end = WON - 2 * D, WON + 28 * D
    won = [
        customer(handed_off_at=WON + 20 * H, kickoff_at=WON + 4 * D, activated_at=WON + 9 * D,
                 industry="software", size_band="51-200"),
        customer(handed_off_at=WON + 60 * H, kickoff_at=WON + 7 * D, industry="software",
                 size_band="51-200"),
    ]  # fmt: skip
    churned = [customer(first_source=PAID, churned_at=WON + 20 * D, churn_reason="low_adoption")]
    story = Story(uuid.uuid4(), won[0].lead_id, "2 h response", "MQL→SQL up from 30 % to 36 %",
                  ["speed to lead", "routing"], WON + 21 * D)  # fmt: skip
    return customer_success_report(
        won, won, churned, [story], POLICY, start=start, end=end, now=WON + 30 * D
    )


def test_the_report_counts_each_clock_met_and_missed():
    clocks = report_of_the_month()["clocks"]
    assert [(clocks[s]["met"], clocks[s]["missed"]) for s in slas.SLAS[-3:]] == [
        (1, 1),
        (1, 1),
        (1, 1),
    ]
    assert clocks[slas.CS_HANDOFF]["share_met"] == 0.5
    assert clocks[slas.CS_HANDOFF]["limit"] == {"seconds": 48 * 3600, "clock": "wall"}


def test_the_review_page_shows_customer_success(tmp_path):
    from leadflow_feedback.domain.reports import calibration, sla_report

    monday = WON.date()
    week = sla_report([], POLICY, first=monday, last=monday, granularity="week", now=WON)
    html = render_review(
        week=monday, team=None, teams=[], week_report=week, trend_report=week,
        calibration=calibration([], POLICY, start=WON, end=WON + 7 * D), names={}, reps={},
        sla_limits={}, customer_success=report_of_the_month(),
    )  # fmt: skip
    assert 'id="customer-success"' in html
    assert 'data-figure="cs_handoff.missed" data-value="1"' in html
    assert 'data-figure="key_feature_activation.met" data-value="1"' in html
    assert (
        '<tr data-key="low_adoption" data-value="1"><td>Low adoption / no value seen</td>' in html
    )
    assert 'data-by="source" data-key="paid" data-value="1"' in html
    assert 'data-segment="software · 51-200" data-value="1"' in html
    assert "MQL→SQL up from 30 % to 36 %" in html
    assert "<td>48 h</td>" in html and "<td>5 days</td>" in html and "<td>14 days</td>" in html
    assert html.count('<li data-clock="') == 3  # each clock missed by one customer


# --- the policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("onboarding_kickoff: {limit: 5d,", "onboarding_kickoff: {limit: 0d,",
         "slas.onboarding_kickoff.limit"),
        ("key_feature_activation: {limit: 14d, clock: wall}",
         "key_feature_activation: {limit: 14d, clock: lunar}",
         "slas.key_feature_activation.clock"),
        ("  key_feature: key_feature\n", "  key_feature: '  '\n", "customer_success.key_feature"),
        ("    price: {label: Price}", "    Price!: {label: Price}",
         "customer_success.churn_reasons.Price!"),
        ("    price: {label: Price}", "    price: {label: ''}",
         "customer_success.churn_reasons.price.label"),
    ],
)  # fmt: skip
def test_policy_check_names_a_bad_customer_success_value(tmp_path, capsys, old, new, field):
    text = SHIPPED.read_text()
    assert old in text
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace(old, new, 1))
    assert main(["policy", "check", str(path)]) == 1
    assert f"  {field}:" in capsys.readouterr().err


def test_the_shipped_defaults_are_the_seeds():
    assert POLICY.slas.cs_handoff.limit == 48 * H
    assert POLICY.slas.onboarding_kickoff.limit == 5 * D
    assert POLICY.slas.key_feature_activation.limit == 14 * D
    assert POLICY.customer_success.key_feature == "key_feature"
    assert "low_adoption" in POLICY.customer_success.churn_reasons
