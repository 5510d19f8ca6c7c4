"""What the quarterly review reads: both parties' commitments per calendar quarter (the SLA
report over quarters), the policy versions published within each, and each quarter's revenue
against its goal with the pipeline at its end, as JSON, CSV or a page."""

from __future__ import annotations

from datetime import date
from typing import Any
from zoneinfo import ZoneInfo

from leadflow.errors import Unprocessable
from leadflow.service import Runtime

from leadflow_feedback import store as reads
from leadflow_feedback.domain import reports, revenue
from leadflow_feedback.domain.review import templates
from leadflow_feedback.quarterly import rules, store


async def quarter_report(
    rt: Runtime, *, first: date | None, last: date | None, team: str | None
) -> dict[str, Any]:
    """The commitments against their targets quarter by quarter over `first`..`last` (by
    default this quarter and the three before it), with the policy changes of each quarter."""
    policy = rt.policy
    now = rt.clock.now()
    last = last or now.astimezone(ZoneInfo(policy.calendar.time_zone)).date()
    first = first or rules.quarters_ending(last)[0]
    try:
        start, end = reports.report_window(first, last, "quarter", policy)
    except reports.ReportInputError as exc:
        raise Unprocessable(exc.message, field=exc.field) from None
    async with rt.db.unit_of_work() as session:
        facts = await reads.report_facts(session, start=start, end=end, team=team)
        versions = await store.published_between(session, start, end)
        deals = await reads.revenue_facts(session, start=start, end=end, team=team)
        opportunities = await store.opportunities_before(session, end, team)
    report = reports.sla_report(
        facts, policy, first=first, last=last, granularity="quarter", now=now, team=team
    )
    won = revenue.revenue_report(deals, policy, first=first, last=last, granularity="quarter")
    report = rules.with_revenue(report, won, opportunities, policy, now)
    return rules.with_quarters(report, versions)


def quarter_csv(report: dict[str, Any]) -> str:
    more = [*rules.policy_change_csv_rows(report), *rules.revenue_csv_rows(report)]
    return reports.report_csv(report, more)


async def quarter_page(
    rt: Runtime,
    *,
    quarter: date | None,
    team: str | None,
    account: dict[str, str] | None = None,
) -> str:
    """The quarterly review page: the four quarters ending with the one holding `quarter`."""
    policy = rt.policy
    day = quarter or rt.clock.now().astimezone(ZoneInfo(policy.calendar.time_zone)).date()
    first, last = rules.quarters_ending(day)
    report = await quarter_report(rt, first=first, last=last, team=team or None)
    return templates.get_template("review_quarter.html").render(
        account=account,
        report=report,
        quarter=rules.quarter_label(day),
        previous=rules.quarters_ending(day, 2)[0].isoformat(),
        following=date.fromordinal(last.toordinal() + 1).isoformat(),
        team=team,
    )
