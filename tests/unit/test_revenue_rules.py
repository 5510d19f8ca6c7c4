"""Revenue against the goal, on the Slovak seed's worked example: a goal of 1.2 M€ new ARR a
year (100,000 EUR a month), an average deal of 40 k€ and a win rate of 25 %, so an open
pipeline of 4× what is still to win."""

import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import yaml
from leadflow.contracts.policy import PolicyError, default_policy, load_policy
from leadflow_feedback.domain.lifecycle import ChangeInvalid, StatusChange, check_change
from leadflow_feedback.domain.reports import LeadFacts, StatusStep, report_csv
from leadflow_feedback.domain.revenue import (
    deal_amount,
    first_touch,
    last_touch,
    period_goal,
    revenue_csv_rows,
    revenue_report,
)

WAW = ZoneInfo("Europe/Warsaw")
POLICY = default_policy()
MARCH = date(2026, 3, 1)
DEAL = {"value": 40000, "currency": "EUR", "stage": "proposal", "close_date": "2026-06-30"}
PAID = {"system": "hubspot", "channel": "inbound", "medium": "cpc", "campaign": "spring-paid"}
WEBINAR = {"system": "hubspot", "channel": "inbound", "medium": "webinar", "campaign": "webinar-q1"}


def at(day: int, hour: int = 10) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=WAW)


def lead(status: str, *, mql_day: int = 2, sqo: dict | None = None, won: dict | None = None,
         won_day: int | None = None, touches=(), source=None) -> LeadFacts:  # fmt: skip
    history = [StatusStep("mql", None, at(mql_day)), StatusStep("sqo", None, at(mql_day + 1),
               {"opportunity": sqo or DEAL})]  # fmt: skip
    if won_day is not None:
        history.append(StatusStep("won", None, at(won_day), {"opportunity": won} if won else None))
    return LeadFacts(
        lead_id=uuid.uuid4(),
        status=status,
        channel="inbound",
        source=source or PAID,
        mql_at=at(mql_day),
        history=history,
        touches=list(touches),
    )


def month(leads: list[LeadFacts], policy=POLICY) -> dict:
    return revenue_report(leads, policy, first=MARCH, last=MARCH, granularity="month")


def test_the_defaults_are_the_worked_example():
    rules = POLICY.revenue
    assert (rules.goal_per_month, rules.currency, rules.coverage_target) == (100_000, "EUR", 4.0)
    assert rules.goal_per_month * 12 == 1_200_000
    assert period_goal(POLICY, "month") == 100_000
    assert period_goal(POLICY, "week") == round(100_000 * 12 / 52, 2)


def test_one_deal_won_and_six_open_cover_the_rest_of_the_goal_four_times():
    won = lead("won", won_day=20)
    report = month([won] + [lead("sqo") for _ in range(6)])
    [period] = report["periods"]
    assert (period["goal"], period["won"], period["deals"]) == (100_000, 40_000, 1)
    assert (period["attainment"], period["met"]) == (0.4, False)
    assert report["pipeline"] == {"value": 240_000, "deals": 6}
    assert report["remaining_goal"] == 60_000
    assert report["coverage"] == {"value": 4.0, "target": 4.0, "met": True}


def test_coverage_below_the_target_is_missed():
    report = month([lead("won", won_day=20)] + [lead("sqo") for _ in range(5)])
    assert report["coverage"] == {"value": 3.33, "target": 4.0, "met": False}


def test_a_reached_goal_needs_no_coverage():
    report = month([lead("won", won_day=d) for d in (10, 11, 12)] + [lead("won", won_day=13)])
    assert report["won"] == 160_000 and report["periods"][0]["met"] is True
    assert report["remaining_goal"] == 0
    assert report["coverage"] == {"value": None, "target": 4.0, "met": True}


def test_a_won_deal_without_an_amount_is_worth_its_sqos():
    assert deal_amount(lead("won", won_day=9), "EUR").value == 40_000


def test_the_won_amount_replaces_the_sqos():
    won = lead("won", won_day=9, won={"value": 45_000})
    amount = deal_amount(won, "EUR")
    assert (amount.value, amount.currency) == (45_000, "EUR")


def test_an_amount_without_any_currency_is_in_the_policys():
    plain = lead("won", won_day=9, sqo={"value": 30_000, "stage": "x", "close_date": "2026-06-30"})
    assert deal_amount(plain, "EUR").currency == "EUR"


def test_other_currencies_are_listed_apart_never_summed():
    pln = {**DEAL, "value": 170_000, "currency": "PLN"}
    won_pln = lead("won", won_day=9, sqo=pln)
    open_pln = lead("sqo", sqo=pln)
    report = month([won_pln, open_pln, lead("won", won_day=20)])
    assert report["won"] == 40_000 and report["pipeline"]["value"] == 0
    assert [(a["kind"], a["value"], a["currency"]) for a in report["other_currencies"]] == [
        ("pipeline", 170_000, "PLN"),
        ("won", 170_000, "PLN"),
    ]


def test_deals_won_outside_the_periods_do_not_count():
    report = month([lead("won", mql_day=1, won_day=31, won=None), lead("sqo")])
    assert report["won"] == 40_000  # 31 March is in March
    april = revenue_report(
        [lead("won", won_day=31)], POLICY, first=date(2026, 4, 1), last=date(2026, 4, 1),
        granularity="month",
    )  # fmt: skip
    assert april["won"] == 0 and april["deals"] == 0


def test_cycle_time_is_median_and_p90_days_from_mql_to_won():
    # MQL on 2 March 10:00, won 5, 10, 12, 20 and 30 March 10:00: 3, 8, 10, 18 and 28 days
    deals = [lead("won", won_day=d) for d in (5, 10, 12, 20, 30)]
    assert month(deals)["cycle_time_days"] == {"median": 10.0, "p90": 28.0, "deals": 5}


def test_first_touch_is_the_original_source_and_last_touch_the_last_before_mql():
    touched = lead(
        "won",
        mql_day=6,
        won_day=20,
        source=WEBINAR,
        touches=[(at(1), PAID), (at(5), WEBINAR), (at(8), {**PAID, "campaign": "after"})],
    )
    assert first_touch(touched) == PAID
    assert last_touch(touched) == WEBINAR
    attribution = month([touched, lead("won", won_day=21)])["attribution"]
    assert attribution["first_touch"]["source"] == [{"key": "paid", "value": 80_000, "deals": 2}]
    assert attribution["first_touch"]["campaign"] == [
        {"key": "spring-paid", "value": 80_000, "deals": 2}
    ]
    assert attribution["last_touch"]["source"] == [
        {"key": "events", "value": 40_000, "deals": 1},
        {"key": "paid", "value": 40_000, "deals": 1},
    ]
    assert attribution["last_touch"]["channel"] == [{"key": "inbound", "value": 80_000, "deals": 2}]


def test_without_touches_both_attributions_use_the_leads_source():
    plain = lead("won", won_day=9)
    assert first_touch(plain) == last_touch(plain) == PAID


def test_the_csv_lists_the_revenue_rows():
    report = {
        "periods": [],
        "conversion": {"by_source": [], "by_campaign": []},
        "exceptions": {
            "first_response_breaches": [],
            "campaigns_without_sql": [],
            "returned_not_in_target": [],
        },
        "revenue": month([lead("won", won_day=20)] + [lead("sqo") for _ in range(6)]),
    }
    lines = report_csv(report, revenue_csv_rows(report["revenue"])).splitlines()
    assert any(line.startswith("revenue,") and ",revenue_won,EUR,40000.0,100000" in line
               for line in lines)  # fmt: skip
    assert "revenue,,,,coverage,,4.0,4.0,true" in lines


@pytest.mark.parametrize(
    ("status", "opportunity", "field"),
    [
        ("won", {"value": 0}, "opportunity.value"),
        ("won", {"value": 1000, "currency": "eur"}, "opportunity.currency"),
        (
            "sqo",
            {**DEAL, "close_date": date(2026, 6, 30), "currency": "EURO"},
            "opportunity.currency",
        ),
    ],
)
def test_a_bad_amount_is_refused_naming_its_field(status, opportunity, field):
    current = "sqo" if status == "won" else "sql"
    with pytest.raises(ChangeInvalid) as refused:
        check_change(current, StatusChange(status, opportunity=opportunity), POLICY.reasons)
    assert refused.value.field == field


def test_a_won_deal_may_carry_its_amount_or_none():
    check_change("sqo", StatusChange("won"), POLICY.reasons)
    check_change("sqo", StatusChange("won", opportunity={"value": 45_000, "currency": "PLN"}),
                 POLICY.reasons)  # fmt: skip


@pytest.mark.parametrize(
    ("rules", "field"),
    [
        ({"goal_per_month": 0}, "revenue.goal_per_month"),
        ({"currency": "eur"}, "revenue.currency"),
        ({"coverage_target": -1}, "revenue.coverage_target"),
    ],
)
def test_a_bad_revenue_rule_is_named(tmp_path, rules, field):
    data = POLICY.model_dump(mode="json")
    data["revenue"] = {**data["revenue"], **rules}
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert [name for name, _ in refused.value.problems] == [field]


def test_a_policy_without_revenue_rules_loads_with_the_defaults(tmp_path):
    data = POLICY.model_dump(mode="json")
    del data["revenue"]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_policy(path).revenue == POLICY.revenue


def test_a_weeks_goal_is_12_of_52_parts_of_the_months():
    report = revenue_report(
        [lead("won", won_day=3)], POLICY, first=date(2026, 3, 2), last=date(2026, 3, 2),
        granularity="week",
    )  # fmt: skip
    assert report["periods"][0]["goal"] == 23_076.92
    assert report["periods"][0]["met"] is True
    assert report["periods"][0]["start"] == datetime(2026, 3, 2, tzinfo=WAW).isoformat()
    assert timedelta(days=7) == datetime.fromisoformat(
        report["periods"][0]["end"]
    ) - datetime.fromisoformat(report["periods"][0]["start"])


def test_the_review_page_shows_the_weeks_revenue_section():
    from leadflow_feedback.domain.reports import calibration, sla_report
    from leadflow_feedback.domain.review import first_response_limits, render_review

    monday, now = date(2026, 3, 2), datetime(2026, 3, 7, 12, tzinfo=WAW)
    pln = {**DEAL, "value": 170_000, "currency": "PLN"}
    deals = [lead("won", won_day=3), *(lead("sqo") for _ in range(6)), lead("sqo", sqo=pln)]
    week = sla_report([], POLICY, first=monday, last=monday, granularity="week", now=now)
    week["revenue"] = revenue_report(deals, POLICY, first=monday, last=monday, granularity="week")
    page = render_review(
        week=monday, team=None, teams=[], week_report=week, trend_report=week,
        calibration=calibration([], POLICY, start=at(1), end=at(9)), names={}, reps={},
        sla_limits=first_response_limits(POLICY),
    )  # fmt: skip
    assert 'data-figure="revenue_won" data-value="40000.0"' in page
    assert "40,000 EUR" in page and "23,077 EUR goal" in page
    assert 'data-figure="pipeline" data-value="240000.0"' in page
    # the week's goal is reached: nothing left to cover
    assert 'data-figure="coverage" data-value=""' in page and "goal reached" in page
    assert 'data-attribution="first_touch.campaign" data-key="spring-paid"' in page
    assert "First touch: the lead's original source" in page
    assert "open SQO 170000 PLN" in page
