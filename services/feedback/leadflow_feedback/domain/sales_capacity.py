"""Sales capacity from the reps configured in routing (docs/domain.md "Plans from history"):
how many MQLs the active reps can work over a plan's weeks, from their working hours and
their capacity of open leads, instead of one typed-in number.

A rep's hours are a share of the policy calendar's working week (Mon–Fri 09:00–17:00: 40 h);
at that share of `sdr_activities_per_week` and `touches_per_mql` touches an MQL, the hours
allow `share × activities × weeks / touches` MQLs. A rep's open leads at most (`capacity`) turn
over once per contact cadence (an MQL is worked for at most the cadence's window: 12 days
inbound), which allows `capacity × days / cadence days` MQLs. The rep works the smaller of
the two; sales, the sum (whole MQLs, rounded down).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import time
from fractions import Fraction
from typing import Any

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class RepCapacity:
    rep_id: str
    team: str
    hours_per_week: float
    by_hours: float
    by_open_leads: float | None
    mql: float


@dataclass(frozen=True)
class SalesCapacity:
    mql: int
    weeks: float
    reps: list[RepCapacity]

    def as_dict(self) -> dict[str, Any]:
        return {"mql": self.mql, "weeks": self.weeks, "reps": [vars(r) for r in self.reps]}


def _hours(start: str | time, end: str | time) -> Fraction:
    def minutes(at: str | time) -> int:
        if isinstance(at, time):
            return at.hour * 60 + at.minute
        hours, mins = str(at).split(":")[:2]
        return int(hours) * 60 + int(mins)

    return Fraction(max(0, minutes(end) - minutes(start)), 60)


def weekly_hours(working_hours: dict[str, list[list[str]]] | None, full_week: Fraction) -> Fraction:
    """A rep's working hours a week (routing's `working_hours`; none: the full week)."""
    if not working_hours:
        return full_week
    return sum(
        (_hours(start, end) for day in WEEKDAYS for start, end in working_hours.get(day, [])),
        Fraction(0),
    )


def calendar_week(working_days: int, opens_at: time, closes_at: time) -> Fraction:
    """The hours of the policy calendar's working week."""
    return working_days * _hours(opens_at, closes_at)


def sales_capacity(
    directories: list[dict[str, Any]],
    *,
    weeks: Fraction,
    full_week: Fraction,
    activities_per_week: Fraction,
    touches_per_mql: Fraction,
    cadence_days: Fraction,
) -> SalesCapacity:
    """The MQLs the reps of these team directories (as routing published them) can work in
    `weeks`."""
    reps: list[RepCapacity] = []
    total = Fraction(0)
    for directory in directories:
        for rep in directory.get("reps", []):
            hours = weekly_hours(rep.get("working_hours"), full_week)
            by_hours = hours / full_week * activities_per_week * weeks / touches_per_mql
            capacity = rep.get("capacity")
            by_open = capacity * weeks * 7 / cadence_days if capacity is not None else None
            workable = min(by_hours, by_open) if by_open is not None else by_hours
            total += workable
            reps.append(
                RepCapacity(
                    rep_id=str(rep.get("id")),
                    team=directory.get("team", ""),
                    hours_per_week=round(float(hours), 2),
                    by_hours=round(float(by_hours), 2),
                    by_open_leads=round(float(by_open), 2) if by_open is not None else None,
                    mql=round(float(workable), 2),
                )
            )
    return SalesCapacity(mql=math.floor(total), weeks=float(weeks), reps=reps)
