"""Pure rules of the quarterly review: which calendar quarters a review covers, their labels,
which policy publications fall within each, and each quarter's revenue against its goal with
the pipeline at its end (docs/domain.md "Quarterly review")."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from leadflow.contracts.commitments import MONTHS_PER_QUARTER, next_start, period_start
from leadflow.contracts.policy import Policy

from leadflow_feedback.domain import revenue
from leadflow_feedback.domain.reports import LeadFacts

# The quarterly review shows this quarter and the three before it: a year, quarter by quarter.
QUARTERS_SHOWN = 4


def quarter_label(day: date) -> str:
    """'2026-Q4' for any day of October to December 2026."""
    return f"{day.year}-Q{(day.month - 1) // MONTHS_PER_QUARTER + 1}"


def quarters_ending(day: date, count: int = QUARTERS_SHOWN) -> tuple[date, date]:
    """The first day of the earliest of `count` quarters ending with the quarter of `day`, and
    `day`'s quarter's last day."""
    first = period_start(day, "quarter")
    for _ in range(count - 1):
        first = period_start(date.fromordinal(first.toordinal() - 1), "quarter")
    last = date.fromordinal(next_start(period_start(day, "quarter"), "quarter").toordinal() - 1)
    return first, last


def published_within(
    versions: list[dict[str, Any]], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """The policy versions last published in [start, end), oldest publication first."""
    inside = [v for v in versions if v["published_at"] and start <= v["published_at"] < end]
    return sorted(inside, key=lambda v: v["published_at"])


def with_quarters(report: dict[str, Any], versions: list[dict[str, Any]]) -> dict[str, Any]:
    """The SLA report read per quarter, each period labelled and given the policy changes
    published within it; the report lists all changes of its range too."""
    periods = []
    for row in report["periods"]:
        start, end = datetime.fromisoformat(row["start"]), datetime.fromisoformat(row["end"])
        changes = [_change(v) for v in published_within(versions, start, end)]
        periods.append({**row, "quarter": quarter_label(start.date()), "policy_changes": changes})
    start = datetime.fromisoformat(report["from"])
    end = datetime.fromisoformat(report["to"])
    return {
        **report,
        "periods": periods,
        "policy_changes": [_change(v) for v in published_within(versions, start, end)],
    }


def _change(version: dict[str, Any]) -> dict[str, Any]:
    return {
        "number": version["number"],
        "version": version["version"],
        "state": version["state"],
        "published_at": version["published_at"].isoformat(),
        "published_by": version.get("published_by"),
    }


def policy_change_csv_rows(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The quarters' policy changes in the report's long CSV form (`reports.CSV_COLUMNS`)."""
    return [
        (
            "policy_change",
            row["start"],
            row["end"],
            "",
            "published",
            change["version"],
            change["published_at"],
            None,
            None,
        )  # fmt: skip
        for row in report["periods"]
        for change in row.get("policy_changes", [])
    ]


def with_revenue(
    report: dict[str, Any],
    won: dict[str, Any],
    opportunities: list[LeadFacts],
    policy: Policy,
    now: datetime,
) -> dict[str, Any]:
    """The quarterly report with each quarter's revenue: the value and count of the deals won
    in it against the quarter's goal (the policy gives a goal per month: a quarter's is three
    of them), and the open pipeline at the quarter's end (as of `now` for the quarter under
    way, none for one not begun). `won` is `revenue.revenue_report` over the quarters;
    `opportunities` every lead that was an SQO before the last quarter's end."""
    periods = []
    for row in won["periods"]:
        start, end = datetime.fromisoformat(row["start"]), datetime.fromisoformat(row["end"])
        at_end = None
        if start <= now:
            at_end = {
                **revenue.pipeline_at(opportunities, policy, min(end, now)),
                "ended": end <= now,
            }
        periods.append({**row, "quarter": quarter_label(start.date()), "pipeline_at_end": at_end})
    per_month = policy.revenue.goal_per_month
    basis = (
        f"{MONTHS_PER_QUARTER} × the policy's goal per month "
        f"({per_month:,.0f} {policy.revenue.currency})"
    )
    return {
        **report,
        "revenue": {**won, "periods": periods, "goal_per_month": per_month, "goal_basis": basis},
    }


def revenue_csv_rows(report: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The quarters' revenue in the report's long CSV form (`reports.CSV_COLUMNS`): the rows of
    `revenue.revenue_csv_rows`, and per quarter its won deals and its pipeline at the end."""
    money = report.get("revenue")
    if not money:
        return []
    rows = list(revenue.revenue_csv_rows(money))
    currency = money["currency"]
    for p in money["periods"]:
        rows.append(("revenue", p["start"], p["end"], "", "won_deals", "", p["deals"], None, None))
        at_end = p.get("pipeline_at_end")
        if at_end is not None:
            rows.append(("revenue", p["start"], p["end"], "", "pipeline_at_end", currency,
                         at_end["value"], None, None))  # fmt: skip
            rows.append(("revenue", p["start"], p["end"], "", "pipeline_at_end_deals", "",
                         at_end["deals"], None, None))  # fmt: skip
    return rows
