"""The SLA report (both parties' commitments vs the policy, per period) and the calibration of
the MQL threshold, computed from feedback's read model.

The figures are pure functions of the lead rows (`LeadFacts`), so they can be checked by
hand: an MQL belongs to the period of its promotion (`mql_at`, in the policy calendar's
time zone); statuses and attempts count as known when the report is made.
"""

from __future__ import annotations

import csv
import io
import math
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, get_args
from zoneinfo import ZoneInfo

from leadflow.contracts import slas
from leadflow.contracts.calendar import BusinessCalendar, CalendarSpecError, policy_calendar
from leadflow.contracts.commitments import (
    COMMITMENTS,
    missed_commitments,
    next_start,
    period_start,
    planned_mql,
    share,
    source_group,
    source_mix,
)
from leadflow.contracts.events import ContactChannel
from leadflow.contracts.policy import Policy

from leadflow_feedback.domain.lifecycle import (
    FUNNEL,
    REASON_REQUIRED,
    SALES_STATUSES,
    stages_reached,
)

DAYS_PER_MONTH = 365.25 / 12
NO_CAMPAIGN = "(none)"
DECIDED_WITHOUT_SQL = frozenset({"returned", "recycled", "unreachable", "lost"})
# The channels a contact attempt is made on, each reported (at 0 too: a column per channel).
CONTACT_CHANNELS: tuple[str, ...] = get_args(ContactChannel)


class ReportInputError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass
class StatusStep:
    status: str
    reason: str | None
    changed_at: datetime
    details: dict[str, Any] | None = None  # e.g. the opportunity of an SQO or a won deal


@dataclass
class LeadFacts:
    """Everything the report needs to know about one lead."""

    lead_id: uuid.UUID
    status: str
    channel: str | None = None
    source: dict[str, Any] = field(default_factory=dict)
    team: str | None = None
    rep_id: uuid.UUID | None = None
    mql_at: datetime | None = None
    routed_at: datetime | None = None
    role: str | None = None
    fit: int | None = None
    engagement: float | None = None
    intent_tier: int | None = None
    scored_at: datetime | None = None
    mql_fit: int | None = None
    mql_engagement: float | None = None
    mql_intent_tier: int | None = None
    in_target: bool | None = None
    mql_context_missing: list[str] | None = None
    context_missing: list[str] | None = None
    calendar: dict[str, Any] | None = None
    sla_due_at: datetime | None = None
    sla_response_seconds: float | None = None
    sla_breached: bool = False
    attempts: int = 0
    attempts_by_channel: dict[str, int] = field(default_factory=dict)
    first_attempt_at: datetime | None = None
    history: list[StatusStep] = field(default_factory=list)
    # the lead's sources in order (ingest's snapshots, its promotion): revenue's attribution
    touches: list[tuple[datetime, dict[str, Any]]] = field(default_factory=list)

    @property
    def statuses(self) -> set[str]:
        return {step.status for step in self.history} | {self.status}

    @property
    def campaign(self) -> str:
        return (self.source or {}).get("campaign") or NO_CAMPAIGN

    @property
    def full_context(self) -> bool:
        return not (self.context_missing or []) and not (self.mql_context_missing or [])


# --- periods -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # exclusive

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def periods_between(
    first: date, last: date, granularity: str, tz: ZoneInfo, *, before: int = 0
) -> list[Period]:
    """Whole calendar periods (weeks from Monday, months) covering `first`..`last` (inclusive),
    local midnight to local midnight, preceded by `before` extra periods."""
    if granularity not in ("week", "month", "quarter"):
        raise ReportInputError("granularity", "granularity is week, month or quarter")
    if last < first:
        raise ReportInputError("to", "`to` must not be before `from`")
    start = period_start(first, granularity)
    for _ in range(before):
        start = period_start(start - timedelta(days=1), granularity)
    out = []
    while start <= last:
        end = next_start(start, granularity)
        out.append(
            Period(
                datetime(start.year, start.month, start.day, tzinfo=tz),
                datetime(end.year, end.month, end.day, tzinfo=tz),
            )
        )
        start = end
        if len(out) > 400:
            raise ReportInputError("from", "the range is too long (at most 400 periods)")
    return out


# --- figures -------------------------------------------------------------------------------


def p90(values: Sequence[float]) -> float | None:
    """90th percentile by the nearest-rank method: the ⌈0.9·n⌉-th smallest value."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.9 * len(ordered)) - 1]


@dataclass(frozen=True)
class FirstResponse:
    seconds: float | None  # on the SLA's clock; None while nobody has tried to reach the lead
    within: bool | None  # None: not contacted yet and not overdue either
    breached: bool


def first_response(lead: LeadFacts, policy: Policy, now: datetime) -> FirstResponse | None:
    """Routed → first contact attempt, on the channel's first-response term and clock (the
    shared SLA table's measure, as sla-timer runs it). sla-timer's measurement wins when it
    reported one; otherwise the same rule is applied here."""
    if lead.routed_at is None:
        return None
    term = slas.term(policy, slas.FIRST_RESPONSE, lead.channel)
    limit = term.limit.total_seconds()
    calendar = policy_calendar(policy)
    if lead.calendar:
        try:
            calendar = BusinessCalendar.from_spec(lead.calendar)
        except CalendarSpecError:
            pass
    seconds = lead.sla_response_seconds
    if seconds is None and lead.first_attempt_at is not None:
        at = max(lead.first_attempt_at, lead.routed_at)
        seconds = slas.elapsed(term.clock, calendar, lead.routed_at, at).total_seconds()
    if seconds is not None:
        within = seconds <= limit
        return FirstResponse(seconds, within, lead.sla_breached or not within)
    due = lead.sla_due_at or slas.due_after(term.clock, calendar, lead.routed_at, term.limit)
    overdue = lead.sla_breached or now >= due
    return FirstResponse(None, False if overdue else None, overdue)


def _metric(value: float | None, target: float, *, at_most: bool = False) -> dict[str, Any]:
    met = None if value is None else (value <= target if at_most else value >= target)
    return {"value": value, "target": target, "met": met}


def marketing_figures(mqls: list[LeadFacts], policy: Policy, granularity: str) -> dict[str, Any]:
    c = policy.commitments.marketing
    n = len(mqls)
    plan = planned_mql(policy, granularity)
    volume = {
        "value": n,
        "plan": plan,
        "target": round(plan * c.mql_volume_min_share, 2),
        "met": n >= plan * c.mql_volume_min_share,
    }
    counts: dict[str, int] = defaultdict(int)
    for lead in mqls:
        counts[source_group(lead.source, c.source_mix)] += 1
    judged_mix = source_mix(counts, policy)
    mix = {
        "value": judged_mix.actual,
        "counts": judged_mix.counts,
        "plan": judged_mix.planned,
        "tolerance": judged_mix.tolerance,
        "met": judged_mix.met,
    }
    in_target = _metric(share(sum(1 for m in mqls if m.in_target), n), c.min_in_target_share)
    context = _metric(share(sum(1 for m in mqls if m.full_context), n), c.min_full_context_share)
    figures = {
        "mql_volume": volume,
        "source_mix": mix,
        "in_target_share": in_target,
        "full_context_share": context,
    }
    return _with_verdict("marketing", figures)


def has_status(lead: LeadFacts) -> bool:
    """Sales gave the MQL a status, and a structured reason where it rejected it."""
    steps = [s for s in lead.history if s.status in SALES_STATUSES]
    return bool(steps) and all(s.reason for s in steps if s.status in REASON_REQUIRED)


def sales_figures(mqls: list[LeadFacts], policy: Policy, now: datetime) -> dict[str, Any]:
    c = policy.commitments.sales
    n = len(mqls)
    responses = [r for r in (first_response(m, policy, now) for m in mqls) if r is not None]
    seconds = [r.seconds for r in responses if r.seconds is not None]
    decided = [r for r in responses if r.within is not None]
    figures = {
        "response_time": {
            "avg_seconds": round(sum(seconds) / len(seconds), 1) if seconds else None,
            "p90_seconds": p90(seconds),
            "contacted": len(seconds),
            "routed": len(responses),
        },
        "contacted_within_limit_share": _metric(
            share(sum(1 for r in decided if r.within), len(decided)),
            c.min_contacted_within_limit_share,
        ),
        "attempts_per_mql": _metric(
            round(sum(m.attempts for m in mqls) / n, 2) if n else None, c.min_attempts_per_mql
        ),
        "attempts_by_channel": attempts_by_channel(mqls),
        "status_share": _metric(
            share(sum(1 for m in mqls if has_status(m)), n), c.min_status_share
        ),
    }
    return _with_verdict("sales", figures)


def attempts_by_channel(mqls: list[LeadFacts]) -> dict[str, dict[str, Any]]:
    """The MQLs' contact attempts on each channel, in all and per MQL: whether the cadence's
    mix (e.g. calls and e-mails) is kept. Reported, not judged: the mix is owed per lead."""
    n = len(mqls)
    figures = {}
    for channel in CONTACT_CHANNELS:
        made = sum(m.attempts_by_channel.get(channel, 0) for m in mqls)
        figures[channel] = {"attempts": made, "per_mql": round(made / n, 2) if n else None}
    return figures


def _with_verdict(party: str, figures: dict[str, Any]) -> dict[str, Any]:
    """The party's verdict over the one list of commitments sla-timer judges too."""
    missed = missed_commitments(party, {name: figures[name]["met"] for name in COMMITMENTS[party]})
    return {**figures, "missed": missed, "met": not missed}


def _rate(part: int, whole: int) -> float | None:
    return share(part, whole)


def conversion(mqls: list[LeadFacts], key) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, int]] = {}
    for lead in mqls:
        counts = rows.setdefault(key(lead), dict.fromkeys(FUNNEL, 0))
        for stage in stages_reached(lead.statuses | {"mql"}):
            counts[stage] += 1
    out = []
    for name in sorted(rows):
        c = rows[name]
        out.append(
            {
                "key": name,
                **c,
                "mql_to_sal": _rate(c["sal"], c["mql"]),
                "sal_to_sql": _rate(c["sql"], c["sal"]),
                "sql_to_sqo": _rate(c["sqo"], c["sql"]),
                "sqo_to_won": _rate(c["won"], c["sqo"]),
                "mql_to_won": _rate(c["won"], c["mql"]),
            }
        )
    return out


def exceptions(mqls: list[LeadFacts], policy: Policy, now: datetime) -> dict[str, Any]:
    """The weekly review's exceptions: late first contact, campaigns with MQLs but no SQL,
    MQLs sales returned as not in target (with the scores that let them through)."""
    late = []
    for lead in mqls:
        response = first_response(lead, policy, now)
        if response is not None and response.breached:
            late.append(
                {
                    "lead_id": str(lead.lead_id),
                    "team": lead.team,
                    "rep_id": str(lead.rep_id) if lead.rep_id else None,
                    "channel": lead.channel,
                    "routed_at": lead.routed_at.isoformat(),
                    "first_attempt_at": (
                        lead.first_attempt_at.isoformat() if lead.first_attempt_at else None
                    ),
                    "response_seconds": response.seconds,
                }
            )
    by_campaign: dict[str, list[LeadFacts]] = defaultdict(list)
    for lead in mqls:
        if lead.campaign != NO_CAMPAIGN:
            by_campaign[lead.campaign].append(lead)
    without_sql = [
        {"campaign": name, "mql": len(group)}
        for name, group in sorted(by_campaign.items())
        if not any("sql" in stages_reached(lead.statuses) for lead in group)
    ]
    groups = list(policy.commitments.marketing.source_mix)
    not_in_target = []
    for lead in mqls:
        step = next((s for s in lead.history if s.reason == "not_in_target"), None)
        if step is not None:
            not_in_target.append(
                {
                    "lead_id": str(lead.lead_id),
                    "status": step.status,
                    "fit": lead.mql_fit,
                    "engagement": lead.mql_engagement,
                    "intent_tier": lead.mql_intent_tier,
                    "in_target": lead.in_target,
                    "source": source_group(lead.source, groups),
                    "campaign": lead.campaign,
                }
            )
    return {
        "first_response_breaches": late,
        "campaigns_without_sql": without_sql,
        "returned_not_in_target": not_in_target,
    }


def sla_report(
    leads: list[LeadFacts],
    policy: Policy,
    *,
    first: date,
    last: date,
    granularity: str,
    now: datetime,
    team: str | None = None,
) -> dict[str, Any]:
    """Both parties' commitments per period, conversion, exceptions and corrective plans.

    `leads` must hold every MQL promoted in the periods covering `first`..`last` and the
    `corrective_plan_after_misses - 1` periods before them (a miss streak may start there).
    """
    tz = ZoneInfo(policy.calendar.time_zone)
    streak_needed = policy.commitments.corrective_plan_after_misses
    periods = periods_between(first, last, granularity, tz, before=streak_needed - 1)
    shown_from = streak_needed - 1
    streaks = {"marketing": 0, "sales": 0}
    rows = []
    for index, period in enumerate(periods):
        mqls = [m for m in leads if m.mql_at is not None and period.contains(m.mql_at)]
        marketing = marketing_figures(mqls, policy, granularity)
        sales = sales_figures(mqls, policy, now)
        corrective = {}
        for party, figures in (("marketing", marketing), ("sales", sales)):
            streaks[party] = streaks[party] + 1 if figures["missed"] else 0
            corrective[party] = streaks[party] >= streak_needed
        if index >= shown_from:
            rows.append(
                {
                    "start": period.start.isoformat(),
                    "end": period.end.isoformat(),
                    "mql": len(mqls),
                    "marketing": marketing,
                    "sales": sales,
                    "corrective_plan": corrective,
                }
            )
    shown = periods[shown_from:]
    in_range = [
        m for m in leads if m.mql_at is not None and shown[0].start <= m.mql_at < shown[-1].end
    ]
    groups = list(policy.commitments.marketing.source_mix)
    return {
        "from": shown[0].start.isoformat(),
        "to": shown[-1].end.isoformat(),
        "granularity": granularity,
        "team": team,
        "time_zone": policy.calendar.time_zone,
        "policy_version": policy.version,
        "generated_at": now.isoformat(),
        "periods": rows,
        "conversion": {
            "by_source": conversion(in_range, lambda m: source_group(m.source, groups)),
            "by_campaign": conversion(in_range, lambda m: m.campaign),
        },
        "exceptions": exceptions(in_range, policy, now),
        "corrective_plan": rows[-1]["corrective_plan"] if rows else {},
    }


def report_window(
    first: date, last: date, granularity: str, policy: Policy
) -> tuple[datetime, datetime]:
    """The instants of MQL promotion a report over `first`..`last` needs to look at."""
    tz = ZoneInfo(policy.calendar.time_zone)
    before = policy.commitments.corrective_plan_after_misses - 1
    periods = periods_between(first, last, granularity, tz, before=before)
    return periods[0].start, periods[-1].end


# --- CSV -----------------------------------------------------------------------------------

CSV_COLUMNS = (
    "section",
    "period_start",
    "period_end",
    "party",
    "metric",
    "key",
    "value",
    "target",
    "met",
)


def report_csv(report: dict[str, Any], more: Iterable[Sequence[Any]] = ()) -> str:
    """The report in long form: one figure per row, so any spreadsheet can pivot it; `more`
    adds rows of other sections, in the same columns."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)

    def row(
        section, start="", end="", party="", metric="", key="", value=None, target=None, met=None
    ):
        writer.writerow(
            [section, start, end, party, metric, key, _cell(value), _cell(target), _cell(met)]
        )

    for p in report["periods"]:
        s, e = p["start"], p["end"]
        for party in ("marketing", "sales"):
            figures = p[party]
            for name, f in figures.items():
                if name in ("missed", "met"):
                    continue
                if name == "source_mix":
                    for key, value in f["value"].items():
                        row("period", s, e, party, name, key, value, f["plan"][key], f["met"])
                elif name == "response_time":
                    for key in ("avg_seconds", "p90_seconds", "contacted", "routed"):
                        row("period", s, e, party, name, key, f[key])
                elif name == "attempts_by_channel":
                    for channel, made in f.items():
                        row("period", s, e, party, name, channel, made["attempts"])
                        row("period", s, e, party, "attempts_per_mql_by_channel", channel,
                            made["per_mql"])  # fmt: skip
                elif name == "mql_volume":
                    row("period", s, e, party, name, "", f["value"], f["target"], f["met"])
                else:
                    row("period", s, e, party, name, "", f["value"], f["target"], f["met"])
            row("period", s, e, party, "met", "", figures["met"])
            row("period", s, e, party, "corrective_plan", "", p["corrective_plan"][party])
    for dimension in ("by_source", "by_campaign"):
        for c in report["conversion"][dimension]:
            for stage in (
                *FUNNEL,
                "mql_to_sal",
                "sal_to_sql",
                "sql_to_sqo",
                "sqo_to_won",
                "mql_to_won",
            ):
                row("conversion", metric=f"{dimension}.{stage}", key=c["key"], value=c[stage])
    ex = report["exceptions"]
    for item in ex["first_response_breaches"]:
        row("exception", metric="first_response_breach", key=item["lead_id"],
            value=item["response_seconds"])  # fmt: skip
    for item in ex["campaigns_without_sql"]:
        row("exception", metric="campaign_without_sql", key=item["campaign"], value=item["mql"])
    for item in ex["returned_not_in_target"]:
        row("exception", metric="returned_not_in_target", key=item["lead_id"], value=item["fit"])
    for cells in more:  # e.g. the revenue section's (revenue.revenue_csv_rows)
        row(*cells)
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- calibration ---------------------------------------------------------------------------


def outcome(lead: LeadFacts) -> bool | None:
    """True: became an SQL; False: decided without one (returned, recycled, unreachable,
    lost); None: sales is still working it, so it says nothing yet."""
    statuses = lead.statuses
    if "sql" in stages_reached(statuses):
        return True
    if statuses & DECIDED_WITHOUT_SQL:
        return False
    return None


def _passes_rule(lead: LeadFacts, policy: Policy, score: str, threshold: float) -> bool:
    rule = policy.scoring.mql
    fit = lead.fit if lead.fit is not None else lead.mql_fit
    engagement = lead.engagement if lead.engagement is not None else lead.mql_engagement
    intent = lead.intent_tier if lead.intent_tier is not None else lead.mql_intent_tier
    if fit is None:
        return False
    fit_min = threshold if score == "fit" else rule.fit_min
    engagement_min = threshold if score == "engagement" else rule.engagement_min
    return (
        fit >= fit_min
        and ((engagement or 0) >= engagement_min or (intent or 0) >= rule.intent_tier_min)
        and lead.role in rule.roles
    )


def calibration(
    leads: list[LeadFacts],
    policy: Policy,
    *,
    start: datetime,
    end: datetime,
    score: str = "fit",
    step: int = 5,
) -> dict[str, Any]:
    """Precision and recall of "score ≥ threshold" against SQL outcomes, per threshold.

    Outcomes come from the MQLs promoted in the window, scored as they were at promotion;
    the recommended threshold has the best F1 (ties: the one nearest today's policy, then
    the lower one). Expected MQL volume counts the leads scored in the window that would
    pass the whole MQL rule with that threshold in place (the rest of the rule unchanged).
    """
    rule = policy.scoring.mql
    current = rule.fit_min if score == "fit" else rule.engagement_min
    top = 100 if score == "fit" else int(policy.scoring.engagement.cap)
    decided = []
    for lead in leads:
        if lead.mql_at is None or not start <= lead.mql_at < end:
            continue
        value = lead.mql_fit if score == "fit" else lead.mql_engagement
        result = outcome(lead)
        if value is not None and result is not None:
            decided.append((value, result))
    positives = sum(1 for _, sql in decided if sql)
    population = [
        lead
        for lead in leads
        if (lead.scored_at or lead.mql_at) is not None
        and start <= (lead.scored_at or lead.mql_at) < end
    ]
    months = (end - start).total_seconds() / 86400 / DAYS_PER_MONTH
    rows = []
    for threshold in range(0, top + 1, step):
        predicted = [sql for value, sql in decided if value >= threshold]
        tp = sum(1 for sql in predicted if sql)
        precision = share(tp, len(predicted))
        recall = share(tp, positives)
        f1 = (
            round(2 * precision * recall / (precision + recall), 4)
            if precision and recall
            else (0.0 if precision is not None and recall is not None else None)
        )
        volume = sum(1 for lead in population if _passes_rule(lead, policy, score, threshold))
        rows.append(
            {
                "threshold": threshold,
                "mql": len(predicted),
                "sql": tp,
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "expected_mql_volume": volume,
                "expected_mql_per_month": round(volume / months, 1) if months > 0 else None,
            }
        )
    scored = [r for r in rows if r["f1"] is not None]
    best = (
        min(scored, key=lambda r: (-r["f1"], abs(r["threshold"] - current), r["threshold"]))
        if scored and positives
        else None
    )
    return {
        "score": score,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "policy_version": policy.version,
        "current_threshold": current,
        "decided_mqls": len(decided),
        "sql": positives,
        "thresholds": rows,
        "recommended": (
            {
                "threshold": best["threshold"],
                "precision": best["precision"],
                "recall": best["recall"],
                "f1": best["f1"],
                "expected_mql_volume": best["expected_mql_volume"],
                "expected_mql_per_month": best["expected_mql_per_month"],
            }
            if best
            else None
        ),
    }
