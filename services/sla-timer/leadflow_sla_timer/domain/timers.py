"""Pure SLA timer rules: when each level of a clock's escalation ladder comes due, which levels a
claim fires, and the fields every SLA event carries about its timer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from leadflow.contracts import slas
from leadflow.contracts.calendar import BusinessCalendar
from leadflow.contracts.policy import Policy

# The level of the one warning a cadence emits when a lead got more touches than it allows.
ATTEMPTS_EXCEEDED = "attempts_exceeded"


def fire_times(
    steps: Sequence[slas.Step],
    clock: str,
    calendar: BusinessCalendar | None,
    start: datetime,
    limit: timedelta,
) -> list[tuple[str, datetime]]:
    return [(s.level, slas.due_after(clock, calendar, start, limit * s.fraction)) for s in steps]


def schedule(
    policy: Policy, sla: str, channel: str | None, calendar: BusinessCalendar, start: datetime
) -> tuple[slas.Term, list[dict], datetime]:
    """The term, the ladder ([{"level", "at", "escalate"?}]) and the due instant of a clock."""
    term = slas.term(policy, sla, channel)
    ladder = []
    steps = slas.ladder(policy, sla, term)
    for level, at in fire_times(steps, term.clock, calendar, start, term.limit):
        step = {"level": level, "at": at.isoformat()}
        if level == slas.BREACHED and not term.escalate_on_breach:
            step["escalate"] = False
        ladder.append(step)
    due_at = next(datetime.fromisoformat(s["at"]) for s in ladder if s["level"] == slas.BREACHED)
    return term, ladder, due_at


def due_levels(ladder: list[dict], fired: int, now: datetime) -> list[int]:
    """Indexes of ladder steps not yet fired whose time has come (in order)."""
    return [i for i in range(fired, len(ladder)) if datetime.fromisoformat(ladder[i]["at"]) <= now]


def reassign_on_breach(policy: Policy) -> bool:
    return policy.slas.escalation.reassign_on_breach


def about(timer: dict[str, Any]) -> dict[str, Any]:
    """The fields every SLA event carries about its timer."""
    return {
        "lead_id": timer["lead_id"],
        "timer_id": timer["id"],
        **{k: timer[k] for k in ("sla", "channel", "team", "rep_id", "started_at", "due_at")},
    }
