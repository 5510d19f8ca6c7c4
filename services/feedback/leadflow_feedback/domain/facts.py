"""What each event says about its lead (`fact_of`) and how a lead's status follows from what is
known about it (`settle`), whatever order the events arrive in.

Topics are ordered per lead but not across topics (after a broker outage they catch up in any
order), so every event records the facts it carries: the lead is created when it is new, the
latest of each stamped fact (promotion, routing, score, exhausted cadence) is kept, and the
lifecycle status is derived from the facts: a later-stage fact is never lost, an earlier-stage
event arriving late never moves the lead backwards, and a status set by sales stays.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from leadflow.contracts.commitments import in_target, mql_context_missing
from leadflow.contracts.events import (
    CloudEvent,
    LeadCreated,
    LeadErased,
    LeadMql,
    LeadRouted,
    LeadScored,
    LeadUpdated,
    Payload,
    SlaBreached,
    SlaMet,
)
from leadflow.contracts.policy import Policy
from leadflow.contracts.slas import BREACH_OUTCOMES, FIRST_RESPONSE, UNREACHABLE

from leadflow_feedback.domain.lifecycle import pipeline_steps
from leadflow_feedback.domain.timeline import display_name

# Lead facts that come from the lead snapshot of ingest until the lead is promoted; from then
# on the MQL's snapshot is the one the reports use, whichever of the two arrives first.
SNAPSHOT_UNTIL_MQL = ("channel", "source", "role")


@dataclass(frozen=True)
class Fact:
    """What one event says about one lead: the columns it sets (`updated_at` included).

    With a `stamp` (one of the columns), a fact older than the one already known leaves the
    lead as it is, so the latest wins whatever the arrival order; `keep(lead)` names columns
    the lead keeps as they are (e.g. its name once erased). A fact that `settles` is followed
    by `settle`."""

    lead_id: uuid.UUID
    values: dict[str, Any]
    stamp: str | None = None
    keep: Callable[[dict[str, Any]], Iterable[str]] | None = None
    settles: bool = False

    def apply(self, lead: dict[str, Any]) -> None:
        if self.stamp is not None and lead[self.stamp] is not None:
            if lead[self.stamp] > self.values[self.stamp]:
                return
        kept = set(self.keep(lead)) if self.keep is not None else ()
        for name, value in self.values.items():
            if name not in kept:
                lead[name] = value


@dataclass
class Known:
    """A lead as the batch found it and changes it, with what `settle` needs."""

    lead: dict[str, Any]
    stored: dict[str, Any]
    reopened_at: datetime | None = None  # the lead's last recycle
    attempts: list[datetime] = field(default_factory=list)


@dataclass
class Step:
    """A status change `settle` derived: a history row, or (`unreachable`) the cadence's
    consequence, recorded as a status change of its own."""

    lead_id: uuid.UUID
    from_status: str
    status: str
    at: datetime
    unreachable: bool = False


def _snapshot_keeps(lead: dict[str, Any]) -> list[str]:
    kept = list(SNAPSHOT_UNTIL_MQL) if lead["mql_at"] is not None else []
    return [*kept, "display_name"] if lead["erased_at"] is not None else kept


def _mql_keeps(lead: dict[str, Any]) -> list[str]:
    # The name comes from ingest's snapshot; the MQL's fills it in only when it is missing,
    # and never after the lead was erased.
    named = lead["erased_at"] is not None or lead["display_name"] is not None
    return ["display_name"] if named else []


def fact_of(policy: Policy, event: CloudEvent, payload: Payload) -> Fact | None:
    """The fact an event records about its lead; None for an event only the timeline shows
    (an activity, a dead-lettered webhook, an SLA warning or escalation, another SLA's end)."""
    at = event.time
    match payload:
        case LeadCreated() | LeadUpdated():
            # the source as ingest sent it, the keys it left out still left out
            source = event.data.get("source") or {}
            values = {
                "channel": source.get("channel"),
                "source": source,
                "role": payload.role,
                "context_missing": list(payload.context_missing),
                "display_name": display_name(event.data),
                "updated_at": at,
            }
            return Fact(payload.lead_id, values, keep=_snapshot_keeps)
        case LeadErased():
            # The lead's personal data leaves feedback: the display name goes.
            values = {"erased_at": at, "display_name": None, "updated_at": at}
            return Fact(payload.lead_id, values)
        case LeadScored():
            values = {
                "fit": payload.fit,
                "engagement": payload.engagement,
                "intent_tier": payload.intent_tier,
                "scored_at": payload.scored_at,
                "updated_at": at,
            }
            return Fact(payload.lead_id, values, stamp="scored_at")
        case LeadMql():
            values = {
                "channel": payload.channel,
                "source": payload.source.model_dump(mode="json", exclude_none=True),
                "role": payload.role,
                "mql_at": payload.promoted_at,
                "mql_fit": payload.fit,
                "mql_engagement": payload.engagement,
                "mql_intent_tier": payload.intent_tier,
                "in_target": in_target(policy, payload.company.model_dump(), payload.role),
                "mql_context_missing": mql_context_missing(payload),
                "display_name": display_name(event.data),
                "updated_at": at,
            }
            return Fact(payload.lead_id, values, stamp="mql_at", keep=_mql_keeps, settles=True)
        case LeadRouted():
            values = {
                "team": payload.team,
                "rep_id": payload.rep_id,
                "routed_at": payload.routed_at,
                "calendar": payload.calendar,
                "updated_at": at,
            }
            return Fact(payload.lead_id, values, stamp="routed_at", settles=True)
        case SlaMet(sla=sla) if sla == FIRST_RESPONSE:
            values = {
                "sla_due_at": payload.due_at,
                "sla_response_seconds": payload.business_seconds,
                "updated_at": at,
            }
            return Fact(payload.lead_id, values)
        case SlaBreached(sla=sla, outcome=outcome) if (
            outcome == UNREACHABLE and BREACH_OUTCOMES.get(sla) == UNREACHABLE
        ):
            # A clock whose breach leaves the lead unreachable (the contact cadence) ran out:
            # applied now if the lead is routed here, or once its routing arrives.
            values = {"cadence_exhausted_at": at, "updated_at": at}
            return Fact(payload.lead_id, values, stamp="cadence_exhausted_at", settles=True)
        case SlaBreached(sla=sla) if sla == FIRST_RESPONSE:
            values = {"sla_due_at": payload.due_at, "sla_breached": True, "updated_at": at}
            return Fact(payload.lead_id, values)
    return None


def settle(known: Known) -> list[Step]:
    """Bring the lead's status in line with the facts known about it, whatever order they
    arrived in: promotion and routing (`lifecycle.pipeline_steps`), then the consequences
    that wait for routing — a contact attempt already recorded makes it `working`, a cadence
    already exhausted makes it unreachable and recycles it. Facts from before the lead's last
    recycle are spent; a status set by sales is left as it is. Changes `known` and returns
    the status changes to record, in order."""
    lead, reopened_at = known.lead, known.reopened_at
    lead_id = lead["lead_id"]

    def fresh(at: datetime | None) -> bool:
        return at is not None and (reopened_at is None or at > reopened_at)

    steps: list[Step] = []

    def step(status: str, at: datetime) -> None:
        # the history row names the status it came from, so the history is an unbroken chain
        steps.append(Step(lead_id, lead["status"], status, at))
        lead["status"], lead["updated_at"] = status, at

    for status in pipeline_steps(
        lead["status"], mql_at=lead["mql_at"], routed_at=lead["routed_at"], reopened_at=reopened_at
    ):
        # a lead routed before its promotion arrived passes mql at the routing instant
        promoted = status == "mql" and fresh(lead["mql_at"])
        step(status, lead["mql_at"] if promoted else lead["routed_at"])
    if lead["status"] == "routed":
        first_attempt = min(
            (at for at in known.attempts if reopened_at is None or at > reopened_at), default=None
        )
        if first_attempt is not None:
            step("working", max(first_attempt, lead["routed_at"]))
    exhausted_at = lead["cadence_exhausted_at"]
    if lead["status"] in ("routed", "working") and fresh(exhausted_at):
        # The cadence ended without contact: the lead is marked unreachable and recycled to
        # nurture (docs/domain.md).
        steps.append(Step(lead_id, lead["status"], UNREACHABLE, exhausted_at, unreachable=True))
        lead.update(status="recycled", reason=UNREACHABLE, updated_at=exhausted_at)
        known.reopened_at = exhausted_at  # the recycle's instant
    return steps
