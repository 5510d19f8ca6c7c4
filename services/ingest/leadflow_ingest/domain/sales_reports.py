"""What sales tools report back, pure: a CRM's status change or logged activity in Leadflow's
terms (a contact attempt or a status), how its record names the lead, and the generic webhook's
field paths, value tables and HMAC signature.

Every report carries the tool (`system`) and the tool's own id of what it reported
(`record_id`): ingest passes each (system, record_id) on once, so a change delivered again,
under the same delivery id or a new one, changes nothing. What a report means is the
connectors file's (`leadflow.contracts.connectors`); nothing here reads a database or a clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from leadflow.contracts.connectors import Connectors, GenericWebhook, HubSpotInbound, Reported
from leadflow.contracts.yaml_lines import Lines, line_at
from leadflow.errors import Unauthorized, Unprocessable

HUBSPOT = "hubspot"
SALESFORCE = "salesforce"
# HubSpot's object type ids (CRM object APIs) of the activities that can be contact attempts.
HUBSPOT_ENGAGEMENTS = {"0-48": "calls", "0-49": "emails", "0-47": "meetings"}
HUBSPOT_CONTACT = "0-1"
# What Leadflow asks HubSpot of each kind of activity, besides its associated contacts.
ENGAGEMENT_PROPERTIES = {
    "calls": ("hs_timestamp", "hs_call_disposition", "hs_call_direction", "hs_call_status"),
    "emails": ("hs_timestamp", "hs_email_direction", "hs_email_status"),
    "meetings": ("hs_timestamp", "hs_meeting_start_time", "hs_meeting_outcome"),
}
ENGAGEMENT_CHANNELS = {"calls": "call", "emails": "email", "meetings": "meeting"}
# An e-mail the lead sent (or forwarded) is not the rep reaching out.
NOT_OUTREACH = frozenset({"INCOMING_EMAIL", "FORWARDED_EMAIL"})


@dataclass(frozen=True)
class LeadRef:
    """How a report names its lead: `by` lead_id, email, external_id, or a CRM record
    (`crm`: the record's id in `system`, as intake or notify linked it)."""

    by: Literal["lead_id", "email", "external_id", "crm", "hubspot_contact"]
    value: str


@dataclass(frozen=True)
class Unmapped:
    """A value of a watched field that the connectors file does not list."""

    field: str
    value: str


@dataclass(frozen=True)
class Report:
    """One thing a sales tool reported, in Leadflow's terms (or, `reported` being an Unmapped,
    a value the connectors file does not list), and the lead it is about."""

    system: str
    record_id: str
    occurred_at: datetime
    reported: Reported | Unmapped
    leads: tuple[LeadRef, ...]
    outcome: str | None = None

    @property
    def kind(self) -> str:
        return "unmapped" if isinstance(self.reported, Unmapped) else self.reported.kind

    def fields(self) -> dict[str, Any]:
        """The `lead.sales_reported` fields besides the lead."""
        reported = self.reported
        if isinstance(reported, Unmapped):
            details: dict[str, Any] = {"field": reported.field, "value": reported.value[:200]}
        elif reported.kind == "attempt":
            details = {"channel": reported.channel, "outcome": self.outcome or reported.outcome}
        else:
            details = {"status": reported.status, "reason": reported.reason}
        return {
            "kind": self.kind,
            "system": self.system,
            "record_id": self.record_id,
            "occurred_at": self.occurred_at,
            **details,
        }


def epoch_ms(value: int | str | None) -> datetime | None:
    """An instant HubSpot writes as milliseconds since the epoch (or ISO 8601); None if neither."""
    if value in (None, ""):
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return instant(value)


def instant(value: Any) -> datetime | None:
    """An ISO 8601 instant, or seconds / milliseconds since the epoch; None if none of them."""
    if isinstance(value, bool) or value in (None, ""):
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        number = float(value)
        try:
            return datetime.fromtimestamp(number / 1000 if number > 1e11 else number, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def unknown_reasons(
    connectors: Connectors, reasons: Collection[str], lines: Lines | None = None
) -> list[str]:
    """Where the connectors file maps a value to a status with a reason the policy does not
    list (each as its path in the file, and its line given the file's `lines`): feedback would
    refuse every such report."""
    tables: list[tuple[tuple[str | int, ...], Mapping[str, Reported | None]]] = []
    hubspot = connectors.hubspot.inbound
    if hubspot.enabled:
        tables += [
            (("hubspot", "inbound", "properties", name), table)
            for name, table in hubspot.properties.items()
        ]
    if connectors.salesforce.inbound.enabled:
        tables.append(
            (
                ("salesforce", "inbound", "lead_statuses"),
                connectors.salesforce.inbound.lead_statuses,
            )
        )
    for index, webhook in enumerate(connectors.webhooks):
        tables += [
            (("webhooks", index, "mappings", m, "values"), mapping.values)
            for m, mapping in enumerate(webhook.mappings)
        ]
    found = []
    for where, table in tables:
        for value, reported in table.items():
            if reported is None or reported.reason is None or reported.reason in reasons:
                continue
            loc = (*where, value, "reason")
            path = ".".join(str(part) for part in loc)
            line = None
            if lines:
                line = line_at(lines, ("connectors", *loc) if ("connectors",) in lines else loc)
            at = f"line {line}: " if line else ""
            found.append(
                f"{at}connectors.{path}: {reported.reason!r} is not a reason of the policy"
            )
    return found


# --- HubSpot ---------------------------------------------------------------------------------


def watched_property(inbound: HubSpotInbound, property_name: str | None) -> bool:
    """Whether a contact property is one sales reports through (`inbound.properties`)."""
    return inbound.enabled and property_name in inbound.properties


def hubspot_property_report(
    inbound: HubSpotInbound,
    portal_id: int,
    contact_id: int,
    property_name: str,
    value: str | None,
    occurred_at_ms: int,
) -> Report | None:
    """A contact's status property changed: what the new value means, unmapped when its table
    does not list it, or None when the table lists it as saying nothing (or it was cleared).
    The record is the change itself (contact, property, instant), so the same change under
    another event id is the same record."""
    table = inbound.properties.get(property_name, {})
    if not value:
        return None
    reported = table[value] if value in table else Unmapped(property_name, value)
    if reported is None:
        return None
    return Report(
        system=HUBSPOT,
        record_id=f"{portal_id}:contact:{contact_id}:{property_name}:{occurred_at_ms}",
        occurred_at=datetime.fromtimestamp(occurred_at_ms / 1000, UTC),
        reported=reported,
        leads=(LeadRef("hubspot_contact", f"{portal_id}:{contact_id}"),),
    )


def hubspot_engagement_kind(inbound: HubSpotInbound, object_type_id: str | None) -> str | None:
    """`calls`, `emails` or `meetings` when an object of this type is an activity Leadflow
    takes as a contact attempt (per `inbound.engagements`)."""
    kind = HUBSPOT_ENGAGEMENTS.get(object_type_id or "")
    return kind if inbound.enabled and kind in inbound.engagements else None


def hubspot_engagement_report(
    inbound: HubSpotInbound,
    portal_id: int,
    kind: str,
    engagement_id: int,
    properties: Mapping[str, str | None],
    contact_ids: list[int],
    *,
    created_ms: int,
) -> Report | None:
    """A call, e-mail or meeting logged on contacts, as HubSpot holds it: a contact attempt on
    its channel, at its own time (`hs_timestamp`), with its outcome (a call's disposition by
    name, a meeting's outcome); an e-mail the lead sent is none."""
    if kind == "emails" and (properties.get("hs_email_direction") or "") in NOT_OUTREACH:
        return None
    outcome: str | None = None
    if kind == "calls":
        disposition = properties.get("hs_call_disposition")
        if disposition:
            outcome = inbound.call_dispositions.get(disposition, disposition)
    elif kind == "meetings":
        outcome = (properties.get("hs_meeting_outcome") or "").lower() or None
    elif kind == "emails":
        outcome = (properties.get("hs_email_status") or "").lower() or None
    at = (
        epoch_ms(properties.get("hs_timestamp"))
        or epoch_ms(properties.get("hs_meeting_start_time"))
        or datetime.fromtimestamp(created_ms / 1000, UTC)
    )
    channel = ENGAGEMENT_CHANNELS[kind]
    return Report(
        system=HUBSPOT,
        record_id=f"{portal_id}:{kind}:{engagement_id}",
        occurred_at=at,
        reported=Reported(kind="attempt", channel=channel),  # type: ignore[arg-type]
        leads=tuple(LeadRef("hubspot_contact", f"{portal_id}:{c}") for c in contact_ids),
        outcome=outcome[:200] if outcome else None,
    )


# --- field paths -----------------------------------------------------------------------------

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class PathMissing(Exception):
    """The body has nothing at `path`."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


def value_at(body: Any, path: str) -> Any:
    """The value at a field path (`data.person.email`, `$.current.status`, `items[0].id`,
    `items.0.id`); raises PathMissing when the body has nothing there (or null)."""
    steps = path[2:] if path.startswith("$.") else path
    value = body
    for name, index in _STEP.findall(steps):
        if index:
            key: Any = int(index)
        elif name.isdigit() and isinstance(value, list):
            key = int(name)
        else:
            key = name
        if isinstance(key, int) and isinstance(value, list) and 0 <= key < len(value):
            value = value[key]
        elif isinstance(key, str) and isinstance(value, dict) and key in value:
            value = value[key]
        else:
            raise PathMissing(path)
    if value is None:
        raise PathMissing(path)
    return value


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


# --- the generic webhook ---------------------------------------------------------------------

_DIGESTS = {"sha256": hashlib.sha256, "sha1": hashlib.sha1, "sha512": hashlib.sha512}


def webhook_signature(webhook: GenericWebhook, secret: str, body: bytes) -> str:
    """The signature header's value a tool sharing `secret` sends with `body`."""
    signature = webhook.signature
    digest = hmac.new(secret.encode(), body, _DIGESTS[signature.algorithm]).digest()
    encoded = digest.hex() if signature.encoding == "hex" else base64.b64encode(digest).decode()
    return signature.prefix + encoded


def verify_webhook(
    webhook: GenericWebhook, secret: str, body: bytes, headers: Mapping[str, str]
) -> None:
    """Raise Unauthorized unless the configured header carries the body's HMAC."""
    header = webhook.signature.header
    sent = headers.get(header.lower())
    if not sent:
        raise Unauthorized(f"the {header} header is required", field=header)
    expected = webhook_signature(webhook, secret, body)
    if webhook.signature.encoding == "hex":
        sent, expected = sent.lower(), expected.lower()
    if not hmac.compare_digest(expected.encode(), sent.strip().encode()):
        raise Unauthorized(f"the signature in {header} does not match the body", field=header)


def _required(body: Any, path: str, what: str) -> str:
    try:
        value = _scalar(value_at(body, path))
    except PathMissing:
        raise Unprocessable(
            f"the body has no {what} at `{path}` (the webhook's field path)", field=path
        ) from None
    if value is None or not value.strip():
        raise Unprocessable(f"{what} at `{path}` must be a text or a number", field=path)
    return value.strip()


def webhook_report(webhook: GenericWebhook, body: Any, *, now: datetime) -> Report | None:
    """What a generic webhook's body reports, by the webhook's field paths and value tables:
    unmapped when the body has values at the mappings' paths but no table lists them (the
    first such value), None when no mapping's path is in the body or its table lists the value
    as saying nothing. A missing record id, lead or instant the configuration asks for is
    Unprocessable, naming the path."""
    record_id = _required(body, webhook.record_id, "record id")
    lead = _required(body, webhook.lead.path, webhook.lead.by.replace("_", " "))
    if webhook.lead.by == "lead_id":
        try:
            lead = str(uuid.UUID(lead))
        except ValueError:
            raise Unprocessable(
                f"the lead id at `{webhook.lead.path}` is not a UUID", field=webhook.lead.path
            ) from None
    occurred_at = now
    if webhook.occurred_at is not None:
        raw = _required(body, webhook.occurred_at, "instant")
        parsed = instant(raw)
        if parsed is None:
            raise Unprocessable(
                f"the instant at `{webhook.occurred_at}` is neither ISO 8601 nor epoch seconds "
                "or milliseconds",
                field=webhook.occurred_at,
            )
        occurred_at = parsed
    unmapped: Unmapped | None = None
    for mapping in webhook.mappings:
        try:
            value = _scalar(value_at(body, mapping.value))
        except PathMissing:
            continue
        if value is None or value not in mapping.values:
            if value and unmapped is None:
                unmapped = Unmapped(mapping.value, value)
            continue
        reported = mapping.values[value]
        if reported is None:
            return None
        outcome = None
        if mapping.outcome is not None:
            try:
                outcome = _scalar(value_at(body, mapping.outcome))
            except PathMissing:
                outcome = None
        if reported.kind == "status":
            # a record (a deal, a person) changes status many times: the change is the record
            record_id = f"{record_id}:{value}"
            if webhook.occurred_at is not None:
                record_id += f":{occurred_at.isoformat()}"
        return Report(
            system=f"webhook:{webhook.name}",
            record_id=record_id,
            occurred_at=occurred_at,
            reported=reported,
            leads=(LeadRef(webhook.lead.by, lead),),
            outcome=outcome[:200] if outcome else None,
        )
    if unmapped is None:
        return None
    stamp = f":{occurred_at.isoformat()}" if webhook.occurred_at is not None else ""
    return Report(
        system=f"webhook:{webhook.name}",
        record_id=f"{record_id}:{unmapped.field}:{unmapped.value}{stamp}",
        occurred_at=occurred_at,
        reported=unmapped,
        leads=(LeadRef(webhook.lead.by, lead),),
    )
