"""The SLA kinds table: what opens and meets each clock, the terms and ladders it takes from the
policy, what a breach means, and the measures on a clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from leadflow.contracts import slas
from leadflow.contracts.calendar import BusinessCalendar, policy_calendar
from leadflow.contracts.policy import CHANNELS, Policy, default_policy

POLICY = default_policy()
H, D = timedelta(hours=1), timedelta(days=1)
MONDAY_9 = datetime(2026, 11, 16, 8, tzinfo=UTC)  # 09:00 in Warsaw


def test_the_table_holds_the_eight_kinds_of_the_domain_once_each():
    assert slas.SLAS == (
        "first_response", "contact_cadence", "sal_acceptance", "sql_to_sqo", "pql_contact",
        "cs_handoff", "onboarding_kickoff", "key_feature_activation",
    )  # fmt: skip
    assert set(slas.KINDS) == set(slas.SLAS)
    assert all(slas.KINDS[k.name] is k for k in slas.SLA_KINDS)


def test_a_routed_mql_opens_first_response_cadence_and_acceptance_in_that_order():
    assert slas.opened_by_routing("mql") == ("first_response", "contact_cadence", "sal_acceptance")


def test_a_routed_pql_also_opens_the_pql_contact_clock():
    assert slas.opened_by_routing("pql") == (
        "first_response", "contact_cadence", "sal_acceptance", "pql_contact",
    )  # fmt: skip


def test_statuses_sql_and_won_open_sql_to_sqo_the_hand_off_and_the_onboarding_clocks():
    assert dict(slas.OPENED_BY_STATUS) == {
        "sql": ("sql_to_sqo",),
        "won": ("cs_handoff", "onboarding_kickoff", "key_feature_activation"),
    }


def test_onboarding_milestones_meet_the_kickoff_and_activation_clocks():
    assert dict(slas.MET_BY_MILESTONE) == {
        "key_feature_activated": ("key_feature_activation",),
        "kickoff_held": ("onboarding_kickoff",),
    }
    assert set(slas.MET_BY_MILESTONE) == set(slas.MILESTONES)


def test_onboarding_terms_are_the_seeds_five_and_fourteen_calendar_days():
    kickoff = slas.term(POLICY, slas.ONBOARDING_KICKOFF, "inbound")
    activation = slas.term(POLICY, slas.KEY_FEATURE_ACTIVATION, "partner")
    assert (kickoff.limit, kickoff.clock) == (5 * D, "wall")
    assert (activation.limit, activation.clock) == (14 * D, "wall")
    won = MONDAY_9
    assert slas.due_after(kickoff.clock, policy_calendar(POLICY), won, kickoff.limit) == won + 5 * D


def test_statuses_meet_the_clocks_of_the_domain_table():
    assert dict(slas.MET_BY_STATUS) == {
        "handed_off": ("cs_handoff",),
        "returned": ("contact_cadence", "sal_acceptance"),
        "sal": ("contact_cadence", "sal_acceptance"),
        "sqo": ("sql_to_sqo",),
    }


def test_the_first_attempt_meets_first_response_and_pql_contact_and_the_cadence_counts_them():
    assert slas.MET_BY_FIRST_ATTEMPT == ("first_response", "pql_contact")
    assert slas.COUNTING_ATTEMPTS == ("contact_cadence",)


def test_leaving_the_funnel_ends_every_clock():
    assert {"returned", "lost", "recycled", "unreachable"} == slas.ENDS_ALL_CLOCKS
    assert "sal" not in slas.ENDS_ALL_CLOCKS


def test_only_a_breached_cadence_says_the_lead_is_unreachable():
    assert dict(slas.BREACH_OUTCOMES) == {"contact_cadence": slas.UNREACHABLE}


@pytest.mark.parametrize("channel", CHANNELS)
def test_first_response_term_is_the_channels_limit_and_clock(channel):
    term = slas.first_response_term(POLICY, channel)
    policy_term = POLICY.slas.for_channel(channel).first_response
    assert (term.limit, term.clock) == (policy_term.limit, policy_term.clock)
    assert slas.term(POLICY, slas.FIRST_RESPONSE, channel) == term


def test_a_lead_of_no_known_channel_takes_the_inbound_terms():
    for channel in (None, "carrier-pigeon"):
        assert slas.first_response_term(POLICY, channel) == slas.first_response_term(
            POLICY, "inbound"
        )


@pytest.mark.parametrize(
    ("channel", "attempts", "allowed", "within"),
    [("inbound", 6, None, 12 * D), ("outbound", 12, None, 21 * D), ("partner", 6, 8, 14 * D),
     ("plg", 6, None, 12 * D)],
)  # fmt: skip
def test_the_cadence_term_is_the_channels_attempts_on_wall_time(channel, attempts, allowed, within):
    term = slas.term(POLICY, slas.CONTACT_CADENCE, channel)
    assert (term.limit, term.clock) == (within, "wall")
    assert (term.attempts_required, term.attempts_allowed) == (attempts, allowed)
    assert term.escalate_on_breach is False


@pytest.mark.parametrize(
    ("sla", "limit", "clock"),
    [("sal_acceptance", 24 * H, "wall"), ("sql_to_sqo", 5 * D, "business_days"),
     ("pql_contact", 24 * H, "wall"), ("cs_handoff", 48 * H, "wall")],
)  # fmt: skip
def test_the_other_kinds_take_one_term_for_every_channel(sla, limit, clock):
    for channel in CHANNELS:
        term = slas.term(POLICY, sla, channel)
        assert (term.limit, term.clock, term.attempts_required) == (limit, clock, None)


def with_team_lead_at(fraction: float) -> Policy:
    data = POLICY.model_dump()
    data["slas"]["escalation"]["team_lead_at"] = fraction
    return Policy.model_validate(data)


@pytest.mark.parametrize("sla", [k for k in slas.SLAS if k != "contact_cadence"])
def test_every_kind_but_the_cadence_climbs_the_full_ladder(sla):
    steps = slas.ladder(POLICY, sla, slas.term(POLICY, sla, "inbound"))
    assert [(s.level, s.fraction) for s in steps] == [
        ("warning", 0.75), ("breached", 1.0), ("escalated_team_lead", 1.0),
        ("escalated_manager", 1.5),
    ]  # fmt: skip


def test_the_team_lead_is_escalated_at_the_policys_team_lead_at():
    policy = with_team_lead_at(1.25)
    steps = slas.ladder(policy, slas.SAL_ACCEPTANCE, slas.term(policy, slas.SAL_ACCEPTANCE, None))
    assert [(s.level, s.fraction) for s in steps] == [
        ("warning", 0.75), ("breached", 1.0), ("escalated_team_lead", 1.25),
        ("escalated_manager", 1.5),
    ]  # fmt: skip


def test_each_escalation_level_names_whom_it_escalates_to():
    assert dict(slas.ESCALATES_TO) == {
        "escalated_team_lead": "team_lead", "escalated_manager": "manager",
    }  # fmt: skip


def test_a_cadence_that_does_not_escalate_has_no_escalation_step():
    term = slas.term(POLICY, slas.CONTACT_CADENCE, "inbound")
    levels = [s.level for s in slas.ladder(POLICY, slas.CONTACT_CADENCE, term)]
    assert levels == ["warning", "breached"]


def test_a_cadence_that_escalates_climbs_the_full_ladder():
    term = slas.Term(12 * D, "wall", attempts_required=6, escalate_on_breach=True)
    levels = [s.level for s in slas.ladder(POLICY, slas.CONTACT_CADENCE, term)]
    assert levels == ["warning", "breached", "escalated_team_lead", "escalated_manager"]


def test_wall_time_runs_through_nights_and_weekends():
    calendar = policy_calendar(POLICY)
    friday_17 = datetime(2026, 11, 20, 16, tzinfo=UTC)
    assert slas.due_after("wall", calendar, friday_17, 24 * H) == friday_17 + 24 * H
    assert slas.elapsed("wall", calendar, friday_17, friday_17 + 3 * H) == 3 * H
    assert slas.elapsed("wall", calendar, friday_17, friday_17 - H) == timedelta(0)


def test_business_hours_stop_outside_the_working_day():
    calendar = BusinessCalendar.from_spec({"timezone": "Europe/Warsaw"})
    friday_16 = datetime(2026, 11, 20, 15, tzinfo=UTC)  # one working hour left in Warsaw
    due = slas.due_after("business_hours", calendar, friday_16, 2 * H)
    assert due == datetime(2026, 11, 23, 9, tzinfo=UTC)  # Monday 10:00 in Warsaw
    assert slas.elapsed("business_hours", calendar, friday_16, due) == 2 * H


def test_business_days_count_whole_working_days_and_round_a_fraction_of_them():
    calendar = BusinessCalendar.from_spec({"timezone": "Europe/Warsaw"})
    assert slas.due_after("business_days", calendar, MONDAY_9, 5 * D) == MONDAY_9 + 7 * D
    # 75 % of 5 days is 4 working days: Friday, same local time
    assert slas.due_after("business_days", calendar, MONDAY_9, 5 * D * 0.75) == MONDAY_9 + 4 * D


def test_without_a_calendar_every_clock_runs_on_wall_time():
    assert slas.due_after("business_hours", None, MONDAY_9, 2 * H) == MONDAY_9 + 2 * H
    assert slas.elapsed("business_days", None, MONDAY_9, MONDAY_9 + D) == D
