"""When a sign-in may be tried: failures slow each next answer and then lock the account or the
client address for a while. Pure functions of counts and instants.

An account is counted by the e-mail typed, whether or not such an account exists, so that a
lock is no answer to "is this a Leadflow account?"."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

# Seconds the answer to the n-th failure in a row waits (the first barely, then doubling).
PENALTY_BASE = 0.25
PENALTY_MAX = 2.0


@dataclass(frozen=True)
class Failures:
    """Failed sign-ins of one account or one address, counted since the last quiet spell."""

    count: int = 0
    last_failure_at: datetime | None = None
    locked_until: datetime | None = None


@dataclass(frozen=True)
class Limits:
    max_failures: int
    lock: timedelta


def locked(failures: Failures, now: datetime) -> datetime | None:
    """Until when sign-ins are refused, or None."""
    if failures.locked_until is not None and failures.locked_until > now:
        return failures.locked_until
    return None


def after_failure(failures: Failures, now: datetime, limits: Limits) -> Failures:
    """The count after one more failure: failures older than the lock time are forgotten, and
    reaching the limit locks for the lock time."""
    stale = failures.last_failure_at is None or now - failures.last_failure_at >= limits.lock
    expired = failures.locked_until is not None and failures.locked_until <= now
    count = 1 if stale or expired else failures.count + 1
    locked_until = now + limits.lock if count >= limits.max_failures else None
    return Failures(count, now, locked_until)


def penalty_seconds(count: int) -> float:
    """How long the answer to the `count`-th failure in a row waits."""
    if count <= 0:
        return 0.0
    return min(PENALTY_BASE * 2 ** (count - 1), PENALTY_MAX)
