"""What notify does: keep each lead's context from the events it consumes, queue each event for
every endpoint that subscribes to it and each routed lead for every CRM connector, deliver the
queue (Standard Webhooks, or the CRM's API; retries, dead letters, replay), erase a lead, and
the endpoint requests.

A unit of work's events are taken as a set: the contexts of their leads are read (and locked)
with one statement and the enabled endpoints with another; every event then updates its lead's
context and is matched against the endpoints in arrival order; the contexts and the deliveries
are written with one statement each. A delivery is unique per endpoint and event, so an event
consumed again (a replay, a restart) queues nothing twice."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any

import httpx
import orjson
from leadflow import audit, metrics
from leadflow.consumer import Received
from leadflow.contracts.connectors import (
    Connectors,
    ConnectorsError,
    load_connectors,
    parse_connectors_text,
)
from leadflow.contracts.events import (
    CONNECTORS_KEY,
    ConnectorsPublished,
    LeadCrmLinked,
    LeadErased,
    LeadRouted,
    SlaEvent,
    SlaMet,
    TeamDirectory,
    WebhookDeadLettered,
)
from leadflow.db import lock_leads, touch
from leadflow.errors import Conflict, LeadGone, NotFound, Unprocessable
from leadflow.mail import SmtpSettings, send_mail
from leadflow.paging import Page, PageRequest
from leadflow.publications import CURRENT_CONNECTORS
from leadflow.retry import WEBHOOK_SCHEDULE, webhook_retry_delay
from leadflow.service import Runtime
from leadflow.webhooks import (
    DELIVERY_ERRORS,
    GuardedClient,
    UnsafeTarget,
    check_target,
    check_url,
    guarded_client,
    new_secret,
    retry_after,
    signature_headers,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_notify import store
from leadflow_notify.crm import CredentialsUnreadable, CrmOut, CrmRecord, CrmRefused
from leadflow_notify.domain.context import body, facts, notice_of, updated
from leadflow_notify.domain.crm import RoutedLead, crm_facts, first_response_due
from leadflow_notify.domain.messages import (
    Notice,
    Recipient,
    email_message,
    slack_message,
    teams_message,
)
from leadflow_notify.domain.people import addressees, channels, digest_due, level_of, not_before
from leadflow_notify.domain.subscriptions import by_type, subscribes
from leadflow_notify.models import DELIVERIES_TAG, NOTICES_TAG
from leadflow_notify.schemas import (
    AlertmanagerIn,
    AlertsOut,
    ConnectorsOut,
    DeliveryOut,
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    NoticeOut,
    ReplayOut,
)

log = logging.getLogger(__name__)
DEAD_LETTERED = WebhookDeadLettered.type

# --- events in ----------------------------------------------------------------------------


async def take_events(rt: Runtime, session: AsyncSession, received: list[Received]) -> None:
    """Update the leads' contexts and the team directories, queue the events for their
    subscribers and the clocks' levels for the people who hear them, in arrival order; an
    erasure takes effect at once (later events of the lead queue nothing)."""
    lead_ids = [item.payload.lead_id for item in received if item.payload.about_lead]
    # Serialised with other consumers' work on the same leads (an erasure, another topic).
    await lock_leads(session, "notify", lead_ids)
    known = await store.contexts(session, lead_ids)
    endpoints = await store.enabled_endpoints(session)
    teams = {
        uuid.UUID(str(context["assignment"]["team_id"]))
        for context, _ in known.values()
        if (context.get("assignment") or {}).get("team_id")
    } | {item.payload.team_id for item in received if isinstance(item.payload, LeadRouted)}
    directories = {str(k): v for k, v in (await store.directories(session, teams)).items()}
    now = datetime.now(UTC)
    contexts: dict[uuid.UUID, dict[str, Any]] = {}  # as this unit of work leaves them
    changed: set[uuid.UUID] = set()
    erased = {lead_id for lead_id, (_, gone) in known.items() if gone}
    listening = by_type(endpoints)
    crm_systems = (await current_crm_out(rt, session)).systems
    queued: list[dict[str, Any]] = []
    told: list[dict[str, Any]] = []
    met: list[uuid.UUID] = []
    for item in received:
        payload, event = item.payload, item.event
        lead_id = payload.lead_id
        data = payload.model_dump(mode="json")
        if not payload.about_lead:  # a team's directory, a period's judgement
            if isinstance(payload, TeamDirectory):
                await store.save_directory(session, payload.team_id, data, payload.changed_at)
                directories[str(payload.team_id)] = data
            wanted = [e.id for e in listening(event.type) if subscribes(e, data)]
            if wanted:
                raw = orjson.dumps(body(event.type, event.time.isoformat(), None, data))
                queued += [_delivery(e, event.id, event.type, lead_id, raw, now) for e in wanted]
            continue
        if lead_id in erased:
            continue
        context = contexts.get(lead_id) or (known[lead_id][0] if lead_id in known else {})
        if isinstance(payload, LeadErased):
            await store.erase_lead(session, lead_id, context, now)
            await store.forget_lead_events(session, [lead_id])
            contexts.pop(lead_id, None)
            changed.discard(lead_id)
            erased.add(lead_id)
            continue
        new = updated(context, payload, data)
        if new is not context:
            contexts[lead_id], context = new, new
            changed.add(lead_id)
        if isinstance(payload, LeadRouted) and crm_systems and payload.rep_id is not None:
            raw = _crm_body(rt, payload, event.time.isoformat(), context, data, directories)
            queued += [
                _delivery(None, event.id, event.type, lead_id, raw, now, connector=system)
                for system in crm_systems
            ]
        candidates = listening(event.type)
        if isinstance(payload, SlaMet):
            met.append(payload.timer_id)
        elif isinstance(payload, SlaEvent):
            told += _notices(rt, payload, context, facts(context, data), directories, now)
        if not candidates:
            continue
        seen = facts(context, data)
        wanted = [
            endpoint.id
            for endpoint in candidates
            if subscribes(endpoint, seen)
            # a dead letter is never sent to the endpoint that refused the delivery
            and not (event.type == DEAD_LETTERED and seen.get("endpoint_id") == str(endpoint.id))
        ]
        if wanted:
            raw = orjson.dumps(body(event.type, event.time.isoformat(), context, data))
            queued += [
                _delivery(endpoint_id, event.id, event.type, lead_id, raw, now)
                for endpoint_id in wanted
            ]
    await store.write_events(
        session,
        [
            {"lead_id": lead_id, "context": contexts[lead_id], "erased": False, "updated_at": now}
            for lead_id in sorted(changed)
        ],
        queued,
    )
    if queued:
        touch(session, DELIVERIES_TAG)
    await store.cancel_timer_notices(session, met)
    await store.queue_notices(session, told)
    if told:
        touch(session, NOTICES_TAG)


def _notices(
    rt: Runtime,
    payload: SlaEvent,
    context: dict[str, Any],
    seen: dict[str, Any],
    directories: dict[str, dict],
    now: datetime,
) -> list[dict[str, Any]]:
    """The rows telling each person this level of the clock concerns, on each of their
    channels, each held until it may reach them (their working hours)."""
    level = level_of(payload)
    if level is None:
        return []
    team_id = seen.get("team_id")
    rep_id = seen.get("rep_id")
    directory = directories.get(str(team_id)) if team_id else None
    notice = notice_of(context, payload, level, rt.settings.public_url)
    business_now = rt.clock.now()
    rows = []
    for who in addressees(level, rep_id and str(rep_id), team_id and str(team_id), directory):
        hold = not_before(who.person, level, business_now, rt.settings.notify_quiet_hours)
        at = now + timedelta(seconds=rt.clock.real_seconds(hold - business_now))
        rows += notice_rows(
            who.key,
            who.person,
            channels(who.person, directory, email=bool(rt.settings.smtp_host)),
            notice,
            timer_id=payload.timer_id,
            level=level,
            at=at,
            now=now,
        )
    return rows


def notice_rows(
    recipient: str,
    person: dict[str, Any],
    reach: list[tuple[str, str | None]],
    notice: dict[str, Any],
    *,
    timer_id: uuid.UUID,
    level: str,
    at: datetime,
    now: datetime,
    unreachable: str = "no address for any channel",
) -> list[dict[str, Any]]:
    """One notice per channel the person is reached on, due at `at`; none: one row saying so."""
    rows = []
    for channel, target in reach:
        reachable = channel != "none"
        rows.append(
            {
                "id": uuid.uuid4(), "recipient": recipient, "person": person,
                "channel": channel, "target": target, "lead_id": uuid.UUID(notice["lead_id"]),
                "timer_id": timer_id, "level": level, "event_type": notice["event_type"],
                "notice": notice, "state": "pending" if reachable else "undeliverable",
                "next_attempt_at": at if reachable else None, "attempts": 0,
                "message_id": None, "last_status": None,
                "last_error": None if reachable else unreachable,
                "created_at": now, "sent_at": None,
            }
        )  # fmt: skip
    return rows


def _crm_body(
    rt: Runtime,
    payload: LeadRouted,
    timestamp: str,
    context: dict[str, Any],
    data: dict[str, Any],
    directories: dict[str, dict],
) -> bytes:
    """What a CRM is sent of a routed lead: the webhook body, plus the first-response deadline
    its task is due at, the rep's e-mail (the owner's key) and the CRM record intake knows."""
    directory = directories.get(str(payload.team_id)) or {}
    rep = next(
        (p for p in directory.get("reps") or [] if str(p.get("id")) == str(payload.rep_id)), {}
    )
    due = first_response_due(
        rt.policy, payload.kind, payload.channel, payload.calendar, payload.routed_at
    )
    message = body(payload.type, timestamp, context, data)
    message["data"]["crm"] = crm_facts(due, rep.get("email"), context.get("external_id"))
    return orjson.dumps(message)


def _delivery(
    endpoint_id: uuid.UUID | None,
    event_id: uuid.UUID,
    event_type: str,
    lead_id: uuid.UUID,
    raw: bytes,
    now: datetime,
    connector: str | None = None,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "endpoint_id": endpoint_id,
        "connector": connector,
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
    """The outcome of one delivery's try: a webhook's POST, or a routed lead's writes to a CRM
    (`linked`: the lead's record there, found even when a later write failed)."""

    row: Row
    status: int | None
    error: str | None
    retry_after: float | None = None  # seconds the receiver or the CRM asked to wait
    permanent: bool = False
    rate_limited: bool = False  # the CRM asked to wait: not a failed try
    linked: CrmRecord | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


async def claim_due(rt: Runtime, limit: int = CLAIM) -> list[Row]:
    now = datetime.now(UTC)
    async with rt.db.unit_of_work() as session:
        return list(await store.claim_due(session, now, now + LEASE, limit))


async def send_one(client: GuardedClient, row: Row) -> Sent:
    """One signed POST, without touching the database. The client refuses, when it connects,
    an address that is not public (UnsafeTarget)."""
    if not row.enabled:
        return Sent(row, None, "endpoint disabled")
    try:
        check_url(row.url)
        headers = signature_headers(list(row.secrets), str(row.id), row.body)
        answer = await client.post_signed(row.url, row.body, headers)
    except UnsafeTarget as exc:
        return Sent(row, None, str(exc))
    except DELIVERY_ERRORS as exc:
        return Sent(row, None, f"{type(exc).__name__}: {exc}"[:500])
    return Sent(row, answer.status, None, answer.retry_after)


async def write_to_crm(rt: Runtime, client: httpx.AsyncClient, row: Row) -> Sent:
    """A routed lead's writes to one CRM, without touching the database."""
    try:
        lead = RoutedLead.from_body(orjson.loads(row.body))
    except (KeyError, TypeError, ValueError) as exc:  # nothing a CRM write can be made from
        return Sent(row, None, f"not a routed lead: {exc!r}"[:300], permanent=True)
    try:
        record = await (await current_crm_out(rt)).write(client, row.connector, lead)
    except CrmRefused as refused:
        return Sent(
            row, refused.status, refused.reason, retry_after=refused.retry_after,
            permanent=refused.permanent, rate_limited=refused.rate_limited, linked=refused.linked,
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:  # a success whose body is not the CRM's
        return Sent(row, None, f"{row.connector} answered unexpectedly: {exc!r}"[:300])
    return Sent(row, 200, None, linked=record)


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
            if s.linked is not None:
                await _linked(rt, session, s.row.lead_id, s.linked, now)
            if s.delivered:
                continue
            row, status, error = s.row, s.status, s.error
            gone = status == 410 and row.connector is None  # the endpoint is gone for good
            if s.rate_limited:  # the CRM asks to wait: the try does not count
                values: dict[str, Any] = {
                    "last_status": status,
                    "last_error": error,
                    "next_attempt_at": now + timedelta(seconds=s.retry_after or 1.0),
                }
                await store.record_attempt(session, row.id, **values)
                outcomes.append((s, "rate_limited"))
                continue
            attempts = row.attempts + 1
            values = {"attempts": attempts, "last_status": status, "last_error": error}
            if gone:
                await store.disable_endpoint(session, row.endpoint_id)
            schedule = rt.settings.webhook_retry_schedule or WEBHOOK_SCHEDULE
            delay = (
                None
                if gone or s.permanent
                else webhook_retry_delay(attempts, s.retry_after, schedule=schedule)
            )
            if delay is None:
                values.update(state="dead", next_attempt_at=None)
                if row.connector is None:
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
        if s.row.connector is not None:
            written = "written" if s.delivered else outcome
            metrics.crm_writes.labels(s.row.connector, written).inc()
        else:
            metrics.notifications.labels("webhook", s.row.event_type, outcome).inc()
            metrics.webhook_deliveries.labels("delivered" if s.delivered else outcome).inc()
    for s, outcome in outcomes:
        if s.row.connector:  # a CRM's message may quote the lead's values: it stays on the row
            log.warning(
                "CRM write failed (its reason: GET /v1/deliveries)",
                extra={"delivery_id": str(s.row.id), "connector": s.row.connector,
                       "status": s.status, "outcome": outcome},
            )  # fmt: skip
            continue
        log.warning(
            "webhook delivery failed",
            extra={
                "delivery_id": str(s.row.id),
                "status": s.status,
                "error": s.error,
                "outcome": outcome,
            },
        )


async def _linked(
    rt: Runtime, session: AsyncSession, lead_id: uuid.UUID, record: CrmRecord, now: datetime
) -> None:
    """The lead's record in a CRM, kept once; `lead.crm_linked` when it is new."""
    if await store.add_crm_link(
        session, lead_id, record.system, record.object_type, record.object_id, now
    ):
        await rt.outbox.emit(
            session,
            LeadCrmLinked(
                lead_id=lead_id,
                system=record.system,
                object_type=record.object_type,
                object_id=record.object_id,
                linked_at=rt.clock.now(),
            ),
        )


async def drain(
    rt: Runtime,
    tag: str,
    idle: float,
    step: Callable[[GuardedClient], Awaitable[bool]],
) -> None:
    """A sending worker's loop: run `step` (claim, send, record; False when nothing was due)
    until stopped, waiting between empty passes for `idle` seconds or until a unit of work
    touching `tag` commits. The HTTP client refuses addresses that are not public."""
    wake = asyncio.Event()
    rt.db.on_commit(tag, wake.set)
    client = guarded_client(
        allow_private=lambda: rt.settings.webhook_allow_private,
        timeout=rt.settings.webhook_read_timeout,
    )
    async with client:
        while not rt.stop:
            wake.clear()
            if not await step(client):
                await rt.stop.pause(idle, wake)


async def run_deliveries(rt: Runtime) -> None:
    """Worker: claim due deliveries (SKIP LOCKED, so any number of instances can run) and send
    them: webhooks signed to their endpoints, routed leads to the CRMs' APIs."""
    # The first dead letter of this process must be visible to increase(): start the series at 0.
    metrics.webhook_deliveries.labels("dead_lettered")
    for system in crm_out(rt).systems:
        metrics.crm_writes.labels(system, "dead_lettered")

    async def step(client: GuardedClient) -> bool:
        rows = await claim_due(rt)
        if rows:
            sent = await asyncio.gather(
                *(
                    write_to_crm(rt, client, row) if row.connector else send_one(client, row)
                    for row in rows
                )
            )
            await record_outcomes(rt, list(sent))
        return bool(rows)

    await drain(rt, DELIVERIES_TAG, 0.5, step)  # an event or a replay queued some


# --- messages to people -------------------------------------------------------------------

NOTICE_CLAIM = 200  # notices claimed at a time (they go out as a few digests)
PERMANENT_CHAT = {400, 403, 404, 410}  # a chat webhook refusing the message or gone


@dataclass
class Outgoing:
    """One message: the notices due for one recipient on one channel, under one id (kept
    across retries, so a receiver can drop a repeat)."""

    message_id: uuid.UUID
    channel: str
    target: str
    person: dict[str, Any]
    rows: list[Row]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    permanent: bool = False


async def claim_notices(rt: Runtime, limit: int = NOTICE_CLAIM) -> list[Outgoing]:
    """Due notices grouped into messages, one per recipient and channel; a group whose
    recipient had a message on that channel less than a window ago waits for the window's end
    (then goes as one digest). Claimed with SKIP LOCKED and leased, like deliveries."""
    now = datetime.now(UTC)
    window = timedelta(seconds=rt.settings.notify_digest_window)
    async with rt.db.unit_of_work() as session:
        rows = await store.due_notices(session, now, limit)
        if not rows:
            return []
        last = await store.last_sent(session, {r.recipient for r in rows})
        groups: dict[tuple, list[Row]] = {}
        for row in rows:  # a message begun before (a retry) keeps exactly its notices
            groups.setdefault((row.recipient, row.channel, row.target, row.message_id), []).append(
                row
            )
        out: list[Outgoing] = []
        lease: dict[uuid.UUID, uuid.UUID] = {}
        for (recipient, channel, target, message_id), members in groups.items():
            if message_id is None:
                due = digest_due(last.get((recipient, channel)), now, window)
                if due > now:
                    await store.postpone(session, [m.id for m in members], due)
                    continue
                message_id = uuid.uuid4()
            lease.update({m.id: message_id for m in members})
            out.append(Outgoing(message_id, channel, target, members[0].person, members))
        if lease:
            await store.lease_notices(session, lease, now + LEASE)
    return out


def _recipient(person: dict[str, Any]) -> Recipient:
    return Recipient(
        name=person.get("name") or "",
        email=person.get("email"),
        slack_member_id=person.get("slack_member_id"),
        teams_upn=person.get("teams_upn"),
        language=person.get("language") or "en",
        timezone=person.get("timezone") or "UTC",
    )


def _notice(row: Row) -> Notice:
    fields = dict(row.notice)
    due = fields.get("due_at")
    fields["due_at"] = datetime.fromisoformat(due) if due else None
    return Notice(**{name: fields.get(name) for name in Notice.__dataclass_fields__})


async def send_message(rt: Runtime, client: httpx.AsyncClient, out: Outgoing) -> Outcome:
    """Render the message in the recipient's language and send it on its channel."""
    recipient, notices = _recipient(out.person), [_notice(row) for row in out.rows]
    ref = f"ref {out.message_id}"
    if out.channel == "email":
        sender = rt.settings.smtp_from
        message = email_message(
            recipient,
            notices,
            sender=sender,
            unsubscribe_url=f"mailto:{parseaddr(sender)[1]}?subject=unsubscribe",
            message_id=f"<{out.message_id}@leadflow>",
            sent_at=datetime.now(UTC),
        )
        sent = await send_mail(SmtpSettings.from_settings(rt.settings), message)
        return Outcome(sent.ok, sent.code, sent.error, None, sent.permanent)
    if out.channel == "slack":
        payload = slack_message(recipient, notices)
        payload["blocks"].append({"type": "context", "elements": [{"type": "mrkdwn", "text": ref}]})
    else:
        payload = teams_message(recipient, notices)
        card = payload["attachments"][0]["content"]
        card["body"].append({"type": "TextBlock", "text": ref, "isSubtle": True, "size": "Small"})
    try:
        check_url(out.target)
        response = await client.post(out.target, json=payload)
    except UnsafeTarget as exc:
        return Outcome(False, None, str(exc), None, True)
    except httpx.HTTPError as exc:
        return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:500])
    if 200 <= response.status_code < 300:
        return Outcome(True, response.status_code)
    return Outcome(
        False,
        response.status_code,
        f"HTTP {response.status_code}: {response.text[:200]}",
        retry_after(response.headers.get("retry-after")),
        response.status_code in PERMANENT_CHAT,
    )


async def record_message(rt: Runtime, out: Outgoing, outcome: Outcome) -> None:
    """The message's notices sent, or each retried on the schedule, or dead-lettered."""
    now = datetime.now(UTC)
    ids = [row.id for row in out.rows]
    attempts = max(row.attempts for row in out.rows) + 1
    async with rt.db.unit_of_work() as session:
        if outcome.ok:
            await store.record_notices(
                session, ids, state="sent", sent_at=now, attempts=attempts,
                last_status=outcome.status, last_error=None, next_attempt_at=None,
            )  # fmt: skip
            result = "sent"
        else:
            schedule = rt.settings.webhook_retry_schedule or WEBHOOK_SCHEDULE
            delay = (
                None
                if outcome.permanent
                else webhook_retry_delay(attempts, outcome.retry_after, schedule=schedule)
            )
            values: dict[str, Any] = {
                "attempts": attempts, "last_status": outcome.status, "last_error": outcome.error,
            }  # fmt: skip
            if delay is None:
                values.update(state="dead", next_attempt_at=None)
                result = "dead_lettered"
            else:
                values.update(next_attempt_at=now + timedelta(seconds=delay))
                result = "retry"
            await store.record_notices(session, ids, **values)
    for index, row in enumerate(out.rows):
        label = "coalesced" if result == "sent" and index else result
        metrics.notifications.labels(out.channel, row.event_type, label).inc()
    if not outcome.ok:
        log.warning(
            "message to a person failed",
            extra={"message_id": str(out.message_id), "channel": out.channel,
                   "status": outcome.status, "error": outcome.error, "outcome": result},
        )  # fmt: skip


async def run_notices(rt: Runtime) -> None:
    """Worker: claim due notices as messages, send them (in parallel), record the outcomes."""
    for channel in ("email", "slack", "teams"):  # the series start at 0, for increase()
        metrics.notifications.labels(channel, "sla.breached", "dead_lettered")

    async def step(client: GuardedClient) -> bool:
        messages = await claim_notices(rt)
        outcomes = await asyncio.gather(*(send_message(rt, client, m) for m in messages))
        for out, outcome in zip(messages, outcomes, strict=True):
            await record_message(rt, out, outcome)
        return bool(messages)

    await drain(rt, NOTICES_TAG, 1.0, step)


ONCALL = "oncall"


async def take_alerts(rt: Runtime, body: AlertmanagerIn) -> AlertsOut:
    """Each alert's firing and resolution, once, for the on-call person on each of their
    channels (Alertmanager repeats a group's alerts; the repeats queue nothing)."""
    settings = rt.settings
    person = {"name": settings.oncall_name, "email": settings.oncall_email}
    directory = {
        "slack_webhook_url": settings.oncall_slack_webhook_url,
        "teams_webhook_url": settings.oncall_teams_webhook_url,
    }
    reach = channels(person, directory, email=bool(settings.smtp_host))
    now = datetime.now(UTC)
    rows = []
    for alert in body.alerts:
        labels, annotations = alert.labels, alert.annotations
        key = uuid.uuid5(uuid.NAMESPACE_URL, f"alertmanager:{alert.fingerprint}")
        occurrence = uuid.uuid5(key, alert.startsAt.isoformat())
        notice = {
            "event_type": f"alert.{alert.status}",
            "level": "critical" if labels.get("severity") == "critical" else "warning_alert",
            "lead_id": str(key),
            "lead_name": labels.get("alertname"),
            "company": annotations.get("summary"),
            "source": "Alertmanager",
            "score": None,
            "rep_name": None,
            "sla": labels.get("sla"),
            "due_at": ((alert.status == "resolved" and alert.endsAt) or alert.startsAt).isoformat(),
            "timeline_url": alert.generatorURL or body.externalURL or settings.public_url,
        }
        rows += notice_rows(
            ONCALL, person, reach, notice, timer_id=occurrence, level=alert.status, at=now,
            now=now, unreachable="no on-call channel is configured",
        )  # fmt: skip
    async with rt.db.unit_of_work() as session:
        await store.queue_notices(session, rows)
        touch(session, NOTICES_TAG)
    if not any(channel != "none" for channel, _ in reach):
        log.warning("alerts arrived and no on-call channel is configured (LEADFLOW_ONCALL_*)")
    return AlertsOut(accepted=len(body.alerts), notices=len(rows))


async def list_notices(rt: Runtime, wanted: PageRequest) -> Page[NoticeOut]:
    async with rt.db.unit_of_work() as session:
        rows = await store.page_notices(session, wanted)
    return wanted.page(rows, lambda r: NoticeOut.model_validate(r._mapping))


async def replay_notice(rt: Runtime, notice_id: uuid.UUID) -> ReplayOut:
    """Send a dead-lettered notice again (as a new message); not for an erased lead."""
    async with rt.db.unit_of_work() as session:
        lead_id = await store.replay_notice(session, notice_id, datetime.now(UTC))
        if lead_id is None:
            raise NotFound(f"notice {notice_id} not found, or not dead-lettered")
        if await store.is_erased(session, lead_id):
            raise LeadGone(lead_id, field="notice_id")
        touch(session, NOTICES_TAG)
    return ReplayOut(delivery_id=notice_id, state="pending")


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


async def list_deliveries(rt: Runtime, wanted: PageRequest) -> Page[DeliveryOut]:
    async with rt.db.unit_of_work() as session:
        rows = await store.page_deliveries(session, wanted)
    return wanted.page(rows, lambda r: DeliveryOut.model_validate(r._mapping))


# --- endpoints ----------------------------------------------------------------------------


async def _safe_target(rt: Runtime, url: str) -> None:
    try:
        await check_target(url, allow_private=rt.settings.webhook_allow_private)
    except UnsafeTarget as exc:
        raise Unprocessable(str(exc), errors=[{"field": "url", "message": str(exc)}]) from exc


async def create_endpoint(rt: Runtime, body: EndpointIn) -> EndpointOut:
    url = str(body.url)
    await _safe_target(rt, url)
    endpoint_id = uuid.uuid4()
    secret = body.secret or new_secret()
    filters = body.filters.stored() if body.filters else None
    created = EndpointOut(
        id=endpoint_id,
        url=url,
        event_types=body.event_types,
        team_id=body.team_id,
        filters=filters,
        enabled=True,
        secret=secret,
    )
    async with rt.db.unit_of_work() as session:
        await store.add_endpoint(
            session, endpoint_id, url=url, secrets=[secret], event_types=body.event_types,
            team_id=body.team_id, filters=filters,
        )  # fmt: skip
        await audit.record(
            session, rt.spec.metadata, action="created", entity="webhook-endpoint",
            entity_id=endpoint_id, after=created,
        )  # fmt: skip
    return created


async def rotate_secret(rt: Runtime, endpoint_id: uuid.UUID, secret: str | None) -> EndpointOut:
    """Start a rotation: deliveries are signed with the new secret and the previous one (two
    signatures) until the previous one is dropped, so the receiver can switch without
    downtime. Re-enables an endpoint disabled by a 410."""
    secret = secret or new_secret()
    async with rt.db.unit_of_work() as session:
        before = await store.locked_endpoint(session, endpoint_id)
        row = await store.rotate_secret(session, endpoint_id, secret)
        if before is None or row is None:
            raise NotFound(f"webhook endpoint {endpoint_id} not found")
        rotated = EndpointOut(**row._asdict(), secret=secret)
        await audit.record(
            session, rt.spec.metadata, action="changed", entity="webhook-endpoint",
            entity_id=endpoint_id, before=EndpointOut.model_validate(before._asdict()),
            after=rotated,
        )  # fmt: skip
    return rotated


async def finish_rotation(rt: Runtime, endpoint_id: uuid.UUID) -> None:
    """End a rotation: only the newest secret signs from now on."""
    async with rt.db.unit_of_work() as session:
        before = await store.locked_endpoint(session, endpoint_id)
        if before is None or not await store.drop_previous_secret(session, endpoint_id):
            raise NotFound(f"webhook endpoint {endpoint_id} not found")
        # what changed is a secret: the entry says a previous one was dropped, never which
        await audit.record(
            session, rt.spec.metadata, action="changed", entity="webhook-endpoint",
            entity_id=endpoint_id, before={"previous_secret": "kept"},
            after={"previous_secret": "dropped"},
        )  # fmt: skip


async def list_endpoints(rt: Runtime, wanted: PageRequest) -> Page[EndpointOut]:
    async with rt.db.unit_of_work() as session:
        rows = await store.page_endpoints(session, wanted)
    return wanted.page(rows, lambda r: EndpointOut.model_validate(r._mapping))


async def get_endpoint(rt: Runtime, endpoint_id: uuid.UUID) -> EndpointOut:
    async with rt.db.unit_of_work() as session:
        row = await store.endpoint_row(session, endpoint_id)
    if row is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found", field="endpoint_id")
    return EndpointOut.model_validate(row._asdict())


async def change_endpoint(
    rt: Runtime, endpoint_id: uuid.UUID, change: EndpointPatch
) -> EndpointOut:
    """Change what an endpoint is sent (checked as on creation); events already queued for it
    keep going to it, to its new URL once changed."""
    given = change.model_fields_set
    for field in ("url", "event_types", "enabled"):
        if field in given and getattr(change, field) is None:
            raise Unprocessable(f"{field} cannot be removed", field=field)
    values: dict[str, Any] = {}
    if "url" in given:
        values["url"] = str(change.url)
        await _safe_target(rt, values["url"])
    if "event_types" in given:
        values["event_types"] = change.event_types
    if "team_id" in given:
        values["team_id"] = change.team_id
    if "filters" in given:
        values["filters"] = change.filters.stored() if change.filters else None
    if "enabled" in given:
        values["enabled"] = change.enabled
    async with rt.db.unit_of_work() as session:
        before = await store.locked_endpoint(session, endpoint_id)
        if before is None:
            raise NotFound(f"webhook endpoint {endpoint_id} not found", field="endpoint_id")
        if not values:
            return EndpointOut.model_validate(before._asdict())
        after = EndpointOut.model_validate(
            (await store.change_endpoint(session, endpoint_id, **values))._asdict()
        )
        await audit.record(
            session, rt.spec.metadata, action="changed", entity="webhook-endpoint",
            entity_id=endpoint_id, before=EndpointOut.model_validate(before._asdict()),
            after=after,
        )  # fmt: skip
    return after


async def delete_endpoint(rt: Runtime, endpoint_id: uuid.UUID, *, force: bool) -> None:
    """Delete an endpoint with its deliveries. While some are still to be sent it is a 409
    saying how many, unless `force`, which cancels them with it."""
    async with rt.db.unit_of_work() as session:
        before = await store.locked_endpoint(session, endpoint_id)
        if before is None:
            raise NotFound(f"webhook endpoint {endpoint_id} not found", field="endpoint_id")
        pending = await store.pending_deliveries(session, endpoint_id)
        if pending and not force:
            raise Conflict(
                f"webhook endpoint {endpoint_id} is still used by {pending} pending "
                f"{'delivery' if pending == 1 else 'deliveries'}: wait until they are sent or "
                "dead-lettered (GET /v1/deliveries?state=pending&endpoint_id=…), or delete with "
                "force=true to cancel them",
                uses={"pending_deliveries": pending},
            )
        gone = await store.delete_endpoint(session, endpoint_id)
        deleted = EndpointOut.model_validate(before._asdict()).model_dump(mode="json")
        await audit.record(
            session, rt.spec.metadata, action="deleted", entity="webhook-endpoint",
            entity_id=endpoint_id,
            before={**deleted, "deliveries_deleted": gone, "pending_cancelled": pending},
        )  # fmt: skip


# --- CRM connectors -------------------------------------------------------------------------

_CRM_OUT = "crm_out"


def load_crm_out(rt: Runtime) -> CrmOut:
    """The connectors file's CRM writes, with their credentials. Raises ConnectorsError,
    CredentialsUnreadable."""
    return CrmOut.build(load_connectors(rt.settings.connectors_file), rt.settings)


async def prepare_connectors(rt: Runtime) -> None:
    """At start: a broken connectors file or an unreadable credential file stops notify before
    it takes any event."""
    try:
        rt.state[_CRM_OUT] = crm = load_crm_out(rt)
    except (ConnectorsError, CredentialsUnreadable) as exc:
        log.error("refusing to start: %s", exc)
        raise
    missing = [
        name
        for name, writer, present in (
            ("hubspot", crm.hubspot, crm.hubspot and crm.hubspot.token_present),
            ("salesforce", crm.salesforce, crm.salesforce and crm.salesforce.credentials_present),
        )
        if writer is not None and not present
    ]
    for name in missing:  # its writes are dead-lettered, and can be replayed once it has them
        log.warning("the %s connector is enabled without its credentials", name)


def crm_out(rt: Runtime) -> CrmOut:
    if _CRM_OUT not in rt.state:
        rt.state[_CRM_OUT] = load_crm_out(rt)
    return rt.state[_CRM_OUT]


_CRM_PUBLICATION = "crm_out_publication"


async def current_crm_out(rt: Runtime, session: AsyncSession | None = None) -> CrmOut:
    """The CRM writes in force: the connectors last changed through the API (one row read by
    its key, in `session` when the caller holds one; rebuilt only when its publication
    changed), else the connectors file. A stored document this process cannot apply (a
    credential file it cannot read) is logged and the connectors in force kept."""
    if session is None:
        async with rt.db.unit_of_work() as own:
            row = await CURRENT_CONNECTORS.stored(own, rt.spec.metadata)
    else:
        row = await CURRENT_CONNECTORS.stored(session, rt.spec.metadata)
    if row is None or rt.state.get(_CRM_PUBLICATION) == row.publication:
        return crm_out(rt)
    rt.state[_CRM_PUBLICATION] = row.publication  # logged once, not on every use
    try:
        rt.state[_CRM_OUT] = CrmOut.build(Connectors.model_validate(row.document), rt.settings)
    except (ValueError, CredentialsUnreadable) as exc:
        log.error("published connectors not applied: %s", exc)
    return crm_out(rt)


async def replace_connectors(rt: Runtime, text: str) -> ConnectorsOut:
    """Make a connectors document (YAML or JSON) the one in force, validated exactly as the
    connectors file is: a refused one keeps nothing and names each problem's path and line.
    Stored, published as `connectors.published` (ingest takes it too) and audited."""
    try:
        connectors = parse_connectors_text(text, "the connectors document")
        CrmOut.build(connectors, rt.settings)
    except ConnectorsError as exc:
        raise Unprocessable(
            f"the connectors document is invalid ({max(len(exc.problems), 1)} problem(s))",
            errors=[
                {"field": f"connectors.{path}", "message": reason, "line": line}
                for (path, reason), line in zip(exc.problems, exc.lines, strict=True)
            ]
            or [{"field": "connectors", "message": str(exc), "line": None}],
        ) from None
    except CredentialsUnreadable as exc:
        raise Unprocessable(str(exc), field="connectors") from None
    document = connectors.model_dump(mode="json")
    async with rt.db.unit_of_work() as session:
        before = await CURRENT_CONNECTORS.stored(session, rt.spec.metadata, lock=True)
        published = ConnectorsPublished(
            lead_id=CONNECTORS_KEY,
            publication=(before.publication if before else 0) + 1,
            published_at=rt.clock.now(),
            published_by=audit.actor.get(),
            document=document,
        )
        await CURRENT_CONNECTORS.keep(session, rt.spec.metadata, published)
        await rt.outbox.emit(session, published)
        await audit.record(
            session, rt.spec.metadata, action="published", entity="connectors",
            entity_id=published.publication,
            before=before.document if before else None, after=document,
        )  # fmt: skip
    return await connectors_view(rt)


async def connectors_view(rt: Runtime) -> ConnectorsOut:
    """The connectors' out parts as notify runs them; of the credentials only whether each is
    there."""
    crm, settings = await current_crm_out(rt), rt.settings
    token = crm.hubspot.token_present if crm.hubspot else settings.hubspot_private_app_token
    secret = crm.salesforce.secret_present if crm.salesforce else settings.salesforce_client_secret
    return ConnectorsOut.model_validate(
        {
            "file": settings.connectors_file,
            "publication": rt.state.get(_CRM_PUBLICATION),
            "document": crm.connectors.model_dump(mode="json"),
            "hubspot": {
                "outbound": crm.connectors.hubspot.outbound,
                "api_url": settings.hubspot_api_url,
                "credentials": {
                    "private_app_token": bool(token or settings.hubspot_private_app_token_file)
                },
            },
            "salesforce": {
                "outbound": crm.connectors.salesforce.outbound,
                "credentials": {
                    "client_id": bool(settings.salesforce_client_id),
                    "client_secret": bool(secret or settings.salesforce_client_secret_file),
                },
            },
        }
    )
