"""The rules of the parties' period commitments: figures and verdicts per period, miss streaks
and corrective plans, the periods themselves, the policy fields behind them and the cadence caps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from leadflow.contracts import slas
from leadflow.contracts.commitments import (
    in_target,
    mql_context_missing,
    period_of,
    planned_mql,
    share,
)
from leadflow.contracts.events import LeadMql, LeadSource
from leadflow.contracts.policy import PolicyError, default_policy, load_policy
from leadflow_sla_timer.domain.periods import (
    CONTACTED_WITHIN_LIMIT_SHARE,
    FULL_CONTEXT_SHARE,
    IN_TARGET_SHARE,
    MQL_VOLUME,
    MarketingCounts,
    SalesCounts,
    consecutive_misses,
    marketing_figures,
    missed,
    owes_corrective_plan,
    period_id,
    sales_figures,
)

WARSAW = ZoneInfo("Europe/Warsaw")
POLICY = default_policy()


def by_name(figures) -> dict:
    return {f.commitment: f for f in figures}


# --- marketing ------------------------------------------------------------------------------


def test_monthly_volume_is_met_at_90_percent_of_the_plan_and_missed_below():
    met = by_name(marketing_figures(MarketingCounts(450, 450, 450), POLICY, "month"))[MQL_VOLUME]
    assert (met.planned, met.target, met.actual, met.met) == (500, 450, 450, True)
    short = by_name(marketing_figures(MarketingCounts(449, 449, 449), POLICY, "month"))
    assert short[MQL_VOLUME].met is False
    assert missed("marketing", list(short.values())) == [MQL_VOLUME]


def test_weekly_plan_is_the_monthly_plan_spread_over_52_12_weeks():
    assert planned_mql(POLICY, "week") == 115.38
    figures = by_name(marketing_figures(MarketingCounts(104, 104, 104), POLICY, "week"))
    assert figures[MQL_VOLUME].target == 103.84
    assert figures[MQL_VOLUME].met is True
    assert (
        by_name(marketing_figures(MarketingCounts(103, 103, 103), POLICY, "week"))[MQL_VOLUME].met
        is False
    )


def test_in_target_and_full_context_shares_are_judged_against_the_policy_shares():
    figures = by_name(marketing_figures(MarketingCounts(500, 400, 449), POLICY, "month"))
    assert (figures[IN_TARGET_SHARE].actual, figures[IN_TARGET_SHARE].met) == (0.8, True)
    context = figures[FULL_CONTEXT_SHARE]
    assert (context.planned, context.target, context.actual, context.met) == (
        0.9,
        0.9,
        0.898,
        False,
    )
    assert missed("marketing", list(figures.values())) == [FULL_CONTEXT_SHARE]


def test_a_period_without_mqls_misses_volume_but_no_share():
    figures = marketing_figures(MarketingCounts(0, 0, 0), POLICY, "month")
    assert missed("marketing", figures) == [MQL_VOLUME]
    assert [f.met for f in figures] == [False, None, None, None]


# --- sales ----------------------------------------------------------------------------------


def test_sales_miss_when_too_few_first_responses_came_within_the_limit():
    [kept, *_] = sales_figures(SalesCounts(decided=10, within_limit=9), POLICY)
    assert (kept.commitment, kept.actual, kept.target, kept.met) == (
        CONTACTED_WITHIN_LIMIT_SHARE,
        0.9,
        0.9,
        True,
    )
    [late, *_] = sales_figures(SalesCounts(decided=10, within_limit=8), POLICY)
    assert late.met is False


def test_sales_with_nothing_decided_yet_miss_nothing():
    assert missed("sales", sales_figures(SalesCounts(decided=0, within_limit=0), POLICY)) == []


# --- streaks --------------------------------------------------------------------------------


def test_two_consecutive_missed_periods_owe_a_corrective_plan_and_a_kept_one_resets():
    streak, streaks, plans = 0, [], []
    for missed_now in (True, False, True, True, True):
        streak = consecutive_misses(streak, missed_now)
        streaks.append(streak)
        plans.append(owes_corrective_plan(streak, POLICY))
    assert streaks == [1, 0, 1, 2, 3]
    assert plans == [False, False, False, True, True]


# --- periods --------------------------------------------------------------------------------


def test_a_month_runs_from_local_midnight_of_the_policy_time_zone():
    # 23:30 UTC on 31 October is already 1 November in Warsaw.
    start, end = period_of(datetime(2026, 10, 31, 23, 30, tzinfo=UTC), "month", WARSAW)
    assert (start, end) == (
        datetime(2026, 11, 1, tzinfo=WARSAW),
        datetime(2026, 12, 1, tzinfo=WARSAW),
    )
    december = period_of(datetime(2026, 12, 31, 12, tzinfo=UTC), "month", WARSAW)
    assert december[1] == datetime(2027, 1, 1, tzinfo=WARSAW)


def test_a_week_runs_from_monday():
    start, end = period_of(datetime(2026, 11, 15, 12, tzinfo=UTC), "week", WARSAW)  # a Sunday
    assert start == datetime(2026, 11, 9, tzinfo=WARSAW)
    assert end - start == timedelta(days=7)


def test_the_period_id_is_the_same_for_the_same_party_and_period_only():
    start = datetime(2026, 11, 1, tzinfo=WARSAW)
    assert period_id("marketing", start) == period_id("marketing", start)
    assert period_id("marketing", start) != period_id("sales", start)
    assert period_id("marketing", start) != period_id("marketing", start + timedelta(days=30))


def test_share_rounds_to_four_places_and_is_none_of_nothing():
    assert share(2, 3) == 0.6667
    assert share(0, 0) is None


# --- what counts as in target / with full context --------------------------------------------


def test_in_target_needs_priority_industry_size_band_and_an_mql_role():
    company = {"industry": "Financial Services", "employees": 400}
    assert in_target(POLICY, company, "decision_maker")
    assert not in_target(POLICY, company, "user")
    assert not in_target(POLICY, {**company, "employees": 5000}, "decision_maker")
    assert not in_target(POLICY, {**company, "industry": "retail"}, "decision_maker")


def test_full_context_needs_campaign_lead_magnet_key_activities_and_intent_note():
    full = LeadMql(
        lead_id="00000000-0000-0000-0000-000000000001",
        fit=100,
        engagement=60,
        intent_tier=2,
        source=LeadSource(campaign="q4-webinar", lead_magnet="roi-guide"),
        intent_note="asked for a demo",
        key_activities=[{"type": "demo_request"}],
        promoted_at=datetime(2026, 11, 2, tzinfo=UTC),
    )
    assert mql_context_missing(full) == []
    bare = full.model_copy(update={"intent_note": "  ", "key_activities": []})
    assert mql_context_missing(bare) == ["key_activities", "intent_note"]


# --- the policy behind it -------------------------------------------------------------------


def test_default_policy_judges_monthly_an_hour_after_the_period():
    commitments = POLICY.commitments
    assert (commitments.period, commitments.evaluation_delay) == ("month", timedelta(hours=1))


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("period", "quarter", "commitments.period"),
        ("evaluation_delay", "0h", "commitments.evaluation_delay"),
        ("evaluation_delay", 3, "commitments.evaluation_delay"),
    ],
)
def test_a_bad_period_setting_is_refused_naming_the_field(tmp_path: Path, field, value, problem):
    data = POLICY.model_dump(mode="json")
    data["commitments"][field] = value
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert problem in dict(refused.value.problems)


# --- cadence caps per channel ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "required", "allowed"),
    [("inbound", 6, None), ("outbound", 12, None), ("partner", 6, 8), ("plg", 6, None)],
)
def test_cadence_takes_its_attempts_and_cap_from_the_channel_policy(channel, required, allowed):
    terms = slas.term(POLICY, slas.CONTACT_CADENCE, channel)
    assert (terms.attempts_required, terms.attempts_allowed) == (required, allowed)
