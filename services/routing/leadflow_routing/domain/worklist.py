"""Pure decisions of the worklists: which SLA clocks a routed lead has and when each is due (as
the policy schedules them, before sla-timer says more), and where a lead in open work stands
against its clock due first."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from leadflow.contracts import slas
from leadflow.contracts.calendar import BusinessCalendar
from leadflow.contracts.policy import Policy

WorkState = Literal["overdue", "warning", "on_track", "no_clock"]
# A clock no level of which has fired yet.
OPEN = "open"


def clocks_opened(
    policy: Policy,
    kind: str,
    channel: str | None,
    calendar: BusinessCalendar,
    routed_at: datetime,
) -> list[tuple[str, datetime]]:
    """(sla, due) of each clock a `lead.routed` of this lead opens, due as sla-timer schedules
    its breach: the policy's limit after the routing, on the team's calendar."""
    opened = []
    for sla in slas.opened_by_routing(kind):
        term = slas.term(policy, sla, channel)
        opened.append((sla, slas.due_after(term.clock, calendar, routed_at, term.limit)))
    return opened


def work_state(
    due_at: datetime | None, level: str | None, now: datetime
) -> tuple[WorkState, float | None]:
    """Where a lead stands against its clock due first, and the seconds left (below zero when
    late): overdue once due or breached, warning once a level fired before the breach."""
    if due_at is None:
        return "no_clock", None
    left = (due_at - now).total_seconds()
    if left <= 0 or level == slas.BREACHED or level in slas.ESCALATES_TO:
        return "overdue", left
    if level not in (None, OPEN):
        return "warning", left
    return "on_track", left
