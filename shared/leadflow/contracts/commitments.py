"""What the parties' period commitments count: MQLs in target, MQLs with full context, the
periods they are judged over and the volume planned for one. sla-timer enforces them at the
end of each period and feedback reports them, from these same definitions."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from leadflow.contracts.events import LeadMql
from leadflow.contracts.policy import Policy, normalise_industry

Granularity = Literal["week", "month"]
WEEKS_PER_MONTH = 52 / 12


def in_target(policy: Policy, company: dict[str, Any], role: str | None) -> bool:
    """Inside the target segment (priority industry, size band) and persona (MQL roles)."""
    fit = policy.scoring.fit
    industry = normalise_industry(company.get("industry") or "")
    employees = company.get("employees")
    return (
        industry in fit.priority_industries
        and isinstance(employees, int)
        and fit.size_band.contains(employees)
        and role in policy.scoring.mql.roles
    )


def mql_context_missing(mql: LeadMql) -> list[str]:
    """What of marketing's full context (source, key activities, score, intent note) the MQL
    was delivered without; the score is always there, scoring computed it."""
    present = {
        "source.campaign": mql.source.campaign,
        "source.lead_magnet": mql.source.lead_magnet,
        "key_activities": mql.key_activities,
        "intent_note": (mql.intent_note or "").strip(),
    }
    return [name for name, value in present.items() if not value]


def share(part: int, whole: int) -> float | None:
    """part / whole rounded to four places, as every commitment share is compared; None of nothing."""
    return round(part / whole, 4) if whole else None


def planned_mql(policy: Policy, granularity: Granularity) -> float:
    """Marketing's MQL plan for one period (the policy plans per month; a week is 12/52 of it)."""
    per_month = policy.commitments.marketing.mql_plan_per_month
    return round(per_month if granularity == "month" else per_month / WEEKS_PER_MONTH, 2)


def period_start(day: date, granularity: Granularity) -> date:
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_start(day: date, granularity: Granularity) -> date:
    if granularity == "week":
        return day + timedelta(days=7)
    return date(day.year + (day.month == 12), day.month % 12 + 1, 1)


def period_of(
    instant: datetime, granularity: Granularity, tz: ZoneInfo
) -> tuple[datetime, datetime]:
    """The calendar period (week from Monday, or month) holding `instant`, local midnight to
    local midnight in `tz`; the end is exclusive."""
    first = period_start(instant.astimezone(tz).date(), granularity)
    last = next_start(first, granularity)
    return (
        datetime(first.year, first.month, first.day, tzinfo=tz),
        datetime(last.year, last.month, last.day, tzinfo=tz),
    )
