"""Reads the SLA terms sla-timer needs out of the policy: limits, clocks, ladder, default calendar."""

from __future__ import annotations

from datetime import timedelta

from leadflow.calendar import BusinessCalendar
from leadflow.policy import Policy

from leadflow_sla_timer.timers import Step, ladder_steps


def first_response(policy: Policy, channel: str) -> tuple[timedelta, str]:
    term = policy.slas.for_channel(channel).first_response
    return term.limit, term.clock


def ladder(policy: Policy) -> list[Step]:
    e = policy.slas.escalation
    return ladder_steps(e.warning_at, e.breach_at, e.manager_at)


def reassign_on_breach(policy: Policy) -> bool:
    return policy.slas.escalation.reassign_on_breach


def default_calendar(policy: Policy) -> BusinessCalendar:
    spec = policy.calendar
    country = spec.holiday_country
    if spec.holiday_subdivision:
        country = f"{country}-{spec.holiday_subdivision}"
    return BusinessCalendar.standard(
        timezone=spec.time_zone,
        start=spec.opens_at,
        end=spec.closes_at,
        days=tuple(sorted(spec.weekday_numbers)),
        holiday_country=country,
    )
