"""Pure routing decisions: rule matching, strategies, skips."""

import typing
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from leadflow.contracts.events import UnassignedReason
from leadflow_routing import schemas
from leadflow_routing.domain.assignment import (
    WAIT_PRECEDENCE,
    RepView,
    RuleView,
    away,
    condition_holds,
    condition_problem,
    in_working_hours,
    match_rule,
    unassigned_reason,
)
from leadflow_routing.domain.strategies import (
    STRATEGIES,
    UnknownStrategy,
    least_recently_assigned,
    load_balanced,
    round_robin,
    strategy_named,
    strategy_names,
    weighted,
    weighted_order,
)
from leadflow_routing.domain.worklist import work_state

MONDAY_NOON_UTC = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def rep(name, **fields):
    return RepView(uuid.uuid5(uuid.NAMESPACE_DNS, name), name, **fields)


@given(st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=6))
def test_weighted_gives_each_rep_its_weight_per_cycle(weights):
    reps = [rep(f"r{i}", weight=w) for i, w in enumerate(weights)]
    total = sum(weights)
    picks = Counter(
        weighted(reps, position, MONDAY_NOON_UTC).rep_id for position in range(total * 3)
    )
    assert picks == {r.id: 3 * r.weight for r in reps}


def test_weighted_spreads_turns_out():
    heavy, light = rep("a", weight=3), rep("b", weight=1)
    cycle = [r.name for r in weighted_order([heavy, light])]
    assert sorted(cycle) == ["a", "a", "a", "b"]
    longest_run = max(len(run) for run in "".join(cycle).split("b"))
    assert longest_run < 3  # smooth: the light rep is not left to the end of the cycle


@given(st.integers(min_value=1, max_value=8), st.integers(min_value=0, max_value=1000))
def test_round_robin_visits_everyone_once_per_round(n, start):
    reps = [rep(f"r{i}") for i in range(n)]
    picks = Counter(round_robin(reps, start + k).rep_id for k in range(n * 4))
    assert set(picks.values()) == {4}


def test_round_robin_passes_over_ineligible_reps_and_says_why():
    away = rep("away", out_of_office=True)
    gone = rep("gone", active=False)
    here = rep("here")
    decision = round_robin([away, gone, here], 0)
    assert decision.rep_id == here.id
    full_round = round_robin([away, gone], 0).considered
    assert {c["name"]: c["skipped"] for c in full_round} == {
        "away": "out_of_office",
        "gone": "inactive",
    }
    assert round_robin([away, gone], 0).rep_id is None


def test_load_balanced_prefers_the_lowest_load_and_skips_full_reps():
    busy = rep("busy", capacity=10, open_leads=5)
    idle = rep("idle", capacity=10, open_leads=1)
    full = rep("full", capacity=2, open_leads=2)
    decision = load_balanced([busy, idle, full])
    assert decision.rep_id == idle.id
    assert {c["name"]: c["skipped"] for c in decision.considered}["full"] == "at_capacity"
    assert load_balanced([full]).rep_id is None


def test_working_hours_are_the_reps_own_time_zone_across_dst():
    hours = {"mon": [["09:00", "17:00"]], "sun": [["09:00", "10:00"]]}
    warsaw = rep("w", timezone="Europe/Warsaw", working_hours=hours)
    # Monday 12:00 UTC is 13:00 in Warsaw (CET): working
    assert in_working_hours(warsaw, MONDAY_NOON_UTC)
    # Monday 16:30 UTC is 17:30 in Warsaw: after hours
    assert not in_working_hours(warsaw, datetime(2026, 11, 23, 16, 30, tzinfo=UTC))
    # 29 March 2026 (DST starts): 07:30 UTC is 09:30 CEST, inside the Sunday window
    assert in_working_hours(warsaw, datetime(2026, 3, 29, 7, 30, tzinfo=UTC))
    # the same UTC time a week earlier is 08:30 CET, before it
    assert not in_working_hours(warsaw, datetime(2026, 3, 22, 7, 30, tzinfo=UTC))
    assert in_working_hours(rep("always"), MONDAY_NOON_UTC)


def test_first_matching_rule_wins_and_every_condition_must_hold():
    team_a, team_b = uuid.uuid4(), uuid.uuid4()
    rules = [
        RuleView(uuid.uuid4(), "pl partners", team_a, {"channel": ["partner"], "country": ["PL"]}),
        RuleView(uuid.uuid4(), "software", team_b, {"industry": ["Software"]}),
    ]
    lead = {"channel": "partner", "company": {"country": "PL", "industry": "software"}}
    rule, tried = match_rule(rules, lead)
    assert rule.team_id == team_a
    assert tried == [{"rule": "pl partners", "matched": True}]
    lead["company"]["country"] = "SK"
    rule, tried = match_rule(rules, lead)
    assert rule.team_id == team_b
    assert [t["matched"] for t in tried] == [False, True]
    rule, _ = match_rule(rules, {"channel": "inbound", "company": {}})
    assert rule is None


def test_the_api_offers_exactly_the_registered_strategies():
    assert typing.get_args(schemas.Strategy) == strategy_names()
    assert set(strategy_names()) == {
        "round_robin",
        "weighted",
        "load_balanced",
        "least_recently_assigned",
    }
    assert all(strategy_named(name) is STRATEGIES[name] for name in strategy_names())


def test_an_unknown_strategy_is_refused_not_replaced():
    with pytest.raises(UnknownStrategy, match="fastest_hands"):
        strategy_named("fastest_hands")


@pytest.mark.parametrize("name", strategy_names())
def test_every_strategy_finds_nobody_in_an_empty_or_unavailable_team(name):
    pick = strategy_named(name)
    assert pick([], 0, MONDAY_NOON_UTC).rep_id is None
    away = [rep("away", out_of_office=True), rep("gone", active=False)]
    decision = pick(away, 3, MONDAY_NOON_UTC)
    assert decision.rep_id is None
    assert {c["name"]: c["skipped"] for c in decision.considered} == {
        "away": "out_of_office",
        "gone": "inactive",
    }


def test_least_recently_assigned_gives_the_lead_to_the_rep_who_waited_longest():
    recent = rep("recent", last_assigned_at=MONDAY_NOON_UTC - timedelta(minutes=5))
    waiting = rep("waiting", last_assigned_at=MONDAY_NOON_UTC - timedelta(hours=3))
    decision = least_recently_assigned([recent, waiting], 0, MONDAY_NOON_UTC)
    assert decision.rep_id == waiting.id
    assert [c["name"] for c in decision.considered] == ["waiting", "recent"]
    assert decision.considered[0]["last_assigned_at"] == waiting.last_assigned_at.isoformat()


def test_least_recently_assigned_counts_a_rep_never_assigned_as_waiting_longest():
    veteran = rep("veteran", last_assigned_at=datetime(2020, 1, 1, tzinfo=UTC))
    newcomer = rep("newcomer")
    decision = least_recently_assigned([veteran, newcomer], 0, MONDAY_NOON_UTC)
    assert decision.rep_id == newcomer.id
    assert decision.considered[0]["last_assigned_at"] is None


def test_least_recently_assigned_breaks_ties_by_rep_id_whatever_the_order_given():
    at = MONDAY_NOON_UTC - timedelta(hours=1)
    tied = [rep(f"r{i}", last_assigned_at=at) for i in range(4)]
    never = [rep(f"n{i}") for i in range(3)]
    for group in (tied, never):
        lowest = min(group, key=lambda r: str(r.id))
        assert least_recently_assigned(group, 0, MONDAY_NOON_UTC).rep_id == lowest.id
        assert least_recently_assigned(group[::-1], 7, MONDAY_NOON_UTC).rep_id == lowest.id


def test_least_recently_assigned_passes_over_an_unavailable_rep_and_says_why():
    longest = rep("longest", out_of_office=True)
    next_longest = rep("next", last_assigned_at=MONDAY_NOON_UTC - timedelta(days=1))
    decision = least_recently_assigned([next_longest, longest], 0, MONDAY_NOON_UTC)
    assert decision.rep_id == next_longest.id
    assert {c["name"]: c["skipped"] for c in decision.considered} == {
        "longest": "out_of_office",
        "next": None,
    }


@given(st.integers(min_value=1, max_value=8), st.integers(min_value=1, max_value=5))
def test_least_recently_assigned_takes_everyone_in_turn(n, rounds):
    team = [rep(f"r{i}") for i in range(n)]
    picks = []
    for k in range(n * rounds):
        now = MONDAY_NOON_UTC + timedelta(minutes=k)
        chosen = least_recently_assigned(team, 0, now).rep_id
        picks.append(chosen)
        team = [r if r.id != chosen else rep(r.name, last_assigned_at=now) for r in team]
    assert Counter(picks) == {r.id: rounds for r in team}
    # each round in the same order: never assigned ones by id first, then who waited longest
    first_round = picks[:n]
    assert first_round == sorted(first_round, key=str)
    assert picks == first_round * rounds


# --- capacity and the reason a lead waits --------------------------------------------------


@pytest.mark.parametrize("pick", [round_robin, weighted, least_recently_assigned])
def test_a_rep_at_capacity_is_passed_over_and_the_trace_says_so(pick):
    full = rep("full", capacity=2, open_leads=2)
    free = rep("free", capacity=2, open_leads=1)
    for position in range(4):
        decision = pick([full, free], position, MONDAY_NOON_UTC)
        assert decision.rep_id == free.id
        entries = {c["name"]: c for c in decision.considered}
        if entries["full"]["reached"]:
            assert entries["full"]["skipped"] == "at_capacity"
        assert (entries["full"]["open_leads"], entries["full"]["capacity"]) == (2, 2)


@pytest.mark.parametrize("pick", [round_robin, weighted])
def test_a_team_whose_reps_are_all_full_finds_nobody(pick):
    reps = [rep("a", capacity=1, open_leads=1), rep("b", weight=3, capacity=0)]
    decision = pick(reps, 5, MONDAY_NOON_UTC)
    assert decision.rep_id is None
    assert {c["skipped"] for c in decision.considered} == {"at_capacity"}


def test_weighted_gives_a_full_reps_turns_to_the_others_and_takes_it_back_when_freed():
    heavy = rep("heavy", weight=3, capacity=5, open_leads=5)
    light = rep("light", weight=1)
    cycle = len(weighted_order([heavy, light]))
    assert {weighted([heavy, light], p).rep_id for p in range(cycle)} == {light.id}
    freed = rep("heavy", weight=3, capacity=5, open_leads=4)
    picks = Counter(weighted([freed, light], p).rep_id for p in range(cycle))
    assert picks == {freed.id: 3, light.id: 1}


@pytest.mark.parametrize(
    ("skips", "by_rule", "reason"),
    [
        ([], False, "no_team"),
        ([], True, "no_reps"),
        (["reassigned_from"], True, "no_reps"),
        (["reassigned_from"], False, "no_reps"),
        (["inactive", "inactive"], True, "all_inactive"),
        (["out_of_office"], False, "all_out_of_office"),
        (["out_of_office", "inactive"], True, "all_out_of_office"),
        (["inactive", "at_capacity", "out_of_office"], True, "at_capacity"),
        (["at_capacity", "outside_working_hours"], True, "outside_working_hours"),
        (["reassigned_from", "outside_working_hours", "inactive"], True, "outside_working_hours"),
    ],
)
def test_a_waiting_lead_has_one_reason_the_rep_closest_to_eligible(skips, by_rule, reason):
    considered = [{"name": f"r{i}", "skipped": why} for i, why in enumerate(skips)]
    assert unassigned_reason(considered, by_rule=by_rule) == reason


def test_every_reason_a_lead_waits_is_one_the_event_accepts():
    accepted = set(typing.get_args(UnassignedReason))
    assert {reason for _, reason in WAIT_PRECEDENCE} | {"no_team", "no_reps"} == accepted


# --- conditions: lists, ranges, negations -------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "value", "holds"),
    [
        (["PL", "de"], "pl", True),
        ({"in": ["PL"]}, "DE", False),
        ({"min": 50, "max": 1000}, 50, True),
        ({"min": 50, "max": 1000}, 1000, True),
        ({"min": 50, "max": 1000}, 1001, False),
        ({"min": 50}, "250", True),
        ({"max": 10}, None, False),
        ({"not": ["gov"]}, "gov", False),
        ({"not": ["gov"]}, None, True),  # a missing value meets a negation
        ({"not": {"min": 50, "max": 1000}}, 10, True),
        ({"not": {"not": ["x"]}}, "x", True),
    ],
)
def test_a_condition_holds_for_listed_values_ranges_and_negations(condition, value, holds):
    assert condition_holds(condition, value) is holds


@pytest.mark.parametrize(
    ("name", "condition", "problem"),
    [
        ("country", {"min": 1}, "numbers only"),
        ("employees", {"min": 10, "max": 5}, "above max"),
        ("employees", {}, "a list of values"),
        ("employees", {"between": [1, 2]}, "given: between"),
        ("channel", [], "at least one"),
        ("employees", {"not": {"min": "many"}}, "not a number"),
    ],
)
def test_a_condition_that_cannot_be_tested_is_named(name, condition, problem):
    assert problem in (condition_problem(name, condition) or "")


def test_a_rule_on_employees_reads_the_company_size():
    rule = RuleView(uuid.uuid4(), "mid", uuid.uuid4(), {"employees": {"min": 50, "max": 1000}})
    assert match_rule([rule], {"company": {"employees": 250}})[0] is rule
    assert match_rule([rule], {"company": {}})[0] is None


def test_an_out_of_office_with_an_end_is_over_at_that_instant():
    back = datetime(2026, 12, 7, 9, tzinfo=UTC)
    rep = RepView(uuid.uuid4(), "Ada", out_of_office=True, out_of_office_until=back)
    assert away(rep, back - timedelta(seconds=1))
    assert not away(rep, back)
    assert away(RepView(uuid.uuid4(), "Bob", out_of_office=True), back + timedelta(days=365))


def test_work_states_overdue_when_due_or_breached_warning_once_a_level_fired():
    now = datetime(2026, 12, 7, 9, tzinfo=UTC)
    assert work_state(None, None, now) == ("no_clock", None)
    assert work_state(now + timedelta(hours=1), "open", now) == ("on_track", 3600.0)
    assert work_state(now + timedelta(minutes=1), "warning", now)[0] == "warning"
    assert work_state(now - timedelta(minutes=1), "open", now) == ("overdue", -60.0)
    assert work_state(now + timedelta(hours=1), "breached", now)[0] == "overdue"
