"""sla-timer's pure timer rules: the ladder a clock is scheduled with, which levels a claim
fires, and how promotions are counted for marketing's period commitments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from leadflow.contracts import slas
from leadflow.contracts.calendar import BusinessCalendar
from leadflow.contracts.events import LeadCompany, LeadMql
from leadflow.contracts.policy import Policy, default_policy
from leadflow_sla_timer.domain.periods import counted_promotion, latest_promotions
from leadflow_sla_timer.domain.timers import due_levels, escalates_to, schedule

POLICY = default_policy()
WARSAW = BusinessCalendar.from_spec({"timezone": "Europe/Warsaw"})
MONDAY_9 = datetime(2026, 11, 16, 8, tzinfo=UTC)  # 09:00 in Warsaw
H, D = timedelta(hours=1), timedelta(days=1)


def with_team_lead_at(fraction: float) -> Policy:
    data = POLICY.model_dump()
    data["slas"]["escalation"]["team_lead_at"] = fraction
    return Policy.model_validate(data)


def escalations(ladder: list[dict], indexes: list[int]) -> list[tuple[str, str | None]]:
    """What the steps at `indexes` fire: (level, whom it escalates to)."""
    return [(ladder[i]["level"], escalates_to(ladder[i])) for i in indexes]


def test_a_clock_is_scheduled_with_its_kinds_ladder_and_falls_due_at_the_breach():
    term, ladder, due_at = schedule(POLICY, slas.SAL_ACCEPTANCE, "inbound", WARSAW, MONDAY_9)
    assert (term.limit, term.clock) == (24 * H, "wall")
    assert [(s["level"], s["at"]) for s in ladder] == [
        ("warning", (MONDAY_9 + 18 * H).isoformat()),
        ("breached", (MONDAY_9 + 24 * H).isoformat()),
        ("escalated_team_lead", (MONDAY_9 + 24 * H).isoformat()),
        ("escalated_manager", (MONDAY_9 + 36 * H).isoformat()),
    ]
    assert due_at == MONDAY_9 + 24 * H


def test_the_breach_of_a_new_ladder_escalates_nobody_its_team_lead_step_does():
    _, ladder, _ = schedule(POLICY, slas.FIRST_RESPONSE, "inbound", WARSAW, MONDAY_9)
    assert ladder[1]["escalate"] is False
    assert [escalates_to(step) for step in ladder] == [None, None, "team_lead", "manager"]


def test_a_cadence_that_does_not_escalate_marks_its_breach_so():
    term, ladder, due_at = schedule(POLICY, slas.CONTACT_CADENCE, "inbound", WARSAW, MONDAY_9)
    assert [s["level"] for s in ladder] == ["warning", "breached"]
    assert ladder[1]["escalate"] is False
    assert due_at == MONDAY_9 + term.limit
    assert escalations(ladder, due_levels(ladder, 0, MONDAY_9 + 100 * D)) == [
        ("warning", None), ("breached", None),
    ]  # fmt: skip


def test_a_claim_fires_every_level_that_has_come_due_and_not_fired_yet():
    _, ladder, _ = schedule(POLICY, slas.SAL_ACCEPTANCE, "inbound", WARSAW, MONDAY_9)
    assert due_levels(ladder, 0, MONDAY_9 + H) == []
    assert due_levels(ladder, 0, MONDAY_9 + 25 * H) == [0, 1, 2]
    assert due_levels(ladder, 1, MONDAY_9 + 40 * H) == [1, 2, 3]


def test_a_team_lead_at_the_breach_fires_with_it_in_one_claim_after_it():
    _, ladder, _ = schedule(POLICY, slas.SAL_ACCEPTANCE, "inbound", WARSAW, MONDAY_9)
    assert escalations(ladder, due_levels(ladder, 1, MONDAY_9 + 24 * H)) == [
        ("breached", None), ("escalated_team_lead", "team_lead"),
    ]  # fmt: skip


def test_a_later_team_lead_at_escalates_to_the_team_lead_after_the_breach():
    policy = with_team_lead_at(1.25)
    _, ladder, due_at = schedule(policy, slas.SAL_ACCEPTANCE, "inbound", WARSAW, MONDAY_9)
    assert ladder[2] == {"level": "escalated_team_lead", "at": (MONDAY_9 + 30 * H).isoformat()}
    assert due_at == MONDAY_9 + 24 * H
    assert escalations(ladder, due_levels(ladder, 1, MONDAY_9 + 29 * H)) == [("breached", None)]
    assert escalations(ladder, due_levels(ladder, 2, MONDAY_9 + 30 * H)) == [
        ("escalated_team_lead", "team_lead"),
    ]  # fmt: skip
    assert escalations(ladder, due_levels(ladder, 3, MONDAY_9 + 36 * H)) == [
        ("escalated_manager", "manager"),
    ]  # fmt: skip


def test_a_team_lead_at_on_a_business_clock_is_measured_in_business_time():
    policy = with_team_lead_at(1.25)
    _, ladder, _ = schedule(policy, slas.FIRST_RESPONSE, "inbound", WARSAW, MONDAY_9)
    # 2 working hours from Monday 09:00 Warsaw: breach at 11:00, team lead 30 minutes later.
    assert [s["at"] for s in ladder[1:3]] == [
        (MONDAY_9 + 2 * H).isoformat(), (MONDAY_9 + 2.5 * H).isoformat(),
    ]  # fmt: skip


# A ladder as sla-timer stored it before the team lead's escalation had a step of its own.
OLD_LADDER = [
    {"level": "warning", "at": (MONDAY_9 + 18 * H).isoformat()},
    {"level": "breached", "at": (MONDAY_9 + 24 * H).isoformat()},
    {"level": "escalated_manager", "at": (MONDAY_9 + 36 * H).isoformat()},
]
OLD_CADENCE = [
    {"level": "warning", "at": (MONDAY_9 + 9 * D).isoformat()},
    {"level": "breached", "at": (MONDAY_9 + 12 * D).isoformat(), "escalate": False},
]


def test_the_breach_of_an_older_ladder_still_escalates_to_the_team_lead():
    assert escalations(OLD_LADDER, due_levels(OLD_LADDER, 0, MONDAY_9 + 40 * H)) == [
        ("warning", None), ("breached", "team_lead"), ("escalated_manager", "manager"),
    ]  # fmt: skip
    assert escalations(OLD_CADENCE, due_levels(OLD_CADENCE, 0, MONDAY_9 + 13 * D)) == [
        ("warning", None), ("breached", None),
    ]  # fmt: skip


def _mql(lead_id: uuid.UUID, at: datetime) -> LeadMql:
    return LeadMql(
        lead_id=lead_id, fit=90, engagement=40.0, intent_tier=1, promoted_at=at,
        company=LeadCompany(name="Acme", industry="software", employees=250, country="PL"),
        role="decision_maker",
    )  # fmt: skip


def test_the_latest_promotion_of_a_lead_counts_whatever_the_arrival_order():
    lead, other = uuid.UUID(int=2), uuid.UUID(int=1)
    first, again = _mql(lead, MONDAY_9), _mql(lead, MONDAY_9 + 40 * D)
    rows = [counted_promotion(POLICY, m) for m in (first, again, first, _mql(other, MONDAY_9))]
    latest = latest_promotions(rows)
    assert [(r["lead_id"], r["promoted_at"]) for r in latest] == [
        (other, MONDAY_9), (lead, MONDAY_9 + 40 * D),
    ]  # fmt: skip
    assert latest[1]["in_target"] is True and latest[1]["kind"] == "mql"
