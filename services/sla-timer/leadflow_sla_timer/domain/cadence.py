"""The contact cadence's count, pure: the attempts a clock has seen (how many, on which channels,
on which days) against what its term asks for, and what is still missing, in words a rep
reads ("2 more calls", "attempts on 1 more day")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

# How the missing attempts of each channel read: one, several.
_CHANNEL_WORDS = {
    "call": ("call", "calls"),
    "email": ("e-mail", "e-mails"),
    "linkedin": ("LinkedIn message", "LinkedIn messages"),
    "meeting": ("meeting", "meetings"),
}


@dataclass(frozen=True)
class Requirement:
    """What meets a cadence: `attempts` in all, at least `per_channel` of each channel, on at
    least `distinct_days` days."""

    attempts: int
    per_channel: Mapping[str, int] = field(default_factory=dict)
    distinct_days: int = 1


@dataclass(frozen=True)
class Shortfall:
    """What a cadence still lacks: attempts on any channel beyond the missing ones of each
    channel, the missing ones of each channel, and days."""

    attempts: int = 0
    per_channel: Mapping[str, int] = field(default_factory=dict)
    days: int = 0

    def __bool__(self) -> bool:
        return bool(self.attempts or self.per_channel or self.days)

    def in_words(self) -> list[str]:
        """e.g. ["2 more calls", "1 more e-mail", "attempts on 1 more day"]."""
        words = [
            f"{n} more {_CHANNEL_WORDS.get(channel, (channel, channel))[n != 1]}"
            for channel, n in self.per_channel.items()
        ]
        if self.attempts:
            any_channel = " on any channel" if self.per_channel else ""
            words.append(f"{self.attempts} more attempt{'s' * (self.attempts != 1)}{any_channel}")
        if self.days:
            words.append(f"attempts on {self.days} more day{'s' * (self.days != 1)}")
        return words


def requirement_of(timer: Mapping[str, Any]) -> Requirement:
    """What meets a stored cadence clock (its attempts, mix and spread, as opened)."""
    return Requirement(
        attempts=timer["attempts_required"] or 0,
        per_channel=timer["min_per_channel"] or {},
        distinct_days=timer["min_distinct_days"] or 1,
    )


def day_of(at: datetime, time_zone: str) -> str:
    """The local calendar day of an attempt (ISO date) in the team calendar's time zone."""
    return at.astimezone(ZoneInfo(time_zone)).date().isoformat()


def shortfall(
    attempts: int, by_channel: Mapping[str, int], days: int, requirement: Requirement
) -> Shortfall:
    """What the attempts counted so far still lack; an empty Shortfall when they meet it."""
    per_channel = {
        channel: need - by_channel.get(channel, 0)
        for channel, need in requirement.per_channel.items()
        if by_channel.get(channel, 0) < need
    }
    # Attempts still owed once the channels' own are made (those count towards the total too).
    beyond = max(requirement.attempts - attempts - sum(per_channel.values()), 0)
    return Shortfall(
        attempts=beyond,
        per_channel=per_channel,
        days=max(requirement.distinct_days - days, 0),
    )


def counted(
    by_channel: Mapping[str, int], days: list[str], channels: Mapping[str, int], day: str
) -> tuple[dict[str, int], list[str]]:
    """The channel counts and the days after `channels` (attempts per channel) on `day`."""
    total = dict(by_channel)
    for channel, n in channels.items():
        total[channel] = total.get(channel, 0) + n
    return total, sorted({*days, day})


def cadence_missing(timer: Mapping[str, Any]) -> list[str]:
    """What a stored cadence clock still lacks, in words; empty for a met or cancelled clock,
    and for a clock that counts no attempts."""
    if not timer["attempts_required"] or timer["met_at"] is not None:
        return []
    if timer["state"] == "cancelled":
        return []
    return shortfall(
        timer["attempts"],
        timer["attempts_by_channel"],
        len(timer["attempt_days"]),
        requirement_of(timer),
    ).in_words()
