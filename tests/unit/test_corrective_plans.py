"""Corrective plans and the one list of commitments: sla-timer's period judgement and feedback's
SLA report judge the same commitments (the source mix in both), a missed streak opens a plan owned
by the party's owner and due the policy's 30 days later, and actions past their date are overdue."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from leadflow.contracts.commitments import COMMITMENTS, source_mix
from leadflow.contracts.events import SlaCorrectivePlanRequired
from leadflow.contracts.policy import PolicyError, default_policy, load_policy
from leadflow_feedback.domain.reports import LeadFacts, sla_report
from leadflow_feedback.plans import rules
from leadflow_sla_timer.domain.periods import (
    MarketingCounts,
    SalesCounts,
    marketing_figures,
    missed,
    sales_figures,
)

POLICY = default_policy()
NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


def required(party="marketing", misses=("mql_volume", "source_mix"), streak=2):
    return SlaCorrectivePlanRequired(
        lead_id=uuid.uuid4(),
        party=party,
        period_start=datetime(2026, 2, 1, tzinfo=UTC),
        period_end=datetime(2026, 3, 1, tzinfo=UTC),
        consecutive_misses=streak,
        missed=list(misses),
    )


# --- one list of commitments -----------------------------------------------------------------


def test_both_services_judge_the_same_commitments_per_party():
    marketing = marketing_figures(MarketingCounts(10, 10, 10), POLICY, "month")
    sales = sales_figures(SalesCounts(decided=1, within_limit=1, mqls=1, attempts=5), POLICY)
    assert tuple(f.commitment for f in marketing) == COMMITMENTS["marketing"]
    assert tuple(f.commitment for f in sales) == COMMITMENTS["sales"]
    report = sla_report([], POLICY, first=date(2026, 3, 2), last=date(2026, 3, 2),
                        granularity="week", now=NOW)  # fmt: skip
    period = report["periods"][0]
    for party in ("marketing", "sales"):
        judged = {k for k, v in period[party].items() if isinstance(v, dict) and "met" in v}
        assert judged == set(COMMITMENTS[party])


def test_a_skewed_source_mix_is_missed_in_the_judgement_and_in_the_report():
    # 10 MQLs in one week: 6 paid, 2 content, 2 events against 40/30/30 ± 10 points: paid drifts 20
    media = ["cpc"] * 6 + ["seo"] * 2 + ["webinar"] * 2
    monday = datetime(2026, 3, 2, 10, tzinfo=UTC)
    leads = [
        LeadFacts(
            lead_id=uuid.uuid4(),
            status="mql",
            mql_at=monday,
            source={"medium": m},
            in_target=True,
            mql_context_missing=[],
            context_missing=[],
        )  # fmt: skip
        for m in media
    ]
    report = sla_report(leads, POLICY, first=date(2026, 3, 2), last=date(2026, 3, 2),
                        granularity="week", now=NOW)  # fmt: skip
    reported = report["periods"][-1]["marketing"]
    assert reported["source_mix"]["met"] is False
    counts = MarketingCounts(10, 10, 10, by_medium={"cpc": 6, "seo": 2, "webinar": 2})
    judged = marketing_figures(counts, POLICY, "week")
    mix = next(f for f in judged if f.commitment == "source_mix")
    assert (mix.planned, mix.target, mix.actual, mix.met) == (0.0, 0.1, 0.2, False)
    assert missed("marketing", judged) == reported["missed"]


def test_a_mix_within_ten_points_of_the_plan_is_met():
    mix = source_mix({"paid": 5, "content": 3, "events": 2}, POLICY)  # 50/30/20
    assert (mix.met, mix.largest_drift) == (True, 0.1)


def test_sales_attempts_and_status_are_judged_against_5_attempts_and_95_percent():
    figures = {
        f.commitment: f
        for f in sales_figures(
            SalesCounts(decided=10, within_limit=9, mqls=10, attempts=49, with_status=10), POLICY
        )
    }
    assert (figures["attempts_per_mql"].actual, figures["attempts_per_mql"].met) == (4.9, False)
    assert (figures["status_share"].actual, figures["status_share"].met) == (1.0, True)


# --- plans -----------------------------------------------------------------------------------


def test_a_missed_streak_opens_a_plan_owned_by_the_partys_owner_due_in_30_days():
    event = required()
    opened = rules.open_plan(event.lead_id, event, POLICY, NOW).values
    assert opened["owner"] == "head of marketing"
    assert opened["due_at"] == NOW + timedelta(days=30)
    assert opened["status"] == "open"
    assert opened["missed"] == ["mql_volume", "source_mix"]
    assert opened["periods"][0]["period_id"] == str(event.lead_id)
    assert rules.owner_of("sales", POLICY) == "head of sales"


def test_a_streak_that_goes_on_links_its_period_to_the_open_plan_once():
    first = required()
    plan = rules.open_plan(first.lead_id, first, POLICY, NOW).values
    third = required(misses=("in_target_share",), streak=3)
    change = rules.extend_plan(plan, third.lead_id, third)
    assert [p["consecutive_misses"] for p in change["periods"]] == [2, 3]
    assert change["missed"] == ["mql_volume", "source_mix", "in_target_share"]
    assert rules.extend_plan({**plan, **change}, third.lead_id, third) is None


def test_a_closed_plan_stays_closed():
    rules.move("open", "in_progress")
    rules.move("in_progress", "done")
    with pytest.raises(rules.PlanRefused) as refused:
        rules.move("done", "open")
    assert refused.value.field == "status"


def test_an_action_past_its_date_and_not_done_is_overdue():
    assert rules.overdue({"done": False, "due_at": NOW - timedelta(seconds=1)}, NOW)
    assert not rules.overdue({"done": True, "due_at": NOW - timedelta(days=1)}, NOW)
    assert not rules.overdue({"done": False, "due_at": NOW + timedelta(days=1)}, NOW)


def test_policy_check_names_a_bad_due_days_and_an_empty_owner(tmp_path: Path):
    document = yaml.safe_load(
        (Path("shared/leadflow/contracts/policy_default.yaml")).read_text("utf-8")
    )
    document["commitments"]["corrective_plans"] = {"owners": {"sales": " "}, "due_days": 0}
    bad = tmp_path / "policy.yaml"
    bad.write_text(yaml.safe_dump(document), "utf-8")
    with pytest.raises(PolicyError) as error:
        load_policy(bad)
    text = str(error.value)
    assert "commitments.corrective_plans.due_days" in text
    assert "commitments.corrective_plans.owners" in text
