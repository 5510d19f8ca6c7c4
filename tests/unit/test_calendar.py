"""Specification of the business calendar: opening hours, holidays, DST and business-time math."""

from __future__ import annotations

import time as stopwatch
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from leadflow.contracts.calendar import (
    DEFAULT_CALENDAR,
    BusinessCalendar,
    CalendarSpecError,
    add_business_days,
    add_business_time,
    business_time_between,
    is_business_day,
    is_open,
    next_opening,
)

WARSAW = ZoneInfo("Europe/Warsaw")
NEW_YORK = ZoneInfo("America/New_York")
H = timedelta(hours=1)
MIN = timedelta(minutes=1)
PL = DEFAULT_CALENDAR  # Mon–Fri 09:00–17:00, Europe/Warsaw, Polish holidays


def warsaw(*args: int) -> datetime:
    return datetime(*args, tzinfo=WARSAW)


def new_york(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)


SPLIT = BusinessCalendar.from_spec(
    {
        "timezone": "Europe/Warsaw",
        "hours": {d: ["08:00-12:00", "13:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
        "holiday_country": "PL",
    }
)
US = BusinessCalendar.standard(timezone="America/New_York", holiday_country="US")
# Works through the night the clocks change (both 2026 changes in Warsaw fall on a Sunday).
NIGHT = BusinessCalendar.standard(start=time(1), end=time(4), days=range(7), holiday_country=None)
ALWAYS = BusinessCalendar.from_spec(
    {
        "hours": {d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
        "holiday_country": None,
    }
)
# Chile moves its clocks at midnight, so days start at skipped or repeated wall times.
SANTIAGO = BusinessCalendar.from_spec(
    {
        "timezone": "America/Santiago",
        "hours": {d: ["00:00-02:00", "23:00-24:00"] for d in ("mon", "wed", "sat", "sun")},
        "holiday_country": "CL",
    }
)


# --- the docs/domain.md example and holidays ------------------------------------------------


def test_friday_1630_plus_two_hours_is_due_monday_1030():
    due = add_business_time(PL, warsaw(2026, 11, 20, 16, 30), 2 * H)
    assert due == warsaw(2026, 11, 23, 10, 30)
    assert due.tzinfo is UTC


def test_polish_independence_day_is_skipped_like_a_weekend():
    due = add_business_time(PL, warsaw(2026, 11, 10, 16), 2 * H)
    assert due == warsaw(2026, 11, 12, 10)


def test_easter_monday_is_skipped():
    due = add_business_time(PL, warsaw(2026, 4, 3, 16), 2 * H)
    assert due == warsaw(2026, 4, 7, 10)


def test_extra_holidays_are_skipped():
    cal = BusinessCalendar.from_spec({"extra_holidays": ["2026-11-23"]})
    due = add_business_time(cal, warsaw(2026, 11, 20, 16, 30), 2 * H)
    assert due == warsaw(2026, 11, 24, 10, 30)


def test_without_a_holiday_country_public_holidays_are_working_days():
    cal = BusinessCalendar.standard(holiday_country=None)
    assert add_business_time(cal, warsaw(2026, 11, 10, 16), 2 * H) == warsaw(2026, 11, 11, 10)


def test_is_business_day_knows_weekends_and_holidays():
    assert is_business_day(DEFAULT_CALENDAR, date(2026, 11, 10))
    assert not is_business_day(DEFAULT_CALENDAR, date(2026, 11, 11))
    assert not is_business_day(DEFAULT_CALENDAR, date(2026, 11, 14))
    assert not is_business_day(DEFAULT_CALENDAR, date(2026, 12, 24))  # Wigilia, from 2025


# --- where counting starts and stops ---------------------------------------------------


def test_start_before_opening_counts_from_opening():
    assert add_business_time(PL, warsaw(2026, 11, 16, 7), H) == warsaw(2026, 11, 16, 10)


def test_start_after_closing_counts_from_next_opening():
    assert add_business_time(PL, warsaw(2026, 11, 16, 18), H) == warsaw(2026, 11, 17, 10)


def test_start_on_weekend_counts_from_monday_opening():
    assert add_business_time(PL, warsaw(2026, 11, 14, 12), H) == warsaw(2026, 11, 16, 10)


def test_duration_that_fills_the_day_is_due_at_closing_not_next_morning():
    assert add_business_time(PL, warsaw(2026, 11, 16, 9), 8 * H) == warsaw(2026, 11, 16, 17)


def test_zero_duration_returns_start_even_when_closed():
    saturday = warsaw(2026, 11, 14, 12)
    assert add_business_time(PL, saturday, timedelta(0)) == saturday


def test_24_business_hours_span_three_working_days():
    assert add_business_time(PL, warsaw(2026, 11, 16, 9), 24 * H) == warsaw(2026, 11, 18, 17)
    assert add_business_time(PL, warsaw(2026, 11, 16, 12), 24 * H) == warsaw(2026, 11, 19, 12)


def test_negative_duration_and_naive_datetimes_are_rejected():
    with pytest.raises(ValueError, match="negative"):
        add_business_time(PL, warsaw(2026, 11, 16, 9), -H)
    with pytest.raises(ValueError, match="start must be timezone-aware"):
        add_business_time(PL, datetime(2026, 11, 16, 9), H)
    with pytest.raises(ValueError, match="b must be timezone-aware"):
        business_time_between(DEFAULT_CALENDAR, warsaw(2026, 11, 16, 9), datetime(2026, 11, 16))


def test_business_time_between_counts_only_open_hours():
    friday, monday = warsaw(2026, 11, 20, 16, 30), warsaw(2026, 11, 23, 10, 30)
    assert business_time_between(DEFAULT_CALENDAR, friday, monday) == 2 * H


def test_business_time_between_is_zero_when_b_is_not_after_a():
    a = warsaw(2026, 11, 16, 12)
    assert business_time_between(DEFAULT_CALENDAR, a, a) == timedelta(0)
    assert business_time_between(DEFAULT_CALENDAR, a, a - H) == timedelta(0)


def test_is_open_and_next_opening():
    assert is_open(DEFAULT_CALENDAR, warsaw(2026, 11, 16, 9))
    assert not is_open(DEFAULT_CALENDAR, warsaw(2026, 11, 16, 17))
    assert next_opening(DEFAULT_CALENDAR, warsaw(2026, 11, 16, 17)) == warsaw(2026, 11, 17, 9)
    assert next_opening(DEFAULT_CALENDAR, warsaw(2026, 11, 16, 12)) == warsaw(2026, 11, 16, 12)


# --- split shifts ----------------------------------------------------------------------


def test_split_shift_skips_the_lunch_break():
    assert add_business_time(SPLIT, warsaw(2026, 11, 16, 11, 30), H) == warsaw(2026, 11, 16, 13, 30)


def test_start_during_lunch_break_counts_from_afternoon_opening():
    due = add_business_time(SPLIT, warsaw(2026, 11, 16, 12, 30), 30 * MIN)
    assert due == warsaw(2026, 11, 16, 13, 30)


def test_split_shift_business_time_between_excludes_the_break():
    assert business_time_between(SPLIT, warsaw(2026, 11, 16, 11), warsaw(2026, 11, 16, 14)) == 2 * H
    assert business_time_between(SPLIT, warsaw(2026, 11, 16), warsaw(2026, 11, 17)) == 8 * H


# --- other time zones ------------------------------------------------------------------


def test_new_york_skips_independence_day_observed():
    due = add_business_time(US, new_york(2026, 7, 2, 16), 2 * H)
    assert due == new_york(2026, 7, 6, 10)


def test_new_york_skips_thanksgiving_but_not_polish_holidays():
    assert add_business_time(US, new_york(2026, 11, 25, 16), 2 * H) == new_york(2026, 11, 27, 10)
    # Easter Monday is a holiday in Poland, not in the United States.
    assert add_business_time(US, new_york(2026, 4, 3, 16), 2 * H) == new_york(2026, 4, 6, 10)


def test_new_york_hours_are_local_to_new_york():
    # 15:00 in Warsaw is 09:00 in New York: the New York day has just begun.
    due = add_business_time(US, warsaw(2026, 11, 16, 15), H)
    assert due == new_york(2026, 11, 16, 10)


def test_holiday_subdivision_is_accepted():
    cal = BusinessCalendar.standard(timezone="America/New_York", holiday_country="us-ny")
    assert cal.holiday_country == "US-NY"


# --- daylight saving time --------------------------------------------------------------


def test_friday_example_across_spring_forward_in_warsaw():
    due = add_business_time(PL, warsaw(2026, 3, 27, 16, 30), 2 * H)
    assert due == warsaw(2026, 3, 30, 10, 30)
    assert due == datetime(2026, 3, 30, 8, 30, tzinfo=UTC)


def test_friday_example_across_fall_back_in_warsaw():
    due = add_business_time(PL, warsaw(2026, 10, 23, 16, 30), 2 * H)
    assert due == warsaw(2026, 10, 26, 10, 30)
    assert due == datetime(2026, 10, 26, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("friday", [date(2026, 3, 27), date(2026, 10, 23)])
def test_dst_weekend_does_not_change_working_time(friday: date):
    start = warsaw(friday.year, friday.month, friday.day, 9)
    monday_evening = warsaw(friday.year, friday.month, friday.day + 3, 17)
    assert business_time_between(DEFAULT_CALENDAR, start, monday_evening) == 16 * H


def test_night_shift_loses_an_hour_when_clocks_go_forward():
    day = (warsaw(2026, 3, 29), warsaw(2026, 3, 30))
    assert business_time_between(NIGHT, *day) == 2 * H
    # 01:00 CET + 1.5 h of real time reads 03:30 CEST.
    assert add_business_time(NIGHT, warsaw(2026, 3, 28, 4), 90 * MIN) == warsaw(2026, 3, 29, 3, 30)


def test_night_shift_gains_an_hour_when_clocks_go_back():
    day = (warsaw(2026, 10, 25), warsaw(2026, 10, 26))
    assert business_time_between(NIGHT, *day) == 4 * H
    # 01:00 CEST + 2.5 h of real time is the second 02:30 of the night (CET).
    due = add_business_time(NIGHT, warsaw(2026, 10, 24, 4), 150 * MIN)
    assert due == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    local = due.astimezone(WARSAW)
    assert (local.replace(tzinfo=None), local.fold) == (datetime(2026, 10, 25, 2, 30), 1)


def test_shift_starting_at_a_skipped_wall_time_opens_when_the_clock_jumps():
    cal = BusinessCalendar.from_spec({"hours": {"sun": ["02:30-05:00"]}, "holiday_country": None})
    assert next_opening(cal, warsaw(2026, 3, 29)) == datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert business_time_between(cal, warsaw(2026, 3, 29), warsaw(2026, 3, 30)) == 2 * H


def test_shift_entirely_inside_the_skipped_hour_does_not_happen():
    cal = BusinessCalendar.from_spec({"hours": {"sun": ["02:10-02:50"]}, "holiday_country": None})
    assert business_time_between(cal, warsaw(2026, 3, 29), warsaw(2026, 3, 30)) == timedelta(0)
    assert add_business_time(cal, warsaw(2026, 3, 28), MIN) == warsaw(2026, 4, 5, 2, 11)


def test_day_whose_midnight_is_skipped_opens_when_the_clock_jumps():
    # Santiago skips 2026-09-06 00:00-01:00. Saturday's 23:00-24:00 shift ends at the jump
    # (a full hour); Sunday's 00:00-02:00 shift starts there and lasts one hour.
    santiago = ZoneInfo("America/Santiago")
    saturday_evening = datetime(2026, 9, 5, 22, tzinfo=santiago)
    sunday_noon = datetime(2026, 9, 6, 12, tzinfo=santiago)
    assert business_time_between(SANTIAGO, saturday_evening, sunday_noon) == 2 * H
    assert is_open(SANTIAGO, datetime(2026, 9, 6, 4, 59, tzinfo=UTC))
    assert not is_open(SANTIAGO, datetime(2026, 9, 6, 5, tzinfo=UTC))


def test_always_open_calendar_measures_real_elapsed_time_across_dst():
    a, b = warsaw(2026, 3, 28, 12), warsaw(2026, 3, 29, 12)
    assert business_time_between(ALWAYS, a, b) == 23 * H
    assert add_business_time(ALWAYS, a, 23 * H) == b


# --- business days ---------------------------------------------------------------------


def test_five_business_days_is_the_same_time_a_week_later():
    assert add_business_days(PL, warsaw(2026, 11, 3, 14), 5) == warsaw(2026, 11, 10, 14)


def test_business_days_skip_holidays():
    # Fri 6, Mon 9, Tue 10, (Wed 11 is Independence Day), Thu 12, Fri 13.
    assert add_business_days(PL, warsaw(2026, 11, 5, 14), 5) == warsaw(2026, 11, 13, 14)


def test_business_days_from_a_weekend_count_from_monday_opening():
    assert add_business_days(PL, warsaw(2026, 11, 14, 11), 5) == warsaw(2026, 11, 23, 9)


def test_business_days_from_after_closing_count_from_next_opening():
    assert add_business_days(PL, warsaw(2026, 11, 16, 18), 1) == warsaw(2026, 11, 18, 9)


def test_business_days_land_on_closing_time_of_a_shorter_day():
    cal = BusinessCalendar.from_spec(
        {"hours": {"mon": "09:00-17:00", "tue": "09:00-17:00", "fri": "09:00-13:00"}}
    )
    assert add_business_days(cal, warsaw(2026, 11, 16, 15), 2) == warsaw(2026, 11, 20, 13)


def test_business_days_land_on_opening_of_a_day_that_opens_later():
    cal = BusinessCalendar.from_spec({"hours": {"mon": "08:00-16:00", "tue": "10:00-16:00"}})
    assert add_business_days(cal, warsaw(2026, 11, 16, 9), 1) == warsaw(2026, 11, 17, 10)


def test_business_days_keep_wall_time_across_dst():
    assert add_business_days(PL, warsaw(2026, 3, 27, 10), 1) == warsaw(2026, 3, 30, 10)


def test_zero_business_days_returns_start_and_negative_is_rejected():
    start = warsaw(2026, 11, 14, 11)
    assert add_business_days(PL, start, 0) == start
    with pytest.raises(ValueError, match="days"):
        add_business_days(PL, start, -1)


# --- long durations --------------------------------------------------------------------


def test_ninety_days_of_business_time_is_computed_quickly():
    cal = BusinessCalendar.standard(timezone="Europe/Berlin", holiday_country="DE")
    start = warsaw(2026, 1, 5, 9)
    began = stopwatch.perf_counter()
    due = add_business_time(cal, start, timedelta(days=90))
    assert stopwatch.perf_counter() - began < 1.0
    assert business_time_between(cal, start, due) == timedelta(days=90)
    assert due.year == 2027  # 270 working days of 8 h


def test_calendar_with_no_reachable_working_hours_fails_instead_of_looping():
    days = frozenset(date(2026, 1, 1) + timedelta(days=i) for i in range(800))
    cal = BusinessCalendar.standard(holiday_country=None)
    cal = BusinessCalendar(cal.timezone, cal.weekly_hours, None, days)
    with pytest.raises(ValueError, match="no working hours"):
        add_business_time(cal, warsaw(2026, 1, 1), H)


# --- building calendars ----------------------------------------------------------------


def test_from_spec_reads_split_shifts_holidays_and_24_00():
    cal = BusinessCalendar.from_spec(
        {
            "timezone": "Europe/Warsaw",
            "hours": {
                "mon": ["09:00-17:00"],
                "tue": ["08:00-12:00", "13:00-17:00"],
                "sat": ["20:00-24:00"],
            },
            "holiday_country": "PL",
            "extra_holidays": ["2026-12-31"],
        }
    )
    assert cal.weekly_hours[1] == ((time(8), time(12)), (time(13), time(17)))
    assert cal.weekly_hours[5] == ((time(20), time(0)),)
    assert 2 not in cal.weekly_hours
    assert cal.extra_holidays == frozenset({date(2026, 12, 31)})
    assert BusinessCalendar.from_spec(cal.to_spec()) == cal


def test_from_spec_defaults_to_the_shipped_calendar():
    assert BusinessCalendar.from_spec({}) == DEFAULT_CALENDAR
    assert BusinessCalendar.from_spec(None) == DEFAULT_CALENDAR
    assert DEFAULT_CALENDAR == BusinessCalendar.standard()
    ny = BusinessCalendar.from_spec({"timezone": "America/New_York", "holiday_country": "US"})
    assert ny == US


def test_calendars_are_hashable_and_equal_by_value():
    assert hash(BusinessCalendar.standard()) == hash(DEFAULT_CALENDAR)
    assert len({BusinessCalendar.standard(), DEFAULT_CALENDAR, US}) == 2


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"timezone": 5}, "timezone"),
        ({"holiday_countries": "PL"}, "holiday_countries"),
        ({"hours": {"mon2": ["09:00-17:00"]}}, "hours.mon2"),
        ({"hours": {"tue": ["9-17"]}}, "hours.tue[0]"),
        ({"hours": {"tue": ["09:00-12:00", "25:00-26:00"]}}, "hours.tue[1]"),
        ({"hours": {"tue": ["17:00-09:00"]}}, "hours.tue[0]"),
        ({"hours": {"tue": ["09:00-09:00"]}}, "hours.tue[0]"),
        ({"hours": {"tue": ["08:00-12:00", "11:00-17:00"]}}, "hours.tue"),
        ({"hours": {"wed": 9}}, "hours.wed"),
        ({"hours": {}}, "weekly_hours"),
        ({"hours": ["09:00-17:00"]}, "hours"),
        ({"holiday_country": "XX"}, "holiday_country"),
        ({"holiday_country": "US-ZZ"}, "holiday_country"),
        ({"extra_holidays": ["2026-02-30"]}, "extra_holidays[0]"),
        ({"extra_holidays": "2026-12-24"}, "extra_holidays"),
    ],
)
def test_from_spec_errors_name_the_bad_key(spec: dict, field: str):
    with pytest.raises(CalendarSpecError) as error:
        BusinessCalendar.from_spec(spec)
    assert error.value.field == field
    assert str(error.value).startswith(f"{field}: ")
    assert isinstance(error.value, ValueError)


def test_constructor_rejects_overlapping_and_inverted_intervals():
    with pytest.raises(CalendarSpecError, match=r"weekly_hours\[0\]: intervals overlap"):
        BusinessCalendar("UTC", {0: ((time(9), time(12)), (time(11), time(17)))})
    with pytest.raises(CalendarSpecError, match=r"weekly_hours\[0\]\[0\]"):
        BusinessCalendar("UTC", {0: ((time(17), time(9)),)})
    with pytest.raises(CalendarSpecError, match=r"weekly_hours\[7\]"):
        BusinessCalendar("UTC", {7: ((time(9), time(17)),)})


def test_weekly_hours_cannot_be_mutated_after_construction():
    with pytest.raises(TypeError):
        DEFAULT_CALENDAR.weekly_hours[5] = ((time(9), time(17)),)  # type: ignore[index]


# --- properties ------------------------------------------------------------------------

CALENDARS = st.sampled_from([DEFAULT_CALENDAR, SPLIT, US, NIGHT, ALWAYS, SANTIAGO])
INSTANTS = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
# Extra weight on the weeks around the 2026 Warsaw, US and Chile clock changes.
DST_INSTANTS = st.sampled_from(
    [
        datetime(2026, 3, 26),
        datetime(2026, 10, 22),
        datetime(2026, 3, 6),
        datetime(2026, 10, 30),
        datetime(2026, 4, 2),  # Santiago, back at midnight
        datetime(2026, 9, 3),  # Santiago, forward at midnight
    ]
).flatmap(
    lambda base: st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=5)).map(
        lambda offset: (base + offset).replace(tzinfo=UTC)
    )
)
STARTS = st.one_of(INSTANTS, DST_INSTANTS)
DURATIONS = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20))


@given(CALENDARS, STARTS, DURATIONS)
def test_business_time_between_inverts_add_business_time(cal, start, duration):
    due = add_business_time(cal, start, duration)
    assert business_time_between(cal, start, due) == duration


@given(CALENDARS, STARTS, DURATIONS, DURATIONS)
def test_add_business_time_is_monotonic_in_duration(cal, start, d1, d2):
    shorter, longer = sorted((d1, d2))
    assert start <= add_business_time(cal, start, shorter) <= add_business_time(cal, start, longer)


@given(CALENDARS, STARTS, DURATIONS.filter(lambda d: d > timedelta(0)))
def test_a_positive_duration_ends_inside_working_hours(cal, start, duration):
    due = add_business_time(cal, start, duration)
    # Intervals are half-open, so the due instant may be a closing time but the moment
    # just before it is always working time.
    assert is_open(cal, due - timedelta(microseconds=1))


@given(CALENDARS, STARTS, STARTS, STARTS)
def test_business_time_between_adds_up_and_never_exceeds_real_time(cal, a, b, c):
    a, b, c = sorted((a, b, c))
    assert business_time_between(cal, a, b) + business_time_between(cal, b, c) == (
        business_time_between(cal, a, c)
    )
    assert business_time_between(cal, a, c) <= c - a


@given(STARTS, STARTS)
def test_always_open_business_time_is_real_time(a, b):
    assert business_time_between(ALWAYS, a, b) == max(b - a, timedelta(0))


@settings(max_examples=50)
@given(CALENDARS, STARTS, st.integers(min_value=0, max_value=30), st.integers(0, 30))
def test_add_business_days_is_monotonic_and_lands_on_a_business_day(cal, start, n1, n2):
    fewer, more = sorted((n1, n2))
    early, late = add_business_days(cal, start, fewer), add_business_days(cal, start, more)
    assert start <= early <= late
    if more:
        assert is_open(cal, late) or is_open(cal, late - timedelta(microseconds=1))
