"""Revenue in the quarterly review, on numbers a RevOps person can check by hand: the shipped
policy's goal of 100,000 EUR a month makes a quarter's goal 300,000 EUR; two deals won in
Q4 2026 for 120,000 and 60,000 EUR are 180,000 EUR, 60 % of it, 2 deals; the pipeline at the
end of Q3 is the SQOs still open then, whatever became of them later."""

import uuid
from datetime import date, datetime
from zoneinfo import ZoneInfo

from leadflow.contracts.policy import default_policy
from leadflow_feedback.domain.reports import LeadFacts, StatusStep
from leadflow_feedback.domain.revenue import period_goal, pipeline_at, revenue_report
from leadflow_feedback.quarterly.rules import revenue_csv_rows, with_revenue

WAW = ZoneInfo("Europe/Warsaw")
POLICY = default_policy()
Q3_END = datetime(2026, 10, 1, tzinfo=WAW)
NOW = datetime(2026, 11, 10, 9, tzinfo=WAW)


def deal(value: float, currency: str = "EUR") -> dict:
    return {"opportunity": {"value": value, "currency": currency, "stage": "proposal",
                            "close_date": "2026-12-31"}}  # fmt: skip


def lead(status: str, *steps: tuple[str, datetime, float | None]) -> LeadFacts:
    """A lead with these status changes (status, instant, the opportunity's value if any)."""
    history = [StatusStep(s, None, at, deal(v) if v else None) for s, at, v in steps]
    return LeadFacts(lead_id=uuid.uuid4(), status=status, history=history)


def day(month: int, d: int) -> datetime:
    return datetime(2026, month, d, 10, tzinfo=WAW)


# Q3: one SQO of 50,000 still open; one of 30,000 won in October (open at Q3's end); one of
# 20,000 lost in September (not pipeline at Q3's end). Q4: won 120,000 (its SQO said 100,000:
# the won status's value counts) and 60,000.
STILL_OPEN = lead("sqo", ("sqo", day(9, 10), 50_000))
WON_LATER = lead("won", ("sqo", day(9, 20), 30_000), ("won", day(10, 5), 120_000))
LOST = lead("lost", ("sqo", day(8, 1), 20_000), ("lost", day(9, 2), None))
WON_Q4 = lead("won", ("sqo", day(10, 1), 60_000), ("won", day(11, 3), None))
LEADS = [STILL_OPEN, WON_LATER, LOST, WON_Q4]


def quarters() -> dict:
    won = revenue_report(
        LEADS, POLICY, first=date(2026, 7, 1), last=date(2026, 12, 31), granularity="quarter"
    )
    return with_revenue({"periods": []}, won, LEADS, POLICY, NOW)["revenue"]


def test_a_quarters_goal_is_three_months_of_the_policys_goal():
    assert period_goal(POLICY, "month") == 100_000
    assert period_goal(POLICY, "quarter") == 300_000
    assert "3 × the policy's goal per month (100,000 EUR)" == quarters()["goal_basis"]


def test_each_quarter_shows_its_won_value_and_deals_against_its_goal():
    q3, q4 = quarters()["periods"]
    assert (q3["quarter"], q3["won"], q3["deals"], q3["goal"], q3["met"]) == (
        "2026-Q3", 0, 0, 300_000, False,
    )  # fmt: skip
    assert (q4["quarter"], q4["won"], q4["deals"], q4["goal"]) == ("2026-Q4", 180_000, 2, 300_000)
    assert q4["attainment"] == 0.6 and q4["met"] is False


def test_the_pipeline_at_a_quarters_end_counts_the_sqos_open_then():
    q3, q4 = quarters()["periods"]
    # 50,000 still open + 30,000 won only in October; the 20,000 lost in September is not
    assert q3["pipeline_at_end"] == {
        "value": 80_000, "deals": 2, "as_of": Q3_END.isoformat(), "ended": True,
    }  # fmt: skip
    # Q4 is under way: its pipeline is as of now, the 50,000 still open
    assert q4["pipeline_at_end"] == {
        "value": 50_000, "deals": 1, "as_of": NOW.isoformat(), "ended": False,
    }  # fmt: skip


def test_a_deal_in_another_currency_is_left_out_of_the_pipeline():
    in_usd = LeadFacts(
        lead_id=uuid.uuid4(), status="sqo",
        history=[StatusStep("sqo", None, day(9, 1), deal(99_000, "USD"))],
    )  # fmt: skip
    assert pipeline_at([in_usd, STILL_OPEN], POLICY, Q3_END)["value"] == 50_000


def test_a_quarter_not_begun_has_no_pipeline_at_its_end():
    won = revenue_report(
        LEADS, POLICY, first=date(2026, 10, 1), last=date(2027, 1, 1), granularity="quarter"
    )
    q4, q1 = with_revenue({}, won, LEADS, POLICY, NOW)["revenue"]["periods"]
    assert q4["pipeline_at_end"] is not None and q1["pipeline_at_end"] is None


def test_the_csv_has_each_quarters_won_value_deals_and_pipeline_at_its_end():
    rows = revenue_csv_rows({"revenue": quarters()})
    q3, q4 = quarters()["periods"]
    start, end = q4["start"], q4["end"]
    assert ("revenue", start, end, "", "revenue_won", "EUR", 180_000, 300_000, False) in rows
    assert ("revenue", start, end, "", "won_deals", "", 2, None, None) in rows
    q3_rows = [r for r in rows if r[1:3] == (q3["start"], q3["end"])]
    assert ("revenue", q3["start"], q3["end"], "", "pipeline_at_end", "EUR", 80_000, None,
            None) in q3_rows  # fmt: skip
    assert ("revenue", q3["start"], q3["end"], "", "pipeline_at_end_deals", "", 2, None,
            None) in q3_rows  # fmt: skip
