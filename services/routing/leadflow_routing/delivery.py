"""Delivers queued webhooks to sales tools: signed, retried on the Standard Webhooks schedule."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa
from leadflow import metrics
from leadflow.contracts.events import WebhookDeadLettered
from leadflow.db import touch
from leadflow.retry import WEBHOOK_SCHEDULE, webhook_retry_delay
from leadflow.service import Runtime
from leadflow.webhooks import UnsafeTarget, check_url, guarded_client, signature_headers

from leadflow_routing.models import DELIVERIES_TAG, deliveries, webhook_endpoints

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=60)  # a claimed delivery is retried if its worker dies mid-send
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def _retry_after(response: httpx.Response | None) -> float | None:
    if response is None:
        return None
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


async def claim_due(rt: Runtime, limit: int = 50) -> list:
    d, e = deliveries.c, webhook_endpoints.c
    now = datetime.now(UTC)
    async with rt.db.unit_of_work() as session:
        rows = (
            await session.execute(
                sa.select(
                    d.id,
                    d.body,
                    d.attempts,
                    d.lead_id,
                    d.event_type,
                    d.endpoint_id,
                    e.url,
                    e.secrets,
                    e.enabled,
                )
                .join(webhook_endpoints, e.id == d.endpoint_id)
                .where(d.state == "pending", d.next_attempt_at <= now)
                .order_by(d.next_attempt_at)
                .limit(limit)
                .with_for_update(of=deliveries, skip_locked=True)
            )
        ).all()
        if rows:
            await session.execute(
                sa.update(deliveries)
                .where(d.id.in_([r.id for r in rows]))
                .values(next_attempt_at=now + LEASE)
            )
    return rows


async def send_one(rt: Runtime, client: httpx.AsyncClient, row) -> tuple:  # noqa: ANN001
    """One signed POST; returns (row, status, error, response) without touching the database.
    The client refuses, when it connects, an address that is not public (UnsafeTarget)."""
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
    return row, status, error, response


async def record_outcomes(rt: Runtime, sent: list[tuple]) -> None:
    """Write the outcomes of one claim in one transaction: the successes in one UPDATE, each
    failure (rare) with its own retry time, dead letter or disabled endpoint."""
    now = datetime.now(UTC)
    delivered = [row.id for row, status, _, _ in sent if status is not None and 200 <= status < 300]
    outcomes: list[tuple] = []  # (row, status, error, outcome) of the failures, for the log
    async with rt.db.unit_of_work() as session:
        if delivered:
            cases = _status_cases(sent)
            await session.execute(
                sa.update(deliveries)
                .where(deliveries.c.id.in_(delivered))
                .values(
                    state="delivered",
                    delivered_at=now,
                    next_attempt_at=None,
                    last_error=None,
                    last_status=sa.case(*cases, else_=200) if cases else 200,
                    attempts=deliveries.c.attempts + 1,
                )
            )
        for row, status, error, response in sent:
            if status is not None and 200 <= status < 300:
                continue
            attempts = row.attempts + 1
            values: dict = {"attempts": attempts, "last_status": status, "last_error": error}
            if status == 410:  # the receiver says this endpoint is gone for good
                await session.execute(
                    sa.update(webhook_endpoints)
                    .where(webhook_endpoints.c.id == row.endpoint_id)
                    .values(enabled=False, disabled_reason="receiver answered 410 Gone")
                )
            schedule = rt.settings.webhook_retry_schedule or WEBHOOK_SCHEDULE
            delay = (
                None
                if status == 410
                else webhook_retry_delay(attempts, _retry_after(response), schedule=schedule)
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
            await session.execute(
                sa.update(deliveries).where(deliveries.c.id == row.id).values(**values)
            )
            outcomes.append((row, status, error, outcome))
    if delivered:
        metrics.webhook_deliveries.labels("delivered").inc(len(delivered))
    for row, status, error, outcome in outcomes:
        metrics.webhook_deliveries.labels(outcome).inc()
        log.warning(
            "webhook delivery failed",
            extra={
                "delivery_id": str(row.id),
                "status": status,
                "error": error,
                "outcome": outcome,
            },
        )


def _status_cases(sent: list[tuple]) -> list[tuple]:
    """The 2xx status each delivered row got, for the one UPDATE of the successes."""
    return [
        (deliveries.c.id == row.id, status)
        for row, status, _, _ in sent
        if status is not None and 200 <= status < 300 and status != 200
    ]


async def run_deliveries(rt: Runtime) -> None:
    """Worker: claim due deliveries (SKIP LOCKED, so any number of instances can run) and send them."""
    # The first dead letter of this process must be visible to increase(): start the series at 0.
    metrics.webhook_deliveries.labels("dead_lettered")
    wake = asyncio.Event()
    rt.db.on_commit(DELIVERIES_TAG, wake.set)  # a routing decision or replay queued some
    client = guarded_client(
        allow_private=lambda: rt.settings.webhook_allow_private, timeout=TIMEOUT
    )
    async with client:
        while not rt.stop:
            wake.clear()
            rows = await claim_due(rt)
            if rows:
                sent = await asyncio.gather(*(send_one(rt, client, row) for row in rows))
                await record_outcomes(rt, list(sent))
                continue
            await rt.stop.pause(0.5, wake)


async def replay(rt: Runtime, delivery_id: uuid.UUID) -> bool:
    async with rt.db.unit_of_work() as session:
        updated = await session.execute(
            sa.update(deliveries)
            .where(deliveries.c.id == delivery_id)
            .values(state="pending", next_attempt_at=datetime.now(UTC), attempts=0)
            .returning(deliveries.c.id)
        )
        found = updated.first() is not None
        if found:
            touch(session, DELIVERIES_TAG)
        return found
