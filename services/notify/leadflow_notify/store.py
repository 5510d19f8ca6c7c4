"""All of notify's SQL: prebuilt statements and the batched reads and writes of the use cases."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from leadflow.contracts.erasure import forget_events
from leadflow.db import ManyRows, kernel_tables
from leadflow.paging import Listing, PageRequest
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_notify.domain.erasure import body_without_personal_data, context_without_personal_data
from leadflow_notify.domain.subscriptions import EndpointView
from leadflow_notify.models import (
    crm_links,
    deliveries,
    lead_context,
    metadata,
    notices,
    team_directory,
    webhook_endpoints,
)

OUTBOX, _ = kernel_tables(metadata)
ROWS_PER_INSERT = 1000
CANCELLED = "cancelled"  # a pending delivery of an erased lead

_ids = sa.bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
c, d, e, n, t = lead_context.c, deliveries.c, webhook_endpoints.c, notices.c, team_directory.c


# --- events in: lead context and deliveries -----------------------------------------------

_contexts = sa.select(c.lead_id, c.context, c.erased).where(c.lead_id == sa.any_(_ids))
_lock_contexts = _contexts.order_by(c.lead_id).with_for_update()
_context_rows = ManyRows(lead_context, ["lead_id", "context", "erased", "updated_at"])
_upsert_context = _context_rows.insert()
_upsert_context = _upsert_context.on_conflict_do_update(
    index_elements=[c.lead_id],
    set_={
        "context": _upsert_context.excluded.context,
        "updated_at": _upsert_context.excluded.updated_at,
    },
    where=sa.not_(c.erased),
)
_enabled_endpoints = sa.select(e.id, e.event_types, e.team_id, e.filters).where(e.enabled)
_delivery_rows = ManyRows(
    deliveries,
    [
        "id", "endpoint_id", "connector", "event_id", "lead_id", "event_type", "body", "state",
        "attempts", "next_attempt_at", "last_status", "last_error", "created_at", "delivered_at",
    ],
)  # fmt: skip
_add_deliveries = _delivery_rows.insert().on_conflict_do_nothing(
    index_elements=[d.endpoint_id, d.event_id]
)


async def contexts(
    session: AsyncSession, lead_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, tuple[dict[str, Any], bool]]:
    """(context, erased) of each known lead, locked in key order for this unit of work."""
    rows = await session.execute(_lock_contexts, {"ids": sorted(set(lead_ids))})
    return {r.lead_id: (r.context, r.erased) for r in rows}


async def enabled_endpoints(session: AsyncSession) -> list[EndpointView]:
    return [
        EndpointView(
            r.id,
            tuple(r.event_types),
            r.team_id,
            {name: tuple(values) for name, values in (r.filters or {}).items()},
        )
        for r in await session.execute(_enabled_endpoints)
    ]


async def write_events(
    session: AsyncSession,
    contexts: list[dict[str, Any]],
    queued: list[dict[str, Any]],
) -> None:
    """The contexts the events changed and the deliveries they queue, one statement each; a
    delivery already queued for the same endpoint and event stays as it is."""
    if contexts:  # one row per lead: an upsert cannot change a row twice in one statement
        await session.execute(_upsert_context, _context_rows.params(contexts))
    if queued:
        await session.execute(_add_deliveries, _delivery_rows.params(queued))


# --- erasure ------------------------------------------------------------------------------

_erase_context = insert(lead_context)
_erase_context = _erase_context.on_conflict_do_update(
    index_elements=[c.lead_id],
    set_={"context": _erase_context.excluded.context, "erased": True},
)
_cancel_pending = (
    sa.update(deliveries)
    .where(d.lead_id == sa.bindparam("lead"), d.state == "pending")
    .values(state=CANCELLED, next_attempt_at=None, last_error="lead erased")
)
# A CRM's error message may quote the lead's values (an e-mail it refused).
_redact_crm_errors = (
    sa.update(deliveries)
    .where(d.lead_id == sa.bindparam("lead"), d.connector.is_not(None), d.last_error.is_not(None))
    .values(last_error="lead erased")
)
_lead_deliveries = (
    sa.select(d.id, d.body).where(d.lead_id == sa.bindparam("lead")).with_for_update()
)
_redact_delivery = (
    sa.update(deliveries).where(d.id == sa.bindparam("key")).values(body=sa.bindparam("body"))
)


_cancel_notices = (
    sa.update(notices)
    .where(n.lead_id == sa.bindparam("lead"), n.state == "pending")
    .values(state=CANCELLED, next_attempt_at=None, last_error="lead erased")
)
# What a message would have said of the person: their name and company.
_redact_notices = (
    sa.update(notices)
    .where(n.lead_id == sa.bindparam("lead"))
    .values(
        notice=n.notice.op("||")(sa.func.jsonb_build_object("lead_name", None, "company", None))
    )
)


async def erase_lead(
    session: AsyncSession, lead_id: uuid.UUID, context: dict[str, Any], now: datetime
) -> None:
    """The lead's context kept without personal data (and marked erased, so later events add
    nothing); its stored bodies redacted, its pending deliveries cancelled."""
    await session.execute(
        _erase_context,
        {
            "lead_id": lead_id,
            "context": context_without_personal_data(context),
            "erased": True,
            "updated_at": now,
        },
    )
    await session.execute(_cancel_pending, {"lead": lead_id})
    await session.execute(_redact_crm_errors, {"lead": lead_id})
    await session.execute(_cancel_notices, {"lead": lead_id})
    await session.execute(_redact_notices, {"lead": lead_id})
    bodies = []
    for row in (await session.execute(_lead_deliveries, {"lead": lead_id})).all():
        body = body_without_personal_data(row.body)
        if body != row.body:
            bodies.append({"key": row.id, "body": body})
    if bodies:
        await session.execute(_redact_delivery, bodies)


async def forget_lead_events(session: AsyncSession, lead_ids: list[uuid.UUID]) -> None:
    """The lead's events still in notify's outbox: published ones deleted, waiting ones
    redacted."""
    await forget_events(session, OUTBOX, lead_ids)


async def is_erased(session: AsyncSession, lead_id: uuid.UUID) -> bool:
    return bool(await session.scalar(sa.select(c.erased).where(c.lead_id == lead_id)))


# --- webhook deliveries -------------------------------------------------------------------

_due = (
    sa.select(
        d.id, d.body, d.attempts, d.lead_id, d.event_type, d.endpoint_id, d.connector, e.url,
        e.secrets, e.enabled,
    )
    .outerjoin(webhook_endpoints, e.id == d.endpoint_id)
    .where(d.state == "pending", d.next_attempt_at <= sa.bindparam("now"))
    .order_by(d.next_attempt_at)
    .limit(sa.bindparam("limit"))
    .with_for_update(of=deliveries, skip_locked=True)
)  # fmt: skip
_lease = (
    sa.update(deliveries).where(d.id == sa.any_(_ids)).values(next_attempt_at=sa.bindparam("until"))
)
_disable_endpoint = (
    sa.update(webhook_endpoints)
    .where(e.id == sa.bindparam("key"))
    .values(enabled=False, disabled_reason="receiver answered 410 Gone")
)
_replay = (
    sa.update(deliveries)
    .where(d.id == sa.bindparam("key"))
    .values(state="pending", next_attempt_at=sa.bindparam("now"), attempts=0)
    .returning(d.id)
)
_delivery_lead = sa.select(d.lead_id).where(d.id == sa.bindparam("key"))


async def claim_due(
    session: AsyncSession, now: datetime, until: datetime, limit: int
) -> Sequence[Row]:
    """Due deliveries no other worker holds, leased until `until` (a worker that dies mid-send
    leaves them to be retried then)."""
    rows = (await session.execute(_due, {"now": now, "limit": limit})).all()
    if rows:
        await session.execute(_lease, {"ids": [r.id for r in rows], "until": until})
    return rows


async def mark_delivered(
    session: AsyncSession, delivered: list[uuid.UUID], statuses: dict[uuid.UUID, int], now: datetime
) -> None:
    """The successes of one claim in one UPDATE (a 2xx other than 200 is recorded as such)."""
    cases = [(d.id == delivery_id, status) for delivery_id, status in statuses.items()]
    await session.execute(
        sa.update(deliveries)
        .where(d.id.in_(delivered))
        .values(
            state="delivered",
            delivered_at=now,
            next_attempt_at=None,
            last_error=None,
            last_status=sa.case(*cases, else_=200) if cases else 200,
            attempts=d.attempts + 1,
        )
    )


async def disable_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> None:
    await session.execute(_disable_endpoint, {"key": endpoint_id})


async def record_attempt(session: AsyncSession, delivery_id: uuid.UUID, **values: Any) -> None:
    await session.execute(sa.update(deliveries).where(d.id == delivery_id).values(**values))


async def replay_delivery(session: AsyncSession, delivery_id: uuid.UUID, now: datetime) -> bool:
    return (await session.execute(_replay, {"key": delivery_id, "now": now})).first() is not None


async def delivery_lead(session: AsyncSession, delivery_id: uuid.UUID) -> uuid.UUID | None:
    return await session.scalar(_delivery_lead, {"key": delivery_id})


DELIVERIES = Listing(
    name="deliveries",
    key=d.id,
    sorts={"created_at": d.created_at, "attempts": d.attempts},
    default_sort="created_at",
    filters={
        "state": (d.state, str),
        "endpoint_id": (d.endpoint_id, uuid.UUID),
        "connector": (d.connector, str),
        "event_type": (d.event_type, str),
        "lead_id": (d.lead_id, uuid.UUID),
    },
)
_deliveries_read = sa.select(
    d.id, d.endpoint_id, d.connector, d.lead_id, d.event_type, d.state, d.attempts,
    d.last_status, d.last_error, d.next_attempt_at, d.delivered_at,
)  # fmt: skip


async def page_deliveries(session: AsyncSession, wanted: PageRequest) -> Sequence[Row]:
    return (await session.execute(wanted.select(_deliveries_read))).all()


# --- CRM records -----------------------------------------------------------------------------

_add_crm_link = (
    insert(crm_links)
    .on_conflict_do_nothing(index_elements=[crm_links.c.lead_id, crm_links.c.system])
    .returning(crm_links.c.lead_id)
)


async def add_crm_link(
    session: AsyncSession,
    lead_id: uuid.UUID,
    system: str,
    object_type: str,
    object_id: str,
    now: datetime,
) -> bool:
    """The lead's record in a CRM, kept once per lead and system; True when it is new."""
    values = {"lead_id": lead_id, "system": system, "object_type": object_type,
              "object_id": object_id, "linked_at": now}  # fmt: skip
    return (await session.execute(_add_crm_link, values)).first() is not None


# --- endpoints ----------------------------------------------------------------------------

_endpoint_columns = (e.id, e.url, e.event_types, e.team_id, e.filters, e.enabled)


async def add_endpoint(session: AsyncSession, endpoint_id: uuid.UUID, **values: Any) -> None:
    await session.execute(sa.insert(webhook_endpoints).values(id=endpoint_id, **values))


async def rotate_secret(session: AsyncSession, endpoint_id: uuid.UUID, secret: str) -> Row | None:
    """The new secret first, the newest previous one kept; re-enabled."""
    return (
        await session.execute(
            sa.update(webhook_endpoints)
            .where(e.id == endpoint_id)
            .values(
                secrets=sa.func.array_prepend(secret, e.secrets[1:1]),
                enabled=True,
                disabled_reason=None,
            )
            .returning(*_endpoint_columns)
        )
    ).first()


async def drop_previous_secret(session: AsyncSession, endpoint_id: uuid.UUID) -> bool:
    found = await session.scalar(
        sa.update(webhook_endpoints)
        .where(e.id == endpoint_id)
        .values(secrets=e.secrets[1:1])
        .returning(e.id)
    )
    return found is not None


async def locked_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> Row | None:
    """An endpoint as it is before a change in this transaction (no secrets), locked until
    the transaction ends."""
    query = sa.select(*_endpoint_columns).where(e.id == endpoint_id).with_for_update()
    return (await session.execute(query)).first()


ENDPOINTS = Listing(
    name="webhook-endpoints",
    key=e.id,
    sorts={"created_at": e.created_at, "url": e.url},
    default_sort="created_at",
    filters={
        "enabled": (e.enabled, bool),
        "team_id": (e.team_id, uuid.UUID),
        "url": (e.url, str),
    },
)


async def page_endpoints(session: AsyncSession, wanted: PageRequest) -> Sequence[Row]:
    return (await session.execute(wanted.select(sa.select(*_endpoint_columns)))).all()


async def endpoint_row(session: AsyncSession, endpoint_id: uuid.UUID) -> Row | None:
    return (await session.execute(sa.select(*_endpoint_columns).where(e.id == endpoint_id))).first()


async def change_endpoint(session: AsyncSession, endpoint_id: uuid.UUID, **values: Any) -> Row:
    """The endpoint with `values` (re-enabled: the reason it was disabled is dropped)."""
    if values.get("enabled"):
        values["disabled_reason"] = None
    query = (
        sa.update(webhook_endpoints)
        .where(e.id == endpoint_id)
        .values(**values)
        .returning(*_endpoint_columns)
    )
    return (await session.execute(query)).one()


async def pending_deliveries(session: AsyncSession, endpoint_id: uuid.UUID) -> int:
    """How many deliveries to the endpoint are still to be sent (due or waiting for a retry)."""
    query = sa.select(sa.func.count()).where(d.endpoint_id == endpoint_id, d.state == "pending")
    return await session.scalar(query) or 0


async def delete_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> int:
    """The endpoint gone with its deliveries (sent, dead, or pending ones cancelled with it);
    how many deliveries went."""
    gone = await session.execute(sa.delete(deliveries).where(d.endpoint_id == endpoint_id))
    await session.execute(sa.delete(webhook_endpoints).where(e.id == endpoint_id))
    return gone.rowcount or 0


# --- people: team directories and notices -------------------------------------------------

_directories = sa.select(t.team_id, t.directory).where(t.team_id == sa.any_(_ids))
_save_directory = insert(team_directory)
_save_directory = _save_directory.on_conflict_do_update(
    index_elements=[t.team_id],
    set_={
        "directory": _save_directory.excluded.directory,
        "changed_at": _save_directory.excluded.changed_at,
    },
    where=t.changed_at <= _save_directory.excluded.changed_at,  # an older one changes nothing
)
_queue_notices = (
    insert(notices)
    .on_conflict_do_nothing(constraint="uq_notices_once")
    .execution_options(insertmanyvalues_page_size=ROWS_PER_INSERT)
)
_cancel_timer_notices = (
    sa.update(notices)
    .where(n.timer_id == sa.any_(_ids), n.state == "pending", n.message_id.is_(None))
    .values(state=CANCELLED, next_attempt_at=None, last_error="the clock was met")
)
_due_notices = (
    sa.select(notices)
    .where(n.state == "pending", n.next_attempt_at <= sa.bindparam("now"))
    .order_by(n.next_attempt_at)
    .limit(sa.bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_last_sent = (
    sa.select(n.recipient, n.channel, sa.func.max(n.sent_at).label("at"))
    .where(
        n.recipient == sa.any_(sa.bindparam("recipients", type_=ARRAY(sa.Text))), n.state == "sent"
    )
    .group_by(n.recipient, n.channel)
)
_postpone = (
    sa.update(notices).where(n.id == sa.any_(_ids)).values(next_attempt_at=sa.bindparam("at"))
)
_lease_notices = (
    sa.update(notices)
    .where(n.id == sa.bindparam("key"))
    .values(message_id=sa.bindparam("message_id"), next_attempt_at=sa.bindparam("until"))
)


async def directories(
    session: AsyncSession, team_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, dict]:
    rows = await session.execute(_directories, {"ids": sorted(set(team_ids))})
    return {r.team_id: r.directory for r in rows}


async def save_directory(
    session: AsyncSession, team_id: uuid.UUID, directory: dict[str, Any], changed_at: datetime
) -> None:
    await session.execute(
        _save_directory, {"team_id": team_id, "directory": directory, "changed_at": changed_at}
    )


async def queue_notices(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Each person hears each level of each clock once: a row already queued stays as it is."""
    if rows:
        await session.execute(_queue_notices, rows)


async def cancel_timer_notices(session: AsyncSession, timer_ids: list[uuid.UUID]) -> None:
    """A clock met: what it had not said yet (held for working hours or a digest) is not said."""
    if timer_ids:
        await session.execute(_cancel_timer_notices, {"ids": timer_ids})


async def due_notices(session: AsyncSession, now: datetime, limit: int) -> Sequence[Row]:
    return (await session.execute(_due_notices, {"now": now, "limit": limit})).all()


async def last_sent(
    session: AsyncSession, recipients: Iterable[str]
) -> dict[tuple[str, str], datetime]:
    rows = await session.execute(_last_sent, {"recipients": sorted(set(recipients))})
    return {(r.recipient, r.channel): r.at for r in rows}


async def postpone(session: AsyncSession, ids: list[uuid.UUID], at: datetime) -> None:
    await session.execute(_postpone, {"ids": ids, "at": at})


async def lease_notices(
    session: AsyncSession, message_ids: dict[uuid.UUID, uuid.UUID], until: datetime
) -> None:
    """The message each notice goes out in (kept across retries), leased until `until`."""
    await session.execute(
        _lease_notices,
        [
            {"key": key, "message_id": message, "until": until}
            for key, message in message_ids.items()
        ],
    )


async def record_notices(session: AsyncSession, ids: list[uuid.UUID], **values: Any) -> None:
    await session.execute(
        sa.update(notices).where(n.id == sa.any_(_ids)).values(**values), {"ids": ids}
    )


NOTICES = Listing(
    name="notices",
    key=n.id,
    sorts={"created_at": n.created_at},
    default_sort="created_at",
    filters={
        "state": (n.state, str),
        "lead_id": (n.lead_id, uuid.UUID),
        "recipient": (n.recipient, str),
        "channel": (n.channel, str),
        "level": (n.level, str),
        "event_type": (n.event_type, str),
    },
)
_notices_read = sa.select(
    n.id, n.lead_id, n.recipient, n.channel, n.level, n.event_type, n.state, n.attempts,
    n.message_id, n.last_status, n.last_error, n.next_attempt_at, n.sent_at,
)  # fmt: skip


async def page_notices(session: AsyncSession, wanted: PageRequest) -> Sequence[Row]:
    return (await session.execute(wanted.select(_notices_read))).all()


async def replay_notice(
    session: AsyncSession, notice_id: uuid.UUID, now: datetime
) -> uuid.UUID | None:
    """Pending again (a new message), for a dead notice; the lead's id, None if not found."""
    return await session.scalar(
        sa.update(notices)
        .where(n.id == notice_id, n.state.in_(("dead", "pending")))
        .values(state="pending", next_attempt_at=now, attempts=0, message_id=None)
        .returning(n.lead_id)
    )
