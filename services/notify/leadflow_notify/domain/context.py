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

# What a message shows of a lead known only from intake (before it became an MQL): the shape of
# the lead.mql payload, so a receiver reads one shape.
SNAPSHOT_FIELDS = (
    "email", "first_name", "last_name", "title", "role", "seniority", "company", "source",
)  # fmt: skip
ASSIGNMENT_FIELDS = ("assignment_id", "team", "team_id", "rep_id", "rep_name", "reason")


def updated(context: dict[str, Any], payload: Payload) -> dict[str, Any]:
    """The lead's context after the event (a new dict; the event's own fields win)."""
    data = payload.model_dump(mode="json")
    new = dict(context)
    new["lead_id"] = data["lead_id"]
    match payload:
        case LeadSnapshot():
            new["snapshot"] = {k: data[k] for k in SNAPSHOT_FIELDS if k in data}
        case LeadMql():
            new["mql"] = data
            new["score"] = {"fit": data["fit"], "engagement": data["engagement"]}
        case LeadScored():
            new["score"] = {"fit": data["fit"], "engagement": data["engagement"]}
        case LeadRouted():
            if data.get("mql"):
                new["mql"] = data["mql"]
            new["assignment"] = {k: data.get(k) for k in ASSIGNMENT_FIELDS}
        case SlaMet():
            if (context.get("sla") or {}).get("kind") == data["sla"]:
                new.pop("sla", None)
        case SlaEvent():
            new["sla"] = {"kind": data["sla"], "level": data["level"], "due_at": data["due_at"]}
        case LeadStatusChanged():
            new["status"] = data["status"]
    return new


def facts(context: dict[str, Any], payload: Payload) -> dict[str, Any]:
    """What subscriptions filter on: the event's fields, completed from the lead's context
    (an SLA event names its team; a status change does not, but the lead has one)."""
    data = payload.model_dump(mode="json", exclude={"mql", "calendar"})
    assignment = context.get("assignment") or {}
    for name in ("team", "team_id", "rep_id"):
        if data.get(name) is None and assignment.get(name) is not None:
            data[name] = assignment[name]
    return data


def body(event_type: str, timestamp: str, context: dict[str, Any] | None, payload: Payload) -> dict:
    """The Standard Webhooks message of one event: `data` is the event's payload plus `lead`
    (the MQL as routed, else the lead as intake knows it), `assignment` (the lead's team and
    rep) and `sla` (its open clock, when the event is not itself an SLA event). An event that
    is not about a lead (a team's directory) is its payload alone."""
    # A team's channel webhooks are credentials: they stay in notify.
    secret = {"slack_webhook_url", "teams_webhook_url"}
    data = payload.model_dump(mode="json", exclude={"mql", "calendar", *secret})
    if context is None:
        return {"type": event_type, "timestamp": timestamp, "data": data}
    lead = dict(context.get("mql") or context.get("snapshot") or {})
    lead["lead_id"] = data["lead_id"]
    if context.get("score"):
        lead.setdefault("fit", context["score"]["fit"])
        lead.setdefault("engagement", context["score"]["engagement"])
    if context.get("erased"):
        lead = without_personal_data(lead)
    data["lead"] = lead
    assignment = context.get("assignment")
    if assignment:
        data["assignment"] = {"id": assignment["assignment_id"], **{
            k: assignment[k] for k in ASSIGNMENT_FIELDS if k != "assignment_id"
        }}  # fmt: skip
    if context.get("sla") and not isinstance(payload, SlaEvent):
        data["sla"] = context["sla"]
    return {"type": event_type, "timestamp": timestamp, "data": data}


def notice_of(context: dict[str, Any], payload: SlaEvent, level: str, public_url: str) -> dict:
    """What a message to a person says of this clock level (the fields of
    domain.messages.Notice, as JSON)."""
    lead = context.get("mql") or context.get("snapshot") or {}
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
