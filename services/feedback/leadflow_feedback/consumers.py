"""Feedback's subscriptions: every event of the other services that its read model of each lead
and the leads' timelines are kept from; and what sales tools reported back through ingest
(`lead.sales_reported`), applied as the API applies attempts and status changes."""

from __future__ import annotations

from leadflow.consumer import Received, Subscription
from leadflow.contracts.events import (
    LeadActivity,
    LeadCreated,
    LeadErased,
    LeadMql,
    LeadRouted,
    LeadSalesReported,
    LeadScored,
    LeadUpdated,
    SlaBreached,
    SlaCorrectivePlanRequired,
    SlaEscalated,
    SlaMet,
    SlaWarning,
    TeamDirectory,
    WebhookDeadLettered,
)
from leadflow.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback import use_cases
from leadflow_feedback.plans import use_cases as plans
from leadflow_feedback.success import use_cases as success


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def apply(session: AsyncSession, received: list[Received]) -> None:
        await use_cases.apply_events(rt, session, received)

    async def apply_reports(session: AsyncSession, received: list[Received]) -> None:
        await use_cases.apply_sales_reports(rt, session, received)

    async def apply_directories(session: AsyncSession, received: list[Received]) -> None:
        await use_cases.keep_directories(session, received)

    async def open_plans(session: AsyncSession, received: list[Received]) -> None:
        await plans.open_plans(rt, session, received)

    async def record_usage(session: AsyncSession, received: list[Received]) -> None:
        await success.record_usage(rt, session, received)

    return [
        Subscription(
            "lifecycle",
            takes=(
                LeadCreated,
                LeadUpdated,
                LeadActivity,
                LeadErased,
                LeadScored,
                LeadMql,
                LeadRouted,
                WebhookDeadLettered,
                SlaWarning,
                SlaEscalated,
                SlaMet,
                SlaBreached,
            ),
            apply=apply,
        ),
        Subscription("sales-reports", takes=(LeadSalesReported,), apply=apply_reports),
        # routing's team directories: the reps the planner's sales capacity is counted from
        Subscription("directory", takes=(TeamDirectory,), apply=apply_directories),
        # sla-timer's period judgement: a party owing a corrective plan opens its plan record
        Subscription("corrective-plans", takes=(SlaCorrectivePlanRequired,), apply=open_plans),
        # ingest's product usage: the key feature's first use activates a won customer
        Subscription("product-usage", takes=(LeadActivity,), apply=record_usage),
    ]
