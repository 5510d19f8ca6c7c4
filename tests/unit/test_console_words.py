"""What the console says: a dry run's reason, a countdown, the forms' shorthand, and tables as
CSV (`leadflow_feedback.console.reasons`, `.tables`)."""

from __future__ import annotations

import pytest
from leadflow_feedback.console import reasons
from leadflow_feedback.console.tables import Table, as_csv
from leadflow_feedback.domain import roles


def test_a_dry_run_says_the_rep_the_team_and_the_rule():
    result = {
        "team": "DACH",
        "rep_id": "r2",
        "trace": {
            "rule": "German-speaking",
            "rules_tried": [
                {"rule": "Poland", "matched": False},
                {"rule": "German-speaking", "matched": True},
            ],
            "strategy": "round_robin",
            "considered": [
                {"rep_id": "r1", "name": "Anna", "skipped": "out_of_office"},
                {"rep_id": "r2", "name": "Bruno", "skipped": None, "chosen": True},
            ],
        },
    }
    assert reasons.why_routed(result) == (
        "This lead would go to Bruno in DACH because the rule “German-speaking” matches it "
        "(rules tried before: Poland); the team picks by round robin; passed over: Anna (out of "
        "office)."
    )


def test_a_dry_run_without_a_rule_or_a_rep_says_so():
    result = {"team": "Fallback", "rep_id": None, "trace": {"rule": None, "considered": []}}
    sentence = reasons.why_routed(result)
    assert "no rep (it would wait in the unassigned queue)" in sentence
    assert "no rule matches it, so it goes to the fallback team" in sentence


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(None, ""), (65.4, "0h 01m 05s"), (90_061, "1d 1h 01m 01s"), (-125, "late 0h 02m 05s")],
)
def test_a_countdown_in_words(seconds, words):
    assert reasons.countdown(seconds) == words


@pytest.mark.parametrize(
    ("typed", "condition"),
    [
        ("PL, DE", ["PL", "DE"]),
        ("50-1000", {"min": 50, "max": 1000}),
        ("250+", {"min": 250}),
        ("not gov", {"not": {"in": ["gov"]}}),
    ],
)
def test_a_rule_condition_as_typed(typed, condition):
    assert reasons.values(typed) == condition


def test_hours_are_written_as_a_span():
    assert reasons.span(" 09:00-17:00 ") == ("09:00", "17:00")
    assert reasons.span("") is None
    with pytest.raises(ValueError, match="HH:MM-HH:MM"):
        reasons.span("9-5")


def test_a_table_as_csv_keeps_formulas_out():
    table = Table("reps", [("name", "Rep"), ("away", "Away")], [{"name": "=cmd()", "away": True}])
    assert as_csv(table) == "Rep,Away\r\n'=cmd(),yes\r\n"


def test_a_sales_manager_marks_only_their_teams_reps_away():
    assert roles.may_set_away("sales_manager", ("Poland",), "Poland")
    assert not roles.may_set_away("sales_manager", ("Poland",), "France")
    assert roles.may_set_away("marketing_ops", (), "France")
    assert not roles.may_set_away("viewer", (), "Poland")
    assert not roles.may_configure("sales_manager") and roles.may_configure("admin")
