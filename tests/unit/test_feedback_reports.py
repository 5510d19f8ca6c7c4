"""Pure parts of feedback's reports: periods, percentiles, source groups, first response."""

import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from leadflow.contracts.policy import default_policy
from leadflow_feedback.domain.reports import (
    LeadFacts,
    ReportInputError,
    first_response,
    p90,
    periods_between,
    source_group,
)

WAW = ZoneInfo("Europe/Warsaw")
POLICY = default_policy()


def test_weeks_start_on_monday_local_midnight():
    [week] = periods_between(date(2026, 3, 4), date(2026, 3, 5), "week", WAW)
    assert week.start == datetime(2026, 3, 2, tzinfo=WAW)
    assert week.end == datetime(2026, 3, 9, tzinfo=WAW)


def test_months_cover_the_range_and_may_look_back():
    periods = periods_between(date(2026, 11, 15), date(2027, 1, 2), "month", WAW, before=1)
    starts = [p.start.date() for p in periods]
    assert starts == [date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1)]


def test_a_reversed_range_names_to():
    with pytest.raises(ReportInputError) as refused:
        periods_between(date(2026, 3, 9), date(2026, 3, 1), "week", WAW)
    assert refused.value.field == "to"


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=50))
def test_p90_is_a_value_with_at_least_90_percent_at_or_below(values):
    value = p90(values)
    assert value in values
    assert sum(1 for v in values if v <= value) >= 0.9 * len(values)


def test_p90_by_nearest_rank():
    assert p90([1800, 1800, 3600, 3600, 10800]) == 10800
    assert p90(list(range(1, 11))) == 9
    assert p90([]) is None


def test_source_groups_from_medium():
    groups = ["paid", "content", "events"]
    assert source_group({"medium": "CPC"}, groups) == "paid"
    assert source_group({"medium": "webinar"}, groups) == "events"
    assert source_group({"medium": "content"}, groups) == "content"
    assert source_group({"medium": "fax"}, groups) == "other"
    assert source_group(None, groups) == "other"


def test_first_response_on_business_hours():
    friday = datetime(2026, 3, 6, 16, 30, tzinfo=WAW)
    lead = LeadFacts(
        uuid.uuid4(),
        "working",
        channel="inbound",
        routed_at=friday,
        first_attempt_at=friday + timedelta(days=3),
    )  # fmt: skip  Monday 16:30
    response = first_response(lead, POLICY, now=friday + timedelta(days=10))
    assert response.seconds == 8 * 3600  # Fri 16:30–17:00 + Mon 09:00–16:30
    assert (response.within, response.breached) == (False, True)


def test_an_uncontacted_lead_is_pending_until_due_then_breached():
    friday = datetime(2026, 3, 6, 16, 30, tzinfo=WAW)
    lead = LeadFacts(uuid.uuid4(), "routed", channel="inbound", routed_at=friday)
    pending = first_response(lead, POLICY, now=datetime(2026, 3, 9, 10, 29, tzinfo=WAW))
    assert (pending.within, pending.breached) == (None, False)
    late = first_response(lead, POLICY, now=datetime(2026, 3, 9, 10, 30, tzinfo=WAW))
    assert (late.within, late.breached) == (False, True)
