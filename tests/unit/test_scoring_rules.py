"""Scoring rules under the default policy: fit normalisation, engagement cap and decay,
negative signals, every branch of the MQL and PQL rules, decay review and promotion
(once, and again after a recycle)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from leadflow.contracts.policy import Policy, default_policy, load_policy
from leadflow_scoring.domain.rules import (
    Interaction,
    LeadFacts,
    ProductUsage,
    PromotionState,
    activity_kind,
    engagement_score,
    evaluate,
    fit_score,
    is_competitor_domain,
    is_mql,
    is_pql,
    next_decay_at,
    promotion,
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


# --- fit normalisation, every combination ------------------------------------------------------


@given(
    industry=st.sampled_from(["software", "financial_services", "manufacturing", "retail", None]),
    employees=st.one_of(st.none(), st.integers(min_value=0, max_value=5_000)),
    seniority=st.sampled_from(["c_level", "vp", "director", "manager", "individual", None]),
)
def test_fit_is_earned_points_over_37_rounded_half_up(industry, employees, seniority):
    earned = (
        (15 if industry in ("software", "financial_services", "manufacturing") else 0)
        + (10 if employees is not None and 50 <= employees <= 1000 else 0)
        + {"c_level": 12, "vp": 10, "director": 10, "manager": 8}.get(seniority, 0)
    )
    facts = lead(industry=industry, employees=employees, seniority=seniority)
    assert fit_score(facts, POLICY)[0] == int((200 * earned + 37) // 74)  # ⌊100e/37 + ½⌋


@given(
    signals=st.fixed_dictionaries(
        {
            "email_valid": st.booleans(),
            "is_competitor": st.booleans(),
            "is_student": st.booleans(),
            "is_job_seeker": st.booleans(),
        }
    ),
    seniority=st.sampled_from(["c_level", "manager", "individual"]),
)
def test_negative_signals_subtract_their_points_and_floor_at_zero(signals, seniority):
    before = fit_score(lead(seniority=seniority), POLICY)[0]
    penalty = (
        (0 if signals["email_valid"] else 100)
        + (100 if signals["is_competitor"] else 0)
        + (50 if signals["is_student"] else 0)
        + (25 if signals["is_job_seeker"] else 0)
    )
    assert fit_score(lead(seniority=seniority, **signals), POLICY)[0] == max(0, before - penalty)


# --- decay review ------------------------------------------------------------------------------


def test_next_review_is_the_next_full_week_after_the_last_interaction():
    last = NOW - timedelta(days=10)
    interactions = [
        Interaction("demo_request", NOW - timedelta(days=20)),
        Interaction("pricing_page", last),
    ]
    assert next_decay_at(interactions, NOW, POLICY) == last + timedelta(weeks=2)


def test_next_review_of_a_fresh_interaction_is_one_week_later():
    assert next_decay_at([Interaction("blog_page", NOW)], NOW, POLICY) == NOW + timedelta(weeks=1)


def test_no_review_without_points_to_decay():
    assert next_decay_at([], NOW, POLICY) is None
    assert next_decay_at([Interaction("email_open", NOW)], NOW, POLICY) is None


def test_no_review_once_engagement_has_decayed_to_zero():
    long_ago = NOW - timedelta(weeks=200)
    assert engagement_of("blog_page", at=long_ago) == 0
    assert next_decay_at([Interaction("blog_page", long_ago)], NOW, POLICY) is None


@given(
    idle=st.timedeltas(min_value=timedelta(0), max_value=timedelta(weeks=30)),
    kinds=st.lists(st.sampled_from(["demo_request", "pricing_page", "blog_page"]), min_size=1),
)
def test_engagement_changes_only_at_review_instants(idle, kinds):
    last = NOW - idle
    interactions = [Interaction(kind, last) for kind in kinds]
    review = next_decay_at(interactions, NOW, POLICY)
    assert review is not None and review > NOW
    weeks = (review - last) // timedelta(weeks=1)
    assert review == last + timedelta(weeks=weeks)  # a whole number of weeks after the last
    capped = min(sum(POLICY.scoring.engagement.points[kind] for kind in kinds), 100)
    now_score = engagement_score(interactions, NOW, POLICY)[0]
    just_before = engagement_score(interactions, review - timedelta(seconds=1), POLICY)[0]
    at_review = engagement_score(interactions, review, POLICY)[0]
    assert just_before == now_score  # nothing changes between now and the review …
    assert at_review == round_half_up(capped * 0.9**weeks, 2)  # … and at it, one more week


# --- PQL -----------------------------------------------------------------------------------------


def usage(feature_uses=None, active_users=0) -> ProductUsage:
    return ProductUsage("acme", feature_uses or {}, active_users)


def test_a_feature_used_three_times_makes_a_pql():
    qualifies, reasons = is_pql(usage({"reports": 3}, active_users=1), POLICY)
    assert qualifies
    assert reasons == ["feature_uses_met: reports used 3× ≥ 3 in account acme within 30 days"]


def test_five_active_users_make_a_pql():
    qualifies, reasons = is_pql(usage({"reports": 1}, active_users=5), POLICY)
    assert qualifies
    assert [reason.split(":")[0] for reason in reasons] == ["active_users_met"]


def test_below_both_product_thresholds_is_not_a_pql():
    qualifies, reasons = is_pql(usage({"reports": 2, "exports": 2}, active_users=4), POLICY)
    assert not qualifies
    assert [reason.split(":")[0] for reason in reasons] == [
        "feature_uses_below_min",
        "active_users_below_min",
    ]


def test_no_product_usage_is_not_a_pql():
    assert not is_pql(usage(), POLICY)[0]


@given(
    uses=st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 10)),
    users=st.integers(0, 10),
)
def test_pql_rule_matches_its_definition(uses, users):
    expected = max(uses.values(), default=0) >= 3 or users >= 5
    assert is_pql(usage(uses, users), POLICY)[0] is expected


# --- promotion: once, and again after a recycle ------------------------------------------------

MQL_RESULT = evaluate(lead(intent_tier=2), [], NOW, POLICY)
NOT_MQL = evaluate(lead(role="user", intent_tier=2), [], NOW, POLICY)
PQL = (True, ["feature_uses_met: …"])
RECYCLED = PromotionState(
    promoted=True, nurture_until=NOW - timedelta(days=1), recycle_intent_tier=2
)


def codes(reasons) -> list[str]:
    return [reason.split(":")[0] for reason in reasons]


def test_a_new_lead_meeting_the_mql_rule_is_promoted_as_mql():
    kind, reasons = promotion(MQL_RESULT, None, PromotionState(), NOW, POLICY)
    assert kind == "mql"
    assert codes(reasons) == ["fit_met", "intent_met", "role_eligible"]


def test_a_new_lead_crossing_product_thresholds_is_promoted_as_pql():
    assert promotion(NOT_MQL, PQL, PromotionState(), NOW, POLICY) == ("pql", PQL[1])


def test_the_mql_rule_wins_over_pql_for_a_new_lead():
    assert promotion(MQL_RESULT, PQL, PromotionState(), NOW, POLICY)[0] == "mql"


def test_a_lead_failing_the_rule_is_not_promoted_and_says_why():
    kind, reasons = promotion(
        NOT_MQL, (False, ["active_users_below_min: …"]), PromotionState(), NOW, POLICY
    )
    assert kind is None
    assert codes(reasons) == ["role_not_eligible"]


def test_a_lead_without_lawful_basis_is_never_promoted():
    kind, reasons = promotion(MQL_RESULT, PQL, PromotionState(routable=False), NOW, POLICY)
    assert kind is None
    assert codes(reasons) == ["not_routable"]


def test_a_promoted_lead_is_not_promoted_again_nor_taken_back():
    state = PromotionState(promoted=True)
    assert promotion(MQL_RESULT, PQL, state, NOW, POLICY) == (
        None,
        ["already_promoted: sales has the lead"],
    )
    assert promotion(NOT_MQL, None, state, NOW, POLICY)[0] is None


def test_a_recycled_lead_rests_in_nurture_whatever_its_interest():
    state = PromotionState(promoted=True, nurture_until=NOW + timedelta(days=1))
    hot = evaluate(lead(intent_tier=3), [Interaction("demo_request", NOW)] * 4, NOW, POLICY)
    kind, reasons = promotion(hot, PQL, state, NOW, POLICY)
    assert kind is None
    assert codes(reasons) == ["in_nurture"]


def test_after_nurture_the_mql_rule_alone_does_not_bring_a_lead_back():
    lukewarm = evaluate(lead(intent_tier=2), [Interaction("demo_request", NOW)] * 2, NOW, POLICY)
    assert lukewarm.is_mql and lukewarm.engagement == 60
    kind, reasons = promotion(lukewarm, None, RECYCLED, NOW, POLICY)
    assert kind is None
    assert codes(reasons) == ["no_renewed_interest"]


def test_after_nurture_engagement_at_the_reengagement_threshold_brings_it_back():
    hot = evaluate(
        lead(),
        [Interaction("demo_request", NOW)] * 2 + [Interaction("docs_page", NOW)],
        NOW,
        POLICY,
    )
    assert hot.engagement == 70
    kind, reasons = promotion(hot, None, RECYCLED, NOW, POLICY)
    assert kind == "mql"
    assert reasons[-1] == "reengaged: engagement 70 ≥ 70"


def test_after_nurture_engagement_just_below_the_reengagement_threshold_does_not():
    warm = evaluate(
        lead(),
        [Interaction("demo_request", NOW)] * 2 + [Interaction("blog_page", NOW)] * 3,
        NOW,
        POLICY,
    )
    assert warm.engagement == 69
    assert promotion(warm, None, RECYCLED, NOW, POLICY)[0] is None


def test_after_nurture_a_risen_intent_tier_brings_it_back():
    risen = evaluate(lead(intent_tier=3), [], NOW, POLICY)
    kind, reasons = promotion(risen, None, RECYCLED, NOW, POLICY)
    assert kind == "mql"
    assert reasons[-1] == "intent_rose: intent tier 2 → 3"


def test_after_nurture_renewed_interest_still_needs_the_mql_rule():
    hot_but_student = evaluate(
        lead(is_student=True), [Interaction("demo_request", NOW)] * 4, NOW, POLICY
    )
    kind, reasons = promotion(hot_but_student, None, RECYCLED, NOW, POLICY)
    assert kind is None
    assert codes(reasons) == ["fit_below_min"]


def test_after_nurture_crossing_product_thresholds_brings_it_back_as_pql():
    assert promotion(NOT_MQL, PQL, RECYCLED, NOW, POLICY)[0] == "pql"


def test_nurture_ends_exactly_at_its_instant():
    state = PromotionState(promoted=True, nurture_until=NOW, recycle_intent_tier=2)
    risen = evaluate(lead(intent_tier=3), [], NOW, POLICY)
    assert promotion(risen, None, state, NOW, POLICY)[0] == "mql"
    assert promotion(risen, None, state, NOW - timedelta(seconds=1), POLICY)[0] is None
