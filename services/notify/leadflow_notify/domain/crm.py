"""What a routed lead becomes in a CRM: the rep's HubSpot owner or Salesforce user, the
first-response deadline its task is due at, the records' fields and the task's texts, the
HubSpot contact intake already knows, and the pace HubSpot's per-10-second limit allows."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from leadflow.contracts import slas
from leadflow.contracts.calendar import BusinessCalendar, CalendarSpecError, policy_calendar
from leadflow.contracts.connectors import HubSpotOutbound, SalesforceOutbound
from leadflow.contracts.policy import Policy

HUBSPOT, SALESFORCE = "hubspot", "salesforce"
# HubSpot's association type of a task to a contact (HUBSPOT_DEFINED).
TASK_TO_CONTACT = 204


def first_response_due(
    policy: Policy,
    kind: str,
    channel: str | None,
    calendar: Mapping[str, Any] | None,
    routed_at: datetime,
) -> datetime:
    """When the rep's first contact attempt is due: the earliest clock routing opens that the
    first attempt meets (first response; for a PQL also its contact clock), on the team's
    calendar (else, or when it cannot be read, the policy's)."""
    try:
        cal = BusinessCalendar.from_spec(calendar) if calendar else policy_calendar(policy)
    except CalendarSpecError:
        cal = policy_calendar(policy)
    dues = []
    for sla in slas.opened_by_routing(kind):
        if sla in slas.MET_BY_FIRST_ATTEMPT:
            term = slas.term(policy, sla, channel)
            dues.append(slas.due_after(term.clock, cal, routed_at, term.limit))
    return min(dues) if dues else routed_at


def hubspot_contact_id(external_id: str | None) -> str | None:
    """The contact id of a lead HubSpot intake made (external id `hubspot:<portal>:<id>`)."""
    if not external_id or not external_id.startswith("hubspot:"):
        return None
    contact = external_id.rsplit(":", 1)[-1]
    return contact if contact.isdigit() else None


@dataclass(frozen=True)
class RoutedLead:
    """A routed lead as the CRM writes need it, read from the stored delivery body."""

    lead_id: str
    assignment_id: str
    rep_id: str | None
    rep_email: str | None
    rep_name: str | None
    team: str | None
    due_at: datetime
    email: str | None
    first_name: str | None
    last_name: str | None
    title: str | None
    company: str | None
    source: str | None
    hubspot_contact_id: str | None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> RoutedLead:
        data = body["data"]
        lead = data.get("lead") or {}
        crm = data.get("crm") or {}
        source = lead.get("source") or {}
        return cls(
            lead_id=str(data["lead_id"]),
            assignment_id=str(data["assignment_id"]),
            rep_id=data.get("rep_id"),
            rep_email=crm.get("rep_email"),
            rep_name=data.get("rep_name"),
            team=data.get("team"),
            due_at=datetime.fromisoformat(crm["due_at"]),
            email=lead.get("email"),
            first_name=lead.get("first_name"),
            last_name=lead.get("last_name"),
            title=lead.get("title"),
            company=(lead.get("company") or {}).get("name"),
            source=source.get("system") or source.get("medium"),
            hubspot_contact_id=crm.get("hubspot_contact_id"),
        )

    @property
    def name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.email or "lead"

    @property
    def marker(self) -> str:
        """Written into the task, so a task already made for this assignment is recognised."""
        return f"[leadflow:{self.assignment_id}]"


def crm_facts(due_at: datetime, rep_email: str | None, external_id: str | None) -> dict[str, Any]:
    """What a CRM delivery's body adds to the webhook body of its lead.routed."""
    return {
        "due_at": due_at.astimezone(UTC).isoformat(),
        "rep_email": rep_email,
        "hubspot_contact_id": hubspot_contact_id(external_id),
    }


def owner_for(owners: Mapping[str, str], rep_id: str | None, rep_email: str | None) -> str | None:
    """The CRM's owner (user) of the rep: by the rep's id, else by their e-mail."""
    if rep_id and rep_id in owners:
        return owners[rep_id]
    if rep_email and rep_email.lower() in owners:
        return owners[rep_email.lower()]
    return None


def task_text(template: str, lead: RoutedLead) -> str:
    """A task's subject or body from its template (fields checked when the file was read)."""
    return template.format(
        lead_name=lead.name,
        company=lead.company or "",
        email=lead.email or "",
        title=lead.title or "",
        rep_name=lead.rep_name or "",
        team=lead.team or "",
        due_at=lead.due_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        lead_id=lead.lead_id,
        source=lead.source or "",
    )


# --- HubSpot --------------------------------------------------------------------------------


def hubspot_contact_update(config: HubSpotOutbound, owner_id: str) -> dict[str, str]:
    properties = {"hubspot_owner_id": owner_id}
    if config.lead_status:
        properties["hs_lead_status"] = config.lead_status
    return properties


def hubspot_new_contact(config: HubSpotOutbound, lead: RoutedLead, owner_id: str) -> dict:
    properties = {
        "email": lead.email,
        "firstname": lead.first_name,
        "lastname": lead.last_name,
        "jobtitle": lead.title,
        "company": lead.company,
    }
    return {k: v for k, v in properties.items() if v} | hubspot_contact_update(config, owner_id)


def hubspot_task(
    config: HubSpotOutbound, lead: RoutedLead, owner_id: str, contact_id: str
) -> dict[str, Any]:
    """The task's create body (CRM v3): due at the deadline, owned by the rep, associated with
    the contact, carrying the assignment's marker."""
    return {
        "properties": {
            "hs_timestamp": lead.due_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "hs_task_subject": task_text(config.task_subject, lead),
            "hs_task_body": f"{task_text(config.task_body, lead)}\n{lead.marker}",
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": config.task_priority,
            "hs_task_type": config.task_type,
            "hubspot_owner_id": owner_id,
        },
        "associations": [
            {
                "to": {"id": contact_id},
                "types": [
                    {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_CONTACT}
                ],
            }
        ],
    }


# --- Salesforce -----------------------------------------------------------------------------


def salesforce_lead(config: SalesforceOutbound, lead: RoutedLead, owner_id: str) -> dict:
    """The Lead's upsert body. LastName and Company are required when Salesforce creates it."""
    fields = {
        "OwnerId": owner_id,
        "Email": lead.email,
        "FirstName": lead.first_name,
        "LastName": lead.last_name or (lead.email or "").split("@")[0] or "(unknown)",
        "Company": lead.company or "(unknown)",
        "Title": lead.title,
        "LeadSource": config.lead_source or lead.source,
        "Status": config.lead_status,
    }
    return {k: v for k, v in fields.items() if v is not None}


def salesforce_task(
    config: SalesforceOutbound, lead: RoutedLead, owner_id: str, lead_record_id: str
) -> dict:
    """The Task's upsert body: the rep's, on the Lead, reminding at the deadline."""
    due = lead.due_at.astimezone(UTC)
    return {
        "OwnerId": owner_id,
        "WhoId": lead_record_id,
        "Subject": task_text(config.task_subject, lead)[:255],
        "Description": task_text(config.task_body, lead),
        "ActivityDate": due.date().isoformat(),
        "ReminderDateTime": due.isoformat().replace("+00:00", "Z"),
        "IsReminderSet": True,
        "Status": "Not Started",
        "Priority": config.task_priority,
    }


def token_fresh(taken_at: float, lifetime: float, now: float) -> bool:
    """A token taken at `taken_at` is used until a tenth of its lifetime before it ends."""
    return now < taken_at + lifetime * 0.9


# --- HubSpot's pace -------------------------------------------------------------------------


class RollingWindow:
    """At most `limit` calls in any `seconds` (HubSpot's per-10-second limit of one account),
    tightened by what HubSpot's answers say is left (`X-HubSpot-RateLimit-*`) and by a 429's
    `Retry-After`. Instants are the caller's (a monotonic clock); nothing here reads one."""

    def __init__(self, limit: int, seconds: float = 10.0) -> None:
        self.configured = limit
        self.limit = limit
        self.seconds = seconds
        self.calls: deque[float] = deque()
        self.blocked_until = 0.0

    def wait(self, now: float) -> float:
        """Seconds before another call may go (0: now)."""
        while self.calls and self.calls[0] <= now - self.seconds:
            self.calls.popleft()
        waits = [self.blocked_until - now]
        if len(self.calls) >= self.limit:
            waits.append(self.calls[len(self.calls) - self.limit] + self.seconds - now)
        return max(0.0, *waits)

    def take(self, now: float) -> None:
        self.calls.append(now)

    def observe(
        self,
        now: float,
        *,
        limit: int | None = None,
        remaining: int | None = None,
        interval: float | None = None,
    ) -> None:
        """What an answer's rate-limit headers say: the account's limit (never above the
        configured one) and, when nothing is left, no call until the interval has passed."""
        if limit:
            self.limit = min(self.configured, limit)
        if remaining is not None and remaining <= 0:
            self.blocked_until = max(self.blocked_until, now + (interval or self.seconds))

    def refused(self, now: float, retry_after: float | None) -> None:
        """A 429: no call before its Retry-After (else a whole window)."""
        self.blocked_until = max(self.blocked_until, now + (retry_after or self.seconds))
