"""Revenue against the goal: won value against each period's goal, the open pipeline and its
coverage, the MQL→won cycle time, and revenue by source, channel and campaign under first-touch
and last-touch attribution, all pure functions of feedback's lead rows (`LeadFacts`).

Amounts are summed in the policy's one currency (`revenue.currency`); a deal in another
currency is listed apart, never converted or added in.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from leadflow.contracts.commitments import MONTHS_PER_QUARTER, WEEKS_PER_MONTH, source_group
from leadflow.contracts.policy import Policy

from leadflow_feedback.domain.reports import (
    NO_CAMPAIGN,
    LeadFacts,
    StatusStep,
    p90,
    periods_between,
)

ATTRIBUTIONS = ("first_touch", "last_touch")
DIMENSIONS = ("source", "channel", "campaign")
NO_CHANNEL = "(none)"
SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class Amount:
    value: float
    currency: str


def _last(lead: LeadFacts, status: str) -> StatusStep | None:
    return next((s for s in reversed(lead.history) if s.status == status), None)


def _opportunity(step: StatusStep | None) -> dict[str, Any]:
    return ((step.details or {}).get("opportunity") or {}) if step is not None else {}


def deal_amount(lead: LeadFacts, currency: str) -> Amount | None:
    """What the deal is worth: the value and currency the won status carried, each falling back
    to the lead's latest SQO's; an amount without any currency is in the policy's `currency`.
    None when neither carried a value."""
    won, sqo = _opportunity(_last(lead, "won")), _opportunity(_last(lead, "sqo"))
    value = won.get("value") if won.get("value") is not None else sqo.get("value")
    if value is None:
        return None
    return Amount(float(value), won.get("currency") or sqo.get("currency") or currency)


def won_at(lead: LeadFacts) -> datetime | None:
    """When the deal was won (its `won` status change); None for a lead not won."""
    step = _last(lead, "won")
    return step.changed_at if step is not None else None


def is_open_opportunity(lead: LeadFacts) -> bool:
    """The lead is an SQO not decided yet: its value is pipeline."""
    return lead.status == "sqo"


def pipeline_at(leads: list[LeadFacts], policy: Policy, at: datetime) -> dict[str, Any]:
    """The open pipeline as it stood just before `at`: the leads whose last status change
    before it was `sqo`, each worth its latest SQO's value by then, summed in the policy's
    currency (a deal in another currency is left out, as it is from the won value).

    `leads` must hold every lead that was an SQO before `at`, with its status history."""
    currency = policy.revenue.currency
    value, deals = 0.0, 0
    for lead in leads:
        before = sorted((s for s in lead.history if s.changed_at < at), key=lambda s: s.changed_at)
        if not before or before[-1].status != "sqo":
            continue
        amount = deal_amount(replace(lead, history=before), currency)
        if amount is None or amount.currency != currency:
            continue
        value += amount.value
        deals += 1
    return {"value": round(value, 2), "deals": deals, "as_of": at.isoformat()}


def period_goal(policy: Policy, granularity: str) -> float:
    """The revenue goal of one period: the policy's month, three of them for a quarter, or
    12/52 of it for a week."""
    per_month = policy.revenue.goal_per_month
    if granularity == "quarter":
        return round(per_month * MONTHS_PER_QUARTER, 2)
    return round(per_month if granularity == "month" else per_month / WEEKS_PER_MONTH, 2)


def first_touch(lead: LeadFacts) -> dict[str, Any]:
    """The lead's original source: the first one feedback saw for it."""
    touches = sorted(lead.touches, key=lambda t: t[0])
    return touches[0][1] if touches else (lead.source or {})


def last_touch(lead: LeadFacts) -> dict[str, Any]:
    """The source the lead was last known under up to its promotion to MQL (its last snapshot
    or the promotion's own); activities carry no campaign in feedback, so this is the nearest
    it knows of the last campaign before the MQL."""
    before = [
        t
        for t in sorted(lead.touches, key=lambda t: t[0])
        if lead.mql_at is None or t[0] <= lead.mql_at
    ]
    return before[-1][1] if before else first_touch(lead)


def _keys(lead: LeadFacts, source: dict[str, Any], groups: list[str]) -> dict[str, str]:
    return {
        "source": source_group(source, groups),
        "channel": source.get("channel") or lead.channel or NO_CHANNEL,
        "campaign": source.get("campaign") or NO_CAMPAIGN,
    }


def _share(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def attribution(
    deals: list[tuple[LeadFacts, Amount]], groups: list[str]
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Won value and deals per source group, channel and campaign, once by the lead's first
    touch and once by its last touch before MQL (each deal counted whole under one key)."""
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for model, touch in (("first_touch", first_touch), ("last_touch", last_touch)):
        sums: dict[str, dict[str, list[float]]] = {
            d: defaultdict(lambda: [0.0, 0]) for d in DIMENSIONS
        }
        for lead, amount in deals:
            for dimension, key in _keys(lead, touch(lead), groups).items():
                sums[dimension][key][0] += amount.value
                sums[dimension][key][1] += 1
        out[model] = {
            dimension: [
                {"key": key, "value": round(value, 2), "deals": int(count)}
                for key, (value, count) in sorted(rows.items(), key=lambda kv: (-kv[1][0], kv[0]))
            ]
            for dimension, rows in sums.items()
        }
    return out


def cycle_days(lead: LeadFacts) -> float | None:
    """Days from promotion to MQL to the won deal (wall clock)."""
    won = won_at(lead)
    if won is None or lead.mql_at is None:
        return None
    return (won - lead.mql_at).total_seconds() / SECONDS_PER_DAY


def revenue_report(
    leads: list[LeadFacts],
    policy: Policy,
    *,
    first: date,
    last: date,
    granularity: str,
) -> dict[str, Any]:
    """Revenue over the periods covering `first`..`last`: won value against each period's goal;
    the open pipeline (every SQO still open when the report is made) and its coverage of the
    goal still to win in the last period, against the policy's target; the MQL→won cycle time
    (median and p90, in days) and attribution of the deals won in the range.

    `leads` must hold every lead won in those periods and every open SQO."""
    rules = policy.revenue
    currency = rules.currency
    periods = periods_between(first, last, granularity, ZoneInfo(policy.calendar.time_zone))
    start, end = periods[0].start, periods[-1].end
    goal = period_goal(policy, granularity)
    apart: list[dict[str, Any]] = []
    without_value: list[str] = []
    won: list[tuple[LeadFacts, Amount, datetime]] = []
    for lead in leads:
        at = won_at(lead)
        if at is None or not start <= at < end:
            continue
        amount = deal_amount(lead, currency)
        if amount is None:
            without_value.append(str(lead.lead_id))
        elif amount.currency != currency:
            apart.append(_apart(lead, "won", amount))
        else:
            won.append((lead, amount, at))
    rows = []
    for period in periods:
        deals = [amount.value for _, amount, at in won if period.contains(at)]
        value = round(sum(deals), 2)
        rows.append(
            {
                "start": period.start.isoformat(),
                "end": period.end.isoformat(),
                "goal": goal,
                "won": value,
                "deals": len(deals),
                "attainment": _share(value, goal),
                "met": value >= goal,
            }
        )
    pipeline_value, pipeline_deals = 0.0, 0
    for lead in leads:
        if not is_open_opportunity(lead):
            continue
        amount = deal_amount(lead, currency)
        if amount is None:
            continue
        if amount.currency != currency:
            apart.append(_apart(lead, "pipeline", amount))
        else:
            pipeline_value += amount.value
            pipeline_deals += 1
    remaining = round(max(goal - rows[-1]["won"], 0.0), 2)
    coverage = round(pipeline_value / remaining, 2) if remaining else None
    cycles = [d for d in (cycle_days(lead) for lead, _, _ in won) if d is not None]
    groups = list(policy.commitments.marketing.source_mix)
    total = round(sum(amount.value for _, amount, _ in won), 2)
    return {
        "currency": currency,
        "goal": round(goal * len(periods), 2),
        "won": total,
        "deals": len(won),
        "attainment": _share(total, goal * len(periods)),
        "periods": rows,
        "pipeline": {"value": round(pipeline_value, 2), "deals": pipeline_deals},
        "remaining_goal": remaining,
        # nothing left to win: the period's goal is reached, whatever the pipeline
        "coverage": {
            "value": coverage,
            "target": rules.coverage_target,
            "met": True if not remaining else coverage >= rules.coverage_target,
        },
        "cycle_time_days": {
            "median": round(statistics.median(cycles), 1) if cycles else None,
            "p90": round(p90(cycles), 1) if cycles else None,
            "deals": len(cycles),
        },
        "attribution": attribution([(lead, amount) for lead, amount, _ in won], groups),
        "other_currencies": sorted(apart, key=lambda a: (a["kind"], a["currency"], a["lead_id"])),
        "without_value": sorted(without_value),
    }


def _apart(lead: LeadFacts, kind: str, amount: Amount) -> dict[str, Any]:
    return {
        "lead_id": str(lead.lead_id),
        "kind": kind,
        "value": amount.value,
        "currency": amount.currency,
    }


def revenue_csv_rows(revenue: dict[str, Any] | None) -> Iterator[tuple[Any, ...]]:
    """The revenue section in the report's long CSV form (`reports.CSV_COLUMNS`): section,
    period start and end, party, metric, key, value, target, met."""
    if not revenue:
        return
    currency = revenue["currency"]
    for p in revenue["periods"]:
        yield (
            "revenue",
            p["start"],
            p["end"],
            "",
            "revenue_won",
            currency,
            p["won"],
            p["goal"],
            p["met"],
        )
    yield "revenue", "", "", "", "pipeline", currency, revenue["pipeline"]["value"], None, None
    c = revenue["coverage"]
    yield "revenue", "", "", "", "coverage", "", c["value"], c["target"], c["met"]
    for key in ("median", "p90"):
        value = revenue["cycle_time_days"][key]
        yield "revenue", "", "", "", "cycle_time_days", key, value, None, None
    for model in ATTRIBUTIONS:
        for dimension in DIMENSIONS:
            for row in revenue["attribution"][model][dimension]:
                metric = f"{model}.{dimension}"
                yield "revenue", "", "", "", metric, row["key"], row["value"], None, None
    for item in revenue["other_currencies"]:
        amount = f"{item['value']:g} {item['currency']}"
        yield (
            "revenue",
            "",
            "",
            "",
            f"other_currency.{item['kind']}",
            item["lead_id"],
            amount,
            None,
            None,
        )
