"""Salesforce Outbound Messages, pure: the SOAP `notifications` a Flow sends (on a Lead's status
change, on a Task or Event created), parsed; the `Ack` answered; each notification's record in
Leadflow's terms.

The message is Salesforce's outbound messaging WSDL: a SOAP 1.1 envelope whose body holds
`notifications` (namespace `http://soap.sforce.com/2005/09/outbound`) with `OrganizationId`,
`ActionId`, `SessionId`, `EnterpriseUrl`, `PartnerUrl` and one to 100 `Notification`s, each an
`Id` (the notification's, the same when Salesforce delivers it again) and an `sObject` whose
`xsi:type` names its type (`sf:Lead`, `sf:Task`) and whose children are the fields the
outbound message sends (namespace `urn:sobject.enterprise.soap.sforce.com`). Salesforce delivers
a message again until it is answered with `notificationsResponse/Ack` true, for up to 24 hours.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException
from leadflow.contracts.connectors import Reported, SalesforceInbound
from leadflow.errors import Unprocessable

from leadflow_ingest.domain.sales_reports import SALESFORCE, LeadRef, Report, Unmapped, instant

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND = "http://soap.sforce.com/2005/09/outbound"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP}"><soapenv:Body>'
    f'<notificationsResponse xmlns="{OUTBOUND}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
)
# Activities: a Task logged (call, e-mail) or an Event (a meeting) on a Lead or Contact.
ACTIVITIES = frozenset({"Task", "Event"})
# When an activity happened, in the order they are asked for.
ACTIVITY_INSTANTS = ("CompletedDateTime", "StartDateTime", "ActivityDateTime", "CreatedDate")
CHANGE_INSTANTS = ("LastModifiedDate", "SystemModstamp")


@dataclass(frozen=True)
class Notification:
    """One notification: its id, the sObject's type and the fields sent (text values)."""

    id: str
    object_type: str
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundMessage:
    organization_id: str
    action_id: str | None
    notifications: list[Notification]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in element if _local(c.tag) == name), None)


def _text(element: ET.Element, name: str) -> str | None:
    found = _child(element, name)
    text = (found.text or "").strip() if found is not None else ""
    return text or None


def parse_outbound_message(body: bytes) -> OutboundMessage:
    """The message's organisation, action and notifications; Unprocessable naming what is
    missing or malformed. The XML is read by defusedxml, which refuses a document type
    declaration, entities and external references (no entity of any kind is expanded)."""
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except DefusedXmlException:
        raise Unprocessable("a document type declaration is not accepted", field="body") from None
    except ET.ParseError as exc:
        raise Unprocessable(f"the body is not XML: {exc}", field="body") from None
    soap_body = _child(root, "Body") if _local(root.tag) == "Envelope" else None
    if soap_body is None:
        raise Unprocessable("a SOAP Envelope with a Body is expected", field="Envelope.Body")
    notifications = _child(soap_body, "notifications")
    if notifications is None or notifications.tag != f"{{{OUTBOUND}}}notifications":
        raise Unprocessable(
            f"the Body holds no notifications of {OUTBOUND}", field="Envelope.Body.notifications"
        )
    organization_id = _text(notifications, "OrganizationId")
    if organization_id is None:
        raise Unprocessable("OrganizationId is missing", field="notifications.OrganizationId")
    parsed = []
    for index, item in enumerate(c for c in notifications if _local(c.tag) == "Notification"):
        where = f"notifications.Notification[{index}]"
        notification_id = _text(item, "Id")
        sobject = _child(item, "sObject")
        if notification_id is None:
            raise Unprocessable("the notification's Id is missing", field=f"{where}.Id")
        if sobject is None:
            raise Unprocessable("the notification's sObject is missing", field=f"{where}.sObject")
        object_type = _local(sobject.get(f"{{{XSI}}}type", "").rsplit(":", 1)[-1]) or "sObject"
        values = {
            _local(c.tag): (c.text or "").strip()
            for c in sobject
            if c.get(f"{{{XSI}}}nil") != "true" and (c.text or "").strip()
        }
        parsed.append(Notification(notification_id, object_type, values))
    if not parsed:
        raise Unprocessable("the message has no Notification", field="notifications.Notification")
    return OutboundMessage(organization_id, _text(notifications, "ActionId"), parsed)


def same_organization(configured: str, sent: str) -> bool:
    """Salesforce ids come in a 15-character case-sensitive form and an 18-character form with a
    checksum; both name the same organisation."""
    return configured[:15] == sent[:15]


def _first(fields: dict[str, str], names: tuple[str, ...]) -> datetime | None:
    for name in names:
        at = instant(fields.get(name))
        if at is not None:
            return at
    return None


def _lead_refs(inbound: SalesforceInbound, fields: dict[str, str], record: str) -> list[LeadRef]:
    refs = []
    if inbound.lead_id_field and fields.get(inbound.lead_id_field):
        try:
            refs.append(LeadRef("lead_id", str(uuid.UUID(fields[inbound.lead_id_field]))))
        except ValueError:
            pass
    if fields.get(record):
        refs.append(LeadRef("crm", fields[record]))
    return refs


def notification_report(
    inbound: SalesforceInbound, notification: Notification, *, now: datetime
) -> Report | None:
    """What one notification reports: a Lead's status (by `lead_statuses`) or a Task / Event as a
    contact attempt (by `task_channels`); a status the table does not list as unmapped; None
    when it reports nothing Leadflow maps.

    The record is the change: a Lead's id, field, value and modification time (else the
    notification's id, which a redelivery keeps), an activity's own id."""
    fields = notification.fields
    if notification.object_type == "Lead":
        value = fields.get(inbound.status_field)
        if not value or not fields.get("Id"):
            return None
        reported: Reported | Unmapped | None = (
            inbound.lead_statuses[value]
            if value in inbound.lead_statuses
            else Unmapped(inbound.status_field, value)
        )
        if reported is None:  # listed as saying nothing sales did
            return None
        changed = _first(fields, CHANGE_INSTANTS)
        stamp = changed.isoformat() if changed else f"notification:{notification.id}"
        return Report(
            system=SALESFORCE,
            record_id=f"Lead:{fields['Id']}:{inbound.status_field}:{value}:{stamp}",
            occurred_at=changed or now,
            reported=reported,
            leads=tuple(_lead_refs(inbound, fields, "Id")),
        )
    if notification.object_type in ACTIVITIES:
        if notification.object_type == "Event":
            channel: str | None = inbound.task_channels.get("Meeting", "meeting")
        else:
            channel = inbound.task_channels.get(
                fields.get("TaskSubtype", ""), inbound.task_channels.get(fields.get("Type", ""))
            )
        if channel is None or not fields.get("Id") or not fields.get("WhoId"):
            return None
        outcome = fields.get(inbound.task_outcome_field) or fields.get("Status")
        return Report(
            system=SALESFORCE,
            record_id=f"{notification.object_type}:{fields['Id']}",
            occurred_at=_first(fields, ACTIVITY_INSTANTS) or now,
            reported=Reported(kind="attempt", channel=channel),  # type: ignore[arg-type]
            leads=tuple(_lead_refs(inbound, fields, "WhoId")),
            outcome=outcome[:200] if outcome else None,
        )
    return None
