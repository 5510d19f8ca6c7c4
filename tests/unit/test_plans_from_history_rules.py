"""Plans from history: the funnel planner on the conversion rates Leadflow observed, each with
the outcomes it rests on, and the warnings when the goal needs better rates than history.

The history is built so that it shows the Slovak seed's rates (MQL→SQL 30 %, SQL→SQO 80 %,
win rate 25 %), so the plan from it is the seed's worked example: 1.2 M€ at 40 k€ a deal →
120 SQO → 150 SQL → 500 MQL; the Polish seed's capacity of 300 MQL then needs an MQL→SQL rate
of 50 %, better than the 30 % history shows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time
from fractions import Fraction

import pytest
from leadflow.contracts.policy import PolicyError, default_policy, load_policy
from leadflow_feedback.domain.observed_rates import Arrival, ObservedRate, observed_rates
from leadflow_feedback.domain.planning import PlanInput, PlanInputError, plan, plan_from_history
from leadflow_feedback.domain.reports import LeadFacts, StatusStep
from leadflow_feedback.domain.sales_capacity import (
    SalesCapacity,
    calendar_week,
    sales_capacity,
    weekly_hours,
)

AT = datetime(2026, 3, 2, 9, tzinfo=UTC)
HISTORY = "the last 90 days"


def lead(*statuses: str, channel: str = "inbound", campaign: str = "spring") -> LeadFacts:
    """An MQL that went through `statuses` after its promotion and routing."""
    path = ["mql", "routed", *statuses]
    return LeadFacts(
        lead_id=uuid.uuid4(),
        status=path[-1],
        channel=channel,
        source={"campaign": campaign},
        mql_at=AT,
        history=[StatusStep(s, None, AT) for s in path],
    )


def seed_history(channel: str = "inbound") -> list[LeadFacts]:
    """100 MQLs: 30 become SQL (70 returned); 24 of those SQO (6 lost); 6 of those won
    (18 lost)."""
    won = [lead("sal", "sql", "sqo", "won", channel=channel) for _ in range(6)]
    lost_sqo = [lead("sal", "sql", "sqo", "lost", channel=channel) for _ in range(18)]
    lost_sql = [lead("sal", "sql", "lost", channel=channel) for _ in range(6)]
    returned = [lead("returned", channel=channel) for _ in range(70)]
    return won + lost_sqo + lost_sql + returned


def arrivals(total: int, promoted: int, channel: str = "inbound") -> list[Arrival]:
    return [Arrival(channel, "spring", i < promoted) for i in range(total)]


GOAL = {
    "revenue_goal": 1_200_000,
    "avg_deal_size": 40_000,
    "touches_per_mql": 6,
    "sdr_activities_per_week": 300,
}


def blank(**typed) -> PlanInput:
    rates = {"win_rate": None, "sql_to_sqo": None, "mql_to_sql": None, "visit_to_mql": None}
    return PlanInput(**GOAL, **{**rates, **typed})


# --- the observed rates --------------------------------------------------------------------


def test_observed_rates_reproduce_the_seed_rates_with_the_outcomes_they_rest_on():
    seen = observed_rates(arrivals(1000, 100), seed_history())
    assert seen["lead_to_mql"] == ObservedRate("lead_to_mql", 100, 1000)
    assert seen["mql_to_sql"] == ObservedRate("mql_to_sql", 30, 100)
    assert seen["sql_to_sqo"] == ObservedRate("sql_to_sqo", 24, 30)
    assert seen["win_rate"] == ObservedRate("win_rate", 6, 24)
    assert seen["mql_to_sql"].rate == Fraction(3, 10)


def test_a_lead_still_worked_at_a_stage_is_open_and_does_not_dilute_its_rate():
    history = [*seed_history(), lead("sal"), lead("sal", "sql"), lead("working")]
    seen = observed_rates([], history)
    # the SQL being worked converted MQL→SQL; the SAL and the lead being worked are open there
    assert seen["mql_to_sql"] == ObservedRate("mql_to_sql", 31, 101, open=2)
    assert seen["sql_to_sqo"] == ObservedRate("sql_to_sqo", 24, 30, open=1)


def test_a_recycle_before_a_stage_does_not_decide_that_stage():
    # recycled as an MQL, promoted again, now an SQL being worked: open at SQL→SQO
    again = lead("recycled", "mql", "routed", "sal", "sql")
    seen = observed_rates([], [again])
    assert seen["mql_to_sql"] == ObservedRate("mql_to_sql", 1, 1)
    assert seen["sql_to_sqo"] == ObservedRate("sql_to_sqo", 0, 0, open=1)


def test_a_channel_or_campaign_keeps_only_its_leads():
    history = seed_history() + [lead("sal", "sql", "sqo", "won", channel="partner")] * 4
    arrived = arrivals(1000, 100) + arrivals(10, 4, channel="partner")
    partner = observed_rates(arrived, history, channel="partner")
    assert partner["mql_to_sql"] == ObservedRate("mql_to_sql", 4, 4)
    assert partner["lead_to_mql"] == ObservedRate("lead_to_mql", 4, 10)
    assert observed_rates(arrived, history, campaign="autumn")["mql_to_sql"].outcomes == 0


# --- the plan from history -----------------------------------------------------------------


def test_the_plan_from_history_is_the_seed_worked_example():
    seen = observed_rates(arrivals(1000, 100), seed_history())
    planned = plan_from_history(blank(), seen, min_outcomes=30, history=HISTORY)
    p = planned.plan
    volumes = (p.deals, p.sqo, p.sql, p.mql, p.activities, p.sdr_weeks)
    assert volumes == (30, 120, 150, 500, 3000, 10)
    assert p.leads == 5000  # lead→MQL 10 %
    assert p.visits is None  # visits are not observed; no visit→MQL typed in
    rates = {r.stage: r for r in planned.rates}
    assert (rates["mql_to_sql"].rate, rates["mql_to_sql"].source) == (0.3, "observed")
    assert (rates["win_rate"].converted, rates["win_rate"].outcomes) == (6, 24)
    # of the four, only SQO→won rests on fewer than 30 outcomes (24)
    assert [(w.kind, w.stage) for w in planned.warnings] == [("few_outcomes", "win_rate")]


def test_a_typed_rate_better_than_history_is_warned_about():
    seen = observed_rates(arrivals(1000, 100), seed_history())
    planned = plan_from_history(blank(mql_to_sql=0.4), seen, min_outcomes=20, history=HISTORY)
    assert planned.plan.mql == 375  # 150 SQL at the typed 40 %
    warning = planned.warnings[0]
    assert (warning.kind, warning.stage, warning.needed, warning.observed) == (
        "better_than_history", "mql_to_sql", 0.4, 0.3)  # fmt: skip
    assert "40.0 %" in warning.message and "30.0 %" in warning.message
    typed = next(r for r in planned.rates if r.stage == "mql_to_sql")
    assert (typed.source, typed.rate, typed.observed) == ("typed", 0.4, 0.3)


def test_a_typed_rate_at_or_below_history_is_not_warned_about():
    seen = observed_rates(arrivals(1000, 100), seed_history())
    planned = plan_from_history(blank(mql_to_sql=0.3), seen, min_outcomes=20, history=HISTORY)
    assert planned.warnings == []


def test_capacity_that_needs_a_better_mql_to_sql_than_history_is_warned_about():
    # the Polish seed: 500 MQL needed, sales can work 300 → raising the bar needs 50 %
    seen = observed_rates(arrivals(1000, 100), seed_history())
    inputs = blank(sales_capacity_mql=300)
    planned = plan_from_history(inputs, seen, min_outcomes=20, history=HISTORY)
    assert planned.plan.capacity.shortfall_mql == 200
    better = [w for w in planned.warnings if w.kind == "better_than_history"]
    assert [(w.stage, w.needed, w.observed) for w in better] == [("mql_to_sql", 0.5, 0.3)]
    assert "300 MQL" in better[0].message


def test_a_rate_on_few_outcomes_is_marked_thin():
    seen = observed_rates([], [lead("sal", "sql", "sqo", "won"), lead("returned")] * 5)
    planned = plan_from_history(blank(), seen, min_outcomes=30, history=HISTORY)
    thin = {w.stage for w in planned.warnings if w.kind == "few_outcomes"}
    assert thin == {"mql_to_sql", "sql_to_sqo", "win_rate"}


def test_a_stage_without_history_and_without_a_typed_rate_is_refused_naming_it():
    seen = observed_rates([], [lead("returned")])  # 0 of 1 MQL became SQL
    with pytest.raises(PlanInputError) as refused:
        plan_from_history(blank(), seen, min_outcomes=30, history=HISTORY)
    assert refused.value.field == "mql_to_sql"
    assert "0 of 1 decided outcomes" in refused.value.message


def test_without_arrivals_the_plan_leaves_leads_out_and_says_so():
    seen = observed_rates([], seed_history())
    planned = plan_from_history(blank(), seen, min_outcomes=1, history=HISTORY)
    assert planned.plan.leads is None
    assert [(w.kind, w.stage) for w in planned.warnings] == [("no_history", "lead_to_mql")]


def test_typed_rates_still_plan_as_before():
    typed = PlanInput(**GOAL, win_rate=0.25, sql_to_sqo=0.8, mql_to_sql=0.3, visit_to_mql=0.015)
    result = plan(typed).as_dict()
    assert (result["mql"], result["visits"]) == (500, 33334)
    assert "leads" not in result


# --- the policy numbers ------------------------------------------------------------------------


def test_the_default_policy_plans_over_90_days_and_asks_for_30_outcomes():
    rules = default_policy().planning
    assert (rules.history_window_days, rules.min_outcomes) == (90, 30)


@pytest.mark.parametrize(
    ("name", "value"), [("history_window_days", 0), ("min_outcomes", 0), ("min_outcomes", "x")]
)
def test_a_bad_planning_number_is_named(tmp_path, name, value):
    import yaml

    data = default_policy().model_dump(mode="json")
    data["planning"][name] = value
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(PolicyError) as refused:
        load_policy(path)
    assert f"planning.{name}" in str(refused.value)


def test_a_policy_without_a_planning_section_takes_the_defaults(tmp_path):
    import yaml

    data = default_policy().model_dump(mode="json")
    del data["planning"]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert load_policy(path).planning.min_outcomes == 30


# --- sales capacity from routing's reps ------------------------------------------------------

FULL_WEEK = calendar_week(5, time(9), time(17))  # the default calendar: 40 h


def team(*reps: dict) -> dict:
    return {"team": "cee", "reps": list(reps)}


def rep(capacity: int | None = 1000, hours: dict | None = None) -> dict:
    return {"id": str(uuid.uuid4()), "capacity": capacity, "working_hours": hours}


def capacity_of(directories: list[dict], weeks: int) -> SalesCapacity:
    return sales_capacity(
        directories,
        weeks=Fraction(weeks),
        full_week=FULL_WEEK,
        activities_per_week=Fraction(300),
        touches_per_mql=Fraction(6),
        cadence_days=Fraction(12),
    )


def test_two_full_time_reps_work_the_seed_example_in_five_weeks():
    # 500 MQL × 6 touches = 3,000 activities = 10 SDR-weeks at 300 a week: 2 reps, 5 weeks
    capacity = capacity_of([team(rep(), rep())], weeks=5)
    assert capacity.mql == 500
    assert [r.by_hours for r in capacity.reps] == [250.0, 250.0]


def test_a_part_time_rep_works_its_share_of_the_calendar_week():
    mornings = {day: [["09:00", "13:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
    capacity = capacity_of([team(rep(hours=mornings))], weeks=4)
    assert capacity.reps[0].hours_per_week == 20.0
    assert capacity.mql == 100  # half of 300 activities a week, 4 weeks, 6 touches


def test_open_leads_limit_a_rep_to_its_capacity_turned_over_once_a_cadence():
    # 30 open leads at most, each worked for up to the 12-day inbound cadence: 30 × 28 / 12 = 70
    capacity = capacity_of([team(rep(capacity=30))], weeks=4)
    assert (capacity.reps[0].by_hours, capacity.reps[0].by_open_leads) == (200.0, 70.0)
    assert capacity.mql == 70


def test_routing_capacity_of_300_mql_puts_the_seed_plan_over_capacity():
    # the Polish seed: sales can work 300 of the 500 MQL the plan needs
    capacity = capacity_of([team(rep(), rep(), rep())], weeks=2)
    assert capacity.mql == 300
    inputs = blank(win_rate=0.25, sql_to_sqo=0.8, mql_to_sql=0.3, sales_capacity_mql=capacity.mql)
    assert plan(inputs).capacity.shortfall_mql == 200


def test_weekly_hours_without_working_hours_are_the_full_week():
    assert weekly_hours(None, FULL_WEEK) == 40
    assert weekly_hours({"mon": [["08:30", "12:00"], ["13:00", "17:00"]]}, FULL_WEEK) == Fraction(
        15, 2
    )
