"""Required behaviours in the MQL rule: the Polish guide's example "downloaded a resource and
visited the pricing page" before a lead goes to sales, on top of the thresholds; the default
policy requires none, and a bad requirement is refused naming its field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from leadflow.contracts.policy import PolicyError, default_policy, load_policy
from leadflow_scoring.domain.rules import (
    Interaction,
    LeadFacts,
    PromotionState,
    behaviours_lapse_at,
    evaluate,
    promotion,
    required_behaviours,
)

EXAMPLE_FILE = Path(__file__).parents[1] / "fixtures" / "policies" / "agreement_example.yaml"
EXAMPLE = load_policy(EXAMPLE_FILE)
DEFAULT = default_policy()
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

# Fit 100 (C-level, software, 200 employees), a decision maker: the thresholds hold as soon as
# engagement reaches 50 (a demo request, a webinar and a docs page: 30 + 15 + 10 = 55).
HOT = LeadFacts(
    email_domain="acme.example",
    industry="software",
    employees=200,
    seniority="c_level",
    role="decision_maker",
)
ENGAGED = [
    Interaction("demo_request", NOW - timedelta(days=1)),
    Interaction("webinar_attended", NOW - timedelta(days=2)),
    Interaction("docs_page", NOW - timedelta(days=3)),
]
DOWNLOAD = Interaction("content_download", NOW - timedelta(days=5))
PRICING = Interaction("pricing_page", NOW - timedelta(days=4))


def codes(reasons) -> list[str]:
    return [reason.split(":")[0] for reason in reasons]


def test_the_example_policy_requires_a_download_and_a_pricing_visit_within_30_days():
    required = {
        (b.activity, b.min_count, b.within) for b in EXAMPLE.scoring.mql.required_behaviours
    }
    assert required == {
        ("content_download", 1, timedelta(days=30)),
        ("pricing_page", 1, timedelta(days=30)),
    }


def test_the_default_policy_requires_no_behaviour():
    assert DEFAULT.scoring.mql.required_behaviours == ()
    assert evaluate(HOT, ENGAGED, NOW, DEFAULT).is_mql


def test_a_lead_over_the_thresholds_without_the_behaviours_is_not_an_mql():
    result = evaluate(HOT, ENGAGED, NOW, EXAMPLE)

    assert result.fit == 100 and result.engagement == 55
    assert not result.is_mql
    assert codes(result.mql_reasons) == ["behaviour_missing", "behaviour_missing"]


def test_the_explanation_names_the_one_behaviour_still_missing():
    result = evaluate(HOT, [*ENGAGED, DOWNLOAD], NOW, EXAMPLE)

    assert not result.is_mql
    assert result.mql_reasons == ("behaviour_missing: pricing_page 0× < 1 in the last 30 days",)


def test_a_lead_over_the_thresholds_with_both_behaviours_is_an_mql_and_says_so():
    result = evaluate(HOT, [*ENGAGED, DOWNLOAD, PRICING], NOW, EXAMPLE)

    assert result.is_mql
    assert "behaviour_met: content_download 1× ≥ 1 in the last 30 days" in result.mql_reasons
    assert "behaviour_met: pricing_page 1× ≥ 1 in the last 30 days" in result.mql_reasons


def test_behaviours_alone_do_not_make_an_mql_below_the_thresholds():
    result = evaluate(HOT, [DOWNLOAD, PRICING], NOW, EXAMPLE)  # engagement 12

    assert not result.is_mql
    assert codes(result.mql_reasons) == ["interest_below_min"]


def test_a_behaviour_older_than_its_window_does_not_count():
    old_download = Interaction("content_download", NOW - timedelta(days=31))
    shown, missing = required_behaviours([old_download, PRICING], NOW, EXAMPLE)

    assert codes(shown) == ["behaviour_met"]
    assert missing == ["behaviour_missing: content_download 0× < 1 in the last 30 days"]


def test_a_behaviour_exactly_at_the_edge_of_its_window_counts():
    edge = Interaction("content_download", NOW - timedelta(days=30))
    shown, missing = required_behaviours([edge, PRICING], NOW, EXAMPLE)
    assert not missing and len(shown) == 2


def test_a_minimum_count_above_one_needs_that_many_within_the_window(tmp_path):
    policy = _with_behaviours(
        [{"activity": "pricing_page", "min_count": 3, "within": "14d"}], tmp_path
    )
    twice = [PRICING, Interaction("pricing_page", NOW - timedelta(days=10))]

    _, missing = required_behaviours(twice, NOW, policy)
    assert missing == ["behaviour_missing: pricing_page 2× < 3 in the last 14 days"]
    shown, missing = required_behaviours([*twice, Interaction("pricing_page", NOW)], NOW, policy)
    assert not missing and shown == ["behaviour_met: pricing_page 3× ≥ 3 in the last 14 days"]


def test_a_promotion_carries_the_behaviours_as_reasons():
    result = evaluate(HOT, [*ENGAGED, DOWNLOAD, PRICING], NOW, EXAMPLE)
    kind, reasons = promotion(result, None, PromotionState(), NOW, EXAMPLE)

    assert kind == "mql"
    assert codes(reasons) == [
        "fit_met",
        "engagement_met",
        "role_eligible",
        "behaviour_met",
        "behaviour_met",
    ]


def test_a_lead_missing_a_behaviour_is_not_promoted_and_learns_why():
    result = evaluate(HOT, [*ENGAGED, PRICING], NOW, EXAMPLE)
    kind, reasons = promotion(result, None, PromotionState(), NOW, EXAMPLE)

    assert kind is None
    assert reasons == ["behaviour_missing: content_download 0× < 1 in the last 30 days"]


def test_the_rule_lapses_when_the_oldest_needed_behaviour_leaves_its_window():
    lapse = behaviours_lapse_at([*ENGAGED, DOWNLOAD, PRICING], NOW, EXAMPLE)

    # The download, 5 days old, is the first to age past 30 days.
    assert lapse == DOWNLOAD.occurred_at + timedelta(days=30, microseconds=1)
    later = evaluate(HOT, [*ENGAGED, DOWNLOAD, PRICING], lapse, EXAMPLE)
    assert "behaviour_missing: content_download 0× < 1 in the last 30 days" in later.mql_reasons


def test_nothing_lapses_without_required_behaviours():
    assert behaviours_lapse_at([*ENGAGED, DOWNLOAD], NOW, DEFAULT) is None


# --- refusing a bad requirement --------------------------------------------------------------


def _with_behaviours(behaviours: list, directory: Path):
    """The example policy with other required behaviours, loaded from a file."""
    data = yaml.safe_load(EXAMPLE_FILE.read_text(encoding="utf-8"))
    data["scoring"]["mql"]["required_behaviours"] = behaviours
    target = directory / "policy.yaml"
    target.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_policy(target)


@pytest.mark.parametrize(
    ("behaviour", "field", "reason"),
    [
        (
            {"activity": "pricing_visit", "within": "30d"},
            "scoring.mql.required_behaviours[0].activity",
            "Input should be 'pricing_page'",
        ),
        (
            {"activity": "pricing_page", "min_count": 0, "within": "30d"},
            "scoring.mql.required_behaviours[0].min_count",
            "greater than or equal to 1",
        ),
        (
            {"activity": "pricing_page", "within": 30},
            "scoring.mql.required_behaviours[0].within",
            "give a unit",
        ),
        (
            {"activity": "pricing_page"},
            "scoring.mql.required_behaviours[0].within",
            "Field required",
        ),
    ],
)
def test_a_bad_required_behaviour_is_refused_naming_its_field(tmp_path, behaviour, field, reason):
    with pytest.raises(PolicyError) as refused:
        _with_behaviours([behaviour], tmp_path)
    problems = dict(refused.value.problems)
    assert reason in problems[field]


def test_a_behaviour_listed_twice_is_refused(tmp_path):
    twice = [{"activity": "pricing_page", "within": "30d"}] * 2
    with pytest.raises(PolicyError) as refused:
        _with_behaviours(twice, tmp_path)
    assert dict(refused.value.problems) == {
        "scoring.mql.required_behaviours": "activity 'pricing_page' is listed more than once"
    }


def test_policy_check_names_a_bad_required_behaviour(tmp_path, capsys):
    from leadflow_tools.cli import main

    data = yaml.safe_load(EXAMPLE_FILE.read_text(encoding="utf-8"))
    data["scoring"]["mql"]["required_behaviours"][1]["min_count"] = 0
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")

    assert main(["policy", "check", str(path)]) == 1
    err = capsys.readouterr().err
    assert (
        "  scoring.mql.required_behaviours[1].min_count: Input should be greater than or equal to 1"
        in err
    )
    assert main(["policy", "check", str(EXAMPLE_FILE)]) == 0
