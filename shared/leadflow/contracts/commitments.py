"""What the parties' period commitments are and count: the one list of commitments each party
is judged on, MQLs in target, MQLs with full context, the source-mix groups, the periods they
are judged over and the volume planned for one. sla-timer enforces them at the end of each
period and feedback reports them, from these same definitions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from leadflow.contracts.events import LeadMql
from leadflow.contracts.policy import Policy, normalise_industry

# The policy judges per week or month; the quarterly review reads the same figures per quarter.
Granularity = Literal["week", "month", "quarter"]
WEEKS_PER_MONTH = 52 / 12
MONTHS_PER_QUARTER = 3

MARKETING = "marketing"
SALES = "sales"
PARTIES = (MARKETING, SALES)
# The commitments each party is judged on, in report order: sla-timer's period judgement and
# feedback's report both judge exactly these, so a period missed in one is missed in the other.
COMMITMENTS: dict[str, tuple[str, ...]] = {
    MARKETING: ("mql_volume", "source_mix", "in_target_share", "full_context_share"),
    SALES: ("contacted_within_limit_share", "attempts_per_mql", "status_share"),
}

OTHER_SOURCE = "other"
# How marketing's media map onto the source-mix groups of the policy (paid, content, events);
# a medium named like a group counts for that group.
SOURCE_SYNONYMS = {
    "cpc": "paid",
    "ppc": "paid",
    "paid_search": "paid",
    "paid_social": "paid",
    "display": "paid",
    "ads": "paid",
    "seo": "content",
    "organic": "content",
    "blog": "content",
    "content": "content",
    # owned channels that distribute content: newsletters and nurture mail, organic social
    "email": "content",
    "newsletter": "content",
    "social": "content",
    "webinar": "events",
    "webinars": "events",
    "event": "events",
    "events": "events",
}


def missed_commitments(party: str, met: dict[str, bool | None]) -> list[str]:
    """The party's commitments judged missed, in the one list's order; a commitment with
    nothing to judge (None) or one the party is not judged on is never missed."""
    return [name for name in COMMITMENTS[party] if met.get(name) is False]


def source_group(source: dict[str, Any] | None, groups: Iterable[str]) -> str:
    """The source-mix group of a lead: its medium (or a known synonym of it), else 'other'."""
    groups = set(groups)
    medium = str((source or {}).get("medium") or "").strip().lower()
    if medium in groups:
        return medium
    mapped = SOURCE_SYNONYMS.get(medium)
    return mapped if mapped in groups else OTHER_SOURCE


@dataclass(frozen=True)
class SourceMix:
    """The period's MQLs by source-mix group against the policy's plan: each group's share
    (an 'other' group only when some MQL fell outside the plan), and the verdict — every group
    within the tolerance of its planned share (None of no MQL)."""

    counts: dict[str, int]
    actual: dict[str, float | None]
    planned: dict[str, float]
    tolerance: float
    met: bool | None

    @property
    def largest_drift(self) -> float | None:
        """How far the group furthest from its plan drifted (absolute share)."""
        drifts = [abs(v - self.planned[k]) for k, v in self.actual.items() if v is not None]
        return round(max(drifts), 4) if drifts else None


def source_mix(counts: dict[str, int], policy: Policy) -> SourceMix:
    c = policy.commitments.marketing
    groups = list(c.source_mix)
    n = sum(counts.values())
    keys = groups + ([OTHER_SOURCE] if counts.get(OTHER_SOURCE) else [])
    actual = {key: share(counts.get(key, 0), n) for key in keys}
    planned = {key: c.source_mix.get(key, 0.0) for key in keys}
    met = (
        None
        if not n
        else all(abs(actual[key] - planned[key]) <= c.source_mix_tolerance + 1e-9 for key in keys)
    )
    return SourceMix(
        {key: counts.get(key, 0) for key in keys}, actual, planned, c.source_mix_tolerance, met
    )


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
    """Marketing's MQL plan for one period (the policy plans per month; a week is 12/52 of it,
    a quarter three months)."""
    per_month = policy.commitments.marketing.mql_plan_per_month
    if granularity == "quarter":
        return float(per_month * MONTHS_PER_QUARTER)
    return round(per_month if granularity == "month" else per_month / WEEKS_PER_MONTH, 2)


def period_start(day: date, granularity: Granularity) -> date:
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "quarter":
        return date(day.year, (day.month - 1) // MONTHS_PER_QUARTER * MONTHS_PER_QUARTER + 1, 1)
    return day.replace(day=1)


def next_start(day: date, granularity: Granularity) -> date:
    if granularity == "week":
        return day + timedelta(days=7)
    months = MONTHS_PER_QUARTER if granularity == "quarter" else 1
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period_of(
    instant: datetime, granularity: Granularity, tz: ZoneInfo
) -> tuple[datetime, datetime]:
    """The calendar period (week from Monday, month, or quarter) holding `instant`, local midnight to
    local midnight in `tz`; the end is exclusive."""
    first = period_start(instant.astimezone(tz).date(), granularity)
    last = next_start(first, granularity)
    return (
        datetime(first.year, first.month, first.day, tzinfo=tz),
        datetime(last.year, last.month, last.day, tzinfo=tz),
    )
