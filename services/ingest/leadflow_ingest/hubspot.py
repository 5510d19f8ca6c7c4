"""HubSpot contact webhooks: their batched event payload and their v3 request signature,
mapped onto the same intake as every other source.

HubSpot sends one event per change (`contact.creation`, `contact.propertyChange` with one
property each), in batches of up to 100, retried on failure. Leadflow keeps the latest value of
each property per contact and, once a contact has an email, creates or updates its lead with
the external id `hubspot:<portalId>:<objectId>`. Events are deduplicated by `eventId`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from leadflow.contracts.policy import Policy
from leadflow.errors import ProblemError, Unauthorized, validation_errors
from leadflow.outbox import Outbox
from leadflow.text import StorableModel
from pydantic import ConfigDict, Field, ValidationError
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_ingest.intake import Writer, accept_lead
from leadflow_ingest.models import hubspot_contacts, hubspot_events
from leadflow_ingest.schemas import LeadIn

SOURCE = "hubspot"
MAX_AGE_SECONDS = 300  # HubSpot: reject requests whose timestamp is older than five minutes
# Characters HubSpot decodes in the URI before signing (their request-validation guide).
_URI_DECODE = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip


class HubSpotEvent(StorableModel):
    model_config = ConfigDict(extra="allow")
    eventId: int  # noqa: N815 - HubSpot's field names
    subscriptionType: str = Field(max_length=100)  # noqa: N815
    portalId: int  # noqa: N815
    objectId: int  # noqa: N815
    occurredAt: int = Field(ge=0)  # noqa: N815 - milliseconds since the epoch
    propertyName: str | None = Field(default=None, max_length=200)  # noqa: N815
    propertyValue: str | None = Field(default=None, max_length=65_536)  # noqa: N815


def _decoded_uri(uri: str) -> str:
    for encoded, char in _URI_DECODE.items():
        uri = uri.replace(encoded, char).replace(encoded.lower(), char)
    return uri


def signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    message = method.upper().encode() + _decoded_uri(uri).encode() + body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify_v3(
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    headers: dict[str, str],
    *,
    now: float | None = None,
) -> None:
    """Raise Unauthorized unless the request carries a fresh, valid X-HubSpot-Signature-v3."""
    signature = headers.get("x-hubspot-signature-v3")
    timestamp = headers.get("x-hubspot-request-timestamp")
    if not signature or not timestamp:
        raise Unauthorized(
            "X-HubSpot-Signature-v3 and X-HubSpot-Request-Timestamp are required",
            field="X-HubSpot-Signature-v3",
        )
    try:
        sent_ms = int(timestamp)
    except ValueError:
        raise Unauthorized(
            "X-HubSpot-Request-Timestamp must be milliseconds since the epoch",
            field="X-HubSpot-Request-Timestamp",
        ) from None
    current = time.time() if now is None else now
    if abs(current - sent_ms / 1000) > MAX_AGE_SECONDS:
        raise Unauthorized(
            "the request timestamp is more than five minutes away from now",
            field="X-HubSpot-Request-Timestamp",
        )
    expected = signature_v3(secret, method, uri, body, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized("the HubSpot signature does not match", field="X-HubSpot-Signature-v3")


def parse_events(raw: Any) -> list[HubSpotEvent]:  # noqa: ANN401 - decoded JSON
    if not isinstance(raw, list):
        raise ProblemError(
            "HubSpot sends a JSON array of events",
            status=422,
            title="Invalid request",
            field="body",
        )
    events, errors = [], []
    for index, item in enumerate(raw):
        try:
            events.append(HubSpotEvent.model_validate(item))
        except ValidationError as exc:
            for error in validation_errors(exc.errors()):
                errors.append({**error, "field": f"{index}.{error['field']}"})
    if errors:
        raise ProblemError(
            f"{len(errors)} invalid field(s) in the event batch",
            status=422,
            title="Invalid request",
            errors=errors,
        )
    return events


def _int(value: str | None) -> int | None:
    try:
        return int(float(value)) if value not in (None, "") else None
    except ValueError:
        return None


def _legal_basis(value: str | None) -> str | None:
    if not value:
        return None
    lowered = value.lower()
    if "legitimate interest" in lowered:
        return "legitimate_interest"
    if "consent" in lowered:
        return "consent"
    if "not applicable" in lowered:
        return "none"
    return None


# HubSpot contact property → where it goes on a lead.
PROPERTY_MAP = {
    "email": ("email",),
    "firstname": ("first_name",),
    "lastname": ("last_name",),
    "jobtitle": ("title",),
    "phone": ("phone",),
    "company": ("company", "name"),
    "website": ("company", "domain"),
    "industry": ("company", "industry"),
    "numberofemployees": ("company", "employees"),
    "country": ("company", "country"),
    "state": ("company", "region"),
    "hs_analytics_source": ("source", "medium"),
    "hs_analytics_source_data_1": ("source", "campaign"),
}


def lead_from_contact(portal_id: int, object_id: int, properties: dict[str, dict]) -> dict:
    """A LeadIn body from a contact's known properties (values as HubSpot sends them: strings)."""
    lead: dict[str, Any] = {
        "external_id": f"hubspot:{portal_id}:{object_id}",
        "source": {"system": SOURCE, "channel": "inbound"},
    }
    extra: dict[str, Any] = {}
    for name, entry in properties.items():
        value = entry.get("value")
        target = PROPERTY_MAP.get(name)
        if target is None:
            if name == "hs_legal_basis":
                basis = _legal_basis(value)
                if basis:
                    lead["consent"] = {"basis": basis}
            else:
                extra[name] = value
            continue
        if target == ("company", "employees"):
            value = _int(value)
        if value in (None, ""):
            continue
        if len(target) == 1:
            lead[target[0]] = value
        else:
            lead.setdefault(target[0], {})[target[1]] = value
    if extra:
        lead["hubspot"] = extra
    return lead


async def ingest_events(
    session: AsyncSession,
    outbox: Outbox,
    policy: Policy,
    events: list[HubSpotEvent],
    *,
    now: datetime,
) -> dict[str, Any]:
    """Record the batch and bring every touched contact that has an email onto its lead."""
    duplicates = 0
    touched: dict[tuple[int, int], None] = {}
    for event in sorted(events, key=lambda e: (e.occurredAt, e.eventId)):
        fresh = await session.scalar(
            insert(hubspot_events)
            .values(portal_id=event.portalId, event_id=event.eventId, received_at=now)
            .on_conflict_do_nothing()
            .returning(hubspot_events.c.event_id)
        )
        if fresh is None:
            duplicates += 1
            continue
        if not event.subscriptionType.startswith("contact."):
            continue
        key = (event.portalId, event.objectId)
        row = (
            await session.execute(
                sa.select(hubspot_contacts.c.properties)
                .where(
                    hubspot_contacts.c.portal_id == event.portalId,
                    hubspot_contacts.c.object_id == event.objectId,
                )
                .with_for_update()
            )
        ).first()
        properties = dict(row.properties) if row else {}
        if event.propertyName:
            known = properties.get(event.propertyName)
            if known is None or known.get("occurred_at", 0) <= event.occurredAt:
                properties[event.propertyName] = {
                    "value": event.propertyValue,
                    "occurred_at": event.occurredAt,
                }
        await session.execute(
            insert(hubspot_contacts)
            .values(
                portal_id=event.portalId,
                object_id=event.objectId,
                properties=properties,
                updated_at=now,
            )
            .on_conflict_do_update(
                index_elements=[hubspot_contacts.c.portal_id, hubspot_contacts.c.object_id],
                set_={"properties": properties, "updated_at": now},
            )
        )
        touched[key] = None

    leads: list[dict[str, Any]] = []
    waiting = 0
    for portal_id, object_id in touched:
        properties = await session.scalar(
            sa.select(hubspot_contacts.c.properties).where(
                hubspot_contacts.c.portal_id == portal_id,
                hubspot_contacts.c.object_id == object_id,
            )
        )
        body = lead_from_contact(portal_id, object_id, properties)
        if not body.get("email"):
            waiting += 1  # kept; the lead is made when the email property arrives
            continue
        try:
            lead = LeadIn.model_validate(body)
        except ValidationError as exc:
            leads.append(
                {
                    "object_id": object_id,
                    "status": 422,
                    "errors": validation_errors(exc.errors()),
                }
            )
            continue
        latest = max((p.get("occurred_at", 0) for p in properties.values()), default=0)
        lead.occurred_at = datetime.fromtimestamp(latest / 1000, UTC) if latest else None
        accepted = await accept_lead(
            session,
            outbox,
            policy,
            lead,
            writer=Writer(key_name=f"hubspot:{portal_id}", source=SOURCE),
            now=now,
        )
        await session.execute(
            sa.update(hubspot_contacts)
            .where(
                hubspot_contacts.c.portal_id == portal_id,
                hubspot_contacts.c.object_id == object_id,
            )
            .values(lead_id=accepted.lead_id)
        )
        leads.append(
            {
                "object_id": object_id,
                "status": 202,
                "lead_id": str(accepted.lead_id),
                "duplicate": accepted.duplicate,
            }
        )
    return {
        "received": len(events),
        "duplicates": duplicates,
        "waiting_for_email": waiting,
        "leads": leads,
    }
