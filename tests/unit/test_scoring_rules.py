"""Scoring rules under the default policy: fit normalisation, engagement cap and decay,
negative signals and every branch of the MQL rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from leadflow.policy import Policy, default_policy, load_policy
from leadflow_scoring.rules import (
    Interaction,
    LeadFacts,
    activity_kind,
    engagement_score,
    evaluate,
    fit_score,
    is_competitor_domain,
    is_mql,
    round_half_up,
)

POLICY = default_policy()
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

IDEAL = LeadFacts(
    email_valid=True,
    email_domain="acme.example",
    industry="software",
    employees=200,
    seniority="c_level",
    role="decision_maker",
    intent_tier=0,
)


def lead(**changes) -> LeadFacts:
    return LeadFacts(**{**IDEAL.__dict__, **changes})


def engagement_of(*kinds: str, at: datetime = NOW) -> float:
    score, _ = engagement_score([Interaction(kind, at) for kind in kinds], NOW, POLICY)
    return score


def rules_of(breakdown) -> dict[str, float]:
    return {item.rule: item.points for item in breakdown}


# --- fit -------------------------------------------------------------------------------------


def test_c_level_at_priority_industry_in_band_scores_100():
    assert fit_score(IDEAL, POLICY)[0] == 100


def test_manager_at_priority_industry_in_band_scores_89():
    # round(100 × 33 / 37) = round(89.19)
    assert fit_score(lead(seniority="manager"), POLICY)[0] == 89


@pytest.mark.parametrize(
    ("seniority", "points", "fit"),
    [
        ("c_level", 12, 100),
        ("vp", 10, 95),
        ("director", 10, 95),
        ("manager", 8, 89),
        ("individual", 0, 68),
        (None, 0, 68),
        ("intern", 0, 68),
    ],
)
def test_seniority_earns_its_policy_points(seniority, points, fit):
    score, breakdown = fit_score(lead(seniority=seniority), POLICY)
    assert rules_of(breakdown)["fit.seniority"] == points
    assert score == fit


def test_priority_industry_earns_15_points():
    _, breakdown = fit_score(IDEAL, POLICY)
    assert rules_of(breakdown)["fit.industry"] == 15


def test_every_shipped_priority_industry_counts():
    for industry in ("software", "financial_services", "manufacturing"):
        assert rules_of(fit_score(lead(industry=industry), POLICY)[1])["fit.industry"] == 15


def test_industry_outside_priority_list_earns_nothing():
    score, breakdown = fit_score(lead(industry="retail"), POLICY)
    assert rules_of(breakdown)["fit.industry"] == 0
    assert score == 59  # round(100 × 22 / 37) = round(59.46)


def test_industry_is_matched_after_normalisation():
    assert fit_score(lead(industry="Financial Services"), POLICY)[0] == 100


def test_size_in_target_band_earns_10_points():
    assert rules_of(fit_score(IDEAL, POLICY)[1])["fit.size"] == 10


@pytest.mark.parametrize("employees", [50, 51, 500, 999, 1000])
def test_size_band_includes_both_ends(employees):
    assert rules_of(fit_score(lead(employees=employees), POLICY)[1])["fit.size"] == 10


@pytest.mark.parametrize("employees", [None, 0, 49, 1001, 50_000])
def test_size_outside_band_or_unknown_earns_nothing(employees):
    score, breakdown = fit_score(lead(employees=employees), POLICY)
    assert rules_of(breakdown)["fit.size"] == 0
    assert score == 73  # round(100 × 27 / 37) = round(72.97)


@given(
    industry=st.sampled_from(["software", "retail", None]),
    employees=st.one_of(st.none(), st.integers(min_value=0, max_value=100_000)),
    seniority=st.sampled_from(["c_level", "vp", "director", "manager", "individual", None]),
    email_valid=st.booleans(),
    is_student=st.booleans(),
    is_job_seeker=st.booleans(),
    is_competitor=st.booleans(),
)
def test_fit_stays_between_0_and_100(
    industry, employees, seniority, email_valid, is_student, is_job_seeker, is_competitor
):
    facts = lead(
        industry=industry,
        employees=employees,
        seniority=seniority,
        email_valid=email_valid,
        is_student=is_student,
        is_job_seeker=is_job_seeker,
        is_competitor=is_competitor,
    )
    assert 0 <= fit_score(facts, POLICY)[0] <= 100


# --- rounding --------------------------------------------------------------------------------


def test_fit_rounds_halves_up_not_to_even(tmp_path):
    # With 8 points to earn, a lead earning 1 scores exactly 12.5: half-up gives 13,
    # Python's round() would give 12.
    data = POLICY.model_dump(mode="json")
    data["scoring"]["fit"].update(industry_points=1, size_points=3)
    data["scoring"]["fit"]["seniority_points"] = {"c_level": 4, "individual": 0}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    policy = load_policy(path)

    score, _ = fit_score(lead(employees=10, seniority="individual"), policy)

    assert score == 13


@pytest.mark.parametrize(("value", "rounded"), [(0.5, 1), (1.5, 2), (2.5, 3), (88.5, 89)])
def test_round_half_up_rounds_every_half_up(value, rounded):
    assert round_half_up(value) == rounded


def test_round_half_up_to_two_decimals_uses_the_written_value():
    assert round_half_up(2.675, 2) == 2.68


# --- negative signals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "signal", "points", "fit"),
    [
        ({"email_valid": False}, "negative.invalid_email", -100, 0),
        ({"is_competitor": True}, "negative.competitor", -100, 0),
        ({"is_student": True}, "negative.student", -50, 50),
        ({"is_job_seeker": True}, "negative.job_seeker", -25, 75),
    ],
)
def test_negative_signal_is_subtracted_from_fit(change, signal, points, fit):
    score, breakdown = fit_score(lead(**change), POLICY)
    assert rules_of(breakdown)[signal] == points
    assert score == fit


def test_negative_signals_floor_fit_at_zero():
    score, _ = fit_score(lead(seniority="manager", is_student=True, is_job_seeker=True), POLICY)
    assert score == 14  # 89 − 50 − 25
    score, _ = fit_score(lead(seniority="individual", is_student=True, is_job_seeker=True), POLICY)
    assert score == 0  # 68 − 75 would be −7


def test_negative_points_report_the_total_before_the_floor():
    result = evaluate(lead(email_valid=False, is_student=True), [], NOW, POLICY)
    assert result.fit == 0
    assert result.negative_points == 150


def test_email_at_a_listed_competitor_domain_is_a_competitor(tmp_path):
    data = POLICY.model_dump(mode="json")
    data["scoring"]["negative"]["competitor_domains"] = ["Rival.example"]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    policy = load_policy(path)

    for domain in ("rival.example", "eu.rival.example"):
        score, breakdown = fit_score(lead(email_domain=domain), policy)
        assert score == 0
        assert "negative.competitor" in rules_of(breakdown)
    assert fit_score(lead(email_domain="notrival.example"), policy)[0] == 100


def test_competitor_domain_check_ignores_case_and_missing_domains():
    data = POLICY.model_copy(deep=True).model_dump(mode="json")
    data["scoring"]["negative"]["competitor_domains"] = ["rival.example"]
    policy = Policy.model_validate(data)
    assert is_competitor_domain("Sales.RIVAL.example", policy)
    assert not is_competitor_domain(None, policy)
    assert not is_competitor_domain("", policy)
    assert not is_competitor_domain("rival.example", POLICY)


# --- engagement ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "points"),
    [
        ("pricing_page", 12),
        ("docs_page", 10),
        ("blog_page", 3),
        ("event_attended", 15),
        ("webinar_attended", 15),
        ("demo_request", 30),
        ("email_open", 0),
        ("careers_page", 0),
    ],
)
def test_each_interaction_earns_its_policy_points(kind, points):
    assert engagement_of(kind) == points


def test_interaction_unknown_to_the_policy_earns_nothing():
    assert engagement_of("podcast_listened") == 0


def test_engagement_sums_interactions():
    assert engagement_of("demo_request", "pricing_page", "pricing_page", "blog_page") == 57


def test_no_interactions_means_no_engagement():
    assert engagement_score([], NOW, POLICY) == (0.0, [])


def test_engagement_is_capped_at_100():
    score, breakdown = engagement_score([Interaction("demo_request", NOW)] * 4, NOW, POLICY)
    assert score == 100
    assert rules_of(breakdown)["engagement.cap"] == -20


@given(
    st.lists(
        st.sampled_from(
            [
                "pricing_page",
                "docs_page",
                "blog_page",
                "demo_request",
                "event_attended",
                "webinar_attended",
            ]
        ),
        max_size=40,
    )
)
def test_engagement_never_exceeds_the_cap(kinds):
    assert 0 <= engagement_of(*kinds) <= 100


@pytest.mark.parametrize(
    ("weeks", "factor"), [(0, 1.0), (1, 0.9), (2, 0.81), (3, 0.729), (4, 0.6561)]
)
def test_engagement_decays_ten_percent_per_full_week(weeks, factor):
    last = NOW - timedelta(weeks=weeks)
    assert engagement_of(*["demo_request"] * 4, at=last) == round_half_up(100 * factor, 2)


@pytest.mark.parametrize("idle", [timedelta(days=6, hours=23, minutes=59), timedelta(hours=1)])
def test_partial_week_does_not_decay(idle):
    assert engagement_of("demo_request", "demo_request", at=NOW - idle) == 60


def test_one_week_and_six_days_decays_once():
    assert engagement_of("demo_request", "demo_request", at=NOW - timedelta(days=13)) == 54


def test_decay_counts_from_the_last_interaction():
    interactions = [
        Interaction("demo_request", NOW - timedelta(weeks=10)),
        Interaction("demo_request", NOW - timedelta(weeks=2, days=1)),
    ]
    score, breakdown = engagement_score(interactions, NOW, POLICY)
    assert score == 48.6  # 60 × 0.9²
    assert rules_of(breakdown)["engagement.decay"] == -11.4


def test_cap_applies_before_decay():
    # 120 raw → capped 100 → one week → 90 (decaying first would give 108 → 100).
    assert engagement_of(*["demo_request"] * 4, at=NOW - timedelta(weeks=1)) == 90


def test_interaction_stamped_after_now_does_not_inflate_or_fail():
    assert engagement_of("demo_request", at=NOW + timedelta(minutes=5)) == 30


def test_naive_timestamps_are_read_as_utc():
    naive = (NOW - timedelta(weeks=1)).replace(tzinfo=None)
    assert engagement_of("demo_request", "demo_request", at=naive) == 54


@given(
    weeks=st.integers(min_value=0, max_value=52),
    extra=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=6, hours=23)),
)
def test_engagement_equals_capped_points_times_factor_per_full_week(weeks, extra):
    at = NOW - timedelta(weeks=weeks) - extra
    assert engagement_of("demo_request", "pricing_page", at=at) == round_half_up(42 * 0.9**weeks, 2)


# --- the MQL rule ----------------------------------------------------------------------------


def test_fit_engagement_and_role_make_an_mql():
    qualifies, reasons = is_mql(70, 50, 0, "decision_maker", POLICY)
    assert qualifies
    assert [reason.split(":")[0] for reason in reasons] == [
        "fit_met",
        "engagement_met",
        "role_eligible",
    ]


def test_intent_tier_stands_in_for_engagement():
    qualifies, reasons = is_mql(89, 10, 2, "influencer", POLICY)
    assert qualifies
    assert any(reason.startswith("intent_met") for reason in reasons)


def test_fit_below_70_is_not_an_mql():
    qualifies, reasons = is_mql(69, 100, 3, "decision_maker", POLICY)
    assert not qualifies
    assert [reason.split(":")[0] for reason in reasons] == ["fit_below_min"]


def test_neither_engagement_nor_intent_is_not_an_mql():
    qualifies, reasons = is_mql(100, 49.99, 1, "decision_maker", POLICY)
    assert not qualifies
    assert [reason.split(":")[0] for reason in reasons] == ["interest_below_min"]


@pytest.mark.parametrize("role", ["champion", "user", "other", None])
def test_role_outside_decision_maker_and_influencer_is_not_an_mql(role):
    qualifies, reasons = is_mql(100, 100, 3, role, POLICY)
    assert not qualifies
    assert [reason.split(":")[0] for reason in reasons] == ["role_not_eligible"]


def test_every_failed_condition_is_reported():
    _, reasons = is_mql(10, 0, 0, None, POLICY)
    assert [reason.split(":")[0] for reason in reasons] == [
        "fit_below_min",
        "interest_below_min",
        "role_not_eligible",
    ]


@given(
    fit=st.integers(min_value=0, max_value=100),
    engagement=st.floats(min_value=0, max_value=100),
    intent_tier=st.integers(min_value=0, max_value=3),
    role=st.sampled_from(["decision_maker", "influencer", "champion", "user", "other", None]),
)
def test_mql_rule_matches_its_definition(fit, engagement, intent_tier, role):
    expected = (
        fit >= 70
        and (engagement >= 50 or intent_tier >= 2)
        and role in ("decision_maker", "influencer")
    )
    assert is_mql(fit, engagement, intent_tier, role, POLICY)[0] is expected


# --- evaluate --------------------------------------------------------------------------------


def test_evaluate_combines_fit_engagement_and_mql_decision():
    interactions = [
        Interaction("demo_request", NOW - timedelta(days=2)),
        Interaction("pricing_page", NOW - timedelta(days=2)),
        Interaction("docs_page", NOW - timedelta(days=3)),
    ]
    result = evaluate(lead(seniority="manager", role="influencer"), interactions, NOW, POLICY)

    assert result.fit == 89
    assert result.engagement == 52
    assert result.intent_tier == 0
    assert result.negative_points == 0
    assert result.is_mql
    assert result.policy_version == "2026.11-default"
    assert rules_of(result.breakdown) == {
        "fit.industry": 15,
        "fit.size": 10,
        "fit.seniority": 8,
        "engagement.demo_request": 30,
        "engagement.docs_page": 10,
        "engagement.pricing_page": 12,
    }


def test_evaluate_lets_a_cooled_lead_drop_below_mql():
    interactions = [
        Interaction("demo_request", NOW - timedelta(weeks=1)),
        Interaction("pricing_page", NOW - timedelta(weeks=1)),
        Interaction("docs_page", NOW - timedelta(weeks=1)),
    ]
    result = evaluate(IDEAL, interactions, NOW, POLICY)
    assert result.engagement == 46.8  # 52 × 0.9
    assert not result.is_mql


def test_evaluate_passes_the_leads_intent_tier_to_the_mql_rule():
    result = evaluate(lead(intent_tier=2), [], NOW, POLICY)
    assert result.intent_tier == 2
    assert result.is_mql


def test_a_student_with_perfect_profile_is_not_an_mql():
    result = evaluate(lead(is_student=True, intent_tier=3), [], NOW, POLICY)
    assert result.fit == 50
    assert not result.is_mql


def test_intent_tier_outside_0_to_3_is_refused():
    with pytest.raises(ValueError, match="intent_tier"):
        lead(intent_tier=4)


# --- activity kinds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "kind"),
    [
        ("pricing", "pricing_page"),
        ("docs", "docs_page"),
        ("blog", "blog_page"),
        ("careers", "careers_page"),
        ("other", "other_page"),
        (None, "other_page"),
        ("unheard_of", "other_page"),
    ],
)
def test_page_views_count_by_page_category(category, kind):
    assert activity_kind("page_view", category) == kind


@pytest.mark.parametrize(
    "activity_type",
    [
        "content_download",
        "webinar_attended",
        "event_attended",
        "demo_request",
        "email_open",
        "email_click",
        "form_submit",
        "product_usage",
    ],
)
def test_other_ingest_activities_keep_their_name(activity_type):
    assert activity_kind(activity_type, None) == activity_type


def test_unknown_activity_type_is_not_scored():
    assert activity_kind("fax_received", None) is None


def test_every_activity_kind_is_a_policy_engagement_key():
    keys = set(POLICY.scoring.engagement.points)
    kinds = {activity_kind("page_view", c) for c in ("pricing", "docs", "blog", "careers", None)}
    kinds |= {
        activity_kind(t, None)
        for t in (
            "content_download",
            "webinar_attended",
            "event_attended",
            "demo_request",
            "email_open",
            "email_click",
            "form_submit",
            "product_usage",
        )
    }
    assert kinds <= keys
