"""sla-timer's pure timer rules: the ladder a clock is scheduled with, which levels a claim
fires, and how promotions are counted for marketing's period commitments."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from leadflow.contracts import slas
from leadflow.contracts.calendar import BusinessCalendar
from leadflow.contracts.events import LeadCompany, LeadMql
from leadflow.contracts.policy import default_policy
from leadflow_sla_timer.domain.periods import counted_promotion, latest_promotions
from leadflow_sla_timer.domain.timers import due_levels, schedule

POLICY = default_policy()
WARSAW = BusinessCalendar.from_spec({"timezone": "Europe/Warsaw"})
MONDAY_9 = datetime(2026, 11, 16, 8, tzinfo=UTC)  # 09:00 in Warsaw
H, D = timedelta(hours=1), timedelta(days=1)


def test_a_clock_is_scheduled_with_its_kinds_ladder_and_falls_due_at_the_breach():
    term, ladder, due_at = schedule(POLICY, slas.SAL_ACCEPTANCE, "inbound", WARSAW, MONDAY_9)
    assert (term.limit, term.clock) == (24 * H, "wall")
    assert [(s["level"], s["at"]) for s in ladder] == [
        ("warning", (MONDAY_9 + 18 * H).isoformat()),
        ("breached", (MONDAY_9 + 24 * H).isoformat()),
        ("escalated_manager", (MONDAY_9 + 36 * H).isoformat()),
    ]
    assert due_at == MONDAY_9 + 24 * H


def test_a_cadence_that_does_not_escalate_marks_its_breach_so():
    term, ladder, due_at = schedule(POLICY, slas.CONTACT_CADENCE, "inbound", WARSAW, MONDAY_9)
    assert [s["level"] for s in ladder] == ["warning", "breached"]
    assert ladder[1]["escalate"] is False
    assert due_at == MONDAY_9 + term.limit


def test_a_claim_fires_every_level_that_has_come_due_and_not_fired_yet():
    _, ladder, _ = schedule(POLICY, slas.SAL_ACCEPTANCE, "inbound", WARSAW, MONDAY_9)
    assert due_levels(ladder, 0, MONDAY_9 + H) == []
    assert due_levels(ladder, 0, MONDAY_9 + 25 * H) == [0, 1]
    assert due_levels(ladder, 1, MONDAY_9 + 40 * H) == [1, 2]


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
