"""The quarterly review: calendar quarters in the policy's time zone, the MQL plan of a quarter
(three months of the policy's 500: 1,500, met at 90 %: 1,350), the commitments judged per quarter
as per week or month, and the policy versions published within each quarter."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from leadflow.contracts.commitments import next_start, period_of, period_start, planned_mql
from leadflow.contracts.policy import default_policy
from leadflow_feedback.domain.reports import LeadFacts, periods_between, sla_report
from leadflow_feedback.domain.review import templates
from leadflow_feedback.quarterly import rules
from leadflow_feedback.quarterly.use_cases import quarter_csv

POLICY = default_policy()
WARSAW = ZoneInfo("Europe/Warsaw")
NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


def version(number: int, label: str, at: datetime) -> dict:
    return {"number": number, "version": label, "state": "published", "published_at": at,
            "published_by": "admin"}  # fmt: skip


def test_a_quarter_runs_from_the_first_day_of_its_first_month_to_the_next_quarter():
    assert period_start(date(2026, 11, 5), "quarter") == date(2026, 10, 1)
    assert next_start(date(2026, 10, 1), "quarter") == date(2027, 1, 1)
    # 23:30 UTC on 30 September is already 1 October in Warsaw: the fourth quarter.
    start, end = period_of(datetime(2026, 9, 30, 23, 30, tzinfo=UTC), "quarter", WARSAW)
    assert (start, end) == (
        datetime(2026, 10, 1, tzinfo=WARSAW),
        datetime(2027, 1, 1, tzinfo=WARSAW),
    )


def test_the_quarter_plan_is_three_months_of_the_monthly_plan():
    assert planned_mql(POLICY, "quarter") == 1500
    report = sla_report([], POLICY, first=date(2026, 10, 1), last=date(2026, 12, 31),
                        granularity="quarter", now=NOW)  # fmt: skip
    [q4] = report["periods"]
    assert (q4["marketing"]["mql_volume"]["plan"], q4["marketing"]["mql_volume"]["target"]) == (
        1500.0,
        1350.0,
    )


def test_a_review_shows_this_quarter_and_the_three_before_it():
    assert rules.quarters_ending(date(2026, 12, 5)) == (date(2026, 1, 1), date(2026, 12, 31))
    assert rules.quarters_ending(date(2026, 2, 1), 2) == (date(2025, 10, 1), date(2026, 3, 31))
    labels = [
        rules.quarter_label(p.start.date())
        for p in periods_between(date(2026, 1, 1), date(2026, 12, 31), "quarter", WARSAW)
    ]
    assert labels == ["2026-Q1", "2026-Q2", "2026-Q3", "2026-Q4"]


def test_the_commitments_are_judged_per_quarter_and_policy_changes_fall_in_their_quarter():
    leads = [
        LeadFacts(
            lead_id=uuid.uuid4(),
            status="mql",
            mql_at=datetime(2026, 11, 2, 10, tzinfo=UTC),
            source={"medium": "cpc"},
            in_target=True,
            mql_context_missing=[],
            context_missing=[],
        )  # fmt: skip
        for _ in range(1400)
    ]
    report = sla_report(leads, POLICY, first=date(2026, 7, 1), last=date(2026, 12, 31),
                        granularity="quarter", now=NOW)  # fmt: skip
    versions = [
        version(2, "2026.09-mql-bar", datetime(2026, 9, 30, 21, 59, tzinfo=UTC)),  # 23:59 Warsaw
        version(3, "2026.10-cadence", datetime(2026, 9, 30, 22, 0, tzinfo=UTC)),  # 1 Oct 00:00
        version(4, "2026.11-owners", datetime(2026, 11, 20, 9, tzinfo=UTC)),
    ]
    quarters = rules.with_quarters(report, versions)
    q3, q4 = quarters["periods"]
    assert (q3["quarter"], q4["quarter"]) == ("2026-Q3", "2026-Q4")
    assert [c["version"] for c in q3["policy_changes"]] == ["2026.09-mql-bar"]
    assert [c["version"] for c in q4["policy_changes"]] == ["2026.10-cadence", "2026.11-owners"]
    assert len(quarters["policy_changes"]) == 3
    # 1,400 MQLs against the 1,350 a quarter needs; all paid, so the mix is missed
    assert q4["marketing"]["mql_volume"]["met"] is True
    assert q4["marketing"]["source_mix"]["met"] is False
    assert q3["marketing"]["mql_volume"]["met"] is False
    rows = list(csv.DictReader(io.StringIO(quarter_csv(quarters))))
    changes = [r for r in rows if r["section"] == "policy_change"]
    assert [r["key"] for r in changes] == ["2026.09-mql-bar", "2026.10-cadence", "2026.11-owners"]
    assert changes[0]["period_start"] == q3["start"]


def test_the_quarter_page_shows_each_quarter_and_the_policy_changes():
    report = sla_report([], POLICY, first=date(2026, 1, 1), last=date(2026, 12, 31),
                        granularity="quarter", now=NOW)  # fmt: skip
    changed = version(5, "2026.11-<owners>", NOW - timedelta(days=10))
    quarters = rules.with_quarters(report, [changed])
    page = templates.get_template("review_quarter.html").render(
        report=quarters, quarter="2026-Q4", previous="2025-10-01", following="2027-01-01",
        team=None, account=None,
    )  # fmt: skip
    assert page.count("data-quarter=") == 4
    assert 'data-quarter="2026-Q4"' in page
    assert "2026.11-&lt;owners&gt;" in page  # escaped like every value
    assert 'id="policy-changes"' in page
