"""The lead lifecycle as an explicit state machine: which status may follow which."""

from __future__ import annotations

# MQL → routed → working → SAL or returned → SQL → SQO → won/lost; recycled; unreachable.
TRANSITIONS: dict[str, frozenset[str]] = {
    "lead": frozenset({"mql"}),
    "mql": frozenset({"routed", "recycled"}),
    "routed": frozenset({"working", "sal", "returned", "unreachable", "recycled", "routed"}),
    "working": frozenset({"sal", "returned", "unreachable", "recycled"}),
    "sal": frozenset({"sql", "recycled", "lost"}),
    "returned": frozenset({"recycled"}),
    "sql": frozenset({"sqo", "recycled", "lost"}),
    "sqo": frozenset({"won", "lost"}),
    "won": frozenset(),
    "lost": frozenset({"recycled"}),
    "unreachable": frozenset({"recycled"}),
    "recycled": frozenset({"mql"}),
}
REASON_REQUIRED = frozenset({"returned", "recycled", "lost"})


def allowed_next(status: str) -> list[str]:
    return sorted(TRANSITIONS.get(status, frozenset()))


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def after_contact_attempt(current: str) -> str:
    """A first contact attempt on a routed lead means sales is working it."""
    return "working" if current == "routed" else current
