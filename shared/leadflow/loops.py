"""Cooperative shutdown for background loops: a loop finishes its current unit of work and
returns, rather than being cancelled in the middle of a database transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)


class Stop:
    """Set once at shutdown; loops test it between units of work and sleep through `pause`."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    async def unless_stopped(self, work: Awaitable[T]) -> T | None:
        """Await `work`, abandoning (cancelling) it if shutdown comes first; None then."""
        task = asyncio.ensure_future(work)
        stopper = asyncio.ensure_future(self._event.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return None

    async def every(
        self, seconds: float, work: Callable[[], Awaitable[object]], *, failed: str
    ) -> None:
        """Run `work`, then again every `seconds`, until stopping. A pass that fails is logged
        as `failed` with its error and keeps what the last good one made; the next pass tries
        again."""
        while not self:
            try:
                await work()
            except Exception as exc:
                log.warning(failed, extra={"error": repr(exc)})
            await self.pause(seconds)

    async def pause(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        """Sleep up to `seconds`; return early when stopping or when `wake` is set."""
        if self._event.is_set():
            return
        waiters = [asyncio.ensure_future(self._event.wait())]
        if wake is not None:
            waiters.append(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(
                waiters, timeout=max(seconds, 0), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()
