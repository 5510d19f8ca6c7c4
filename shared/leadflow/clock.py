"""The one clock every Leadflow process asks, real or simulated (shared anchor, fixed speed)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta


class Clock:
    """Wall time, or simulated time running `speed` times faster from `start`.

    All processes of a stack share the same `anchor` (the real UNIX time at which the
    simulated clock read `start`), so they agree on the simulated instant.
    """

    def __init__(
        self, start: datetime | None = None, speed: float = 1.0, anchor: float | None = None
    ) -> None:
        if start is not None and start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        self.start = start
        self.speed = speed if start is not None else 1.0
        self.anchor = anchor if anchor is not None else time.time()

    @property
    def simulated(self) -> bool:
        return self.start is not None

    def now(self) -> datetime:
        if self.start is None:
            return datetime.now(UTC)
        return self.start + timedelta(seconds=(time.time() - self.anchor) * self.speed)

    def real_seconds(self, simulated: timedelta) -> float:
        """How long to really wait for `simulated` time to pass."""
        return max(simulated.total_seconds(), 0.0) / self.speed

    async def sleep_until(self, instant: datetime, *, cap: float | None = None) -> None:
        delay = self.real_seconds(instant - self.now())
        await asyncio.sleep(min(delay, cap) if cap is not None else delay)


def clock_from_settings(settings) -> Clock:
    return Clock(settings.clock_start, settings.clock_speed, settings.clock_anchor)
