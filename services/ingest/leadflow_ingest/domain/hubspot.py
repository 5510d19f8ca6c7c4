"""HubSpot contact webhooks, pure: their v3 request signature, the latest value of each
contact property, and the lead a contact's properties describe.

HubSpot sends one event per change (`contact.creation`, `contact.propertyChange` with one
property each), in batches of up to 100, retried on failure. Leadflow keeps the latest value of
each property per contact and, once a contact has an email, creates or updates its lead with
the external id `hubspot:<portalId>:<objectId>`. Events are deduplicated by `eventId`. A
contact whose properties Leadflow has not all seen is read whole from HubSpot's CRM API; what
the properties mean beyond a copy (role, seniority, source, lead magnet) is the mapping's."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from leadflow.errors import Unauthorized

from leadflow_ingest.domain.hubspot_mapping import (
    BUYING_ROLE_PROPERTY,
    DEFAULT_MAPPING,
    TITLE_PROPERTY,
    HubSpotMapping,
)
from leadflow_ingest.domain.titles import seniority_from_title

SOURCE = "hubspot"
MAX_AGE_SECONDS = 300  # HubSpot: reject requests whose timestamp is older than five minutes
# Characters HubSpot decodes in the URI before signing (their request-validation guide).
_URI_DECODE = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}  # fmt: skip


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
    headers: Mapping[str, str],
    *,
    now: float,
) -> None:
    """Raise Unauthorized unless the request carries a valid X-HubSpot-Signature-v3 sent within
    five minutes of `now` (seconds since the epoch)."""
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
    if abs(now - sent_ms / 1000) > MAX_AGE_SECONDS:
        raise Unauthorized(
            "the request timestamp is more than five minutes away from now",
            field="X-HubSpot-Request-Timestamp",
        )
    expected = signature_v3(secret, method, uri, body, timestamp)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise Unauthorized("the HubSpot signature does not match", field="X-HubSpot-Signature-v3")


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
}
LEGAL_BASIS_PROPERTY = "hs_legal_basis"


def lead_from_contact(
    portal_id: int,
    object_id: int,
    properties: dict[str, dict],
    mapping: HubSpotMapping = DEFAULT_MAPPING,
) -> dict:
    """A LeadIn body from a contact's known properties (values as HubSpot sends them: strings):
    the plain copies of PROPERTY_MAP, the consent basis, and what the mapping reads (role from
    the buying role, seniority from the title, source and lead magnet). A known title or buying
    role always decides, so a changed one replaces what it gave before."""
    lead: dict[str, Any] = {
        "external_id": f"hubspot:{portal_id}:{object_id}",
        "source": {"system": SOURCE, "channel": "inbound"},
    }
    values = {name: entry.get("value") for name, entry in properties.items()}
    read = mapping.properties_read()
    extra: dict[str, Any] = {}
    for name, value in values.items():
        target = PROPERTY_MAP.get(name)
        if target is None:
            if name == LEGAL_BASIS_PROPERTY:
                basis = _legal_basis(value)
                if basis:
                    lead["consent"] = {"basis": basis}
            elif name not in read:
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
    if values.get(TITLE_PROPERTY):
        lead["seniority"] = seniority_from_title(values[TITLE_PROPERTY], mapping.title_rules)
    if values.get(BUYING_ROLE_PROPERTY):
        lead["role"] = mapping.role_of(values[BUYING_ROLE_PROPERTY])
    lead["source"] |= mapping.source_of(values)
    magnet = mapping.lead_magnet_of(values)
    if magnet:
        lead["source"]["lead_magnet"] = magnet
    if extra:
        lead["hubspot"] = extra
    return lead


def properties_read(mapping: HubSpotMapping = DEFAULT_MAPPING) -> list[str]:
    """Every contact property a lead is made from: what a read from HubSpot asks for."""
    return sorted({*PROPERTY_MAP, LEGAL_BASIS_PROPERTY, *mapping.properties_read()})


def properties_missing(known: Iterable[str], mapping: HubSpotMapping = DEFAULT_MAPPING) -> bool:
    """Whether a contact with these properties known lacks some the lead is made from (a new
    contact, or one whose webhooks carried only some): then it is read whole from HubSpot."""
    return not set(properties_read(mapping)) <= set(known)


def with_read(
    properties: dict[str, dict], read: Mapping[str, str | None], updated_at: int
) -> dict[str, dict]:
    """A contact's properties after reading them from HubSpot as of `updated_at` (epoch ms, the
    object's last change): each replaces what is known unless a newer change is known."""
    changed = properties
    for name, value in read.items():
        changed = with_change(changed, name, value, updated_at)
    return changed


def with_change(
    properties: dict[str, dict], name: str | None, value: str | None, occurred_at: int
) -> dict[str, dict]:
    """A contact's properties after one event: a property change replaces the value it holds
    unless that value is newer (HubSpot retries and does not keep order)."""
    changed = dict(properties)
    if name:
        known = changed.get(name)
        if known is None or known.get("occurred_at", 0) <= occurred_at:
            changed[name] = {"value": value, "occurred_at": occurred_at}
    return changed


def last_change(properties: dict[str, dict]) -> datetime | None:
    """When the contact last changed: the time its lead's input occurred."""
    latest = max((p.get("occurred_at", 0) for p in properties.values()), default=0)
    return datetime.fromtimestamp(latest / 1000, UTC) if latest else None
