"""The timeline of one lead: every event feedback consumed or emitted about it, in order, with
the facts worth showing and no personal data.

`row_of` turns an event into its row (instant and details); the store adds rows once per event
id, so a replayed or redelivered event changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from leadflow.contracts.events import CloudEvent

# The payload field that says when the fact happened (the envelope's time is when it was
# written down, which for a backdated attempt or a late SLA firing is not the same).
INSTANT_FIELDS = {
    "lead.created": "occurred_at",
    "lead.updated": "occurred_at",
    "lead.activity": "occurred_at",
    "lead.scored": "scored_at",
    "lead.mql": "promoted_at",
    "lead.routed": "routed_at",
    "sla.met": "met_at",
    "lead.contact_attempt": "occurred_at",
    "lead.status_changed": "changed_at",
}
# Company facts that describe the segment, not a person.
COMPANY_FIELDS = ("industry", "employees", "size_band", "country", "region")
SOURCE_FIELDS = ("system", "channel", "campaign", "medium", "lead_magnet")
# SLA events about a party's period commitments carry the period's id, not a lead's.
PERIOD_COMMITMENTS = frozenset(
    {
        "mql_volume",
        "source_mix",
        "in_target_share",
        "full_context_share",
        "contacted_within_limit_share",
        "attempts_per_mql",
        "status_share",
    }
)


def about_a_lead(event: CloudEvent) -> bool:
    return not (event.type.startswith("sla.") and event.data.get("sla") in PERIOD_COMMITMENTS)


def _pick(data: dict[str, Any] | None, names: tuple[str, ...]) -> dict[str, Any]:
    return {k: data[k] for k in names if (data or {}).get(k) not in (None, "", [])}


def _instant(event: CloudEvent) -> datetime:
    name = INSTANT_FIELDS.get(event.type)
    raw = event.data.get(name) if name else None
    if raw:
        try:
            return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            pass
    return event.time


def details_of(event: CloudEvent) -> dict[str, Any]:
    """What the timeline shows of an event; names, emails, phones and free-text notes stay out."""
    data = event.data
    kind = event.type
    if kind in ("lead.created", "lead.updated"):
        details = {
            "source": _pick(data.get("source"), SOURCE_FIELDS),
            "company": _pick(data.get("company"), COMPANY_FIELDS),
            "role": data.get("role"),
            "seniority": data.get("seniority"),
            "consent_basis": data.get("consent_basis"),
            "routable": data.get("routable"),
            "intent_tier": data.get("intent_tier"),
            "flags": data.get("flags") or [],
            "context_missing": data.get("context_missing") or [],
        }
        if data.get("merged_lead_ids"):
            details["merged_lead_ids"] = data["merged_lead_ids"]
        return details
    if kind == "lead.activity":
        return _pick(data, ("activity_type", "page_category"))
    if kind == "lead.scored":
        return {
            **_pick(data, ("fit", "engagement", "intent_tier")),
            "is_mql": data.get("is_mql"),
            "breakdown": data.get("breakdown") or [],
            "reasons": data.get("reasons") or [],
        }
    if kind == "lead.mql":
        return {
            **_pick(data, ("kind", "fit", "engagement", "intent_tier", "channel")),
            "source": _pick(data.get("source"), SOURCE_FIELDS),
            "company": _pick(data.get("company"), COMPANY_FIELDS),
            "breakdown": data.get("breakdown") or [],
            "reasons": data.get("reasons") or [],
            "key_activities": [
                _pick(a, ("kind", "occurred_at"))
                for a in data.get("key_activities") or []
            ],
            "intent_note": bool((data.get("intent_note") or "").strip()),
        }
    if kind == "lead.routed":
        return _pick(
            data, ("assignment_id", "team", "team_id", "rep_id", "channel", "reason", "kind")
        )
    if kind == "webhook.dead_lettered":
        return _pick(data, ("delivery_id", "endpoint_id", "event_type", "attempts", "last_error"))
    if kind.startswith("sla."):
        return _pick(
            data,
            (
                "sla",
                "level",
                "party",
                "team",
                "rep_id",
                "started_at",
                "due_at",
                "met_at",
                "business_seconds",
                "outcome",
                "escalate_to",
                "reassign",
            ),
        )
    if kind == "lead.contact_attempt":
        return _pick(data, ("attempt_id", "channel", "rep_id", "outcome"))
    if kind == "lead.status_changed":
        return _pick(
            data,
            (
                "from_status",
                "status",
                "reason",
                "rep_id",
                "nurture_until",
                "qualification",
                "opportunity",
            ),
        )
    return {}


def display_name(data: dict[str, Any]) -> str | None:
    """'First Last · Company' from a lead snapshot or MQL, for people to recognise the lead."""
    person = " ".join(p for p in (data.get("first_name"), data.get("last_name")) if p).strip()
    company = ((data.get("company") or {}).get("name") or "").strip()
    label = " · ".join(p for p in (person, company) if p)
    return label[:200] or None


def row_of(event: CloudEvent) -> dict[str, Any] | None:
    """The event's timeline row; None for an event about no lead (a period commitment)."""
    if not about_a_lead(event):
        return None
    return {
        "event_id": event.id,
        "lead_id": uuid.UUID(event.subject),
        "type": event.type,
        "source": event.source,
        "occurred_at": _instant(event),
        "details": details_of(event),
    }
