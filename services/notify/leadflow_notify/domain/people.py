"""Who hears what of a lead's clock, on which channels, and when: the escalation ladder mapped to
people (warning and breach → the rep, the team-lead step → the team lead, the manager step →
the manager), their channels (e-mail, the team's Slack and Teams channels), their working hours
(outside them only a manager-level escalation goes out at once) and the digest window (one
message per recipient and channel per window)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from leadflow.contracts.events import Payload, SlaBreached, SlaEscalated, SlaWarning

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
URGENT = "manager"  # the level that goes out at once, whatever the hour


@dataclass(frozen=True)
class Addressee:
    """A person to tell, with a key that is the same every time (one message per person,
    clock level and channel)."""

    key: str  # "rep:<id>", "team_lead:<team id>", "manager:<team id>"
    person: dict[str, Any]  # name, email, slack_member_id, teams_upn, language, timezone, …


def level_of(payload: Payload) -> str | None:
    """The message's level for an SLA event; None for events no person is told of."""
    match payload:
        case SlaEscalated():
            return "team_lead" if payload.escalate_to == "team_lead" else URGENT
        case SlaBreached():
            return "breach"
        case SlaWarning():
            return "warning"
    return None


def addressees(
    level: str, rep_id: str | None, team_id: str | None, directory: dict[str, Any] | None
) -> list[Addressee]:
    """Who hears this level: the rep of the lead, its team's lead or its manager. Someone the
    directory does not know is still named (by id), so the message is reported undeliverable
    rather than dropped."""
    directory = directory or {}
    if level in ("warning", "breach"):
        if rep_id is None:
            return []
        person = next((r for r in directory.get("reps", []) if str(r.get("id")) == rep_id), None)
        return [Addressee(f"rep:{rep_id}", person or {"name": f"rep {rep_id[:8]}"})]
    role = "team_lead" if level == "team_lead" else "manager"
    person = directory.get(role)
    if team_id is None and person is None:
        return []
    return [
        Addressee(f"{role}:{team_id}", person or {"name": f"{role.replace('_', ' ')} of {team_id}"})
    ]


def channels(
    person: dict[str, Any], directory: dict[str, Any] | None, email: bool
) -> list[tuple[str, str | None]]:
    """(channel, target) for every way this person can be reached: their e-mail (when an SMTP
    server is set), their team's Slack and Teams channels. None of them: [("none", None)]."""
    directory = directory or {}
    found: list[tuple[str, str | None]] = []
    if email and person.get("email"):
        found.append(("email", person["email"]))
    if directory.get("slack_webhook_url"):
        found.append(("slack", directory["slack_webhook_url"]))
    if directory.get("teams_webhook_url"):
        found.append(("teams", directory["teams_webhook_url"]))
    return found or [("none", None)]


def _zone(person: dict[str, Any]) -> ZoneInfo:
    try:
        return ZoneInfo(person.get("timezone") or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _spans(person: dict[str, Any], day: datetime) -> list[tuple[datetime, datetime]]:
    spans = []
    for start, end in (person.get("working_hours") or {}).get(DAYS[day.weekday()], []):
        at = [
            day.replace(hour=0, minute=0, second=0, microsecond=0)
            + timedelta(hours=int(h), minutes=int(m))
            for h, m in (value.split(":") for value in (start, end))
        ]
        spans.append((at[0], at[1]))
    return spans


def not_before(person: dict[str, Any], level: str, now: datetime, quiet_hours: bool) -> datetime:
    """When a message of this level may reach the person: now within their working hours (or
    when they have none set), else at the start of their next working span; a manager-level
    escalation goes out at once."""
    if not quiet_hours or level == URGENT or not person.get("working_hours"):
        return now
    local = now.astimezone(_zone(person))
    for offset in range(8):
        day = local + timedelta(days=offset)
        for start, end in _spans(person, day):
            if offset == 0 and start <= local < end:
                return now
            if start > local:
                return start.astimezone(now.tzinfo)
    return now  # working hours with no span at all: do not hold the message for ever


def digest_due(last_sent: datetime | None, now: datetime, window: timedelta) -> datetime:
    """When the next message to a recipient on a channel may go: at once, or a window after
    the last one (what comes meanwhile waits and goes as one digest)."""
    if last_sent is None or now - last_sent >= window:
        return now
    return last_sent + window
