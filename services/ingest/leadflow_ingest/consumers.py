"""Kafka intake of ingest: platforms that publish lead JSON to `leads.inbound` get the same
treatment as HTTP."""

from __future__ import annotations

from aiokafka import ConsumerRecord
from leadflow.consumer import Subscription
from leadflow.contracts.events import TOPIC_INBOUND
from leadflow.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_ingest.use_cases import accept_published_lead


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def lead_from_kafka(record: ConsumerRecord, session: AsyncSession) -> None:
        await accept_published_lead(
            session, rt.outbox, rt.policy, record.value, record.key, now=rt.clock.now()
        )

    return [Subscription("inbound", raw={TOPIC_INBOUND: lead_from_kafka})]
