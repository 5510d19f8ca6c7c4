"""Pure assignment decisions: which rep of a team gets the next lead, and why the others did not."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RepView:
    id: uuid.UUID
    name: str
    active: bool = True
    out_of_office: bool = False


@dataclass
class Decision:
    rep_id: uuid.UUID | None
    considered: list[dict] = field(default_factory=list)


def skip_reason(rep: RepView) -> str | None:
    if not rep.active:
        return "inactive"
    if rep.out_of_office:
        return "out_of_office"
    return None


def round_robin(reps: list[RepView], position: int) -> Decision:
    """The rep at `position` in a stable order, skipping ineligible ones.

    `position` is a counter shared by every routing instance (kept in the database), so the
    rotation stays fair across restarts and across instances.
    """
    ordered = sorted(reps, key=lambda r: str(r.id))
    considered: list[dict] = []
    if not ordered:
        return Decision(None, considered)
    for offset in range(len(ordered)):
        rep = ordered[(position + offset) % len(ordered)]
        reason = skip_reason(rep)
        considered.append({"rep_id": str(rep.id), "name": rep.name, "skipped": reason})
        if reason is None:
            return Decision(rep.id, considered)
    return Decision(None, considered)
