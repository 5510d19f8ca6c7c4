"""The routing strategies a team may use, by name: the one registry that the API's list of
strategies, the database's check of `teams.strategy` and every routing decision read.

A strategy is a pure function `(reps, position, now) -> Decision`:
- `reps`: the team's candidates (`RepView`: availability, weight, capacity, open leads), in
  no particular order (a rep being reassigned away from is already left out);
- `position`: the team's round-robin counter for this decision, shared by every routing
  instance and moved on by one for each lead the team takes by rule, whatever its strategy;
- `now`: the instant of the decision (working hours); None decides as if always in hours.
It returns the chosen rep (None: nobody can take the lead now) and every rep it considered,
with why it passed over it (`considered` entries, shown in the decision trace).

Adding a strategy is a function of that shape here, registered under its name with
`@strategy("name")`, and its tests: the API offers the name, the database accepts it once the
service has started, and nothing else changes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from leadflow_routing.domain.assignment import (
    Decision,
    RepView,
    considered,
    first_eligible,
    skip_reason,
)

Strategy = Callable[[list[RepView], int, datetime | None], Decision]
STRATEGIES: dict[str, Strategy] = {}
DEFAULT_STRATEGY = "round_robin"
# A name is stored in the database and written into its CHECK constraint: a plain identifier.
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class UnknownStrategy(ValueError):
    """A team names a strategy this registry does not know."""


def strategy(name: str) -> Callable[[Strategy], Strategy]:
    """Register the decorated function as the strategy `name`."""
    if not _NAME.match(name):
        raise ValueError(f"strategy name {name!r} is not a lower-case identifier")

    def register(function: Strategy) -> Strategy:
        if name in STRATEGIES:
            raise ValueError(f"strategy {name!r} is registered twice")
        STRATEGIES[name] = function
        return function

    return register


def strategy_names() -> tuple[str, ...]:
    """Every registered strategy's name, in registration order."""
    return tuple(STRATEGIES)


def strategy_named(name: str) -> Strategy:
    """The strategy registered as `name`; an unknown name is refused, never replaced."""
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(STRATEGIES)
        raise UnknownStrategy(f"unknown routing strategy {name!r} (known: {known})") from None


@strategy("round_robin")
def round_robin(reps: list[RepView], position: int = 0, now: datetime | None = None) -> Decision:
    """The rep at `position` in a stable order (by id), skipping ineligible ones and reps at
    capacity.

    `position` is a counter shared by every routing instance (kept in the database), so the
    rotation stays fair across restarts and across instances.
    """
    ordered = sorted(reps, key=lambda r: str(r.id))
    turns = [ordered[(position + k) % len(ordered)] for k in range(len(ordered))]
    return first_eligible(turns, now)


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


@strategy("weighted")
def weighted(reps: list[RepView], position: int = 0, now: datetime | None = None) -> Decision:
    """Round robin over the weighted cycle: over any full cycle a rep of weight 3 gets three
    leads for each one a rep of weight 1 gets; an ineligible rep's turn, or a full one's,
    passes on."""
    cycle = weighted_order(reps)
    turns: list[RepView] = []
    for offset in range(len(cycle)):
        rep = cycle[(position + offset) % len(cycle)]
        if rep not in turns:
            turns.append(rep)
    return first_eligible(turns, now)


@strategy("load_balanced")
def load_balanced(reps: list[RepView], position: int = 0, now: datetime | None = None) -> Decision:
    """The eligible rep with the lowest load (open leads / capacity; ties by id); reps at
    capacity skip. The position plays no part."""
    ordered = sorted(reps, key=lambda r: (r.open_leads / max(r.capacity, 1), str(r.id)))
    entries: list[dict] = []
    chosen = None
    for rep in ordered:
        reason = skip_reason(rep, now, check_capacity=True)
        entries.append(considered(rep, reason, open_leads=rep.open_leads, capacity=rep.capacity))
        if reason is None and chosen is None:
            chosen = rep.id
    return Decision(chosen, entries)


_NEVER = datetime.min.replace(tzinfo=UTC)


@strategy("least_recently_assigned")
def least_recently_assigned(
    reps: list[RepView], position: int = 0, now: datetime | None = None
) -> Decision:
    """The eligible rep who has waited longest since their last assignment gets the lead; a
    rep never assigned has waited longest of all. Ties (never assigned, or last assigned at
    the same instant) go to the lower rep id, as round robin orders. Like round robin it
    passes over reps at capacity; the position plays no part."""
    ordered = sorted(
        reps,
        key=lambda r: (r.last_assigned_at is not None, r.last_assigned_at or _NEVER, str(r.id)),
    )
    decision = first_eligible(ordered, now)
    for entry, rep in zip(decision.considered, ordered, strict=True):
        last = rep.last_assigned_at
        entry["last_assigned_at"] = last.isoformat() if last is not None else None
    return decision
