"""What notify does: keep each lead's context from the events it consumes, queue each event for
every endpoint that subscribes to it, deliver the queue over Standard Webhooks (retries, dead
letters, replay), erase a lead, and the endpoint requests.

A unit of work's events are taken as a set: the contexts of their leads are read (and locked)
with one statement and the enabled endpoints with another; every event then updates its lead's
context and is matched against the endpoints in arrival order; the contexts and the deliveries
are written with one statement each. A delivery is unique per endpoint and event, so an event
consumed again (a replay, a restart) queues nothing twice."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from leadflow import metrics
from leadflow.consumer import Received
from leadflow.contracts.events import LeadErased, WebhookDeadLettered
from leadflow.db import lock_leads, touch
from leadflow.errors import LeadGone, NotFound, Unprocessable
from leadflow.retry import WEBHOOK_SCHEDULE, webhook_retry_delay
from leadflow.service import Runtime
from leadflow.webhooks import (
    UnsafeTarget,
    check_target,
    check_url,
    guarded_client,
    new_secret,
    signature_headers,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_notify import store
from leadflow_notify.domain.context import body, facts, updated
from leadflow_notify.domain.subscriptions import subscribes
from leadflow_notify.models import DELIVERIES_TAG
from leadflow_notify.schemas import DeliveryOut, EndpointIn, EndpointOut, ReplayOut

log = logging.getLogger(__name__)
DEAD_LETTERED = WebhookDeadLettered.type

# --- events in ----------------------------------------------------------------------------


async def take_events(rt: Runtime, session: AsyncSession, received: list[Received]) -> None:
    """Update the leads' contexts and queue the events for their subscribers, in arrival
    order; an erasure takes effect at once (later events of the lead queue nothing)."""
    lead_ids = [item.payload.lead_id for item in received]
    # Serialised with other consumers' work on the same leads (an erasure, another topic).
    await lock_leads(session, "notify", lead_ids)
    known = await store.contexts(session, lead_ids)
    endpoints = await store.enabled_endpoints(session)
    now = datetime.now(UTC)
    contexts: dict[uuid.UUID, dict[str, Any]] = {}
    erased = {lead_id for lead_id, (_, gone) in known.items() if gone}
    queued: list[dict[str, Any]] = []
    for item in received:
        payload, event = item.payload, item.event
        lead_id = payload.lead_id
        if lead_id in erased:
            continue
        context = contexts.get(lead_id) or (known[lead_id][0] if lead_id in known else {})
        if isinstance(payload, LeadErased):
            await store.erase_lead(session, lead_id, context, now)
            await store.forget_lead_events(session, [lead_id])
            contexts.pop(lead_id, None)
            erased.add(lead_id)
            continue
        context = updated(context, payload)
        contexts[lead_id] = context
        seen = facts(context, payload)
        wanted = [
            endpoint.id
            for endpoint in endpoints
            if subscribes(endpoint, event.type, seen)
            # a dead letter is never sent to the endpoint that refused the delivery
            and not (event.type == DEAD_LETTERED and seen.get("endpoint_id") == str(endpoint.id))
        ]
        if wanted:
            raw = orjson.dumps(body(event.type, event.time.isoformat(), context, payload))
            queued += [
                _delivery(endpoint_id, event.id, event.type, lead_id, raw, now)
                for endpoint_id in wanted
            ]
    await store.write_events(
        session,
        [
            {"lead_id": lead_id, "context": context, "erased": False, "updated_at": now}
            for lead_id, context in sorted(contexts.items())
        ],
        queued,
    )
    if queued:
        touch(session, DELIVERIES_TAG)


def _delivery(
    endpoint_id: uuid.UUID,
    event_id: uuid.UUID,
    event_type: str,
    lead_id: uuid.UUID,
    raw: bytes,
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "endpoint_id": endpoint_id,
        "event_id": event_id,
        "lead_id": lead_id,
        "event_type": event_type,
        "body": raw,
        "state": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "last_status": None,
        "last_error": None,
        "created_at": now,
        "delivered_at": None,
    }


# --- webhook deliveries -------------------------------------------------------------------

LEASE = timedelta(seconds=60)  # a claimed delivery is retried if its worker dies mid-send
CLAIM = 50  # deliveries claimed (and sent in parallel) at a time


@dataclass(frozen=True)
class Sent:
    """The outcome of one POST."""

    row: Row
    status: int | None
    error: str | None
    response: httpx.Response | None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


async def claim_due(rt: Runtime, limit: int = CLAIM) -> list[Row]:
    now = datetime.now(UTC)
    async with rt.db.unit_of_work() as session:
        return list(await store.claim_due(session, now, now + LEASE, limit))


async def send_one(client: httpx.AsyncClient, row: Row) -> Sent:
    """One signed POST, without touching the database. The client refuses, when it connects,
    an address that is not public (UnsafeTarget)."""
    status: int | None = None
    error: str | None = None
    response: httpx.Response | None = None
    if not row.enabled:
        error = "endpoint disabled"
    else:
        try:
            check_url(row.url)
            headers = signature_headers(list(row.secrets), str(row.id), row.body)
            response = await client.post(row.url, content=row.body, headers=headers)
            status = response.status_code
        except UnsafeTarget as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
    return Sent(row, status, error, response)


async def record_outcomes(rt: Runtime, sent: list[Sent]) -> None:
    """Write the outcomes of one claim in one transaction: the successes in one UPDATE, each
    failure (rare) with its own retry time, dead letter or disabled endpoint."""
    now = datetime.now(UTC)
    delivered = [s.row.id for s in sent if s.delivered]
    outcomes: list[tuple[Sent, str]] = []  # the failures, for the log
    async with rt.db.unit_of_work() as session:
        if delivered:
            statuses = {s.row.id: s.status for s in sent if s.delivered and s.status != 200}
            await store.mark_delivered(session, delivered, statuses, now)
        for s in sent:
            if s.delivered:
                continue
            row, status, error = s.row, s.status, s.error
            attempts = row.attempts + 1
            values: dict[str, Any] = {
                "attempts": attempts,
                "last_status": status,
                "last_error": error,
            }
            if status == 410:  # the receiver says this endpoint is gone for good
                await store.disable_endpoint(session, row.endpoint_id)
            schedule = rt.settings.webhook_retry_schedule or WEBHOOK_SCHEDULE
            delay = (
                None
                if status == 410
                else webhook_retry_delay(attempts, _retry_after(s.response), schedule=schedule)
            )
            if delay is None:
                values.update(state="dead", next_attempt_at=None)
                await rt.outbox.emit(
                    session,
                    WebhookDeadLettered(
                        lead_id=row.lead_id,
                        delivery_id=row.id,
                        endpoint_id=row.endpoint_id,
                        event_type=row.event_type,
                        attempts=attempts,
                        last_error=error or f"HTTP {status}",
                    ),
                )
                outcome = "dead_lettered"
            else:
                values.update(next_attempt_at=now + timedelta(seconds=delay))
                outcome = "retry"
            await store.record_attempt(session, row.id, **values)
            outcomes.append((s, outcome))
    failed = {s.row.id: outcome for s, outcome in outcomes}
    for s in sent:
        outcome = "sent" if s.delivered else failed[s.row.id]
        metrics.notifications.labels("webhook", s.row.event_type, outcome).inc()
    if delivered:
        metrics.webhook_deliveries.labels("delivered").inc(len(delivered))
    for s, outcome in outcomes:
        metrics.webhook_deliveries.labels(outcome).inc()
        log.warning(
            "webhook delivery failed",
            extra={
                "delivery_id": str(s.row.id),
                "status": s.status,
                "error": s.error,
                "outcome": outcome,
            },
        )


async def run_deliveries(rt: Runtime) -> None:
    """Worker: claim due deliveries (SKIP LOCKED, so any number of instances can run) and send them."""
    # The first dead letter of this process must be visible to increase(): start the series at 0.
    metrics.webhook_deliveries.labels("dead_lettered")
    wake = asyncio.Event()
    rt.db.on_commit(DELIVERIES_TAG, wake.set)  # an event or a replay queued some
    client = guarded_client(
        allow_private=lambda: rt.settings.webhook_allow_private,
        timeout=rt.settings.webhook_read_timeout,
    )
    async with client:
        while not rt.stop:
            wake.clear()
            rows = await claim_due(rt)
            if rows:
                sent = await asyncio.gather(*(send_one(client, row) for row in rows))
                await record_outcomes(rt, list(sent))
                continue
            await rt.stop.pause(0.5, wake)


async def replay(rt: Runtime, delivery_id: uuid.UUID) -> ReplayOut:
    """Send a delivery again (dead-lettered, or to repeat it); not for an erased lead."""
    async with rt.db.unit_of_work() as session:
        lead_id = await store.delivery_lead(session, delivery_id)
        if lead_id is None:
            raise NotFound(f"delivery {delivery_id} not found")
        if await store.is_erased(session, lead_id):
            raise LeadGone(lead_id, field="delivery_id")
        await store.replay_delivery(session, delivery_id, datetime.now(UTC))
        touch(session, DELIVERIES_TAG)
    return ReplayOut(delivery_id=delivery_id, state="pending")


async def list_deliveries(
    rt: Runtime, lead_id: uuid.UUID | None, state: str | None
) -> list[DeliveryOut]:
    async with rt.db.unit_of_work() as session:
        rows = await store.list_deliveries(session, lead_id, state)
    return [DeliveryOut.model_validate(r._asdict()) for r in rows]


# --- endpoints ----------------------------------------------------------------------------


async def create_endpoint(rt: Runtime, body: EndpointIn) -> EndpointOut:
    url = str(body.url)
    try:
        await check_target(url, allow_private=rt.settings.webhook_allow_private)
    except UnsafeTarget as exc:
        raise Unprocessable(str(exc), errors=[{"field": "url", "message": str(exc)}]) from exc
    endpoint_id = uuid.uuid4()
    secret = body.secret or new_secret()
    filters = body.filters.stored() if body.filters else None
    async with rt.db.unit_of_work() as session:
        await store.add_endpoint(
            session, endpoint_id, url=url, secrets=[secret], event_types=body.event_types,
            team_id=body.team_id, filters=filters,
        )  # fmt: skip
    return EndpointOut(
        id=endpoint_id,
        url=url,
        event_types=body.event_types,
        team_id=body.team_id,
        filters=filters,
        enabled=True,
        secret=secret,
    )


async def rotate_secret(rt: Runtime, endpoint_id: uuid.UUID, secret: str | None) -> EndpointOut:
    """Start a rotation: deliveries are signed with the new secret and the previous one (two
    signatures) until the previous one is dropped, so the receiver can switch without
    downtime. Re-enables an endpoint disabled by a 410."""
    secret = secret or new_secret()
    async with rt.db.unit_of_work() as session:
        row = await store.rotate_secret(session, endpoint_id, secret)
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return EndpointOut(**row._asdict(), secret=secret)


async def finish_rotation(rt: Runtime, endpoint_id: uuid.UUID) -> None:
    """End a rotation: only the newest secret signs from now on."""
    async with rt.db.unit_of_work() as session:
        found = await store.drop_previous_secret(session, endpoint_id)
    if not found:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")


async def list_endpoints(rt: Runtime) -> list[EndpointOut]:
    async with rt.db.unit_of_work() as session:
        rows = await store.all_endpoints(session)
    return [EndpointOut.model_validate(r._asdict()) for r in rows]
