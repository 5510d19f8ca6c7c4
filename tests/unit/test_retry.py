"""Retry timing: exponential backoff for internal loops and the Standard Webhooks delivery schedule."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from leadflow.retry import WEBHOOK_SCHEDULE, exponential_backoff, webhook_retry_delay

MINUTE, HOUR = 60, 3600


class Extreme(random.Random):
    """A random source that always draws the lower or the upper end of the range."""

    def __init__(self, upper: bool) -> None:
        super().__init__(0)
        self.upper = upper

    def uniform(self, a: float, b: float) -> float:
        return b if self.upper else a


# --- exponential backoff ---------------------------------------------------------------


def test_backoff_starts_at_the_base_and_doubles():
    assert [exponential_backoff(n) for n in range(1, 6)] == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2])


def test_backoff_is_capped():
    assert exponential_backoff(6) == pytest.approx(6.4)
    assert exponential_backoff(7) == 10.0
    assert exponential_backoff(50) == 10.0


def test_backoff_takes_its_base_and_cap():
    assert [exponential_backoff(n, base=1.0, cap=5.0) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    assert exponential_backoff(1, base=3.0, cap=2.0) == 2.0


@pytest.mark.parametrize("attempt", [0, -1, -100])
def test_backoff_before_the_first_retry_is_the_base(attempt: int):
    assert exponential_backoff(attempt) == pytest.approx(0.2)


def test_backoff_of_a_huge_attempt_number_neither_overflows_nor_exceeds_the_cap():
    assert exponential_backoff(10**9, base=1.0, cap=1e300) == 2.0**20


@given(
    st.integers(min_value=-5, max_value=10_000),
    st.integers(min_value=-5, max_value=10_000),
    st.floats(min_value=0.001, max_value=100),
    st.floats(min_value=0.001, max_value=1000),
)
def test_backoff_never_shrinks_and_stays_between_base_and_cap(a, b, base, cap):
    first, later = sorted((a, b))
    low, high = exponential_backoff(first, base, cap), exponential_backoff(later, base, cap)
    assert low <= high <= cap
    assert low >= min(base, cap)


# --- the Standard Webhooks schedule -----------------------------------------------------


def test_schedule_is_the_standard_webhooks_one():
    assert WEBHOOK_SCHEDULE == (
        0,
        5,
        5 * MINUTE,
        30 * MINUTE,
        2 * HOUR,
        5 * HOUR,
        10 * HOUR,
        10 * HOUR,
    )


@pytest.mark.parametrize("tries", range(1, len(WEBHOOK_SCHEDULE)))
def test_the_next_try_follows_the_schedule_within_ten_percent(tries: int):
    low = webhook_retry_delay(tries, rng=Extreme(upper=False))
    high = webhook_retry_delay(tries, rng=Extreme(upper=True))
    assert low == pytest.approx(0.9 * WEBHOOK_SCHEDULE[tries])
    assert high == pytest.approx(1.1 * WEBHOOK_SCHEDULE[tries])


def test_the_first_try_is_immediate_whatever_the_jitter():
    assert webhook_retry_delay(0, rng=Extreme(upper=True)) == 0
    assert webhook_retry_delay(0, rng=Extreme(upper=False)) == 0


@pytest.mark.parametrize("tries", [8, 9, 100])
def test_after_eight_tries_the_delivery_is_exhausted(tries: int):
    assert webhook_retry_delay(tries) is None
    assert webhook_retry_delay(tries, retry_after=5) is None


def test_a_delivery_that_always_fails_gets_eight_tries_over_about_a_day():
    tries, elapsed = 1, 0.0  # the immediate first try
    while (delay := webhook_retry_delay(tries, rng=random.Random(7))) is not None:
        elapsed += delay
        tries += 1
    assert tries == 8
    assert 0.9 * 99_305 <= elapsed <= 1.1 * 99_305  # 5 s + 5 min + 30 min + 2 h + 5 h + 10 h + 10 h


@given(st.integers(min_value=1, max_value=7), st.integers(min_value=0, max_value=2**32))
def test_jitter_stays_within_ten_percent_for_any_random_draw(tries, seed):
    delay = webhook_retry_delay(tries, rng=random.Random(seed))
    nominal = WEBHOOK_SCHEDULE[tries]
    assert 0.9 * nominal <= delay <= 1.1 * nominal


def test_jitter_spreads_deliveries_that_failed_together():
    rng = random.Random(42)
    delays = [webhook_retry_delay(2, rng=rng) for _ in range(200)]
    assert len(set(delays)) == 200
    assert min(delays) < 290 and max(delays) > 310  # both sides of 5 min are used


def test_the_same_seed_gives_the_same_delay():
    assert webhook_retry_delay(3, rng=random.Random(1)) == webhook_retry_delay(
        3, rng=random.Random(1)
    )


def test_without_an_rng_the_delay_is_still_jittered_within_bounds():
    delays = {webhook_retry_delay(4) for _ in range(50)}
    assert all(0.9 * 2 * HOUR <= d <= 1.1 * 2 * HOUR for d in delays)
    assert len(delays) > 1


def test_a_longer_retry_after_is_honoured_exactly():
    assert webhook_retry_delay(1, retry_after=120, rng=Extreme(upper=True)) == 120
    assert webhook_retry_delay(0, retry_after=30) == 30


def test_a_shorter_retry_after_does_not_hurry_the_schedule():
    delay = webhook_retry_delay(3, retry_after=10, rng=Extreme(upper=False))
    assert delay == pytest.approx(0.9 * 30 * MINUTE)
