"""Pure SLA timer rules: when each level of the escalation ladder comes due, and what it emits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from leadflow.contracts.calendar import (
    BusinessCalendar,
    add_business_days,
    add_business_time,
    business_time_between,
)


@dataclass(frozen=True)
class Step:
    level: str  # warning | breached | escalated_manager
    fraction: float  # of the limit


def ladder_steps(warning: float, breach: float, manager: float) -> list[Step]:
    return [Step("warning", warning), Step("breached", breach), Step("escalated_manager", manager)]


def elapsed_to(
    clock: str, calendar: BusinessCalendar | None, start: datetime, duration: timedelta
) -> datetime:
    """The instant `duration` after `start` on the timer's clock.

    `business_days` limits count whole working days (same local time N working days later);
    a ladder fraction of them is rounded to the nearest whole day (75 % of 5 days: 4 days).
    """
    if calendar is not None and clock == "business_hours":
        return add_business_time(calendar, start, duration)
    if calendar is not None and clock == "business_days":
        return add_business_days(calendar, start, max(round(duration / timedelta(days=1)), 1))
    return start + duration


def measured(clock: str, calendar: BusinessCalendar | None, a: datetime, b: datetime) -> timedelta:
    if calendar is not None and clock in ("business_hours", "business_days"):
        return business_time_between(calendar, a, b)
    return max(b - a, timedelta(0))


def fire_times(
    steps: list[Step],
    clock: str,
    calendar: BusinessCalendar | None,
    start: datetime,
    limit: timedelta,
) -> list[tuple[str, datetime]]:
    return [(s.level, elapsed_to(clock, calendar, start, limit * s.fraction)) for s in steps]


def due_levels(ladder: list[dict], fired: int, now: datetime) -> list[int]:
    """Indexes of ladder steps not yet fired whose time has come (in order)."""
    return [i for i in range(fired, len(ladder)) if datetime.fromisoformat(ladder[i]["at"]) <= now]
