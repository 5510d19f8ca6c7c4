"""Pure rules of the quarterly review: which calendar quarters a review covers, their labels,
and which policy publications fall within each (docs/domain.md "Quarterly review")."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from leadflow.contracts.commitments import MONTHS_PER_QUARTER, next_start, period_start

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
