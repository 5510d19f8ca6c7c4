"""Reverse funnel math (docs/domain.md "Planning"): revenue goal → deals → SQO → SQL → MQL →
visits → activities → SDR-weeks, and the check of the MQL volume against sales capacity.

Worked example: 1.2 M€ goal, 40 k€ average deal, 25 % win rate → 120 SQO; SQL→SQO 80 %,
MQL→SQL 30 % → 500 MQL; visit→MQL 1.5 % → ≈33,333 visits; 6 touches per MQL → 3,000
activities; 300 activities per SDR-week → 10 SDR-weeks. With capacity for 300 MQL the
plan is over capacity by 200 and the verdict lists the three ways out.

The math runs on exact fractions (0.8 and 0.015 are not exact binary floats), so the
worked example comes out exactly; `exact` keeps the unrounded figures and the headline
figures round up to whole units, because 499.995 MQL do not make 500.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

from leadflow_feedback.domain.observed_rates import STAGE_LABELS, ObservedRate

RATES = ("win_rate", "sql_to_sqo", "mql_to_sql", "visit_to_mql")
# Rates a plan may go without: visits, or leads, are then left out of it.
OPTIONAL_RATES = ("visit_to_mql", "lead_to_mql")
AMOUNTS = ("revenue_goal", "avg_deal_size", "touches_per_mql", "sdr_activities_per_week")


class PlanInputError(ValueError):
    """One input is out of range; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# A share: typed in (a float), or observed (an exact fraction of outcomes).
Rate = float | Fraction


@dataclass(frozen=True)
class PlanInput:
    revenue_goal: float
    avg_deal_size: float
    win_rate: Rate
    sql_to_sqo: Rate
    mql_to_sql: Rate
    visit_to_mql: Rate | None
    touches_per_mql: float
    sdr_activities_per_week: float
    sales_capacity_mql: float | None = None
    lead_to_mql: Rate | None = None


@dataclass(frozen=True)
class CapacityVerdict:
    verdict: str  # "within_capacity" | "over_capacity"
    mql_needed: int
    capacity_mql: int
    shortfall_mql: int
    headroom_mql: int
    options: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    deals: int
    sqo: int
    sql: int
    mql: int
    visits: int | None
    activities: int
    sdr_weeks: int
    exact: dict[str, float]
    capacity: CapacityVerdict | None
    leads: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "deals": self.deals,
            "sqo": self.sqo,
            "sql": self.sql,
            "mql": self.mql,
            "activities": self.activities,
            "sdr_weeks": self.sdr_weeks,
            "exact": self.exact,
            "capacity": None,
        }
        # A stage whose rate the plan went without is left out rather than written as null.
        if self.visits is not None:
            out["visits"] = self.visits
        if self.leads is not None:
            out["leads"] = self.leads
        if self.capacity is not None:
            c = self.capacity
            out["capacity"] = {
                "verdict": c.verdict,
                "mql_needed": c.mql_needed,
                "capacity_mql": c.capacity_mql,
                "shortfall_mql": c.shortfall_mql,
                "headroom_mql": c.headroom_mql,
                "options": c.options,
            }
        return out


def exact(value: float | int | str | Fraction) -> Fraction:
    """The number as written (0.015 is three thousandths), as the planner computes with it."""
    return _exact(value)


def _exact(value: float | int | str | Fraction) -> Fraction:
    if isinstance(value, Fraction):  # an observed rate is exact already
        return value
    # Through Decimal(str(...)) so 0.015 is three thousandths, not the nearest binary float.
    return Fraction(Decimal(str(value)))


def _up(value: Fraction) -> int:
    return math.ceil(value)


def _round(value: Fraction, places: int = 2) -> float:
    return round(float(value), places)


def validate(inp: PlanInput) -> None:
    for name in AMOUNTS:
        value = getattr(inp, name)
        if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
            raise PlanInputError(name, "must be a number above zero")
    for name in (*RATES, "lead_to_mql"):
        value = getattr(inp, name)
        if value is None and name in OPTIONAL_RATES:
            continue
        if value is None:
            raise PlanInputError(name, "is required (a share, e.g. 0.25 for 25 %)")
        if (
            not isinstance(value, int | float | Fraction)
            or isinstance(value, bool)
            or not 0 < value <= 1
        ):
            raise PlanInputError(name, "must be a share above 0 and at most 1 (e.g. 0.25 for 25 %)")
    cap = inp.sales_capacity_mql
    if cap is not None and (isinstance(cap, bool) or not cap >= 0):
        raise PlanInputError("sales_capacity_mql", "must be zero or more")


def plan(inp: PlanInput) -> Plan:
    """The funnel volumes that reach `revenue_goal`, and the capacity verdict if asked for."""
    validate(inp)
    try:
        return _plan(inp)
    except OverflowError:  # e.g. a goal of 1e300 at a win rate of 1e-300
        raise PlanInputError(
            "revenue_goal",
            "the plan's volumes are too large to compute; check the goal against the deal size "
            "and the conversion shares",
        ) from None


def _plan(inp: PlanInput) -> Plan:
    deals = _exact(inp.revenue_goal) / _exact(inp.avg_deal_size)
    sqo = deals / _exact(inp.win_rate)
    sql = sqo / _exact(inp.sql_to_sqo)
    mql = sql / _exact(inp.mql_to_sql)
    visits = mql / _exact(inp.visit_to_mql) if inp.visit_to_mql is not None else None
    leads = mql / _exact(inp.lead_to_mql) if inp.lead_to_mql is not None else None
    activities = mql * _exact(inp.touches_per_mql)
    sdr_weeks = activities / _exact(inp.sdr_activities_per_week)
    exact = {
        "deals": _round(deals),
        "sqo": _round(sqo),
        "sql": _round(sql),
        "mql": _round(mql),
        "activities": _round(activities),
        "sdr_weeks": _round(sdr_weeks),
    }
    if visits is not None:
        exact["visits"] = _round(visits)
    if leads is not None:
        exact["leads"] = _round(leads)
    capacity = None
    if inp.sales_capacity_mql is not None:
        capacity = capacity_check(
            mql_needed=_up(mql),
            capacity_mql=math.floor(_exact(inp.sales_capacity_mql)),
            sql_needed=sql,
            mql_to_sql=_exact(inp.mql_to_sql),
            touches_per_mql=_exact(inp.touches_per_mql),
            sdr_activities_per_week=_exact(inp.sdr_activities_per_week),
        )
    return Plan(
        deals=_up(deals),
        sqo=_up(sqo),
        sql=_up(sql),
        mql=_up(mql),
        visits=_up(visits) if visits is not None else None,
        activities=_up(activities),
        sdr_weeks=_up(sdr_weeks),
        exact=exact,
        capacity=capacity,
        leads=_up(leads) if leads is not None else None,
    )


def capacity_check(
    *,
    mql_needed: int,
    capacity_mql: int,
    sql_needed: Fraction,
    mql_to_sql: Fraction,
    touches_per_mql: Fraction,
    sdr_activities_per_week: Fraction,
) -> CapacityVerdict:
    """Can sales work the MQLs the plan needs? If not: add capacity, raise the MQL bar (fewer,
    better MQLs), or move part of the load to automated nurture — each with its numbers."""
    if mql_needed <= capacity_mql:
        return CapacityVerdict(
            verdict="within_capacity",
            mql_needed=mql_needed,
            capacity_mql=capacity_mql,
            shortfall_mql=0,
            headroom_mql=capacity_mql - mql_needed,
        )
    shortfall = mql_needed - capacity_mql
    options: list[dict[str, Any]] = [
        {
            "option": "add_sales_capacity",
            "detail": f"let sales work {shortfall} more MQL",
            "extra_mql_capacity": shortfall,
            "extra_sdr_weeks": _up(shortfall * touches_per_mql / sdr_activities_per_week),
        }
    ]
    if capacity_mql > 0:
        needed_rate = sql_needed / capacity_mql
        option: dict[str, Any] = {
            "option": "raise_mql_bar",
            "detail": f"deliver {capacity_mql} better MQL instead of {mql_needed}",
            "mql": capacity_mql,
            "mql_to_sql_needed": _round(needed_rate, 4),
            "mql_to_sql_now": _round(mql_to_sql, 4),
        }
        if needed_rate > 1:
            option["feasible"] = False
            option["detail"] += " (would need more SQL than MQL: not feasible alone)"
        options.append(option)
    options.append(
        {
            "option": "automated_nurture",
            "detail": f"send {shortfall} of the MQL to automated nurture instead of sales",
            "mql_to_nurture": shortfall,
        }
    )
    return CapacityVerdict(
        verdict="over_capacity",
        mql_needed=mql_needed,
        capacity_mql=capacity_mql,
        shortfall_mql=shortfall,
        headroom_mql=0,
        options=options,
    )


def parse_share(raw: str) -> float:
    """'25%' or '0.25' → 0.25 (the CLI accepts both)."""
    text = raw.strip()
    if text.endswith("%"):
        return float(Decimal(text[:-1].strip()) / 100)
    return float(text)


def render_text(result: Plan) -> str:
    """The plan as the CLI prints it."""
    e = result.exact
    lines = [
        f"deals        {result.deals:>10,}   ({e['deals']:,})",
        f"SQO          {result.sqo:>10,}   ({e['sqo']:,})",
        f"SQL          {result.sql:>10,}   ({e['sql']:,})",
        f"MQL          {result.mql:>10,}   ({e['mql']:,})",
        f"activities   {result.activities:>10,}   ({e['activities']:,})",
        f"SDR-weeks    {result.sdr_weeks:>10,}   ({e['sdr_weeks']:,})",
    ]
    if result.visits is not None:
        lines.insert(4, f"visits       {result.visits:>10,}   ({e['visits']:,})")
    if result.leads is not None:
        lines.insert(4, f"leads        {result.leads:>10,}   ({e['leads']:,})")
    c = result.capacity
    if c is not None:
        if c.verdict == "within_capacity":
            lines.append(
                f"capacity: within ({c.mql_needed} MQL needed, {c.capacity_mql} workable, "
                f"headroom {c.headroom_mql})"
            )
        else:
            lines.append(
                f"capacity: OVER by {c.shortfall_mql} MQL ({c.mql_needed} needed, "
                f"{c.capacity_mql} workable); options:"
            )
            lines.extend(f"  - {o['option']}: {o['detail']}" for o in c.options)
    return "\n".join(lines)


# The inputs in the order `leadflow plan` takes them as options.
CLI_FIELDS = (*AMOUNTS[:2], *RATES, *AMOUNTS[2:])


# --- plans from history (docs/domain.md "Plans from history") -------------------------------

# The rates the planner can read from history, with the stage each converts.
OBSERVABLE = ("lead_to_mql", "mql_to_sql", "sql_to_sqo", "win_rate")


@dataclass(frozen=True)
class RateBasis:
    """What one stage's rate in the plan rests on: `source` says whether it was typed in or
    observed; `observed` is history's rate (None without decided outcomes), resting on
    `converted` of `outcomes` decided leads, with `open` more still being worked."""

    stage: str
    rate: float | None
    source: str  # "observed" | "typed"
    observed: float | None
    converted: int
    outcomes: int
    open: int


@dataclass(frozen=True)
class PlanWarning:
    """Why a plan from history deserves a second look: `better_than_history` (the plan needs a
    rate above the observed one), `few_outcomes` (the observed rate rests on fewer outcomes than
    the policy's minimum) or `no_history` (nothing observed: the stage is left out)."""

    kind: str
    stage: str
    message: str
    needed: float | None = None
    observed: float | None = None


@dataclass(frozen=True)
class HistoryPlan:
    plan: Plan
    rates: list[RateBasis]
    warnings: list[PlanWarning]

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.plan.as_dict(),
            "rates": [vars(r) for r in self.rates],
            "warnings": [vars(w) for w in self.warnings],
        }


def _share(value: Rate | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _label(stage: str) -> str:
    return STAGE_LABELS.get(stage, stage)


def plan_from_history(
    inp: PlanInput,
    observed: dict[str, ObservedRate],
    *,
    min_outcomes: int,
    history: str,
) -> HistoryPlan:
    """The plan on history's rates: a stage's rate typed into `inp` is the plan's assumption
    and is compared with history's (a warning when the goal needs it better); a stage left
    blank takes history's rate. `observed` maps each stage to its `ObservedRate`; `history`
    says which history in the messages (e.g. "the last 90 days")."""
    rates: dict[str, Rate | None] = {}
    bases: list[RateBasis] = []
    warnings: list[PlanWarning] = []
    for stage in OBSERVABLE:
        seen = observed[stage]
        typed = getattr(inp, stage)
        history_rate = seen.rate
        label = _label(stage)
        if typed is not None:
            used: Rate | None = typed
            source = "typed"
        elif history_rate:  # a rate of 0 cannot carry a plan: no volume would reach the goal
            used, source = history_rate, "observed"
        elif stage in OPTIONAL_RATES:
            used, source = None, "observed"
            warnings.append(
                PlanWarning(
                    "no_history",
                    stage,
                    f"no {label} conversion observed in {history}: the plan leaves its stage out",
                )
            )
        else:
            seen_text = (
                f"0 of {seen.outcomes} decided outcomes converted"
                if seen.outcomes
                else "no decided outcomes"
            )
            raise PlanInputError(
                stage, f"{label}: {seen_text} in {history}; type the rate in as `{stage}`"
            )
        rates[stage] = used
        bases.append(
            RateBasis(
                stage=stage,
                rate=_share(used),
                source=source,
                observed=_share(history_rate),
                converted=seen.converted,
                outcomes=seen.outcomes,
                open=seen.open,
            )
        )
        if used is not None and seen.outcomes < min_outcomes:
            warnings.append(
                PlanWarning(
                    "few_outcomes",
                    stage,
                    f"{label} rests on {seen.outcomes} decided outcomes in {history}, fewer than "
                    f"the {min_outcomes} the policy asks for (planning.min_outcomes)",
                    observed=_share(history_rate),
                )
            )
        if typed is not None and history_rate is not None and _exact(typed) > history_rate:
            warnings.append(_better_than_history(stage, _exact(typed), history_rate, history))
    result = plan(replace(inp, **rates))
    capacity = result.capacity
    seen_mql_to_sql = observed["mql_to_sql"].rate
    if capacity is not None and seen_mql_to_sql is not None:
        for option in capacity.options:
            needed = option.get("mql_to_sql_needed")
            if option["option"] == "raise_mql_bar" and Fraction(str(needed)) > seen_mql_to_sql:
                warnings.append(
                    _better_than_history(
                        "mql_to_sql",
                        Fraction(str(needed)),
                        seen_mql_to_sql,
                        history,
                        because=f"raising the MQL bar to {option['mql']} MQL",
                    )
                )
    return HistoryPlan(result, bases, warnings)


def _better_than_history(
    stage: str, needed: Fraction, seen: Fraction, history: str, because: str = "the goal"
) -> PlanWarning:
    return PlanWarning(
        "better_than_history",
        stage,
        f"{because} needs {_label(stage)} of {_percent(needed)}, better than the "
        f"{_percent(seen)} observed in {history}: more leads alone will not close the gap",
        needed=_share(needed),
        observed=_share(seen),
    )


def _percent(value: Fraction) -> str:
    return f"{float(value) * 100:.1f} %"
