"""The reverse funnel planner reproduces docs/domain.md's worked example and its capacity check."""

from argparse import Namespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from leadflow_feedback.domain.planning import PlanInput, PlanInputError, parse_share, plan
from leadflow_tools.cli import main

WORKED = PlanInput(
    revenue_goal=1_200_000,
    avg_deal_size=40_000,
    win_rate=0.25,
    sql_to_sqo=0.8,
    mql_to_sql=0.3,
    visit_to_mql=0.015,
    touches_per_mql=6,
    sdr_activities_per_week=300,
)


def test_the_worked_example_exactly():
    result = plan(WORKED)
    assert (result.deals, result.sqo, result.sql, result.mql) == (30, 120, 150, 500)
    assert result.exact["visits"] == 33333.33  # ≈33,333 visits …
    assert result.visits == 33334  # … and whole visits round up: 33,333 × 1.5 % < 500
    assert result.activities == 3000
    assert result.sdr_weeks == 10
    assert result.exact["sdr_weeks"] == 10.0
    assert result.capacity is None


def test_capacity_500_against_300_is_over_with_three_options():
    result = plan(PlanInput(**{**WORKED.__dict__, "sales_capacity_mql": 300}))
    c = result.capacity
    assert c.verdict == "over_capacity"
    assert (c.mql_needed, c.capacity_mql, c.shortfall_mql) == (500, 300, 200)
    options = {o["option"]: o for o in c.options}
    assert list(options) == ["add_sales_capacity", "raise_mql_bar", "automated_nurture"]
    assert options["add_sales_capacity"]["extra_sdr_weeks"] == 4  # 200 × 6 / 300
    assert options["raise_mql_bar"]["mql_to_sql_needed"] == 0.5  # 150 SQL from 300 MQL
    assert options["automated_nurture"]["mql_to_nurture"] == 200


def test_capacity_enough_is_within_with_headroom():
    c = plan(PlanInput(**{**WORKED.__dict__, "sales_capacity_mql": 600})).capacity
    assert (c.verdict, c.headroom_mql, c.options) == ("within_capacity", 100, [])


@pytest.mark.parametrize(
    ("field", "value"),
    [("win_rate", 0), ("win_rate", 1.5), ("avg_deal_size", 0), ("revenue_goal", -1),
     ("sales_capacity_mql", -5)],
)  # fmt: skip
def test_a_bad_input_names_its_field(field, value):
    with pytest.raises(PlanInputError) as refused:
        plan(PlanInput(**{**WORKED.__dict__, field: value}))
    assert refused.value.field == field


@given(
    st.integers(1, 10_000_000),
    st.integers(1, 1_000_000),
    st.floats(0.01, 1),
    st.floats(0.01, 1),
    st.floats(0.01, 1),
)
def test_each_stage_needs_at_least_as_many_as_the_next(goal, deal, win, sqo_rate, sql_rate):
    result = plan(
        PlanInput(goal, deal, win, sqo_rate, sql_rate, 0.015, 6, 300, sales_capacity_mql=None)
    )
    assert result.visits >= result.mql >= result.sql >= result.sqo >= result.deals >= 1


def test_shares_as_percent_or_fraction():
    assert parse_share("25%") == parse_share("0.25") == 0.25
    assert parse_share("1.5 %") == 0.015


def test_the_cli_prints_the_plan(capsys):
    argv = ["plan", "--revenue-goal", "1200000", "--avg-deal-size", "40000", "--win-rate", "25%",
            "--sql-to-sqo", "80%", "--mql-to-sql", "0.3", "--visit-to-mql", "1.5%",
            "--touches-per-mql", "6", "--sdr-activities-per-week", "300",
            "--sales-capacity-mql", "300"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "MQL                 500" in out
    assert "OVER by 200 MQL" in out
    assert main([*argv, "--json"]) == 0
    assert '"sdr_weeks": 10' in capsys.readouterr().out


def test_the_cli_names_a_bad_option(capsys):
    from leadflow_tools.cli import _plan

    args = Namespace(revenue_goal="lots", json=False)
    assert _plan(args) == 2
    assert "--revenue-goal" in capsys.readouterr().err


def test_volumes_too_large_to_compute_are_refused_naming_the_goal():
    tiny = 5e-324
    inp = PlanInput(
        revenue_goal=1e300,
        avg_deal_size=tiny,
        win_rate=tiny,
        sql_to_sqo=tiny,
        mql_to_sql=tiny,
        visit_to_mql=tiny,
        touches_per_mql=tiny,
        sdr_activities_per_week=tiny,
    )
    with pytest.raises(PlanInputError) as refused:
        plan(inp)
    assert refused.value.field == "revenue_goal"
