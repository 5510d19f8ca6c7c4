"""The SLA kinds Leadflow keeps clocks for, in one table: what opens each clock, what meets it,
which limit and clock it takes from the policy, which escalation ladder it climbs, and what its
breach means for the lead.

sla-timer runs the clocks from this table (which events open and stop them, their ladders) and
feedback reads the same table (the names of the kinds, the first-response measure, what a breach
means), so a kind is declared once.

Adding an SLA kind
------------------
1. Name it (a constant below) and add one `SlaKind` to `SLA_KINDS`: the event that opens its
   clock (`Opening`), the statuses, contact attempts and/or onboarding milestones that meet it
   (`lead.onboarding_milestone`), the function that reads
   its `Term` (limit, clock, attempts) from the policy, and its ladder (`full_ladder`, or
   `cadence_ladder` for a clock whose breach escalates only when the policy says so).
2. If the policy has no limit for it yet, add one to `leadflow.contracts.policy.Slas` and to
   `policy_default.yaml`.
3. Test it in tests/unit/test_sla_kinds.py and describe it in docs/domain.md's "Time commitments"
   table. Nothing else changes: sla-timer derives what each event opens and meets, the timers
   gauge lists the new kind, and its events carry its name in `sla`.

Everything here is pure: plain data and functions of (policy, channel, calendar, instants).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Literal

from leadflow.contracts.calendar import (
    BusinessCalendar,
    add_business_days,
    add_business_time,
    business_time_between,
)
from leadflow.contracts.policy import CHANNELS, ChannelSlas, Policy, SlaTerm

# The SLAs of docs/domain.md's "Time commitments" table, as timers and SLA events name them.
FIRST_RESPONSE = "first_response"
CONTACT_CADENCE = "contact_cadence"
SAL_ACCEPTANCE = "sal_acceptance"
SQL_TO_SQO = "sql_to_sqo"
PQL_CONTACT = "pql_contact"
CS_HANDOFF = "cs_handoff"
ONBOARDING_KICKOFF = "onboarding_kickoff"
KEY_FEATURE_ACTIVATION = "key_feature_activation"

# The onboarding milestones customer success reaches after the signature (the `milestone` of
# lead.onboarding_milestone): the kickoff meeting held, the key feature first used.
KICKOFF_HELD = "kickoff_held"
KEY_FEATURE_ACTIVATED = "key_feature_activated"
MILESTONES = (KICKOFF_HELD, KEY_FEATURE_ACTIVATED)

# The events that open clocks.
ROUTED = "lead.routed"
STATUS_CHANGED = "lead.status_changed"

# The levels of the escalation ladder, in the order they fire.
WARNING = "warning"
BREACHED = "breached"
ESCALATED_TEAM_LEAD = "escalated_team_lead"
ESCALATED_MANAGER = "escalated_manager"
# The escalation levels and whom each escalates to (the `escalate_to` of its sla.escalated).
ESCALATES_TO: MappingProxyType[str, Literal["team_lead", "manager"]] = MappingProxyType(
    {ESCALATED_TEAM_LEAD: "team_lead", ESCALATED_MANAGER: "manager"}
)

# What a breached contact cadence means for the lead: sales may mark it unreachable (recycled).
UNREACHABLE = "unreachable"

# A lead that enters one of these statuses owes nothing more: every open clock of it ends.
ENDS_ALL_CLOCKS = frozenset({"returned", "lost", "recycled", "unreachable"})

ClockKind = Literal["business_hours", "business_days", "wall"]
BUSINESS_CLOCKS = frozenset({"business_hours", "business_days"})


@dataclass(frozen=True)
class Term:
    """What the policy sets for one SLA kind on one channel: how long, on which clock, and for a
    contact cadence the attempts that meet it (how many, which channels, how many days), the
    most it allows and whether its breach escalates."""

    limit: timedelta
    clock: ClockKind
    attempts_required: int | None = None
    # The most touches the cadence allows ("6 touches, up to 8"); None: no cap.
    attempts_allowed: int | None = None
    escalate_on_breach: bool = True
    # The channel mix the attempts must include ({"call": 3, "email": 2}) and the distinct days
    # they must fall on; empty and 1: any mix on any day.
    min_per_channel: dict[str, int] = field(default_factory=dict)
    min_distinct_days: int = 1


@dataclass(frozen=True)
class Step:
    """One level of an escalation ladder and when it fires, as a fraction of the limit."""

    level: str  # warning | breached | escalated_team_lead | escalated_manager
    fraction: float


@dataclass(frozen=True)
class Opening:
    """What starts a clock: an event type and the condition its payload meets."""

    event: str  # lead.routed | lead.status_changed
    status: str | None = None  # lead.status_changed: the status the lead enters
    lead_kind: Literal["mql", "pql"] | None = None  # lead.routed: only a lead of this kind


@dataclass(frozen=True)
class SlaKind:
    """One SLA kind: when its clock opens, what meets it, its term and its ladder."""

    name: str
    opens: Opening
    term: Callable[[Policy, str | None], Term]
    ladder: Callable[[Policy, Term], tuple[Step, ...]]
    # Statuses that meet the clock (entering one of them stops it as met).
    met_by_statuses: frozenset[str] = frozenset()
    # "first": the first contact attempt meets it; "counted": attempts are counted and the
    # Term's attempts_required-th meets it; None: attempts do not concern it.
    met_by_attempts: Literal["first", "counted"] | None = None
    # Onboarding milestones that meet the clock (lead.onboarding_milestone's `milestone`).
    met_by_milestones: frozenset[str] = frozenset()
    # What a breach means for the lead (the `outcome` of its sla.breached); None: nothing more.
    breach_outcome: str | None = None


# --- terms and ladders --------------------------------------------------------------------


def channel_slas(policy: Policy, channel: str | None) -> ChannelSlas:
    """The policy's terms of a channel; a lead of no known channel counts as inbound."""
    return policy.slas.for_channel(channel if channel in CHANNELS else "inbound")


def first_response_term(policy: Policy, channel: str | None) -> Term:
    """Routed → first contact attempt: the channel's first-response limit and clock."""
    term = channel_slas(policy, channel).first_response
    return Term(term.limit, term.clock)


def contact_cadence_term(policy: Policy, channel: str | None) -> Term:
    """The channel's "N attempts in D days": runs on calendar days (wall time)."""
    cadence = channel_slas(policy, channel).cadence
    return Term(
        cadence.within,
        "wall",
        attempts_required=cadence.attempts,
        attempts_allowed=cadence.max_attempts,
        escalate_on_breach=cadence.escalate_on_breach,
        min_per_channel=dict(cadence.min_per_channel),
        min_distinct_days=cadence.min_distinct_days,
    )


def _policy_term(sla_term: SlaTerm) -> Term:
    return Term(sla_term.limit, sla_term.clock)


def sal_acceptance_term(policy: Policy, channel: str | None) -> Term:
    """Routed → accepted (SAL) or returned: one limit for every channel."""
    return _policy_term(policy.slas.sal_acceptance)


def sql_to_sqo_term(policy: Policy, channel: str | None) -> Term:
    """SQL → SQO: one limit for every channel."""
    return _policy_term(policy.slas.sql_to_sqo)


def pql_contact_term(policy: Policy, channel: str | None) -> Term:
    """A routed PQL → first contact attempt: one limit for every channel."""
    return _policy_term(policy.slas.pql_contact)


def cs_handoff_term(policy: Policy, channel: str | None) -> Term:
    """Won → handed off to customer success: one limit for every channel."""
    return _policy_term(policy.slas.cs_handoff)


def onboarding_kickoff_term(policy: Policy, channel: str | None) -> Term:
    """Won → the onboarding kickoff held: one limit for every channel."""
    return _policy_term(policy.slas.onboarding_kickoff)


def key_feature_activation_term(policy: Policy, channel: str | None) -> Term:
    """Won → the key feature first used (product usage): one limit for every channel."""
    return _policy_term(policy.slas.key_feature_activation)


def full_ladder(policy: Policy, term: Term) -> tuple[Step, ...]:
    """Warning, breach, team lead escalation, manager escalation, at the policy's fractions of
    the limit (steps at the same fraction fire together, in this order)."""
    e = policy.slas.escalation
    return (Step(WARNING, e.warning_at), Step(BREACHED, e.breach_at),
            Step(ESCALATED_TEAM_LEAD, e.team_lead_at),
            Step(ESCALATED_MANAGER, e.manager_at))  # fmt: skip


def cadence_ladder(policy: Policy, term: Term) -> tuple[Step, ...]:
    """The full ladder when the breach escalates; otherwise warning and breach only (the
    cadence ends in "unreachable", not in an escalation)."""
    steps = full_ladder(policy, term)
    if term.escalate_on_breach:
        return steps
    return tuple(s for s in steps if s.level not in ESCALATES_TO)


# --- the table ----------------------------------------------------------------------------

SLA_KINDS: tuple[SlaKind, ...] = (
    SlaKind(
        FIRST_RESPONSE,
        opens=Opening(ROUTED),
        term=first_response_term,
        ladder=full_ladder,
        met_by_attempts="first",
    ),
    SlaKind(
        CONTACT_CADENCE,
        opens=Opening(ROUTED),
        term=contact_cadence_term,
        ladder=cadence_ladder,
        met_by_statuses=frozenset({"sal", "returned"}),
        met_by_attempts="counted",
        breach_outcome=UNREACHABLE,
    ),
    SlaKind(
        SAL_ACCEPTANCE,
        opens=Opening(ROUTED),
        term=sal_acceptance_term,
        ladder=full_ladder,
        met_by_statuses=frozenset({"sal", "returned"}),
    ),
    SlaKind(
        SQL_TO_SQO,
        opens=Opening(STATUS_CHANGED, status="sql"),
        term=sql_to_sqo_term,
        ladder=full_ladder,
        met_by_statuses=frozenset({"sqo"}),
    ),
    SlaKind(
        PQL_CONTACT,
        opens=Opening(ROUTED, lead_kind="pql"),
        term=pql_contact_term,
        ladder=full_ladder,
        met_by_attempts="first",
    ),
    SlaKind(
        CS_HANDOFF,
        opens=Opening(STATUS_CHANGED, status="won"),
        term=cs_handoff_term,
        ladder=full_ladder,
        met_by_statuses=frozenset({"handed_off"}),
    ),
    SlaKind(
        ONBOARDING_KICKOFF,
        opens=Opening(STATUS_CHANGED, status="won"),
        term=onboarding_kickoff_term,
        ladder=full_ladder,
        met_by_milestones=frozenset({KICKOFF_HELD}),
    ),
    SlaKind(
        KEY_FEATURE_ACTIVATION,
        opens=Opening(STATUS_CHANGED, status="won"),
        term=key_feature_activation_term,
        ladder=full_ladder,
        met_by_milestones=frozenset({KEY_FEATURE_ACTIVATED}),
    ),
)

KINDS: MappingProxyType[str, SlaKind] = MappingProxyType({k.name: k for k in SLA_KINDS})
SLAS: tuple[str, ...] = tuple(KINDS)

# --- derived from the table (in its order) ----------------------------------------------------

# Statuses that meet clocks -> the kinds each meets.
MET_BY_STATUS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        status: tuple(k.name for k in SLA_KINDS if status in k.met_by_statuses)
        for status in sorted({s for k in SLA_KINDS for s in k.met_by_statuses})
    }
)
# Statuses that open clocks -> the kinds each opens.
OPENED_BY_STATUS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        status: tuple(
            k.name
            for k in SLA_KINDS
            if k.opens.event == STATUS_CHANGED and k.opens.status == status
        )
        for status in sorted({k.opens.status for k in SLA_KINDS if k.opens.status is not None})
    }
)
# Onboarding milestones that meet clocks -> the kinds each meets.
MET_BY_MILESTONE: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        milestone: tuple(k.name for k in SLA_KINDS if milestone in k.met_by_milestones)
        for milestone in sorted({m for k in SLA_KINDS for m in k.met_by_milestones})
    }
)
# Kinds the first contact attempt meets, and kinds that count every attempt.
MET_BY_FIRST_ATTEMPT: tuple[str, ...] = tuple(
    k.name for k in SLA_KINDS if k.met_by_attempts == "first"
)
COUNTING_ATTEMPTS: tuple[str, ...] = tuple(
    k.name for k in SLA_KINDS if k.met_by_attempts == "counted"
)
# sla -> what its breach means for the lead.
BREACH_OUTCOMES: MappingProxyType[str, str] = MappingProxyType(
    {k.name: k.breach_outcome for k in SLA_KINDS if k.breach_outcome is not None}
)


def opened_by_routing(lead_kind: str) -> tuple[str, ...]:
    """The kinds a lead.routed of an `lead_kind` lead (mql | pql) opens, in table order."""
    return tuple(
        k.name
        for k in SLA_KINDS
        if k.opens.event == ROUTED and k.opens.lead_kind in (None, lead_kind)
    )


def term(policy: Policy, sla: str, channel: str | None) -> Term:
    """The term of `sla` for a lead from `channel` under `policy`."""
    return KINDS[sla].term(policy, channel)


def ladder(policy: Policy, sla: str, term: Term) -> tuple[Step, ...]:
    """The ladder a clock of `sla` with `term` climbs under `policy`."""
    return KINDS[sla].ladder(policy, term)


# --- measuring on a clock -----------------------------------------------------------------


def due_after(
    clock: str, calendar: BusinessCalendar | None, start: datetime, duration: timedelta
) -> datetime:
    """The instant `duration` after `start` on `clock`.

    `business_days` limits count whole working days (same local time N working days later);
    a ladder fraction of them is rounded to the nearest whole day (75 % of 5 days: 4 days).
    """
    if calendar is not None and clock == "business_hours":
        return add_business_time(calendar, start, duration)
    if calendar is not None and clock == "business_days":
        return add_business_days(calendar, start, max(round(duration / timedelta(days=1)), 1))
    return start + duration


def elapsed(
    clock: str, calendar: BusinessCalendar | None, start: datetime, end: datetime
) -> timedelta:
    """The time from `start` to `end` on `clock` (business time on a business clock)."""
    if calendar is not None and clock in BUSINESS_CLOCKS:
        return business_time_between(calendar, start, end)
    return max(end - start, timedelta(0))
