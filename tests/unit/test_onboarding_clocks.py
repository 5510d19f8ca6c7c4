"""sla-timer's clocks after the signature, from the Slovak seed: a won deal opens the hand-off
(48 h), the onboarding kickoff (5 days) and the key feature's activation (14 days); the
milestones customer success reports meet them; a churned customer owes none of them; a milestone
that arrives before the lead's clocks waits for them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from leadflow.contracts import slas
from leadflow.contracts.events import (
    LeadChurned,
    LeadOnboardingMilestone,
    LeadStatusChanged,
)
from leadflow.contracts.policy import default_policy
from leadflow_sla_timer.use_cases import Calendars, Clocks
from support.harness import sample_routed

POLICY = default_policy()
# Tuesday 1 December 2026, 09:00 in Warsaw.
ROUTED_AT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
WON_AT = ROUTED_AT + timedelta(days=20)
H, D = timedelta(hours=1), timedelta(days=1)
AFTER_WON = (slas.CS_HANDOFF, slas.ONBOARDING_KICKOFF, slas.KEY_FEATURE_ACTIVATION)


def won(lead_id: uuid.UUID, at: datetime = WON_AT) -> LeadStatusChanged:
    return LeadStatusChanged(lead_id=lead_id, from_status="sqo", status="won", changed_at=at)


def milestone(lead_id: uuid.UUID, name: str, at: datetime) -> LeadOnboardingMilestone:
    return LeadOnboardingMilestone(lead_id=lead_id, milestone=name, reached_at=at)


def customer() -> tuple[Clocks, uuid.UUID]:
    """A lead routed and won: its clocks as sla-timer keeps them."""
    clocks = Clocks(POLICY, Calendars(POLICY))
    lead_id = uuid.uuid4()
    clocks.routed(sample_routed(lead_id, ROUTED_AT))
    clocks.status(uuid.uuid4(), won(lead_id))
    return clocks, lead_id


def test_a_won_deal_opens_the_hand_off_kickoff_and_activation_clocks_due_48h_5d_14d():
    clocks, lead_id = customer()
    timers = clocks.timers[lead_id]
    due = {sla: timers[sla]["due_at"] - timers[sla]["started_at"] for sla in AFTER_WON}
    assert due == {
        slas.CS_HANDOFF: 48 * H,
        slas.ONBOARDING_KICKOFF: 5 * D,
        slas.KEY_FEATURE_ACTIVATION: 14 * D,
    }
    assert all(timers[sla]["started_at"] == WON_AT for sla in AFTER_WON)


def test_the_kickoff_held_on_day_4_meets_the_kickoff_clock_only():
    clocks, lead_id = customer()
    clocks.status(uuid.uuid4(), milestone(lead_id, slas.KICKOFF_HELD, WON_AT + 4 * D))
    timers = clocks.timers[lead_id]
    assert timers[slas.ONBOARDING_KICKOFF]["state"] == "met"
    assert timers[slas.ONBOARDING_KICKOFF]["met_at"] == WON_AT + 4 * D
    assert timers[slas.KEY_FEATURE_ACTIVATION]["state"] == "open"
    [met] = [event for event, _ in clocks.events]
    assert (met.sla, met.business_seconds) == (slas.ONBOARDING_KICKOFF, (4 * D).total_seconds())


def test_the_key_feature_activated_meets_the_activation_clock():
    clocks, lead_id = customer()
    clocks.status(uuid.uuid4(), milestone(lead_id, slas.KEY_FEATURE_ACTIVATED, WON_AT + 13 * D))
    assert clocks.timers[lead_id][slas.KEY_FEATURE_ACTIVATION]["state"] == "met"
    assert clocks.timers[lead_id][slas.ONBOARDING_KICKOFF]["state"] == "open"


def test_a_churned_customer_owes_no_onboarding_clock():
    clocks, lead_id = customer()
    clocks.status(
        uuid.uuid4(), LeadChurned(lead_id=lead_id, reason="price", churned_at=WON_AT + 3 * D)
    )
    timers = clocks.timers[lead_id]
    assert {timers[sla]["state"] for sla in AFTER_WON} == {"cancelled"}
    assert all(timers[sla]["next_fire_at"] is None for sla in AFTER_WON)


def test_a_milestone_before_the_routing_waits_for_the_clocks_and_meets_its_own():
    clocks = Clocks(POLICY, Calendars(POLICY))
    lead_id = uuid.uuid4()
    clocks.status(uuid.uuid4(), won(lead_id))
    clocks.status(uuid.uuid4(), milestone(lead_id, slas.KICKOFF_HELD, WON_AT + D))
    held = clocks.held[lead_id].new_statuses
    assert [row["change"].get("event_type") for row in held] == [
        None,
        "lead.onboarding_milestone",
    ]
    assert lead_id not in clocks.timers
    clocks.routed(sample_routed(lead_id, ROUTED_AT))
    timers = clocks.timers[lead_id]
    assert timers[slas.ONBOARDING_KICKOFF]["met_at"] == WON_AT + D
    assert timers[slas.KEY_FEATURE_ACTIVATION]["state"] == "open"


def test_a_hand_off_status_keeps_its_content_out_of_what_is_held():
    clocks = Clocks(POLICY, Calendars(POLICY))
    lead_id = uuid.uuid4()
    handed = LeadStatusChanged(
        lead_id=lead_id, from_status="won", status="handed_off", changed_at=WON_AT,
        handoff={"use_case": "routing", "promised_outcomes": "2 h", "risks": "-", "plan": "x"},
    )  # fmt: skip
    clocks.status(uuid.uuid4(), handed)
    [row] = clocks.held[lead_id].new_statuses
    assert "handoff" not in row["change"]
