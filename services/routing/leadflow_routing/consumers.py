"""Routing's subscriptions: which events it takes, and the use case each batch of them runs."""

from __future__ import annotations

from leadflow.consumer import Received, Subscription
from leadflow.contracts.events import (
    LeadErased,
    LeadMql,
    LeadStatusChanged,
    SlaBreached,
    SlaEscalated,
    SlaEvent,
    SlaMet,
    SlaWarning,
)
from leadflow.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_routing import use_cases


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def route_mqls(session: AsyncSession, received: list[Received[LeadMql]]) -> None:
        await use_cases.route_batch(rt, session, [item.payload for item in received])

    async def follow_clocks(session: AsyncSession, received: list[Received[SlaEvent]]) -> None:
        await use_cases.follow_clocks(rt, session, [item.payload for item in received])

    async def close_open_work(
        session: AsyncSession, received: list[Received[LeadStatusChanged]]
    ) -> None:
        await use_cases.close_open_work(session, [item.payload for item in received])

    async def erase(session: AsyncSession, received: list[Received[LeadErased]]) -> None:
        await use_cases.erase(session, [item.payload.lead_id for item in received], rt.clock.now())

    return [
        Subscription("mql", takes=(LeadMql,), apply=route_mqls, urgent=True),
        Subscription(
            "sla", takes=(SlaWarning, SlaBreached, SlaEscalated, SlaMet), apply=follow_clocks
        ),
        Subscription("feedback", takes=(LeadStatusChanged,), apply=close_open_work),
        Subscription("erasure", takes=(LeadErased,), apply=erase),
    ]
