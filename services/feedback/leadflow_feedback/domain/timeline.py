"""The timeline of one lead: every event feedback consumed or emitted about it, in order, with
the facts worth showing and no personal data.

`row_of` turns an event and its payload into its row (instant and details); the store adds rows once per event
id, so a replayed or redelivered event changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from leadflow.contracts.events import (
    CloudEvent,
    LeadActivity,
    LeadChurned,
    LeadContactAttempt,
    LeadCreated,
    LeadMql,
    LeadOnboardingMilestone,
    LeadRouted,
    LeadSalesReported,
    LeadScored,
    LeadStatusChanged,
    LeadUpdated,
    Payload,
    SlaEvent,
    SlaMet,
    WebhookDeadLettered,
)

# Company facts that describe the segment, not a person.
COMPANY_FIELDS = ("industry", "employees", "size_band", "country", "region")
SOURCE_FIELDS = ("system", "channel", "campaign", "medium", "lead_magnet")
ROUTED_FIELDS = ("assignment_id", "team", "team_id", "rep_id", "channel", "reason", "kind")
DEAD_LETTER_FIELDS = ("delivery_id", "endpoint_id", "event_type", "attempts", "last_error")
SLA_FIELDS = (
    "sla", "level", "party", "team", "rep_id", "started_at", "due_at", "met_at",
    "business_seconds", "outcome", "escalate_to", "reassign",
)  # fmt: skip
STATUS_FIELDS = (
    "from_status", "status", "reason", "rep_id", "nurture_until", "qualification", "opportunity",
    "handoff",
)  # fmt: skip
# What a CRM reported back (feedback adds whether it was applied, and why not).
SALES_REPORT_FIELDS = (
    "kind", "system", "record_id", "channel", "outcome", "status", "reason", "field", "value",
)  # fmt: skip
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


def about_a_lead(payload: Payload) -> bool:
    return not (isinstance(payload, SlaEvent) and payload.sla in PERIOD_COMMITMENTS)


def _pick(data: dict[str, Any] | None, names: tuple[str, ...]) -> dict[str, Any]:
    return {k: data[k] for k in names if (data or {}).get(k) not in (None, "", [])}


def instant_of(event: CloudEvent, payload: Payload) -> datetime:
    """When the fact happened, as its payload says; the envelope's time is when it was written
    down, which for a backdated attempt or a late SLA firing is not the same."""
    match payload:
        case (
            LeadCreated()
            | LeadUpdated()
            | LeadActivity()
            | LeadContactAttempt()
            | LeadSalesReported()
        ):
            return payload.occurred_at
        case LeadScored():
            return payload.scored_at
        case LeadMql():
            return payload.promoted_at
        case LeadRouted():
            return payload.routed_at
        case SlaMet():
            return payload.met_at
        case LeadStatusChanged():
            return payload.changed_at
        case LeadOnboardingMilestone():
            return payload.reached_at
        case LeadChurned():
            return payload.churned_at
    return event.time


def details_of(event: CloudEvent, payload: Payload) -> dict[str, Any]:
    """What the timeline shows of an event, from its data as sent (fields it left empty stay
    out); names, emails, phones and free-text notes stay out too."""
    data = event.data
    match payload:
        case LeadCreated() | LeadUpdated():
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
        case LeadActivity():
            return _pick(data, ("activity_type", "page_category"))
        case LeadScored():
            return {
                **_pick(data, ("fit", "engagement", "intent_tier")),
                "is_mql": data.get("is_mql"),
                "breakdown": data.get("breakdown") or [],
                "reasons": data.get("reasons") or [],
            }
        case LeadMql():
            return {
                **_pick(data, ("kind", "fit", "engagement", "intent_tier", "channel")),
                "source": _pick(data.get("source"), SOURCE_FIELDS),
                "company": _pick(data.get("company"), COMPANY_FIELDS),
                "breakdown": data.get("breakdown") or [],
                "reasons": data.get("reasons") or [],
                "key_activities": [
                    _pick(a, ("kind", "occurred_at")) for a in data.get("key_activities") or []
                ],
                "intent_note": bool((data.get("intent_note") or "").strip()),
            }
        case LeadRouted():
            return _pick(data, ROUTED_FIELDS)
        case WebhookDeadLettered():
            return _pick(data, DEAD_LETTER_FIELDS)
        case SlaEvent():
            return _pick(data, SLA_FIELDS)
        case LeadContactAttempt():
            return _pick(data, ("attempt_id", "channel", "rep_id", "outcome"))
        case LeadStatusChanged():
            return _pick(data, STATUS_FIELDS)
        case LeadSalesReported():
            return _pick(data, SALES_REPORT_FIELDS)
        case LeadOnboardingMilestone():
            return _pick(data, ("milestone", "feature"))
        case LeadChurned():
            return _pick(data, ("reason",))
    return {}


def display_name(data: dict[str, Any]) -> str | None:
    """'First Last · Company' from a lead snapshot or MQL, for people to recognise the lead."""
    person = " ".join(p for p in (data.get("first_name"), data.get("last_name")) if p).strip()
    company = ((data.get("company") or {}).get("name") or "").strip()
    label = " · ".join(p for p in (person, company) if p)
    return label[:200] or None


def row_of(event: CloudEvent, payload: Payload) -> dict[str, Any] | None:
    """The event's timeline row; None for an event about no lead (a period commitment)."""
    if not about_a_lead(payload):
        return None
    return {
        "event_id": event.id,
        "lead_id": uuid.UUID(event.subject),
        "type": event.type,
        "source": event.source,
        "occurred_at": instant_of(event, payload),
        "details": details_of(event, payload),
    }
