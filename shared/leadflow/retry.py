"""Retry timing, decided once: exponential backoff for internal loops, the Standard Webhooks schedule."""

from __future__ import annotations

import random

# Standard Webhooks: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
WEBHOOK_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


def exponential_backoff(attempt: int, base: float = 0.2, cap: float = 10.0) -> float:
    """Delay before retry number `attempt` (1-based): base·2^(attempt-1), capped."""
    return min(base * 2 ** min(max(attempt - 1, 0), 20), cap)


def webhook_retry_delay(
    attempts_made: int,
    retry_after: float | None = None,
    rng: random.Random | None = None,
    schedule: tuple[float, ...] = WEBHOOK_SCHEDULE,
) -> float | None:
    """Seconds until the next delivery try after `attempts_made` tries, or None when exhausted.

    Jitter of ±10 % spreads retries of many deliveries that failed together; a receiver's
    `Retry-After` is honoured when it asks for longer than the schedule.
    """
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made]
    delay *= 1 + (rng or random).uniform(-0.1, 0.1)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay
