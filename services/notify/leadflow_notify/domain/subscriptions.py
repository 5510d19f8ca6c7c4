"""Which endpoints an event goes to: event-type patterns with wildcards, and filters on the
event's team, channel, SLA kind and level."""

from __future__ import annotations

import fnmatch
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Filter name -> the event's field it looks at.
FILTER_FIELDS = {"teams": "team", "channels": "channel", "slas": "sla", "levels": "level"}


@dataclass(frozen=True)
class EndpointView:
    id: uuid.UUID
    event_types: tuple[str, ...]  # types or patterns: "sla.*", "*"
    team_id: uuid.UUID | None  # None: every team
    filters: Mapping[str, tuple[str, ...]]


def unknown_patterns(patterns: Iterable[str], known: Iterable[str]) -> list[str]:
    """The patterns that match no known event type (a typo, or a type nobody emits)."""
    known = list(known)
    return [p for p in patterns if not fnmatch.filter(known, p)]


def by_type(endpoints: Iterable[EndpointView]) -> Callable[[str], list[EndpointView]]:
    """The endpoints one of whose patterns matches an event type (worked out once per type)."""
    endpoints = list(endpoints)
    known: dict[str, list[EndpointView]] = {}

    def listening(event_type: str) -> list[EndpointView]:
        if event_type not in known:
            known[event_type] = [
                e
                for e in endpoints
                if any(fnmatch.fnmatchcase(event_type, p) for p in e.event_types)
            ]
        return known[event_type]

    return listening


def subscribes(endpoint: EndpointView, data: Mapping[str, Any]) -> bool:
    """Does an endpoint whose pattern matched the event want it: the team is the endpoint's
    (when it names one) and every filter holds (an event without the field fails)."""
    if endpoint.team_id is not None and str(data.get("team_id")) != str(endpoint.team_id):
        return False
    for name, wanted in endpoint.filters.items():
        value = data.get(FILTER_FIELDS[name])
        if value is None or str(value) not in wanted:
            return False
    return True
