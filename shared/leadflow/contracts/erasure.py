"""Erasure of a lead's personal data: what counts as personal in a lead, and the outbox rows
that still carry it. Every service that keeps lead data applies the same rules on `lead.erased`.

Personal: who the person is (email, external id, names, phone, job title), what was said about
them in free text (intent note, extra properties, UTM values, a hand-off's use case, promised
outcomes, risks and plan), and the company's name. Kept,
because reports need them and they name nobody: ids, timestamps, channel, campaign, lead magnet,
industry, size, country, role and seniority categories, consent basis, flags, scores."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow.contracts.events import PAYLOAD_TYPES, CloudEvent

PERSONAL_FIELDS = (
    "email",
    "external_id",
    "first_name",
    "last_name",
    "phone",
    "title",
    "intent_note",
)
# Parts of the nested objects that may name the person or carry their words.
PERSONAL_COMPANY_FIELDS = ("name",)
KEPT_SOURCE_FIELDS = ("system", "channel", "campaign", "medium", "lead_magnet")
# A hand-off's words about the customer: replaced, not removed, so that a hand-off still carries
# each part it needs (the clock it meets asks for all four).
HANDOFF_TEXT_FIELDS = ("use_case", "promised_outcomes", "risks", "plan")
ERASED_TEXT = "[erased]"


def without_personal_data(lead: dict[str, Any]) -> dict[str, Any]:
    """A copy of a lead snapshot (or an MQL) with its personal data removed and `erased` set.
    Fields that are present become null (free-form `properties` empty), so the shape stays."""
    redacted = dict(lead)
    for name in PERSONAL_FIELDS:
        if name in redacted:
            redacted[name] = None
    if "properties" in redacted:
        redacted["properties"] = {}
    company = redacted.get("company")
    if isinstance(company, dict):
        redacted["company"] = {
            k: (None if k in PERSONAL_COMPANY_FIELDS else v) for k, v in company.items()
        }
    source = redacted.get("source")
    if isinstance(source, dict):
        redacted["source"] = {k: v for k, v in source.items() if k in KEPT_SOURCE_FIELDS}
    handoff = redacted.get("handoff")
    if isinstance(handoff, dict):
        redacted["handoff"] = {
            k: (ERASED_TEXT if k in HANDOFF_TEXT_FIELDS and v else v) for k, v in handoff.items()
        }
    redacted["erased"] = True
    return redacted


def _event_without_personal_data(event: CloudEvent) -> CloudEvent:
    data = without_personal_data(event.data)
    data.pop("erased")
    if isinstance(data.get("mql"), dict):  # lead.routed carries the MQL it routed
        data["mql"] = without_personal_data(data["mql"])
    model = PAYLOAD_TYPES.get(event.type)
    if model is not None and "email" in data:
        field = model.model_fields.get("email")
        if field is not None and field.is_required():
            data["email"] = ""  # the payload type insists on a string
    return event.model_copy(update={"data": data})


async def forget_events(
    session: AsyncSession, outbox: sa.Table, lead_ids: Iterable[uuid.UUID]
) -> None:
    """The service's outbox rows of these leads: published ones are deleted (they are kept
    only for a while anyway), waiting ones are still published, without the personal data."""
    keys = [str(i) for i in lead_ids]
    if not keys:
        return
    # Every row of these leads locked first, and each one judged by what it is once locked:
    # the relay may mark a row published meanwhile, and a row judged "waiting" by one statement
    # and "published" by the next would be neither deleted nor scrubbed.
    rows = (
        await session.execute(
            sa.select(outbox.c.id, outbox.c.payload, outbox.c.published_at)
            .where(outbox.c.key.in_(keys))
            .order_by(outbox.c.id)
            .with_for_update()
        )
    ).all()
    published = [row.id for row in rows if row.published_at is not None]
    if published:
        await session.execute(sa.delete(outbox).where(outbox.c.id.in_(published)))
    for row in rows:
        if row.published_at is not None:
            continue
        event = CloudEvent.from_bytes(row.payload)
        if event.type == "lead.erased":
            continue
        await session.execute(
            sa.update(outbox)
            .where(outbox.c.id == row.id)
            .values(payload=_event_without_personal_data(event).to_bytes())
        )
