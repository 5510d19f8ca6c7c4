"""Pure routing decisions: which rule picks the team, whether a rep can take a lead now, and why
every other rep did not. No I/O here; the use cases load the inputs and store the trace."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from leadflow.contracts.events import UnassignedReason

# What a rule may test, and where on the MQL each value is found.
RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "channel": ("channel",),
    "country": ("company", "country"),
    "region": ("company", "region"),
    "segment": ("company", "size_band"),
    "industry": ("company", "industry"),
    "source": ("source", "system"),
    "campaign": ("source", "campaign"),
    "employees": ("company", "employees"),
    "fit": ("fit",),
    "engagement": ("engagement",),
}
# Fields holding numbers: a condition on them may be a range ({"min": 50, "max": 1000}).
NUMERIC_FIELDS = frozenset({"employees", "fit", "engagement"})
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Statuses that take a lead out of its rep's open work (what load balancing counts).
OPEN_WORK_ENDS = frozenset({"returned", "recycled", "unreachable", "lost", "won"})


@dataclass(frozen=True)
class RepView:
    """A rep as every strategy sees it: availability, weight, capacity, current load and when
    it last got a lead."""

    id: uuid.UUID
    name: str
    active: bool = True
    out_of_office: bool = False
    weight: int = 1
    capacity: int = 50
    open_leads: int = 0
    timezone: str | None = None
    # {"mon": [["09:00", "17:00"]], ...}; None: always available
    working_hours: dict[str, list[list[str]]] | None = None
    # when a lead was last assigned to the rep (routed or reassigned); None: never
    last_assigned_at: datetime | None = None
    # when the out of office ends by itself; None: when an admin ends it
    out_of_office_until: datetime | None = None


@dataclass(frozen=True)
class RuleView:
    id: uuid.UUID
    name: str
    team_id: uuid.UUID
    conditions: dict[str, Any]


@dataclass(frozen=True)
class TeamView:
    id: uuid.UUID
    name: str
    strategy: str
    calendar: dict[str, Any] | None
    rr_position: int


@dataclass(frozen=True)
class Owner:
    """The rep (and team) an account's leads go to."""

    rep_id: uuid.UUID
    team_id: uuid.UUID


@dataclass
class Decision:
    """The rep chosen (None: nobody can take the lead now) and every rep considered, with the
    reason it was passed over, for the decision trace."""

    rep_id: uuid.UUID | None
    considered: list[dict] = field(default_factory=list)


def ends_open_work(status: str) -> bool:
    return status in OPEN_WORK_ENDS


def mql_domain(mql: dict[str, Any]) -> str | None:
    """The company domain an MQL's account is known by (lower case), if any."""
    return ((mql.get("company") or {}).get("domain") or "").lower() or None


def _value(mql: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = mql
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def condition_holds(condition: Any, value: Any) -> bool:
    """Whether the lead's value meets one condition of a rule:
    - a list, or {"in": [...]}: the value is one of those listed (case-insensitive);
    - {"min": a, "max": b} (either bound may be left out): a number within [a, b];
    - {"not": <condition>}: the condition does not hold (a missing value meets a `not`).
    A missing value meets no list and no range."""
    if isinstance(condition, list):
        return value is not None and str(value).lower() in {str(a).lower() for a in condition}
    if "not" in condition:
        return not condition_holds(condition["not"], value)
    if "in" in condition:
        return condition_holds(condition["in"], value)
    number = _number(value)
    if number is None:
        return False
    low, high = condition.get("min"), condition.get("max")
    return (low is None or number >= low) and (high is None or number <= high)


def condition_problem(name: str, condition: Any) -> str | None:
    """What is wrong with a rule's condition on the field `name`, or None when it is one this
    module can test (`condition_holds`)."""
    if isinstance(condition, list):
        if not condition:
            return f"{name}: list at least one value"
        if not all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in condition):
            return f"{name}: list text or numbers"
        return None
    if not isinstance(condition, dict) or len(condition) == 0:
        return f"{name}: a list of values, {{'in': [...]}}, {{'min', 'max'}} or {{'not': ...}}"
    keys = set(condition)
    if keys == {"not"}:
        return condition_problem(name, condition["not"])
    if keys == {"in"}:
        return condition_problem(name, condition["in"])
    if keys and keys <= {"min", "max"}:
        if name not in NUMERIC_FIELDS:
            numeric = ", ".join(sorted(NUMERIC_FIELDS))
            return f"{name}: a range applies to numbers only ({numeric})"
        low, high = condition.get("min"), condition.get("max")
        for bound in (low, high):
            if bound is not None and _number(bound) is None:
                return f"{name}: {bound!r} is not a number"
        if low is None and high is None:
            return f"{name}: give min, max or both"
        if low is not None and high is not None and low > high:
            return f"{name}: min {low} is above max {high}"
        return None
    given = ", ".join(sorted(map(str, keys)))
    return f"{name}: one of 'in', 'not', or 'min' and 'max' (given: {given})"


def rule_matches(rule: RuleView, mql: dict[str, Any]) -> bool:
    """Every condition of the rule holds (`condition_holds`)."""
    return all(
        condition_holds(condition, _value(mql, RULE_FIELDS[name]))
        for name, condition in rule.conditions.items()
    )


def match_rule(rules: list[RuleView], mql: dict[str, Any]) -> tuple[RuleView | None, list[dict]]:
    """The first matching rule (rules come in priority order), with the ones tried before it."""
    tried = []
    for rule in rules:
        if rule_matches(rule, mql):
            tried.append({"rule": rule.name, "matched": True})
            return rule, tried
        tried.append({"rule": rule.name, "matched": False})
    return None, tried


def in_working_hours(rep: RepView, now: datetime) -> bool:
    if not rep.working_hours:
        return True
    local = now.astimezone(ZoneInfo(rep.timezone or "UTC"))
    for start, end in rep.working_hours.get(DAYS[local.weekday()], []):
        if time.fromisoformat(start) <= local.time() < time.fromisoformat(end):
            return True
    return False


def away(rep: RepView, now: datetime | None) -> bool:
    """Out of office now: until an admin ends it, or until `out_of_office_until` passes."""
    if not rep.out_of_office:
        return False
    return rep.out_of_office_until is None or now is None or now < rep.out_of_office_until


def skip_reason(
    rep: RepView, now: datetime | None = None, *, check_capacity: bool = False
) -> str | None:
    """Why the rep cannot take a lead now; None when it can."""
    if not rep.active:
        return "inactive"
    if away(rep, now):
        return "out_of_office"
    if now is not None and not in_working_hours(rep, now):
        return "outside_working_hours"
    if check_capacity and rep.open_leads >= rep.capacity:
        return "at_capacity"
    return None


def considered(rep: RepView, reason: str | None, **extra: Any) -> dict:
    """A rep's entry in the decision trace."""
    return {"rep_id": str(rep.id), "name": rep.name, "skipped": reason, **extra}


def first_eligible(turns: list[RepView], now: datetime | None) -> Decision:
    """Walk the reps in turn order; the first eligible one gets the lead (a rep at capacity
    is passed over, as load balancing does). Every rep is in the trace with the reason it could
    not take a lead now (if any), its load, whether its turn was reached, and which one was
    chosen."""
    entries: list[dict] = []
    chosen = None
    for rep in turns:
        reason = skip_reason(rep, now, check_capacity=True)
        reached = chosen is None
        picked = reached and reason is None
        if picked:
            chosen = rep.id
        entries.append(
            considered(
                rep,
                reason,
                chosen=picked,
                reached=reached,
                open_leads=rep.open_leads,
                capacity=rep.capacity,
            )
        )
    return Decision(chosen, entries)


# A rep's own reason, from the one that clears soonest to the one that clears last: working
# hours begin at a known instant, a full rep frees a place as soon as one of its leads leaves
# open work, out of office ends when the rep comes back, and an inactive rep needs an admin.
# When a team's reps are passed over for different reasons, the lead waits for the rep
# closest to eligible: the first of these among them.
WAIT_PRECEDENCE: tuple[tuple[str, UnassignedReason], ...] = (
    ("outside_working_hours", "outside_working_hours"),
    ("at_capacity", "at_capacity"),
    ("out_of_office", "all_out_of_office"),
    ("inactive", "all_inactive"),
)


def unassigned_reason(considered_reps: list[dict], *, by_rule: bool) -> UnassignedReason:
    """Why nobody of the team took the lead, from the decision trace's `considered` entries.

    `no_team`: no rule claimed the lead and the fallback team has no rep; `no_reps`: the team
    has no rep to consider (a rep the lead is being reassigned away from does not count);
    otherwise the reason of the rep closest to eligible, by `WAIT_PRECEDENCE` (one reason,
    never a mix)."""
    if not considered_reps and not by_rule:
        return "no_team"
    skipped = {entry.get("skipped") for entry in considered_reps} - {None, "reassigned_from"}
    if not skipped:
        return "no_reps"
    for rep_reason, reason in WAIT_PRECEDENCE:
        if rep_reason in skipped:
            return reason
    return "no_reps"
