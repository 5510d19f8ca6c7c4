"""The lead lifecycle state machine: transitions, reasons, SQL qualification, SQO opportunity;
what events say about a lead and how its status follows from them."""

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from leadflow.contracts.events import SlaBreached, SlaMet, SlaWarning, make_event
from leadflow.contracts.policy import default_policy
from leadflow.contracts.slas import CONTACT_CADENCE, FIRST_RESPONSE, UNREACHABLE
from leadflow_feedback.domain.facts import Fact, Known, fact_of, settle
from leadflow_feedback.domain.lifecycle import (
    FUNNEL,
    QUALIFICATION_FIELDS,
    REASON_REQUIRED,
    SALES_STATUSES,
    STATUSES,
    TRANSITIONS,
    ChangeInvalid,
    StatusChange,
    TransitionRefused,
    after_contact_attempt,
    allowed_next,
    check_change,
    nurture_end,
    pipeline_steps,
    stages_reached,
)

REASONS = default_policy().reasons
QUALIFIED = {"problem": True, "impact": "saves 2 FTE", "authority": True}
OPPORTUNITY = {"value": 40000.0, "stage": "proposal", "close_date": date(2026, 3, 31)}
HANDOFF = {
    "use_case": "route inbound demo requests",
    "promised_outcomes": "first response under 2 h",
    "risks": "CRM integration owned by a third party",
    "plan": "kickoff week 1, CRM connected week 2",
}


def valid_change(status: str) -> StatusChange:
    """The least a change to `status` must carry."""
    return StatusChange(
        status,
        reason="no_need" if status in REASON_REQUIRED else None,
        qualification=QUALIFIED if status == "sql" else {},
        opportunity=OPPORTUNITY if status == "sqo" else {},
        handoff=HANDOFF if status == "handed_off" else {},
    )


def test_the_happy_path_is_a_chain():
    path = ["lead", "mql", "routed", "working", "sal", "sql", "sqo", "won"]
    for current, target in zip(path, path[1:], strict=False):
        assert target in TRANSITIONS[current]


def test_every_target_is_a_known_status():
    for targets in TRANSITIONS.values():
        assert targets <= STATUSES


@given(st.sampled_from(sorted(STATUSES)), st.sampled_from(sorted(SALES_STATUSES)))
def test_a_change_is_accepted_exactly_when_the_machine_allows_it(current, target):
    change = valid_change(target)
    if target in TRANSITIONS[current]:
        check_change(current, change, REASONS)
    else:
        with pytest.raises(TransitionRefused) as refused:
            check_change(current, change, REASONS)
        assert refused.value.allowed == allowed_next(current, sales_only=True)
        assert target not in refused.value.allowed


def test_refusal_names_the_allowed_statuses():
    with pytest.raises(TransitionRefused) as refused:
        check_change("routed", valid_change("sqo"), REASONS)
    assert refused.value.allowed == ["recycled", "returned", "sal", "unreachable"]
    assert "allowed: recycled, returned, sal, unreachable" in str(refused.value)


def test_won_only_hands_over_to_customer_success_and_that_is_final():
    assert allowed_next("won") == ["handed_off"]
    with pytest.raises(TransitionRefused):
        check_change("won", valid_change("lost"), REASONS)
    assert allowed_next("handed_off") == []
    with pytest.raises(TransitionRefused, match="none"):
        check_change("handed_off", valid_change("lost"), REASONS)
    assert stages_reached(["mql", "routed", "handed_off"]) >= {"won", "sqo"}


@pytest.mark.parametrize(("current", "target"), [("routed", "returned"), ("sal", "recycled"),
                                                 ("sqo", "lost")])  # fmt: skip
def test_rejections_need_a_structured_reason(current, target):
    with pytest.raises(ChangeInvalid) as invalid:
        check_change(current, StatusChange(target), REASONS)
    assert invalid.value.field == "reason"
    with pytest.raises(ChangeInvalid) as unknown:
        check_change(current, StatusChange(target, reason="they were rude"), REASONS)
    assert unknown.value.field == "reason"
    assert "not_in_target" in unknown.value.extra["allowed_reasons"]
    check_change(current, StatusChange(target, reason="not_in_target"), REASONS)


@given(st.sets(st.sampled_from(QUALIFICATION_FIELDS)))
def test_sql_needs_three_of_four_qualification_areas(confirmed):
    qualification = {name: (name in confirmed) for name in QUALIFICATION_FIELDS}
    change = StatusChange("sql", qualification=qualification)
    if len(confirmed) >= 3:
        check_change("sal", change, REASONS)
    else:
        with pytest.raises(ChangeInvalid) as invalid:
            check_change("sal", change, REASONS)
        assert invalid.value.field == "qualification"


def test_a_blank_note_does_not_confirm_an_area():
    change = StatusChange("sql", qualification={"problem": True, "impact": "  ", "budget": True})
    with pytest.raises(ChangeInvalid):
        check_change("sal", change, REASONS)


@pytest.mark.parametrize("missing", ["value", "stage", "close_date"])
def test_sqo_needs_value_stage_and_close_date(missing):
    opportunity = {k: v for k, v in OPPORTUNITY.items() if k != missing}
    with pytest.raises(ChangeInvalid) as invalid:
        check_change("sql", StatusChange("sqo", opportunity=opportunity), REASONS)
    assert invalid.value.field == f"opportunity.{missing}"


def test_a_contact_attempt_moves_only_a_routed_lead_to_working():
    assert after_contact_attempt("routed") == "working"
    for status in STATUSES - {"routed"}:
        assert after_contact_attempt(status) == status


@given(st.sets(st.sampled_from(sorted(STATUSES))))
def test_stages_reached_are_a_prefix_of_the_funnel(statuses):
    reached = stages_reached(statuses)
    depth = len(reached)
    assert reached == set(FUNNEL[:depth])


T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
MQL_AT, ROUTED_AT = T0, T0 + timedelta(minutes=1)


@pytest.mark.parametrize(
    ("current", "known", "steps"),
    [("lead", {"mql_at": MQL_AT}, ["mql"]),
     ("lead", {"routed_at": ROUTED_AT}, ["mql", "routed"]),  # routing implies the promotion
     ("lead", {"mql_at": MQL_AT, "routed_at": ROUTED_AT}, ["mql", "routed"]),
     ("mql", {"mql_at": MQL_AT}, []),
     ("mql", {"mql_at": MQL_AT, "routed_at": ROUTED_AT}, ["routed"]),
     ("routed", {"mql_at": MQL_AT, "routed_at": ROUTED_AT}, []),  # a late mql: not backwards
     ("lead", {}, [])],
)  # fmt: skip
def test_pipeline_steps_follow_the_latest_facts(current, known, steps):
    assert pipeline_steps(current, mql_at=known.get("mql_at"),
                          routed_at=known.get("routed_at")) == steps  # fmt: skip


@given(st.sampled_from(sorted(SALES_STATUSES - {"recycled"})))
def test_pipeline_facts_never_move_a_status_set_by_sales(status):
    assert pipeline_steps(status, mql_at=MQL_AT, routed_at=ROUTED_AT) == []


def test_only_a_fact_newer_than_the_recycle_reopens_a_recycled_lead():
    recycled_at = T0 + timedelta(days=1)
    stale = {"mql_at": MQL_AT, "routed_at": ROUTED_AT, "reopened_at": recycled_at}
    assert pipeline_steps("recycled", **stale) == []
    promoted = {**stale, "mql_at": recycled_at + timedelta(days=7)}
    assert pipeline_steps("recycled", **promoted) == ["mql"]
    assert pipeline_steps("mql", **promoted) == []  # the old routing is spent
    rerouted = {**promoted, "routed_at": recycled_at + timedelta(days=8)}
    assert pipeline_steps("recycled", **rerouted) == ["mql", "routed"]


@given(st.permutations(["mql", "routed"]), st.sampled_from(["lead", "recycled"]))
def test_any_arrival_order_ends_in_the_same_status_through_a_chain(order, start):
    reopened_at = T0 - timedelta(days=1) if start == "recycled" else None
    known: dict[str, datetime] = {}
    status, chain = start, []
    for fact in order:
        known[f"{fact}_at"] = MQL_AT if fact == "mql" else ROUTED_AT
        steps = pipeline_steps(status, mql_at=known.get("mql_at"),
                               routed_at=known.get("routed_at"), reopened_at=reopened_at)  # fmt: skip
        for step in steps:
            assert step in TRANSITIONS[status]
            chain.append(step)
            status = step
    assert status == "routed"
    assert chain == ["mql", "routed"]


# --- what events say about a lead, and how its status follows ------------------------------

LEAD_ID = uuid.UUID("0b7f3c1e-2f4a-4d8e-9c61-5a0e1d2c3b4f")
T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)


def lead_row(**values) -> dict:
    """A lead as feedback's read model holds it, before any fact."""
    row = dict.fromkeys(
        ("channel", "source", "role", "team", "rep_id", "mql_at", "routed_at", "reason",
         "cadence_exhausted_at", "display_name", "erased_at", "sla_due_at",
         "sla_response_seconds", "calendar"),
    )  # fmt: skip
    return {**row, "lead_id": LEAD_ID, "status": "lead", "updated_at": T0, **values}


def fact(payload) -> Fact | None:
    return fact_of(default_policy(), make_event(payload, source="test", time=T0), payload)


def sla_event(model, sla: str, **extra):
    return model(lead_id=LEAD_ID, timer_id=uuid.uuid4(), sla=sla, started_at=T0,
                 due_at=T0 + timedelta(hours=2), level="breached", **extra)  # fmt: skip


def test_only_the_first_response_clock_is_recorded_from_sla_events():
    met = sla_event(SlaMet, FIRST_RESPONSE, met_at=T0, business_seconds=600.0)
    assert fact(met).values["sla_response_seconds"] == 600.0
    assert fact(sla_event(SlaMet, "sal_acceptance", met_at=T0, business_seconds=60.0)) is None
    assert fact(sla_event(SlaBreached, FIRST_RESPONSE)).values["sla_breached"] is True
    assert fact(sla_event(SlaBreached, "sal_acceptance")) is None
    assert fact(sla_event(SlaWarning, FIRST_RESPONSE)) is None


def test_a_cadence_breach_that_leaves_the_lead_unreachable_settles_it():
    exhausted = fact(sla_event(SlaBreached, CONTACT_CADENCE, outcome=UNREACHABLE))
    assert exhausted.settles and exhausted.values["cadence_exhausted_at"] == T0
    assert fact(sla_event(SlaBreached, CONTACT_CADENCE)) is None


def test_a_lead_routed_before_its_promotion_arrived_passes_mql_at_the_routing_instant():
    known = Known(lead_row(routed_at=T0), {})
    steps = settle(known)
    assert [(s.from_status, s.status, s.at) for s in steps] == [
        ("lead", "mql", T0), ("mql", "routed", T0)
    ]  # fmt: skip
    assert known.lead["status"] == "routed"


def test_an_attempt_recorded_before_the_routing_makes_the_routed_lead_working():
    known = Known(lead_row(status="mql", mql_at=T0, routed_at=T0 + timedelta(hours=1)), {})
    known.attempts.append(T0 + timedelta(minutes=30))
    steps = settle(known)
    assert [s.status for s in steps] == ["routed", "working"]
    assert steps[-1].at == T0 + timedelta(hours=1)  # never before the routing


def test_an_exhausted_cadence_recycles_a_routed_lead_as_unreachable():
    exhausted_at = T0 + timedelta(days=12)
    known = Known(lead_row(status="routed", mql_at=T0, routed_at=T0,
                           cadence_exhausted_at=exhausted_at), {})  # fmt: skip
    (step,) = settle(known)
    assert (step.from_status, step.status, step.unreachable) == ("routed", UNREACHABLE, True)
    assert (known.lead["status"], known.lead["reason"]) == ("recycled", UNREACHABLE)
    assert known.reopened_at == exhausted_at


def test_a_later_fact_wins_over_an_older_one_arriving_after_it():
    lead = lead_row(routed_at=T0 + timedelta(hours=1), team="new")
    older = Fact(LEAD_ID, {"routed_at": T0, "team": "old", "updated_at": T0}, stamp="routed_at")
    older.apply(lead)
    assert (lead["routed_at"], lead["team"]) == (T0 + timedelta(hours=1), "new")


def test_nurture_ends_after_the_days_of_the_recycle_reason():
    policy = default_policy()
    reason = next(iter(policy.reasons))
    ends = nurture_end(policy, "recycled", reason, T0)
    assert ends == T0 + timedelta(days=policy.reasons[reason].nurture_days)
    assert nurture_end(policy, "lost", reason, T0) is None
    assert nurture_end(policy, "recycled", None, T0) is None
