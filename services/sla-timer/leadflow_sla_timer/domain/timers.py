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
# Whom the first escalation goes to; its escalation may ask for a reassignment.
TEAM_LEAD = slas.ESCALATES_TO[slas.ESCALATED_TEAM_LEAD]


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
    """The term, the ladder ([{"level", "at", "escalate"?}]) and the due instant of a clock.

    The breach step is stored with `"escalate": false`: the team lead's escalation is a step of
    its own (or, for a clock whose breach does not escalate, absent), not part of the breach."""
    term = slas.term(policy, sla, channel)
    ladder = []
    steps = slas.ladder(policy, sla, term)
    for level, at in fire_times(steps, term.clock, calendar, start, term.limit):
        step = {"level": level, "at": at.isoformat()}
        if level == slas.BREACHED:
            step["escalate"] = False
        ladder.append(step)
    due_at = next(datetime.fromisoformat(s["at"]) for s in ladder if s["level"] == slas.BREACHED)
    return term, ladder, due_at


def breach_escalates(step: dict) -> bool:
    """Whether firing this breach step also escalates to the team lead: only in a ladder stored
    before the team lead's escalation had a step of its own, whose breach is not marked
    `"escalate": false`."""
    return bool(step.get("escalate", True))


def escalates_to(step: dict) -> str | None:
    """Whom firing this step escalates to (team_lead | manager), None if it escalates to nobody."""
    if step["level"] == slas.BREACHED:
        return TEAM_LEAD if breach_escalates(step) else None
    return slas.ESCALATES_TO.get(step["level"])


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
