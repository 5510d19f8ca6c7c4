"""The contact cadence with a channel mix and a spread over days: the Polish guide's "at least 5
attempts in 10 days (phone + e-mail)", 3 calls and 2 e-mails on different days, met only when
the number, the mix and the spread all hold; what is missing is said in words; the default
policy keeps the plain count; a bad mix is refused naming its field; the SLA report and the
weekly review show the attempts per channel."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from leadflow.contracts import slas
from leadflow.contracts.events import LeadContactAttempt, LeadRouted
from leadflow.contracts.policy import PolicyError, default_policy, load_policy
from leadflow_feedback.domain.reports import LeadFacts, calibration, report_csv, sla_report
from leadflow_feedback.domain.review import first_response_limits, render_review, week_figures
from leadflow_sla_timer.domain.cadence import (
    Requirement,
    cadence_missing,
    day_of,
    shortfall,
)
from leadflow_sla_timer.use_cases import Calendars, Clocks
from support.harness import sample_routed

EXAMPLE_FILE = Path(__file__).parents[1] / "fixtures" / "policies" / "agreement_example.yaml"
EXAMPLE = load_policy(EXAMPLE_FILE)
DEFAULT = default_policy()
# The agreement's example: 5 attempts, 3 of them calls and 2 e-mails, on at least 2 days.
MIX = Requirement(attempts=5, per_channel={"call": 3, "email": 2}, distinct_days=2)
# Tuesday 1 December 2026, 09:00 in Warsaw.
ROUTED_AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)


def test_the_example_inbound_cadence_is_5_attempts_in_10_days_3_calls_2_emails_2_days():
    term = slas.term(EXAMPLE, slas.CONTACT_CADENCE, "inbound")
    assert (term.attempts_required, term.limit, term.clock) == (5, 10 * D, "wall")
    assert term.min_per_channel == {"call": 3, "email": 2}
    assert term.min_distinct_days == 2


def test_the_default_cadences_ask_for_no_mix_and_no_spread():
    for channel in ("inbound", "outbound", "partner", "plg"):
        term = slas.term(DEFAULT, slas.CONTACT_CADENCE, channel)
        assert term.min_per_channel == {} and term.min_distinct_days == 1


# --- what is missing -------------------------------------------------------------------------


def test_three_calls_and_two_emails_on_two_days_meet_the_cadence():
    assert not shortfall(5, {"call": 3, "email": 2}, 2, MIX)
    assert shortfall(5, {"call": 3, "email": 2}, 2, MIX).in_words() == []


def test_five_calls_lack_two_emails():
    missing = shortfall(5, {"call": 5}, 3, MIX)
    assert missing.per_channel == {"email": 2}
    assert missing.in_words() == ["2 more e-mails"]


def test_all_five_attempts_on_one_day_lack_a_second_day():
    assert shortfall(5, {"call": 3, "email": 2}, 1, MIX).in_words() == ["attempts on 1 more day"]


def test_a_first_call_lacks_two_calls_two_emails_and_a_day():
    assert shortfall(1, {"call": 1}, 1, MIX).in_words() == [
        "2 more calls",
        "2 more e-mails",
        "attempts on 1 more day",
    ]


def test_attempts_beyond_the_mix_are_owed_on_any_channel():
    six = Requirement(attempts=6, per_channel={"call": 3, "email": 2})
    assert shortfall(3, {"call": 3}, 1, six).in_words() == [
        "2 more e-mails",
        "1 more attempt on any channel",
    ]
    assert shortfall(5, {"call": 3, "email": 2}, 1, six).in_words() == ["1 more attempt"]


def test_without_a_mix_only_the_number_is_missing():
    plain = Requirement(attempts=6)
    assert shortfall(4, {"call": 4}, 1, plain).in_words() == ["2 more attempts"]
    assert not shortfall(6, {"call": 6}, 1, plain)


def test_other_channels_count_towards_the_number_but_not_the_mix():
    missing = shortfall(5, {"call": 2, "email": 2, "linkedin": 1}, 2, MIX)
    assert missing.in_words() == ["1 more call"]


def test_a_day_is_the_calendar_day_in_the_teams_time_zone():
    # 22:30 and 23:30 UTC on 1 December are 23:30 on the 1st and 00:30 on the 2nd in Warsaw.
    late = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)
    assert day_of(late, "Europe/Warsaw") == "2026-12-01"
    assert day_of(late + H, "Europe/Warsaw") == "2026-12-02"
    assert day_of(late + H, "UTC") == "2026-12-01"


def test_a_met_or_cancelled_clock_misses_nothing():
    timer = {
        "attempts_required": 5,
        "min_per_channel": {"call": 3, "email": 2},
        "min_distinct_days": 2,
        "attempts": 1,
        "attempts_by_channel": {"call": 1},
        "attempt_days": ["2026-12-01"],
        "met_at": None,
        "state": "open",
    }
    assert cadence_missing(timer) == ["2 more calls", "2 more e-mails", "attempts on 1 more day"]
    assert cadence_missing({**timer, "state": "breached"}) != []
    assert cadence_missing({**timer, "met_at": ROUTED_AT, "state": "met"}) == []
    assert cadence_missing({**timer, "state": "cancelled"}) == []
    assert cadence_missing({**timer, "attempts_required": None}) == []


# --- the clock, attempt by attempt -----------------------------------------------------------


def routed(lead_id: uuid.UUID) -> LeadRouted:
    return sample_routed(lead_id, ROUTED_AT)


def attempt(lead_id: uuid.UUID, channel: str, at: datetime) -> LeadContactAttempt:
    return LeadContactAttempt(
        lead_id=lead_id, attempt_id=uuid.uuid4(), channel=channel, occurred_at=at
    )


def cadence_after(policy, attempts: list[tuple[str, datetime]], *, held: bool = False) -> dict:
    """The lead's cadence clock once routed and given `attempts` (before the routing, when
    `held`: they wait for the clocks to open)."""
    clocks = Clocks(policy, Calendars(policy))
    lead_id = uuid.uuid4()
    if not held:
        clocks.routed(routed(lead_id))
    for channel, at in attempts:
        clocks.attempt(attempt(lead_id, channel, at))
    if held:
        clocks.routed(routed(lead_id))
    return clocks.timers[lead_id][slas.CONTACT_CADENCE]


def test_the_cadence_is_met_by_the_attempt_that_completes_number_mix_and_spread():
    day1, day2 = ROUTED_AT + H, ROUTED_AT + D + H
    attempts = [("call", day1), ("call", day1 + H), ("email", day1 + 2 * H), ("call", day2)]
    before = cadence_after(EXAMPLE, attempts)
    assert before["state"] == "open" and before["attempts"] == 4
    assert cadence_missing(before) == ["1 more e-mail"]

    after = cadence_after(EXAMPLE, [*attempts, ("email", day2 + H)])
    assert after["state"] == "met"
    assert after["met_at"] == day2 + H
    assert after["attempts_by_channel"] == {"call": 3, "email": 2}
    assert after["attempt_days"] == ["2026-12-01", "2026-12-02"]


def test_five_attempts_in_one_day_do_not_meet_the_example_cadence():
    same_day = [
        (channel, ROUTED_AT + n * H)
        for n, channel in enumerate(["call", "call", "call", "email", "email"], start=1)
    ]
    timer = cadence_after(EXAMPLE, same_day)
    assert timer["state"] == "open" and timer["attempts"] == 5
    assert cadence_missing(timer) == ["attempts on 1 more day"]


def test_five_calls_over_a_week_do_not_meet_the_example_cadence():
    calls = [("call", ROUTED_AT + n * D) for n in range(5)]
    timer = cadence_after(EXAMPLE, calls)
    assert timer["state"] == "open"
    assert cadence_missing(timer) == ["2 more e-mails"]


def test_the_default_cadence_is_met_by_six_calls_on_one_day_as_before():
    calls = [("call", ROUTED_AT + n * H) for n in range(1, 7)]
    timer = cadence_after(DEFAULT, calls)
    assert timer["state"] == "met" and timer["met_at"] == ROUTED_AT + 6 * H
    assert timer["min_per_channel"] == {} and timer["min_distinct_days"] == 1


def test_attempts_held_before_the_routing_keep_their_channels():
    early = [("call", ROUTED_AT - H), ("email", ROUTED_AT - H / 2)]
    timer = cadence_after(EXAMPLE, early, held=True)
    assert timer["attempts"] == 2
    assert timer["attempts_by_channel"] == {"call": 1, "email": 1}
    assert cadence_missing(timer) == ["2 more calls", "1 more e-mail", "attempts on 1 more day"]


def test_other_clocks_count_no_channels():
    clocks = Clocks(EXAMPLE, Calendars(EXAMPLE))
    lead_id = uuid.uuid4()
    clocks.routed(routed(lead_id))
    clocks.attempt(attempt(lead_id, "call", ROUTED_AT + H))
    first = clocks.timers[lead_id][slas.FIRST_RESPONSE]
    assert first["state"] == "met"
    assert first["min_per_channel"] is None and cadence_missing(first) == []


# --- refusing a bad mix ----------------------------------------------------------------------


def _with_cadence(directory: Path, **cadence) -> Path:
    data = yaml.safe_load(EXAMPLE_FILE.read_text(encoding="utf-8"))
    data["slas"]["channels"]["inbound"]["cadence"].update(cadence)
    path = directory / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


FIELD = "slas.channels.inbound.cadence"


@pytest.mark.parametrize(
    ("cadence", "field", "reason"),
    [
        (
            {"min_per_channel": {"call": 4, "email": 2}},
            f"{FIELD}.min_per_channel",
            "adds up to 6 attempts, more than attempts (5)",
        ),
        (
            {"min_per_channel": {"phone": 3}},
            f"{FIELD}.min_per_channel.phone",
            "Input should be 'call', 'email', 'linkedin' or 'meeting'",
        ),
        (
            {"min_per_channel": {"call": 0}},
            f"{FIELD}.min_per_channel.call",
            "Input should be greater than or equal to 1",
        ),
        ({"min_distinct_days": 0}, f"{FIELD}.min_distinct_days", "greater than or equal to 1"),
        (
            {"min_distinct_days": 6},
            f"{FIELD}.min_distinct_days",
            "6 days need at least 6 attempts, not 5",
        ),
        (
            {"attempts": 20, "min_distinct_days": 12},
            f"{FIELD}.min_distinct_days",
            "12 distinct days do not fit within 10d",
        ),
    ],
)
def test_a_bad_mix_or_spread_is_refused_naming_its_field(tmp_path, cadence, field, reason):
    with pytest.raises(PolicyError) as refused:
        load_policy(_with_cadence(tmp_path, **cadence))
    assert reason in dict(refused.value.problems)[field]


def test_policy_check_names_a_bad_mix(tmp_path, capsys):
    from leadflow_tools.cli import main

    path = _with_cadence(tmp_path, min_per_channel={"call": 4, "email": 2})
    assert main(["policy", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"  {FIELD}.min_per_channel: adds up to 6 attempts, more than attempts (5)" in err


# --- attempts per channel in the report and on the review page -------------------------------

MONDAY = date(2026, 11, 30)
NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


def mql(by_channel: dict[str, int]) -> LeadFacts:
    return LeadFacts(
        lead_id=uuid.uuid4(),
        status="working",
        channel="inbound",
        mql_at=ROUTED_AT - H,
        routed_at=ROUTED_AT,
        attempts=sum(by_channel.values()),
        attempts_by_channel=by_channel,
        first_attempt_at=ROUTED_AT + H,
    )


# One MQL worked as the agreement asks (3 calls, 2 e-mails), one with a single call.
WORKED = [mql({"call": 3, "email": 2}), mql({"call": 1})]


def week_report() -> dict:
    return sla_report(WORKED, EXAMPLE, first=MONDAY, last=MONDAY, granularity="week", now=NOW)


def test_the_report_counts_the_attempts_of_each_channel_in_all_and_per_mql():
    sales = week_report()["periods"][-1]["sales"]
    assert sales["attempts_by_channel"] == {
        "call": {"attempts": 4, "per_mql": 2.0},
        "email": {"attempts": 2, "per_mql": 1.0},
        "linkedin": {"attempts": 0, "per_mql": 0.0},
        "meeting": {"attempts": 0, "per_mql": 0.0},
    }
    assert sales["attempts_per_mql"]["value"] == 3.0
    # reported, not judged: the mix is owed per lead, by its cadence clock
    assert "attempts_by_channel" not in sales["missed"]


def test_a_period_without_mqls_has_no_attempts_per_mql():
    empty = sla_report([], EXAMPLE, first=MONDAY, last=MONDAY, granularity="week", now=NOW)
    by_channel = empty["periods"][-1]["sales"]["attempts_by_channel"]
    assert by_channel["call"] == {"attempts": 0, "per_mql": None}


def test_the_csv_has_a_row_per_channel():
    rows = report_csv(week_report()).splitlines()
    week = f"{MONDAY.isoformat()}T00:00:00+01:00"
    assert any(
        row.startswith(f"period,{week},") and row.endswith(",sales,attempts_by_channel,call,4,,")
        for row in rows
    )
    assert any(row.endswith(",sales,attempts_per_mql_by_channel,email,1.0,,") for row in rows)
    assert any(row.endswith(",sales,attempts_by_channel,meeting,0,,") for row in rows)


def test_the_review_page_shows_the_attempts_per_channel():
    report = week_report()
    page = render_review(
        week=MONDAY,
        team=None,
        teams=[],
        week_report=report,
        trend_report=report,
        calibration=calibration(WORKED, EXAMPLE, start=ROUTED_AT - D, end=NOW),
        names={},
        reps={},
        sla_limits=first_response_limits(EXAMPLE),
    )
    assert week_figures(report)["attempts_by_channel"]["call"]["attempts"] == 4
    assert 'data-figure="attempts_call" data-value="4"' in page
    assert 'data-figure="attempts_email" data-value="2"' in page
    assert "calls 4</span> (2 per MQL)" in page
    assert "e-mails 2</span> (1 per MQL)" in page
