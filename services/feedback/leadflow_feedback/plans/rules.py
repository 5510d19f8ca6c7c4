"""Pure rules of corrective plans: the plan a party's missed periods open (or add to), its owner
and due date from the policy, the statuses a plan moves through, and which actions are overdue."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from leadflow.contracts.events import SlaCorrectivePlanRequired
from leadflow.contracts.policy import Policy

PlanStatus = Literal["open", "in_progress", "done", "cancelled"]
STATUSES: tuple[str, ...] = ("open", "in_progress", "done", "cancelled")
OPEN_STATUSES = frozenset({"open", "in_progress"})
# A plan is worked (open → in progress → done) or dropped (cancelled); a closed plan stays closed,
# the next missed streak opens a new one.
MOVES: dict[str, frozenset[str]] = {
    "open": frozenset({"in_progress", "done", "cancelled"}),
    "in_progress": frozenset({"open", "done", "cancelled"}),
    "done": frozenset(),
    "cancelled": frozenset(),
}


class PlanRefused(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def owner_of(party: str, policy: Policy) -> str:
    """Who answers for the party's corrective plans (policy commitments.corrective_plans.owners)."""
    rules = policy.commitments.corrective_plans
    return rules.owners.get(party) or f"{party} lead"


def plan_due(opened_at: datetime, policy: Policy) -> datetime:
    return opened_at + timedelta(days=policy.commitments.corrective_plans.due_days)


def period_link(period_id: uuid.UUID, required: SlaCorrectivePlanRequired) -> dict[str, Any]:
    return {
        "period_id": str(period_id),
        "start": required.period_start.isoformat(),
        "end": required.period_end.isoformat(),
        "consecutive_misses": required.consecutive_misses,
        "missed": list(required.missed),
    }


@dataclass(frozen=True)
class PlanOpened:
    """A new plan's record."""

    values: dict[str, Any]


def open_plan(
    period_id: uuid.UUID, required: SlaCorrectivePlanRequired, policy: Policy, now: datetime
) -> PlanOpened:
    """The plan the party's missed streak opens: owned by the party's owner, due the policy's
    due_days after it opens, linked to the period that completed the streak. Its id is the
    period's, so a replayed event opens nothing twice."""
    return PlanOpened(
        {
            "id": period_id,
            "party": required.party,
            "owner": owner_of(required.party, policy),
            "status": "open",
            "periods": [period_link(period_id, required)],
            "missed": list(dict.fromkeys(required.missed)),
            "opened_at": now,
            "due_at": plan_due(now, policy),
            "changed_at": now,
            "policy_version": policy.version,
        }
    )


def extend_plan(
    plan: dict[str, Any], period_id: uuid.UUID, required: SlaCorrectivePlanRequired
) -> dict[str, Any] | None:
    """The open plan with one more missed period linked (a streak that goes on owes no second
    plan); None when the period is linked already."""
    if any(p["period_id"] == str(period_id) for p in plan["periods"]):
        return None
    return {
        "periods": [*plan["periods"], period_link(period_id, required)],
        "missed": list(dict.fromkeys([*plan["missed"], *required.missed])),
    }


def move(current: str, target: str) -> None:
    if target not in STATUSES:
        raise PlanRefused("status", f"status is one of {', '.join(STATUSES)}")
    if target != current and target not in MOVES[current]:
        raise PlanRefused("status", f"a {current} plan cannot become {target}")


def overdue(action: dict[str, Any], now: datetime) -> bool:
    """An action is overdue once its due date passed without it being done."""
    return not action["done"] and action["due_at"] < now
