"""Pure routing decisions: which rule picks the team, which rep of the team gets the lead, and
why every other rep did not. No I/O here; the handlers load the inputs and store the trace."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo

Strategy = Literal["round_robin", "weighted", "load_balanced"]
STRATEGIES: tuple[str, ...] = ("round_robin", "weighted", "load_balanced")
# What a rule may test, and where on the MQL each value is found.
RULE_FIELDS: dict[str, tuple[str, ...]] = {
    "channel": ("channel",),
    "country": ("company", "country"),
    "region": ("company", "region"),
    "segment": ("company", "size_band"),
    "industry": ("company", "industry"),
    "source": ("source", "system"),
    "campaign": ("source", "campaign"),
}
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class RepView:
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


@dataclass(frozen=True)
class RuleView:
    id: uuid.UUID
    name: str
    team_id: uuid.UUID
    conditions: dict[str, list[str]]


@dataclass
class Decision:
    rep_id: uuid.UUID | None
    considered: list[dict] = field(default_factory=list)


def _value(mql: dict[str, Any], path: tuple[str, ...]) -> str | None:
    value: Any = mql
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return None if value is None else str(value).lower()


def rule_matches(rule: RuleView, mql: dict[str, Any]) -> bool:
    """Every condition of the rule holds: the lead's value is one of the listed ones."""
    for name, allowed in rule.conditions.items():
        value = _value(mql, RULE_FIELDS[name])
        if value is None or value not in {a.lower() for a in allowed}:
            return False
    return True


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


def skip_reason(
    rep: RepView, now: datetime | None = None, *, check_capacity: bool = False
) -> str | None:
    if not rep.active:
        return "inactive"
    if rep.out_of_office:
        return "out_of_office"
    if now is not None and not in_working_hours(rep, now):
        return "outside_working_hours"
    if check_capacity and rep.open_leads >= rep.capacity:
        return "at_capacity"
    return None


def _entry(rep: RepView, reason: str | None, **extra: Any) -> dict:  # noqa: ANN401
    return {"rep_id": str(rep.id), "name": rep.name, "skipped": reason, **extra}


def _first_eligible(turns: list[RepView], now: datetime | None) -> Decision:
    """Walk the reps in turn order; the first eligible one gets the lead. Every rep is in the
    trace with the reason it could not take a lead now (if any), whether its turn was reached,
    and which one was chosen."""
    considered: list[dict] = []
    chosen = None
    for rep in turns:
        reason = skip_reason(rep, now)
        reached = chosen is None
        picked = reached and reason is None
        if picked:
            chosen = rep.id
        considered.append(_entry(rep, reason, chosen=picked, reached=reached))
    return Decision(chosen, considered)


def round_robin(reps: list[RepView], position: int, now: datetime | None = None) -> Decision:
    """The rep at `position` in a stable order, skipping ineligible ones.

    `position` is a counter shared by every routing instance (kept in the database), so the
    rotation stays fair across restarts and across instances.
    """
    ordered = sorted(reps, key=lambda r: str(r.id))
    turns = [ordered[(position + k) % len(ordered)] for k in range(len(ordered))]
    return _first_eligible(turns, now)


def weighted_order(reps: list[RepView]) -> list[RepView]:
    """One cycle of smooth weighted round robin: each rep appears `weight` times, spread out
    (weights 3:1 give A A B A, not A A A B)."""
    ordered = sorted(reps, key=lambda r: str(r.id))
    total = sum(r.weight for r in ordered)
    current = {r.id: 0 for r in ordered}
    cycle = []
    for _ in range(total):
        for rep in ordered:
            current[rep.id] += rep.weight
        best = max(ordered, key=lambda r: (current[r.id], -ordered.index(r)))
        current[best.id] -= total
        cycle.append(best)
    return cycle


def weighted(reps: list[RepView], position: int, now: datetime | None = None) -> Decision:
    """Round robin over the weighted cycle: over any full cycle a rep of weight 3 gets three
    leads for each one a rep of weight 1 gets; an ineligible rep's turn passes on."""
    cycle = weighted_order(reps)
    turns: list[RepView] = []
    for offset in range(len(cycle)):
        rep = cycle[(position + offset) % len(cycle)]
        if rep not in turns:
            turns.append(rep)
    return _first_eligible(turns, now)


def load_balanced(reps: list[RepView], now: datetime | None = None) -> Decision:
    """The eligible rep with the lowest load (open leads / capacity); reps at capacity skip."""
    ordered = sorted(reps, key=lambda r: (r.open_leads / max(r.capacity, 1), str(r.id)))
    considered: list[dict] = []
    chosen = None
    for rep in ordered:
        reason = skip_reason(rep, now, check_capacity=True)
        considered.append(_entry(rep, reason, open_leads=rep.open_leads, capacity=rep.capacity))
        if reason is None and chosen is None:
            chosen = rep.id
    return Decision(chosen, considered)


def choose(strategy: str, reps: list[RepView], position: int, now: datetime) -> Decision:
    if strategy == "weighted":
        return weighted(reps, position, now)
    if strategy == "load_balanced":
        return load_balanced(reps, now)
    return round_robin(reps, position, now)
