"""Feedback running in-process on a database and topics of its own, fed the other services'
events through the real broker as in production, and read back through its lifecycle API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
from leadflow.contracts.events import CloudEvent, Payload, make_event
from leadflow.db import Database
from leadflow.kafka import make_producer
from support.harness import TestStack, eventually, service_client


@asynccontextmanager
async def feedback_fed_by_events(
    stack: TestStack, client_id: str, **settings_changes
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a running feedback, once ready; `client.publish(payload, at, source)` sends
    the event to its topic keyed by the lead, `client.settings` are the service's and
    `client.db` is its database."""
    settings = await stack.isolated_settings(**settings_changes)
    producer = make_producer(settings, client_id)
    await producer.start()
    db = Database(settings.database_url)
    try:
        async with service_client("feedback", settings) as client:
            await eventually(lambda: _ready(client), timeout=90)

            async def publish(
                payload: Payload, at: datetime, source: str, event_id: uuid.UUID | None = None
            ) -> CloudEvent:
                event = make_event(payload, source=source, time=at, event_id=event_id)
                await producer.send_and_wait(
                    settings.topic_prefix + payload.topic,
                    event.to_bytes(),
                    key=str(payload.lead_id).encode(),
                )
                return event

            client.publish = publish
            client.settings = settings
            client.db = db
            yield client
    finally:
        await db.dispose()
        await producer.stop()


async def _ready(client: httpx.AsyncClient) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def status_of(client: httpx.AsyncClient, lead_id) -> str | None:
    """The lead's status in feedback; None while feedback has not heard of it."""
    response = await client.get(f"/v1/leads/{lead_id}/lifecycle")
    return response.json()["status"] if response.status_code == 200 else None


async def status_is(client: httpx.AsyncClient, lead_id, status: str) -> bool:
    return await status_of(client, lead_id) == status
