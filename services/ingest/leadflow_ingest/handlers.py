"""Kafka intake: platforms that publish lead JSON to `leads.inbound` get the same treatment as HTTP."""

from __future__ import annotations

import orjson
from aiokafka import ConsumerRecord
from leadflow.consumer import Reject, Subscription
from leadflow.contracts.events import TOPIC_INBOUND
from leadflow.service import Runtime
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_ingest.intake import Writer, accept_lead
from leadflow_ingest.schemas import LeadIn


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def lead_from_kafka(record: ConsumerRecord, session: AsyncSession) -> None:
        try:
            body = LeadIn.model_validate(orjson.loads(record.value or b""))
        except (ValidationError, orjson.JSONDecodeError, TypeError) as exc:
            raise Reject(f"invalid lead payload: {exc}") from exc
        source = (record.key or b"kafka").decode(errors="replace")
        await accept_lead(
            session,
            rt.outbox,
            rt.policy,
            body,
            writer=Writer(key_name=f"kafka:{source}"),
            now=rt.clock.now(),
        )

    return [
        Subscription("inbound", raw={TOPIC_INBOUND: lead_from_kafka})
    ]
