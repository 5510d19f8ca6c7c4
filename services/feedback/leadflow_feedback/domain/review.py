"""The weekly review page and the lead timeline: server-rendered HTML over the same report the
JSON API serves (`reports.sla_report`), for the 30-minute meeting of docs/domain.md.

`week_figures`, `render_review` and `render_timeline` take report dicts and give text; the use
cases load the facts and routing's answers, the routes only answer with the page.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, select_autoescape
from leadflow.contracts import slas
from leadflow.contracts.policy import Policy

from leadflow_feedback.domain import charts, reports

templates = Environment(
    loader=PackageLoader("leadflow_feedback", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


# --- formatting ----------------------------------------------------------------------------


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def number(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def money(value: float | None, currency: str) -> str:
    """An amount in whole units with its currency, e.g. '40,000 EUR'."""
    return "–" if value is None else f"{value:,.0f} {currency}"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "missed", None: "n/a"}[met]


def local_time(value: str | datetime | None, time_zone: str) -> str:
    """An instant (ISO text or datetime) as the policy's local time, e.g. 'Mon 23 Nov 14:56'."""
    if not value:
        return "–"
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return at.astimezone(ZoneInfo(time_zone)).strftime("%a %d %b %H:%M")


templates.filters.update(
    percent=percent,
    duration=duration,
    number=number,
    verdict=verdict,
    local_time=local_time,
    money=money,
)


# --- the figures of one week ---------------------------------------------------------------


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def first_response_limits(policy: Policy) -> dict[str, float]:
    """The first-response limit per channel, in seconds (on the channel's SLA clock)."""
    return {
        channel: slas.term(policy, slas.FIRST_RESPONSE, channel).limit.total_seconds()
        for channel in policy.slas.channels
    }


def week_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The KPIs of the report's last period, flat, as the page and the CLI show them."""
    period = report["periods"][-1]
    m, s = period["marketing"], period["sales"]
    by_source = report["conversion"]["by_source"]
    mql_total = sum(row["mql"] for row in by_source)
    sql_total = sum(row["sql"] for row in by_source)
    return {
        "start": period["start"],
        "end": period["end"],
        "mql": period["mql"],
        "mql_plan": m["mql_volume"]["plan"],
        "mql_target": m["mql_volume"]["target"],
        "mql_met": m["mql_volume"]["met"],
        "source_mix": m["source_mix"],
        "in_target_share": m["in_target_share"],
        "full_context_share": m["full_context_share"],
        "marketing_missed": m["missed"],
        "avg_response_seconds": s["response_time"]["avg_seconds"],
        "p90_response_seconds": s["response_time"]["p90_seconds"],
        "contacted": s["response_time"]["contacted"],
        "routed": s["response_time"]["routed"],
        "contacted_within_limit_share": s["contacted_within_limit_share"],
        "attempts_per_mql": s["attempts_per_mql"],
        "attempts_by_channel": s["attempts_by_channel"],
        "status_share": s["status_share"],
        "sales_missed": s["missed"],
        "sql": sql_total,
        "mql_to_sql": reports.share(sql_total, mql_total),
        "corrective_plan": period["corrective_plan"],
        "breaches": len(report["exceptions"]["first_response_breaches"]),
    }


def weekly_text(report: dict[str, Any], *, url: str | None = None) -> str:
    """The week's KPIs and exceptions as plain text (the demo prints it)."""
    f = week_figures(report)
    ex = report["exceptions"]
    team = f" — team {report['team']}" if report.get("team") else ""
    lines = [
        f"Weekly SLA review, week of {f['start'][:10]}{team} (policy {report['policy_version']})",
        "",
        "Marketing",
        f"  MQL vs plan             {f['mql']} of {number(f['mql_plan'])} planned "
        f"(pass mark {number(f['mql_target'])}: {verdict(f['mql_met'])})",
        f"  in target segment       {percent(f['in_target_share']['value'])} "
        f"(target {percent(f['in_target_share']['target'])}: "
        f"{verdict(f['in_target_share']['met'])})",
        f"  delivered with context  {percent(f['full_context_share']['value'])} "
        f"(target {percent(f['full_context_share']['target'])}: "
        f"{verdict(f['full_context_share']['met'])})",
        "Sales",
        f"  response time           avg {duration(f['avg_response_seconds'])}, "
        f"p90 {duration(f['p90_response_seconds'])} ({f['contacted']} of {f['routed']} contacted)",
        f"  contacted within limit  {percent(f['contacted_within_limit_share']['value'])} "
        f"(target {percent(f['contacted_within_limit_share']['target'])}: "
        f"{verdict(f['contacted_within_limit_share']['met'])})",
        f"  attempts per MQL        {number(f['attempts_per_mql']['value'])} "
        f"(target {number(f['attempts_per_mql']['target'])}: "
        f"{verdict(f['attempts_per_mql']['met'])})",
        f"  MQL → SQL               {percent(f['mql_to_sql'])} ({f['sql']} SQL)",
        "Corrective plan owed",
        f"  marketing {'YES' if f['corrective_plan'].get('marketing') else 'no'}, "
        f"sales {'YES' if f['corrective_plan'].get('sales') else 'no'}",
        "Exceptions",
        f"  late first contact          {len(ex['first_response_breaches'])}",
        f"  campaigns with MQL, no SQL  {len(ex['campaigns_without_sql'])}"
        + (
            " (" + ", ".join(c["campaign"] for c in ex["campaigns_without_sql"]) + ")"
            if ex["campaigns_without_sql"]
            else ""
        ),
        f"  returned as not in target   {len(ex['returned_not_in_target'])}",
    ]
    if url:
        lines += ["", f"Review page: {url}"]
    return "\n".join(lines)


# --- rendering -----------------------------------------------------------------------------


def _week_label(iso: str) -> str:
    return iso[5:10]


def render_review(
    *,
    week: date,
    team: str | None,
    teams: list[str],
    week_report: dict[str, Any],
    trend_report: dict[str, Any],
    calibration: dict[str, Any],
    names: dict[str, str],
    reps: dict[str, str],
    sla_limits: dict[str, float],
    routing_note: str | None = None,
    account: dict[str, str] | None = None,
    plans: dict[str, Any] | None = None,
    customer_success: dict[str, Any] | None = None,
) -> str:
    """The review page of one week (and team) from the reports; names come from feedback's read
    model (leads) and routing (reps), and are escaped like every other value."""
    figures = week_figures(week_report)
    trend = trend_report["periods"]
    mql_chart = charts.bars(
        [(_week_label(p["start"]), p["mql"]) for p in trend],
        line=figures["mql_plan"],
        line_label="plan",
        label="MQL per week against the plan",
    )
    limit = sla_limits.get("inbound")
    response_chart = charts.bars(
        [
            (
                _week_label(p["start"]),
                None
                if p["sales"]["response_time"]["avg_seconds"] is None
                else round(p["sales"]["response_time"]["avg_seconds"] / 3600, 2),
            )
            for p in trend
        ],
        line=None if limit is None else round(limit / 3600, 2),
        line_label="SLA",
        label="Average first response (business hours) against the inbound SLA",
        fmt=lambda v: f"{v:.1f} h",
    )
    rows = calibration.get("thresholds") or []
    markers = [(calibration.get("current_threshold", 0), "today")]
    if calibration.get("recommended"):
        markers.append((calibration["recommended"]["threshold"], "recommended"))
    calibration_chart = charts.curves(
        {
            "precision": [(r["threshold"], r["precision"]) for r in rows],
            "recall": [(r["threshold"], r["recall"]) for r in rows],
            "F1": [(r["threshold"], r["f1"]) for r in rows],
        },
        x_max=max((r["threshold"] for r in rows), default=100),
        label="Precision and recall of the MQL threshold against SQL outcomes",
        markers=markers,
    )
    return templates.get_template("review.html").render(
        account=account,
        week=week,
        previous_week=week - timedelta(days=7),
        next_week=week + timedelta(days=7),
        team=team,
        teams=teams,
        f=figures,
        report=week_report,
        exceptions=week_report["exceptions"],
        calibration=calibration,
        names=names,
        reps=reps,
        sla_limits=sla_limits,
        mql_chart=mql_chart,
        response_chart=response_chart,
        calibration_chart=calibration_chart,
        routing_note=routing_note,
        plans=plans or {"open": [], "overdue_actions": []},
        customer_success=customer_success,
    )


def render_timeline(
    *,
    lead_id: uuid.UUID,
    lead: dict[str, Any] | None,
    entries: list[dict[str, Any]],
    assignment: dict[str, Any] | None,
    deliveries: list[dict[str, Any]],
    reps: dict[str, str],
    time_zone: str,
    routing_note: str | None = None,
    account: dict[str, str] | None = None,
) -> str:
    """Every event of one lead in order; routing's decision trace is shown with the routed
    entry, and the webhook deliveries take their place by time."""
    tz = ZoneInfo(time_zone)
    items = [{**e, "kind": "event"} for e in entries]
    # A delivery follows the routing it delivered: the last `lead.routed` at or before its
    # time, else the last one (routing stamps deliveries on its own clock).
    routed = [i for i, e in enumerate(items) if e["type"] == "lead.routed"]
    anchored: dict[int, list[dict[str, Any]]] = {}
    for delivery in deliveries:
        at = delivery.get("delivered_at") or delivery.get("next_attempt_at")
        if isinstance(at, str):
            at = datetime.fromisoformat(at)
        before = [i for i in routed if at is None or items[i]["occurred_at"] <= at]
        anchor = before[-1] if before else (routed[-1] if routed else len(items) - 1)
        anchored.setdefault(anchor, []).append(
            {
                "kind": "delivery",
                "type": "webhook.delivery",
                "occurred_at": items[anchor]["occurred_at"] if items else at,
                "delivered_at": at,
                "details": delivery,
                "source": "routing",
            }
        )
    ordered = list(anchored.get(-1, []))
    for index, item in enumerate(items):
        ordered.append(item)
        ordered.extend(anchored.get(index, []))
    return templates.get_template("timeline.html").render(
        account=account,
        lead_id=lead_id,
        lead=lead,
        items=ordered,
        assignment=assignment,
        reps=reps,
        tz=tz,
        erased=any(e["type"] == "lead.erased" for e in entries),
        routing_note=routing_note,
    )
