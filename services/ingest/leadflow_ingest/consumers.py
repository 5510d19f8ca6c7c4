"""Kafka intake of ingest: platforms that publish lead JSON to `leads.inbound` get the same
treatment as HTTP; the CRM records notify linked to leads (`lead.crm_linked`), so that what a CRM
reports about them is matched to their leads; the connectors changed through notify's API
(`connectors.published`)."""

from __future__ import annotations

from functools import partial

from aiokafka import ConsumerRecord
from leadflow import current_connectors
from leadflow.consumer import Subscription
from leadflow.contracts.events import TOPIC_INBOUND, LeadCrmLinked
from leadflow.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_ingest.use_cases import accept_published_lead, link_crm_records


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def lead_from_kafka(record: ConsumerRecord, session: AsyncSession) -> None:
        await accept_published_lead(
            session, rt.outbox, rt.policy, record.value, record.key, now=rt.clock.now()
        )

    return [
        Subscription("inbound", raw={TOPIC_INBOUND: lead_from_kafka}, urgent=True),
        Subscription("crm-links", takes=(LeadCrmLinked,), apply=partial(link_crm_records, rt)),
        current_connectors.subscription(rt.spec.metadata),
    ]
