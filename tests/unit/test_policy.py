"""The shipped SLA policy carries docs/domain.md's numbers, and a bad policy file is refused by field."""

from __future__ import annotations

from datetime import time, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from leadflow.contracts.policy import PolicyError, SlaTerm, default_policy, load_policy


@pytest.fixture
def default_data() -> dict:
    """The default policy as a plain mapping, to edit and write back as a variant file."""
    return default_policy().model_dump(mode="json")


def write_policy(directory: Path, data: dict, name: str = "policy.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def problems_of(path: Path) -> dict[str, str]:
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    return dict(refused.value.problems)


# --- the shipped default --------------------------------------------------------------------


def test_default_policy_has_a_version():
    assert default_policy().version == "2026.11-default"


def test_default_policy_is_loaded_once_and_shared():
    assert default_policy() is default_policy()


def test_loading_without_a_path_gives_the_shipped_default():
    assert load_policy() == default_policy()


def test_default_fit_points_are_domain_numbers():
    fit = default_policy().scoring.fit
    assert fit.industry_points == 15
    assert fit.size_points == 10
    assert fit.seniority_points == {
        "c_level": 12,
        "vp": 10,
        "director": 10,
        "manager": 8,
        "individual": 0,
    }
    assert fit.max_points == 37


def test_default_icp_is_three_priority_industries_and_50_to_1000_employees():
    fit = default_policy().scoring.fit
    assert set(fit.priority_industries) == {"software", "financial_services", "manufacturing"}
    assert (fit.size_band.min_employees, fit.size_band.max_employees) == (50, 1000)


def test_default_engagement_points_cap_and_decay_are_domain_numbers():
    engagement = default_policy().scoring.engagement
    assert engagement.points["pricing_page"] == 12
    assert engagement.points["docs_page"] == 10
    assert engagement.points["blog_page"] == 3
    assert engagement.points["event_attended"] == 15
    assert engagement.points["webinar_attended"] == 15
    assert engagement.points["demo_request"] == 30
    assert engagement.cap == 100
    assert engagement.decay_factor == 0.9
    assert engagement.decay_every == timedelta(weeks=1)


def test_default_engagement_gives_unweighted_activities_zero_points():
    points = default_policy().scoring.engagement.points
    for kind in (
        "careers_page",
        "other_page",
        "content_download",
        "email_open",
        "email_click",
        "form_submit",
        "product_usage",
    ):
        assert points[kind] == 0


def test_default_negative_signals_are_domain_numbers():
    negative = default_policy().scoring.negative
    assert negative.invalid_email == 100
    assert negative.competitor == 100
    assert negative.student == 50
    assert negative.job_seeker == 25
    assert negative.competitor_domains == ()


def test_default_mql_rule_is_fit_70_engagement_50_intent_2_and_two_roles():
    mql = default_policy().scoring.mql
    assert mql.fit_min == 70
    assert mql.engagement_min == 50
    assert mql.intent_tier_min == 2
    assert set(mql.roles) == {"decision_maker", "influencer"}


def test_default_reengagement_threshold_is_above_the_mql_threshold():
    scoring = default_policy().scoring
    assert scoring.recycle.reengagement_min == 70
    assert scoring.recycle.reengagement_min > scoring.mql.engagement_min


def test_default_pql_thresholds_are_3_feature_uses_and_5_active_users():
    pql = default_policy().scoring.pql
    assert (pql.feature_uses_min, pql.active_users_min) == (3, 5)
    assert pql.window == timedelta(days=30)


@pytest.mark.parametrize(
    ("reason", "days"),
    [
        ("not_in_target", 90),
        ("budget_too_small", 90),
        ("timing_next_quarter", 90),
        ("competitor_locked_in", 90),
        ("budget_freeze", 60),
        ("no_need", 60),
        ("unreachable", 45),
        ("duplicate", 45),
        ("student", 90),
        ("job_seeker", 90),
    ],
)
def test_recycled_lead_rests_in_nurture_for_its_reasons_days(reason, days):
    assert default_policy().nurture_for(reason) == timedelta(days=days)


@pytest.mark.parametrize("reason", [None, "", "moved_to_mars"])
def test_an_unlisted_recycle_reason_rests_the_default_90_days(reason):
    assert default_policy().scoring.recycle.default_nurture_days == 90
    assert default_policy().nurture_for(reason) == timedelta(days=90)


@pytest.mark.parametrize(
    ("channel", "limit"),
    [
        ("inbound", timedelta(hours=2)),
        ("outbound", timedelta(hours=24)),
        ("partner", timedelta(hours=24)),
        ("plg", timedelta(hours=24)),
    ],
)
def test_default_first_response_limit_runs_on_business_hours(channel, limit):
    first_response = default_policy().slas.for_channel(channel).first_response
    assert first_response.limit == limit
    assert first_response.clock == "business_hours"


@pytest.mark.parametrize(
    ("channel", "attempts", "days", "max_attempts"),
    [
        ("inbound", 6, 12, None),
        ("outbound", 12, 21, None),
        ("partner", 6, 14, 8),
        ("plg", 6, 12, None),
    ],
)
def test_default_contact_cadence_per_channel(channel, attempts, days, max_attempts):
    cadence = default_policy().slas.for_channel(channel).cadence
    assert cadence.attempts == attempts
    assert cadence.within == timedelta(days=days)
    assert cadence.max_attempts == max_attempts


def test_default_stage_slas_are_domain_numbers():
    slas = default_policy().slas
    assert (slas.sal_acceptance.limit, slas.sal_acceptance.clock) == (timedelta(hours=24), "wall")
    assert slas.sql_to_sqo.clock == "business_days"
    assert slas.sql_to_sqo.business_days == 5
    assert (slas.pql_contact.limit, slas.pql_contact.clock) == (timedelta(hours=24), "wall")
    assert (slas.cs_handoff.limit, slas.cs_handoff.clock) == (timedelta(hours=48), "wall")


def test_default_escalation_ladder():
    ladder = default_policy().slas.escalation
    assert ladder.warning_at == 0.75
    assert ladder.breach_at == 1.0
    assert ladder.team_lead_at == 1.0
    assert ladder.manager_at == 1.5
    assert ladder.reassign_on_breach is False


def test_default_calendar_is_warsaw_weekdays_nine_to_five_polish_holidays():
    calendar = default_policy().calendar
    assert calendar.time_zone == "Europe/Warsaw"
    assert calendar.working_days == ("mon", "tue", "wed", "thu", "fri")
    assert calendar.weekday_numbers == frozenset({0, 1, 2, 3, 4})
    assert (calendar.opens_at, calendar.closes_at) == (time(9), time(17))
    assert calendar.holiday_country == "PL"


def test_default_reasons_are_the_domain_list_with_45_to_90_nurture_days():
    reasons = default_policy().reasons
    assert set(reasons) == {
        "not_in_target",
        "budget_too_small",
        "timing_next_quarter",
        "competitor_locked_in",
        "budget_freeze",
        "no_need",
        "unreachable",
        "duplicate",
        "student",
        "job_seeker",
    }
    assert all(45 <= reason.nurture_days <= 90 for reason in reasons.values())


def test_default_commitments_of_both_parties():
    commitments = default_policy().commitments
    marketing, sales = commitments.marketing, commitments.sales
    assert marketing.mql_plan_per_month == 500
    assert marketing.source_mix == {"paid": 0.40, "content": 0.30, "events": 0.30}
    assert 0 < marketing.min_in_target_share <= 1
    assert 0 < marketing.min_full_context_share <= 1
    assert 0 < sales.min_contacted_within_limit_share <= 1
    assert sales.min_attempts_per_mql > 0
    assert 0 < sales.min_status_share <= 1
    assert commitments.corrective_plan_after_misses == 2


def test_default_policy_is_frozen():
    with pytest.raises(ValueError):
        default_policy().scoring.mql.fit_min = 10


# --- swapping the policy ---------------------------------------------------------------------


def test_a_policy_file_replaces_the_default(tmp_path, default_data):
    default_data["version"] = "2026.12-strict"
    default_data["scoring"]["mql"]["fit_min"] = 80
    default_data["slas"]["channels"]["inbound"]["first_response"]["limit"] = "1h"

    policy = load_policy(write_policy(tmp_path, default_data))

    assert policy.version == "2026.12-strict"
    assert policy.scoring.mql.fit_min == 80
    assert policy.slas.for_channel("inbound").first_response.limit == timedelta(hours=1)
    assert default_policy().scoring.mql.fit_min == 70


def test_a_policy_file_path_may_be_a_string(tmp_path, default_data):
    assert load_policy(str(write_policy(tmp_path, default_data))) == default_policy()


def test_industries_in_a_policy_file_are_normalised(tmp_path, default_data):
    default_data["scoring"]["fit"]["priority_industries"] = ["Financial Services", "Health-Care"]
    policy = load_policy(write_policy(tmp_path, default_data))
    assert policy.scoring.fit.priority_industries == ("financial_services", "health_care")


@given(
    amount=st.integers(min_value=1, max_value=10_000),
    unit=st.sampled_from([("m", "minutes"), ("h", "hours"), ("d", "days"), ("w", "weeks")]),
)
def test_durations_read_with_their_unit(amount, unit):
    suffix, name = unit
    term = SlaTerm.model_validate({"limit": f"{amount}{suffix}", "clock": "wall"})
    assert term.limit == timedelta(**{name: amount})


def test_the_default_policy_survives_a_round_trip_through_yaml(tmp_path, default_data):
    assert load_policy(write_policy(tmp_path, default_data)) == default_policy()


# --- refusing a bad policy -------------------------------------------------------------------


def test_a_non_numeric_threshold_is_refused_naming_the_field(tmp_path, default_data):
    default_data["scoring"]["mql"]["fit_min"] = "seventy"
    path = write_policy(tmp_path, default_data)

    with pytest.raises(PolicyError) as refused:
        load_policy(path)

    assert "scoring.mql.fit_min: Input should be a valid number" in str(refused.value)
    assert str(path) in str(refused.value)


def test_a_misspelt_field_is_refused(tmp_path, default_data):
    default_data["scoring"]["mql"]["fit_minimum"] = 70
    problems = problems_of(write_policy(tmp_path, default_data))
    assert problems["scoring.mql.fit_minimum"] == "Extra inputs are not permitted"


def test_a_misspelt_engagement_kind_is_refused(tmp_path, default_data):
    default_data["scoring"]["engagement"]["points"]["pricing_pgae"] = 12
    problems = problems_of(write_policy(tmp_path, default_data))
    assert "scoring.engagement.points.pricing_pgae" in problems


def test_every_bad_field_is_named_at_once(tmp_path, default_data):
    default_data["scoring"]["negative"]["student"] = -5
    default_data["calendar"]["time_zone"] = "Europe/Atlantis"
    problems = problems_of(write_policy(tmp_path, default_data))
    assert set(problems) == {"scoring.negative.student", "calendar.time_zone"}


def test_a_missing_field_is_refused(tmp_path, default_data):
    del default_data["slas"]["cs_handoff"]
    problems = problems_of(write_policy(tmp_path, default_data))
    assert problems == {"slas.cs_handoff": "Field required"}


def test_a_channel_without_slas_is_refused(tmp_path, default_data):
    del default_data["slas"]["channels"]["plg"]
    problems = problems_of(write_policy(tmp_path, default_data))
    assert "plg" in problems["slas.channels"]


def test_a_duration_without_unit_is_refused(tmp_path, default_data):
    default_data["slas"]["sal_acceptance"]["limit"] = 24
    problems = problems_of(write_policy(tmp_path, default_data))
    assert "unit" in problems["slas.sal_acceptance.limit"]


def test_a_zero_duration_is_refused(tmp_path, default_data):
    default_data["slas"]["pql_contact"]["limit"] = "0h"
    problems = problems_of(write_policy(tmp_path, default_data))
    assert "slas.pql_contact.limit" in problems


def test_business_days_must_be_whole_days(tmp_path, default_data):
    default_data["slas"]["sql_to_sqo"]["limit"] = "36h"
    problems = problems_of(write_policy(tmp_path, default_data))
    assert "whole days" in problems["slas.sql_to_sqo"]


def test_an_unquoted_yaml_time_is_refused_instead_of_read_as_minutes(tmp_path, default_data):
    path = write_policy(tmp_path, default_data)
    # YAML 1.1 reads 17:00 unquoted as the number 1020.
    path.write_text(path.read_text().replace("'17:00:00'", "17:00"), encoding="utf-8")
    problems = problems_of(path)
    assert "quoted" in problems["calendar.closes_at"]


def test_a_reengagement_threshold_not_above_mql_is_refused(tmp_path, default_data):
    default_data["scoring"]["recycle"]["reengagement_min"] = 50
    problems = problems_of(write_policy(tmp_path, default_data))
    assert "reengagement_min" in problems["scoring"]


def test_an_escalation_ladder_out_of_order_is_refused(tmp_path, default_data):
    default_data["slas"]["escalation"]["manager_at"] = 0.5
    assert "slas.escalation" in problems_of(write_policy(tmp_path, default_data))


def test_a_source_mix_not_adding_up_to_one_is_refused(tmp_path, default_data):
    default_data["commitments"]["marketing"]["source_mix"] = {"paid": 0.5, "content": 0.3}
    problems = problems_of(write_policy(tmp_path, default_data))
    assert "add up to 1" in problems["commitments.marketing.source_mix"]


def test_an_unknown_holiday_country_is_refused(tmp_path, default_data):
    default_data["calendar"]["holiday_country"] = "XX"
    assert "calendar.holiday_country" in problems_of(write_policy(tmp_path, default_data))


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(PolicyError, match="does not exist"):
        load_policy(tmp_path / "absent.yaml")


def test_broken_yaml_is_refused(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("scoring: [unclosed\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(path)


def test_a_yaml_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="mapping"):
        load_policy(path)


# --- `leadflow policy check` -----------------------------------------------------------------


def test_policy_check_accepts_a_valid_file(tmp_path, default_data, capsys):
    from leadflow_tools.cli import main

    path = write_policy(tmp_path, default_data)
    assert main(["policy", "check", str(path)]) == 0
    assert "valid policy, version 2026.11-default" in capsys.readouterr().out


def test_policy_check_names_each_bad_field_and_fails(tmp_path, default_data, capsys):
    from leadflow_tools.cli import main

    default_data["scoring"]["mql"]["fit_min"] = "seventy"
    default_data["scoring"]["recycle"]["default_nurture_days"] = 400
    default_data["scoring"]["pql"]["window"] = 30
    path = write_policy(tmp_path, default_data)

    assert main(["policy", "check", str(path)]) == 1

    err = capsys.readouterr().err
    assert "3 problem(s)" in err
    assert "  scoring.mql.fit_min: Input should be a valid number" in err
    assert (
        "  scoring.recycle.default_nurture_days: Input should be less than or equal to 365" in err
    )
    assert "  scoring.pql.window: give a unit" in err


def test_policy_check_fails_on_a_missing_or_unparsable_file(tmp_path, capsys):
    from leadflow_tools.cli import main

    assert main(["policy", "check", str(tmp_path / "absent.yaml")]) == 1
    assert "does not exist" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("scoring: [unclosed\n", encoding="utf-8")
    assert main(["policy", "check", str(broken)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def test_policy_check_runs_as_the_leadflow_command(tmp_path, default_data):
    import subprocess
    import sys

    default_data["slas"]["cs_handoff"]["clock"] = "sundial"
    path = write_policy(tmp_path, default_data)
    done = subprocess.run(
        [sys.executable, "-m", "leadflow_tools.cli", "policy", "check", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "slas.cs_handoff.clock" in done.stderr
