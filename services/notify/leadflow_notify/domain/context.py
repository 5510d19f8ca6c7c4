"""What notify knows about a lead, from the events it consumes, and the body of a webhook
message: the event's data plus the context a person or a sales tool needs to act on it."""

from __future__ import annotations

from typing import Any

from leadflow.contracts.erasure import without_personal_data
from leadflow.contracts.events import (
    LeadMql,
    LeadRouted,
    LeadScored,
    LeadSnapshot,
    LeadStatusChanged,
    Payload,
    SlaEvent,
    SlaMet,
)

# What notify keeps of a lead, from intake's snapshot and then from its MQL: who, at which
# company, from which source (the shape of those payloads, so a receiver reads one shape).
LEAD_FIELDS = (
    "email", "first_name", "last_name", "title", "role", "seniority", "company", "source",
)  # fmt: skip
ASSIGNMENT_FIELDS = ("assignment_id", "team", "team_id", "rep_id", "rep_name", "reason")
# Left out of a webhook body: the MQL a lead.routed carries (it is the body's `lead`), the
# team calendar, and a team's channel webhooks (credentials: they stay in notify).
NOT_IN_BODY = frozenset({"mql", "calendar", "slack_webhook_url", "teams_webhook_url"})


def updated(context: dict[str, Any], payload: Payload, data: dict[str, Any]) -> dict[str, Any]:
    """The lead's context after the event (`data`: the payload as JSON); the same dict when
    the event changes nothing of it."""
    new = dict(context)
    new["lead_id"] = data["lead_id"]
    match payload:
        case LeadSnapshot() | LeadMql():
            new["lead"] = {k: data[k] for k in LEAD_FIELDS if k in data}
            if isinstance(payload, LeadSnapshot) and data.get("external_id"):
                # how a CRM knows the lead already (HubSpot intake: its contact), for the writes
                # to the CRM when the lead is routed
                new["external_id"] = data["external_id"]
            if isinstance(payload, LeadMql):
                new["score"] = {"fit": data["fit"], "engagement": data["engagement"]}
        case LeadScored():
            new["score"] = {"fit": data["fit"], "engagement": data["engagement"]}
        case LeadRouted():
            new["assignment"] = {k: data.get(k) for k in ASSIGNMENT_FIELDS}
        case SlaMet():
            if (context.get("sla") or {}).get("kind") == data["sla"]:
                new.pop("sla", None)
        case SlaEvent():
            new["sla"] = {"kind": data["sla"], "level": data["level"], "due_at": data["due_at"]}
        case LeadStatusChanged():
            new["status"] = data["status"]
    return context if new == context else new


def facts(context: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """What subscriptions filter on: the event's fields, completed from the lead's context
    (an SLA event names its team; a status change does not, but the lead has one)."""
    assignment = context.get("assignment") or {}
    missing = {
        name: assignment[name]
        for name in ("team", "team_id", "rep_id")
        if data.get(name) is None and assignment.get(name) is not None
    }
    return {**data, **missing} if missing else data


def body(
    event_type: str, timestamp: str, context: dict[str, Any] | None, data: dict[str, Any]
) -> dict:
    """The Standard Webhooks message of one event (`data`: its payload as JSON): the payload
    plus `lead` (the MQL a lead.routed carries, else the lead as notify knows it),
    `assignment` (the lead's team and rep) and `sla` (its open clock, when the event is not
    itself an SLA event). An event that is not about a lead (a team's directory) is its
    payload alone."""
    shown = {k: v for k, v in data.items() if k not in NOT_IN_BODY}
    if context is None:
        return {"type": event_type, "timestamp": timestamp, "data": shown}
    lead = dict(data.get("mql") or context.get("lead") or {})
    lead["lead_id"] = data["lead_id"]
    if context.get("score"):
        lead.setdefault("fit", context["score"]["fit"])
        lead.setdefault("engagement", context["score"]["engagement"])
    if context.get("erased"):
        lead = without_personal_data(lead)
    shown["lead"] = lead
    assignment = context.get("assignment")
    if assignment:
        shown["assignment"] = {"id": assignment["assignment_id"], **{
            k: assignment[k] for k in ASSIGNMENT_FIELDS if k != "assignment_id"
        }}  # fmt: skip
    if context.get("sla") and "due_at" not in data:
        shown["sla"] = context["sla"]
    return {"type": event_type, "timestamp": timestamp, "data": shown}


def notice_of(context: dict[str, Any], payload: SlaEvent, level: str, public_url: str) -> dict:
    """What a message to a person says of this clock level (the fields of
    domain.messages.Notice, as JSON)."""
    lead = context.get("lead") or {}
    name = " ".join(p for p in (lead.get("first_name"), lead.get("last_name")) if p) or None
    source = lead.get("source") or {}
    return {
        "event_type": payload.type,
        "level": level,
        "lead_id": str(payload.lead_id),
        "lead_name": name,
        "company": (lead.get("company") or {}).get("name"),
        "source": " / ".join(str(v) for v in (source.get("system"), source.get("campaign")) if v)
        or None,
        "score": (context.get("score") or {}).get("fit"),
        "rep_name": (context.get("assignment") or {}).get("rep_name"),
        "sla": payload.sla,
        "due_at": payload.due_at.isoformat(),
        "timeline_url": f"{public_url.rstrip('/')}/review/leads/{payload.lead_id}",
    }
