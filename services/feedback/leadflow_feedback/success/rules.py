"""Pure rules of customer success after the signature: which product usage activates a
customer, how each clock after the won status came out (the hand-off in 48 h, the kickoff in 5
days, the key feature in 14 days), and what customer success feeds back to marketing for the
review: churn by reason and by source, the segments that do not activate, the success stories.

Clocks are judged on the policy in force when the report is made, on the lead's team calendar,
as sla-timer schedules them (leadflow.contracts.slas); every input is plain data.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from leadflow.contracts import slas
from leadflow.contracts.calendar import BusinessCalendar, policy_calendar
from leadflow.contracts.commitments import source_group
from leadflow.contracts.policy import Policy

# The statuses of a won customer customer success works with.
CUSTOMER_STATUSES = frozenset({"won", "handed_off"})
# The clocks after the won status, in the order the page shows them, and the milestone that
# meets each (the hand-off is the status `handed_off`).
AFTER_WON = (slas.CS_HANDOFF, slas.ONBOARDING_KICKOFF, slas.KEY_FEATURE_ACTIVATION)
UNKNOWN = "unknown"

Verdict = Literal["met", "missed", "pending", "cancelled"]


class CustomerSuccessRefused(ValueError):
    """A report customer success may not make about this lead; `field` names what is wrong."""

    def __init__(self, field: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.extra = extra


def check_customer(status: str | None, churned_at: datetime | None) -> None:
    """Onboarding milestones, churns and success stories concern a won customer still with us."""
    if status not in CUSTOMER_STATUSES:
        raise CustomerSuccessRefused(
            "status",
            f"the lead is '{status}', not a won customer (won or handed_off)",
            current=status,
        )
    if churned_at is not None:
        raise CustomerSuccessRefused(
            "lead_id", f"the customer churned at {churned_at.isoformat()}", current=status
        )


def check_churn_reason(reason: str, policy: Policy) -> None:
    known = sorted(policy.customer_success.churn_reasons)
    if reason not in policy.customer_success.churn_reasons:
        raise CustomerSuccessRefused(
            "reason",
            f"unknown churn reason '{reason}'; use one of: {', '.join(known)}",
            allowed_reasons=known,
        )


def activation(
    uses: Iterable[tuple[str, datetime]], won_at: datetime | None, key_feature: str
) -> datetime | None:
    """When the customer activated: the first use of the policy's key feature at or after the
    won status (use in a trial before the signature does not count); None before that."""
    if won_at is None:
        return None
    return min(
        (at for feature, at in uses if feature == key_feature and at >= won_at), default=None
    )


@dataclass(frozen=True)
class Customer:
    """A won lead as the review needs it: when it was won and reached each milestone, how it
    came (its first source and channel), its segment, and its churn."""

    lead_id: uuid.UUID
    won_at: datetime
    channel: str | None = None
    calendar: Mapping[str, Any] | None = None
    handed_off_at: datetime | None = None
    kickoff_at: datetime | None = None
    activated_at: datetime | None = None
    first_source: Mapping[str, Any] | None = None
    industry: str | None = None
    size_band: str | None = None
    churned_at: datetime | None = None
    churn_reason: str | None = None

    def reached(self, sla: str) -> datetime | None:
        return {
            slas.CS_HANDOFF: self.handed_off_at,
            slas.ONBOARDING_KICKOFF: self.kickoff_at,
            slas.KEY_FEATURE_ACTIVATION: self.activated_at,
        }[sla]


@dataclass(frozen=True)
class ClockResult:
    sla: str
    started_at: datetime
    due_at: datetime
    reached_at: datetime | None
    verdict: Verdict


def calendar_of(customer: Customer, policy: Policy) -> BusinessCalendar:
    if customer.calendar:
        return BusinessCalendar.from_spec(customer.calendar)
    return policy_calendar(policy)


def clock_result(customer: Customer, sla: str, policy: Policy, now: datetime) -> ClockResult:
    """How the customer's `sla` clock came out: `met` when reached by its due instant, `missed`
    when reached late or not at all by then, `pending` while it may still be met, `cancelled`
    when the customer churned before either."""
    term = slas.term(policy, sla, customer.channel)
    due = slas.due_after(term.clock, calendar_of(customer, policy), customer.won_at, term.limit)
    reached = customer.reached(sla)
    churned = customer.churned_at
    verdict: Verdict
    if reached is not None and (churned is None or reached <= churned):
        verdict = "met" if reached <= due else "missed"
    elif churned is not None and churned < due:
        verdict = "cancelled"
    else:
        verdict = "missed" if now >= due else "pending"
    return ClockResult(sla, customer.won_at, due, reached, verdict)


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def clocks_summary(
    customers: Iterable[Customer], policy: Policy, now: datetime
) -> dict[str, dict[str, Any]]:
    """Per clock after the won status: how many met, missed, still pending and cancelled, the
    share met of those decided, and the customers that missed it."""
    summary: dict[str, dict[str, Any]] = {
        sla: {"met": 0, "missed": 0, "pending": 0, "cancelled": 0, "missed_leads": []}
        for sla in AFTER_WON
    }
    for customer in customers:
        for sla in AFTER_WON:
            result = clock_result(customer, sla, policy, now)
            row = summary[sla]
            row[result.verdict] += 1
            if result.verdict == "missed":
                row["missed_leads"].append(
                    {
                        "lead_id": str(customer.lead_id),
                        "due_at": result.due_at.isoformat(),
                        "reached_at": result.reached_at.isoformat() if result.reached_at else None,
                    }
                )
    for row in summary.values():
        row["share_met"] = _share(row["met"], row["met"] + row["missed"])
        row["limit"] = None
    for sla in AFTER_WON:
        term = slas.term(policy, sla, None)
        summary[sla]["limit"] = {"seconds": term.limit.total_seconds(), "clock": term.clock}
    return summary


def _counted(counter: Counter[str]) -> list[dict[str, Any]]:
    return [
        {"key": key, "churned": n}
        for key, n in sorted(counter.items(), key=lambda i: (-i[1], i[0]))
    ]


def churn_summary(churned: Iterable[Customer], policy: Policy) -> dict[str, Any]:
    """The churns of the window by structured reason (with the policy's label) and by how the
    customers came: their first source's source-mix group and their channel."""
    churned = list(churned)
    labels = policy.customer_success.churn_reasons
    groups = list(policy.commitments.marketing.source_mix)
    by_reason = Counter(c.churn_reason or UNKNOWN for c in churned)
    return {
        "churned": len(churned),
        "by_reason": [
            {**row, "label": labels[row["key"]].label if row["key"] in labels else row["key"]}
            for row in _counted(by_reason)
        ],
        "by_source": _counted(Counter(source_group(c.first_source, groups) for c in churned)),
        "by_channel": _counted(Counter(c.channel or UNKNOWN for c in churned)),
    }


def segment_of(customer: Customer) -> str:
    return f"{customer.industry or UNKNOWN} · {customer.size_band or UNKNOWN}"


def low_usage_segments(
    customers: Iterable[Customer], policy: Policy, now: datetime
) -> list[dict[str, Any]]:
    """Segments (industry · size band) of the customers still with us whose activation clock
    ran out without the key feature used; each with its customers whose activation was decided
    and the share not activated, the largest share first. Customers still inside their 14 days
    count in no segment yet."""
    decided: Counter[str] = Counter()
    inactive: Counter[str] = Counter()
    for customer in customers:
        if customer.churned_at is not None and customer.churned_at <= now:
            continue
        verdict = clock_result(customer, slas.KEY_FEATURE_ACTIVATION, policy, now).verdict
        if verdict in ("met", "missed"):
            segment = segment_of(customer)
            decided[segment] += 1
            # activated late is still activated: the segment uses the key feature
            if customer.activated_at is None:
                inactive[segment] += 1
    rows = [
        {
            "segment": segment,
            "not_activated": inactive[segment],
            "customers": decided[segment],
            "share": _share(inactive[segment], decided[segment]),
        }
        for segment in decided
        if inactive[segment]
    ]
    return sorted(rows, key=lambda r: (-(r["share"] or 0), -r["not_activated"], r["segment"]))


@dataclass(frozen=True)
class Story:
    id: uuid.UUID
    lead_id: uuid.UUID
    title: str
    outcome: str
    topics: list[str] = field(default_factory=list)
    reported_at: datetime | None = None


def stories_summary(stories: Iterable[Story]) -> dict[str, Any]:
    """The success stories of the window, newest first, and their topics by how often they
    come up (themes for marketing's content)."""
    stories = sorted(
        stories, key=lambda s: (s.reported_at or datetime.min, str(s.id)), reverse=True
    )
    topics = Counter(t for s in stories for t in dict.fromkeys(s.topics))
    return {
        "stories": [
            {
                "id": str(s.id),
                "lead_id": str(s.lead_id),
                "title": s.title,
                "outcome": s.outcome,
                "topics": list(s.topics),
                "reported_at": s.reported_at.isoformat() if s.reported_at else None,
            }
            for s in stories
        ],
        "topics": [
            {"key": key, "stories": n}
            for key, n in sorted(topics.items(), key=lambda i: (-i[1], i[0]))
        ],
    }


def customer_success_report(
    won: Iterable[Customer],
    customers: Iterable[Customer],
    churned: Iterable[Customer],
    stories: Iterable[Story],
    policy: Policy,
    *,
    start: datetime,
    end: datetime,
    now: datetime,
) -> dict[str, Any]:
    """What customer success feeds back for [start, end): the clocks of the deals won in it,
    its churns and success stories, and the low-usage segments among every customer won
    before its end (judged at `min(now, end)`)."""
    at = min(now, end)
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "key_feature": policy.customer_success.key_feature,
        "clocks": clocks_summary(won, policy, at),
        "churn": churn_summary(churned, policy),
        "low_usage_segments": low_usage_segments(customers, policy, at),
        **stories_summary(stories),
    }
