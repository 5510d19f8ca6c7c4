"""Reads the SLA terms sla-timer needs out of the policy: limits, clocks, ladders, default calendar."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from leadflow.contracts.policy import Policy

from leadflow_sla_timer.timers import Step, ladder_steps

# The SLAs of DOMAIN.md's time-commitments table, as timers name them.
FIRST_RESPONSE = "first_response"
CONTACT_CADENCE = "contact_cadence"
SAL_ACCEPTANCE = "sal_acceptance"
SQL_TO_SQO = "sql_to_sqo"
PQL_CONTACT = "pql_contact"
CS_HANDOFF = "cs_handoff"
SLAS = (FIRST_RESPONSE, CONTACT_CADENCE, SAL_ACCEPTANCE, SQL_TO_SQO, PQL_CONTACT, CS_HANDOFF)


@dataclass(frozen=True)
class Terms:
    """What one SLA owes: its limit and clock, the ladder it climbs, and (cadence) the attempts."""

    limit: timedelta
    clock: str
    steps: list[Step]
    escalate_on_breach: bool = True
    attempts_required: int | None = None
    # The most touches the cadence allows ("6 touches, up to 8"); None: no cap.
    attempts_allowed: int | None = None


def first_response(policy: Policy, channel: str) -> tuple[timedelta, str]:
    term = policy.slas.for_channel(channel).first_response
    return term.limit, term.clock


def ladder(policy: Policy) -> list[Step]:
    e = policy.slas.escalation
    return ladder_steps(e.warning_at, e.breach_at, e.manager_at)


def terms(policy: Policy, sla: str, channel: str | None) -> Terms:
    """The terms of `sla` for a lead from `channel` under `policy`."""
    channel_slas = policy.slas.for_channel(channel or "inbound")
    if sla == FIRST_RESPONSE:
        term = channel_slas.first_response
        return Terms(term.limit, term.clock, ladder(policy))
    if sla == CONTACT_CADENCE:
        cadence = channel_slas.cadence
        steps = ladder(policy)
        if not cadence.escalate_on_breach:
            # The cadence ends in "unreachable", not in an escalation: warning and breach only.
            steps = [s for s in steps if s.level != "escalated_manager"]
        # "N attempts in D days" runs on calendar days: wall time.
        return Terms(
            cadence.within,
            "wall",
            steps,
            escalate_on_breach=cadence.escalate_on_breach,
            attempts_required=cadence.attempts,
            attempts_allowed=cadence.max_attempts,
        )
    term = {
        SAL_ACCEPTANCE: policy.slas.sal_acceptance,
        SQL_TO_SQO: policy.slas.sql_to_sqo,
        PQL_CONTACT: policy.slas.pql_contact,
        CS_HANDOFF: policy.slas.cs_handoff,
    }[sla]
    return Terms(term.limit, term.clock, ladder(policy))


def reassign_on_breach(policy: Policy) -> bool:
    return policy.slas.escalation.reassign_on_breach
