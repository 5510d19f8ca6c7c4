"""Business calendars (zone, weekly hours, holidays) and the business-time math of SLA deadlines."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

Interval = tuple[time, time]

# An interval ending at 00:00 runs to midnight at the end of its day (written "24:00").
END_OF_DAY = time(0)

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_KEYS = {
    **{name: i for i, name in enumerate(WEEKDAY_NAMES)},
    **{
        name: i
        for i, name in enumerate(
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
        )
    },
}
_SPEC_KEYS = ("timezone", "hours", "holiday_country", "extra_holidays")
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")

# A calendar that stays shut this long (e.g. every day listed as a holiday) can never
# satisfy a deadline; stop instead of looping forever.
_MAX_CLOSED_DAYS = 400


class CalendarSpecError(ValueError):
    """A calendar definition is invalid; `field` names the offending key (e.g. "hours.tue")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class BusinessCalendar:
    """When a team works: IANA time zone, weekly opening intervals per weekday, holidays.

    `weekly_hours` maps weekday (0 = Monday) to sorted, non-overlapping `(start, end)`
    wall-clock intervals; an `end` of 00:00 means midnight at the end of that day. It is
    stored read-only (a mapping proxy) so the calendar is hashable and can key caches.
    `holiday_country` is a code understood by the `holidays` package, optionally with a
    subdivision ("PL", "US", "US-NY"); None means no public holidays.
    """

    timezone: str
    weekly_hours: Mapping[int, tuple[Interval, ...]]
    holiday_country: str | None = None
    extra_holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        _check_timezone(self.timezone, "timezone")
        if not isinstance(self.weekly_hours, Mapping):
            raise CalendarSpecError("weekly_hours", "must map weekday (0=Mon..6=Sun) to intervals")
        hours: dict[int, tuple[Interval, ...]] = {}
        for weekday, intervals in self.weekly_hours.items():
            label = f"weekly_hours[{weekday!r}]"
            if not isinstance(weekday, int) or isinstance(weekday, bool) or not 0 <= weekday <= 6:
                raise CalendarSpecError(label, "weekday must be an int 0 (Mon) .. 6 (Sun)")
            checked = _check_intervals(intervals, label)
            if checked:
                hours[weekday] = checked
        if not hours:
            raise CalendarSpecError("weekly_hours", "at least one working interval is required")
        object.__setattr__(self, "weekly_hours", MappingProxyType(dict(sorted(hours.items()))))
        object.__setattr__(
            self, "holiday_country", _check_country(self.holiday_country, "holiday_country")
        )
        object.__setattr__(
            self, "extra_holidays", _check_dates(self.extra_holidays, "extra_holidays")
        )

    def __hash__(self) -> int:
        return hash(
            (
                self.timezone,
                tuple(self.weekly_hours.items()),
                self.holiday_country,
                self.extra_holidays,
            )
        )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def standard(
        cls,
        timezone: str = "Europe/Warsaw",
        start: time = time(9),
        end: time = time(17),
        days: Iterable[int] = (0, 1, 2, 3, 4),
        holiday_country: str | None = "PL",
    ) -> BusinessCalendar:
        """The same single interval on each of `days`; the defaults are the shipped calendar."""
        return cls(timezone, {d: ((start, end),) for d in days}, holiday_country)

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> BusinessCalendar:
        """Build a calendar from plain data (a team's settings, an event payload).

        Example: ``{"timezone": "Europe/Warsaw", "hours": {"mon": ["09:00-17:00"],
        "tue": ["08:00-12:00", "13:00-17:00"]}, "holiday_country": "PL",
        "extra_holidays": ["2026-12-31"]}``. Every key is optional; a missing key takes the
        shipped default (Europe/Warsaw, Mon–Fri 09:00–17:00, PL), so a team can override
        only its time zone. An explicit ``"holiday_country": null`` means no holidays.
        Raises CalendarSpecError (a ValueError) naming the bad key.
        """
        if spec is None:
            return DEFAULT_CALENDAR
        if not isinstance(spec, Mapping):
            raise CalendarSpecError("calendar", "must be an object")
        unknown = sorted(str(k) for k in spec if k not in _SPEC_KEYS)
        if unknown:
            raise CalendarSpecError(
                unknown[0], f"unknown key; expected one of {', '.join(_SPEC_KEYS)}"
            )
        timezone = spec.get("timezone", DEFAULT_CALENDAR.timezone)
        _check_timezone(timezone, "timezone")
        hours = _parse_hours(spec["hours"]) if "hours" in spec else DEFAULT_CALENDAR.weekly_hours
        country = spec.get("holiday_country", DEFAULT_CALENDAR.holiday_country)
        extra = _parse_dates(spec.get("extra_holidays", ()), "extra_holidays")
        return cls(timezone, hours, country, extra)

    def to_spec(self) -> dict[str, Any]:
        """Plain data that `from_spec` turns back into an equal calendar."""
        return {
            "timezone": self.timezone,
            "hours": {
                WEEKDAY_NAMES[d]: [f"{_clock(s)}-{_clock(e, end=True)}" for s, e in intervals]
                for d, intervals in self.weekly_hours.items()
            },
            "holiday_country": self.holiday_country,
            "extra_holidays": [d.isoformat() for d in sorted(self.extra_holidays)],
        }


# --- validation and parsing ------------------------------------------------------------


def _check_timezone(value: Any, label: str) -> None:
    if not isinstance(value, str) or not value:
        raise CalendarSpecError(label, "must be an IANA time zone name, e.g. 'Europe/Warsaw'")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarSpecError(label, f"unknown time zone {value!r}") from None


def _check_country(value: Any, label: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CalendarSpecError(label, "must be a country code such as 'PL', or null")
    code = value.strip().upper()
    country, _, subdiv = code.partition("-")
    supported = holidays.list_supported_countries()
    if country not in supported:
        raise CalendarSpecError(label, f"no public holidays known for country {value!r}")
    if subdiv and subdiv not in {s.upper() for s in supported[country]}:
        raise CalendarSpecError(label, f"unknown subdivision {subdiv!r} of {country}")
    return code


def _check_intervals(intervals: Any, label: str) -> tuple[Interval, ...]:
    if isinstance(intervals, str | bytes) or not isinstance(intervals, Iterable):
        raise CalendarSpecError(label, "must be a list of (start, end) intervals")
    checked: list[Interval] = []
    for i, interval in enumerate(intervals):
        try:
            start, end = interval
        except (TypeError, ValueError):
            raise CalendarSpecError(f"{label}[{i}]", "must be a (start, end) pair") from None
        for t in (start, end):
            if not isinstance(t, time) or t.tzinfo is not None:
                raise CalendarSpecError(f"{label}[{i}]", "start and end must be naive times")
        if end != END_OF_DAY and not start < end:
            raise CalendarSpecError(
                f"{label}[{i}]",
                f"{_clock(start)}-{_clock(end, end=True)} must start before it ends "
                "(split an overnight shift at midnight)",
            )
        checked.append((start, end))
    checked.sort()
    for i in range(1, len(checked)):
        prev_end = checked[i - 1][1]
        if prev_end == END_OF_DAY or checked[i][0] < prev_end:
            raise CalendarSpecError(label, "intervals overlap")
    return tuple(checked)


def _check_dates(values: Any, label: str) -> frozenset[date]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise CalendarSpecError(label, "must be a collection of dates")
    values = frozenset(values)
    for d in values:
        if not isinstance(d, date) or isinstance(d, datetime):
            raise CalendarSpecError(label, f"{d!r} is not a date")
    return values


def _parse_hours(raw: Any) -> dict[int, tuple[Interval, ...]]:
    if not isinstance(raw, Mapping):
        raise CalendarSpecError("hours", "must map weekday ('mon'..'sun') to intervals")
    hours: dict[int, tuple[Interval, ...]] = {}
    for key, value in raw.items():
        label = f"hours.{key}"
        weekday = _WEEKDAY_KEYS.get(str(key).strip().lower())
        if weekday is None:
            raise CalendarSpecError(label, "unknown weekday; use mon, tue, wed, thu, fri, sat, sun")
        if weekday in hours:
            raise CalendarSpecError(label, "weekday given twice")
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise CalendarSpecError(label, "must be a list like ['09:00-17:00']")
        hours[weekday] = _check_intervals(
            [_parse_interval(item, f"{label}[{i}]") for i, item in enumerate(items)], label
        )
    return hours


def _parse_interval(raw: Any, label: str) -> Interval:
    if not isinstance(raw, str) or raw.count("-") != 1:
        raise CalendarSpecError(label, f"{raw!r} must look like '09:00-17:00'")
    start, end = (part.strip() for part in raw.split("-"))
    return _parse_clock(start, label, end=False), _parse_clock(end, label, end=True)


def _parse_clock(raw: str, label: str, *, end: bool) -> time:
    match = _CLOCK.match(raw)
    if match is None:
        raise CalendarSpecError(label, f"{raw!r} is not a HH:MM time")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if end and (hour, minute, second) == (24, 0, 0):
        return END_OF_DAY
    if hour > 23 or minute > 59 or second > 59:
        raise CalendarSpecError(label, f"{raw!r} is not a valid time of day")
    if end and (hour, minute, second) == (0, 0, 0):
        raise CalendarSpecError(label, "an interval cannot end at 00:00; write 24:00 for midnight")
    return time(hour, minute, second)


def _parse_dates(raw: Any, label: str) -> frozenset[date]:
    if isinstance(raw, str) or not isinstance(raw, list | tuple | set | frozenset):
        raise CalendarSpecError(label, "must be a list of ISO dates like '2026-12-31'")
    parsed = set()
    for i, item in enumerate(raw):
        if isinstance(item, date) and not isinstance(item, datetime):
            parsed.add(item)
            continue
        try:
            parsed.add(date.fromisoformat(item))
        except (TypeError, ValueError):
            raise CalendarSpecError(f"{label}[{i}]", f"{item!r} is not an ISO date") from None
    return frozenset(parsed)


def _clock(t: time, *, end: bool = False) -> str:
    if end and t == END_OF_DAY:
        return "24:00"
    return t.strftime("%H:%M:%S" if t.second else "%H:%M")


# --- the calendar as UTC instants ------------------------------------------------------


@lru_cache(maxsize=512)
def _public_holidays(country: str, year: int) -> frozenset[date]:
    code, _, subdiv = country.partition("-")
    return frozenset(holidays.country_holidays(code, subdiv=subdiv or None, years=year))


def is_business_day(cal: BusinessCalendar, day: date) -> bool:
    """True if `day` (a local date) has working hours and is no holiday."""
    if not cal.weekly_hours.get(day.weekday()) or day in cal.extra_holidays:
        return False
    return cal.holiday_country is None or day not in _public_holidays(cal.holiday_country, day.year)


def _wall_to_utc(tz: ZoneInfo, day: date, t: time) -> datetime:
    """The first instant at which the local clock reads `t` or later on `day`.

    A wall time repeated when clocks go back means its first occurrence; one skipped when
    clocks go forward is reached at the moment of the jump. This keeps the mapping
    monotonic, so an interval never turns negative on a change night.
    """
    wall = datetime.combine(day, t)
    candidate = wall.replace(tzinfo=tz).astimezone(UTC)  # fold=0: earlier of a repeated time
    if candidate.astimezone(tz).replace(tzinfo=None) == wall:
        return candidate
    # `wall` fell in a gap; the jump lies between its two possible readings.
    other = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo = math.floor(min(candidate, other).timestamp())
    hi = math.ceil(max(candidate, other).timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


@lru_cache(maxsize=16384)
def _open_intervals(cal: BusinessCalendar, day: date) -> tuple[tuple[datetime, datetime], ...]:
    """The opening intervals of local date `day` as half-open UTC [start, end) pairs."""
    if not is_business_day(cal, day):
        return ()
    tz = cal.tz
    result: list[tuple[datetime, datetime]] = []
    for start, end in cal.weekly_hours[day.weekday()]:
        s = _wall_to_utc(tz, day, start)
        e = (
            _wall_to_utc(tz, day + timedelta(days=1), END_OF_DAY)
            if end == END_OF_DAY
            else _wall_to_utc(tz, day, end)
        )
        if e <= s:  # the whole interval was skipped by a forward jump
            continue
        if result and s <= result[-1][1]:  # touching intervals read as one
            result[-1] = (result[-1][0], max(e, result[-1][1]))
        else:
            result.append((s, e))
    return tuple(result)


def _intervals_after(
    cal: BusinessCalendar, instant: datetime
) -> Iterator[tuple[datetime, datetime]]:
    """Opening intervals (UTC) that end after `instant`, in order, day by day."""
    # Start a day early: when clocks go back at midnight, an instant's local date can be
    # one day behind intervals that already began.
    day = instant.astimezone(cal.tz).date() - timedelta(days=1)
    closed_days = 0
    while True:
        intervals = _open_intervals(cal, day)
        closed_days = 0 if intervals else closed_days + 1
        if closed_days > _MAX_CLOSED_DAYS:
            raise ValueError(
                f"calendar has no working hours in the {_MAX_CLOSED_DAYS} days after {day}"
            )
        for interval in intervals:
            if interval[1] > instant:
                yield interval
        day += timedelta(days=1)


def _utc(instant: datetime, label: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{label} must be timezone-aware")
    return instant.astimezone(UTC)


# --- public arithmetic -----------------------------------------------------------------


def is_open(cal: BusinessCalendar, instant: datetime) -> bool:
    """True if `instant` is inside working hours (an interval holds its start, not its end)."""
    instant = _utc(instant, "instant")
    start, _ = next(_intervals_after(cal, instant))
    return start <= instant


def next_opening(cal: BusinessCalendar, instant: datetime) -> datetime:
    """`instant` itself if working hours are running then, else the next opening (UTC)."""
    instant = _utc(instant, "instant")
    start, _ = next(_intervals_after(cal, instant))
    return max(start, instant)


def add_business_time(cal: BusinessCalendar, start: datetime, duration: timedelta) -> datetime:
    """The instant (UTC) at which `duration` of working time has elapsed after `start`.

    Counting begins at `start` if working hours are running, else at the next opening; a
    result that uses up an interval exactly is that interval's closing time (due Friday
    17:00, not Monday 09:00). A zero duration returns `start` unchanged, even at a closed
    time: nothing has to elapse, so the deadline is the start itself, and the function
    stays monotonic in `duration`.
    """
    start = _utc(start, "start")
    if duration < timedelta(0):
        raise ValueError("duration must not be negative")
    if duration == timedelta(0):
        return start
    remaining = duration
    for s, e in _intervals_after(cal, start):
        s = max(s, start)
        available = e - s
        if remaining <= available:
            return s + remaining
        remaining -= available
    raise AssertionError("unreachable: _intervals_after never ends")


def business_time_between(cal: BusinessCalendar, a: datetime, b: datetime) -> timedelta:
    """Working time elapsed from `a` to `b`; zero if `b` is not after `a`."""
    a, b = _utc(a, "a"), _utc(b, "b")
    total = timedelta(0)
    if b <= a:
        return total
    for s, e in _intervals_after(cal, a):
        if s >= b:
            break
        total += min(e, b) - max(s, a)
    return total


def add_business_days(cal: BusinessCalendar, start: datetime, days: int) -> datetime:
    """The same local wall-clock time on the `days`-th following business day (UTC).

    "5 business days" means what a sales manager reads on a calendar: an SQL created on
    Tuesday 14:00 is due next Tuesday 14:00, or Wednesday 14:00 if a holiday intervenes.
    Multiplying a working day's length would drift with split shifts and short Fridays and
    land at surprising times of day. A start outside working hours counts from the next
    opening (Saturday → due the Monday after next, 09:00), as for `add_business_time`.
    If the target day's hours do not cover that wall time, the deadline is the latest
    working moment of that day before it (its closing time), or its first opening if that
    day opens later. Zero days returns `start` unchanged.
    """
    start = _utc(start, "start")
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ValueError("days must be a non-negative integer")
    if days == 0:
        return start
    tz = cal.tz
    local = next_opening(cal, start).astimezone(tz)
    wall, day, counted, closed_days = local.time(), local.date(), 0, 0
    while counted < days:
        day += timedelta(days=1)
        if _open_intervals(cal, day):
            counted, closed_days = counted + 1, 0
        else:
            closed_days += 1
            if closed_days > _MAX_CLOSED_DAYS:
                raise ValueError(f"calendar has no working hours in the days after {day}")
    target = _wall_to_utc(tz, day, wall)
    intervals = _open_intervals(cal, day)
    if target < intervals[0][0]:
        return intervals[0][0]
    return max(min(e, target) for s, e in intervals if s <= target)


DEFAULT_CALENDAR = BusinessCalendar.standard()


def policy_calendar(policy: Any) -> BusinessCalendar:
    """The policy's default business calendar (teams without a calendar of their own use it)."""
    spec = policy.calendar
    country = spec.holiday_country
    if spec.holiday_subdivision:
        country = f"{country}-{spec.holiday_subdivision}"
    return BusinessCalendar.standard(
        timezone=spec.time_zone,
        start=spec.opens_at,
        end=spec.closes_at,
        days=tuple(sorted(spec.weekday_numbers)),
        holiday_country=country,
    )
