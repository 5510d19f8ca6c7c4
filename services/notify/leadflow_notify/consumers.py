"""Notify's subscription: every event type of every Leadflow topic, in one unit of work per batch."""

from __future__ import annotations

from leadflow.consumer import Received, Subscription
from leadflow.contracts.events import PAYLOAD_TYPES
from leadflow.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_notify import use_cases


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def take_events(session: AsyncSession, received: list[Received]) -> None:
        await use_cases.take_events(rt, session, received)

    return [Subscription("events", takes=tuple(PAYLOAD_TYPES.values()), apply=take_events)]
