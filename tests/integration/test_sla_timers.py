"""sla-timer runs every clock of docs/domain.md's time-commitments table on simulated time.

Each test runs sla-timer in-process against its own database and topics, publishes the events
routing and feedback would publish, and reads the SLA events sla-timer wrote to its outbox.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
import yaml
from leadflow.clock import Clock
from leadflow.contracts import slas as sla_kinds
from leadflow.contracts.events import (
    TOPIC_FEEDBACK,
    TOPIC_ROUTING,
    CloudEvent,
    LeadContactAttempt,
    LeadRouted,
    LeadStatusChanged,
)
from leadflow.contracts.policy import default_policy
from leadflow_sla_timer.models import early_attempts, early_statuses
from leadflow_sla_timer.models import timers as timer_rows
from support.harness import eventually, publish_events, service_client

# Sunday noon UTC: business-hours clocks started now wait for Monday's opening.
START = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
NEW_YORK = ZoneInfo("America/New_York")
# The levels of a clock that climbed the whole default ladder, in firing order.
FULL_LADDER = ["warning", "breached", "escalated_team_lead", "escalated_manager"]
NEW_YORK_TEAM = {
    "timezone": "America/New_York",
    "hours": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    "holiday_country": "US",
}


async def simulated(stack, speed: float):
    settings = await stack.isolated_settings(
        clock_start=START, clock_speed=speed, clock_anchor=time.time()
    )
    return settings, Clock(settings.clock_start, settings.clock_speed, settings.clock_anchor)


def routed(
    lead_id: uuid.UUID,
    at: datetime,
    *,
    channel: str = "inbound",
    kind: str = "mql",
    calendar: dict | None = None,
) -> LeadRouted:
    return LeadRouted(
        lead_id=lead_id,
        assignment_id=uuid.uuid4(),
        team_id=None,
        team="emea",
        rep_id=None,
        channel=channel,
        routed_at=at,
        calendar=calendar,
        kind=kind,
    )


def attempt(lead_id: uuid.UUID, at: datetime) -> LeadContactAttempt:
    return LeadContactAttempt(
        lead_id=lead_id, attempt_id=uuid.uuid4(), channel="call", occurred_at=at
    )


def status(lead_id: uuid.UUID, to: str, at: datetime) -> LeadStatusChanged:
    return LeadStatusChanged(lead_id=lead_id, from_status=None, status=to, changed_at=at)


async def slas(client, lead_id: uuid.UUID) -> dict[str, dict]:
    body = (await client.get(f"/v1/leads/{lead_id}/slas")).json()
    return {t["sla"]: t for t in body["timers"]}


async def fired(client, lead_id: uuid.UUID) -> list[tuple]:
    """The SLA events sla-timer emitted for the lead: (type, sla, detail) in emission order."""
    rt = client.app.state.runtime
    async with rt.db.unit_of_work() as session:
        raw = await session.execute(sa.text("SELECT payload FROM sla_timer.outbox ORDER BY id"))
        events = [CloudEvent.from_bytes(row.payload) for row in raw]
    out = []
    for e in events:
        if e.subject != str(lead_id):
            continue
        detail = e.data.get("escalate_to") or e.data.get("outcome")
        out.append((e.type, e.data["sla"], detail))
    return out


def where(states: dict[str, str]):
    """A check for `eventually`: the lead's timers are in these states."""

    def check(timers: dict[str, dict]) -> bool:
        return all(timers.get(sla, {}).get("state") == state for sla, state in states.items())

    return check


async def wait_for_timers(client, lead_id, states: dict[str, str], timeout: float = 60):
    async def ok():
        timers = await slas(client, lead_id)
        return where(states)(timers) and timers

    return await eventually(ok, timeout=timeout)


async def ready(client) -> None:
    async def up() -> bool:
        return (await client.get("/readyz")).status_code == 200

    await eventually(up, timeout=90)


async def test_routing_opens_the_clocks_and_attempts_and_acceptance_meet_them(stack):
    settings, clock = await simulated(stack, speed=60)
    accepted, returned = uuid.uuid4(), uuid.uuid4()
    async with service_client("sla-timer", settings) as client:
        await ready(client)
        now = clock.now()
        await publish_events(
            settings, TOPIC_ROUTING, [routed(accepted, now), routed(returned, now)]
        )
        timers = await wait_for_timers(
            client,
            accepted,
            {"first_response": "open", "contact_cadence": "open", "sal_acceptance": "open"},
        )
        assert "pql_contact" not in timers  # an MQL, not a PQL
        routed_at = datetime.fromisoformat(timers["sal_acceptance"]["started_at"])
        # Wall clocks: 24 h to accept, 6 attempts in 12 calendar days (inbound).
        assert datetime.fromisoformat(timers["sal_acceptance"]["due_at"]) == routed_at + 24 * H
        assert datetime.fromisoformat(timers["contact_cadence"]["due_at"]) == routed_at + 12 * D
        assert timers["contact_cadence"]["attempts_required"] == 6
        # Business hours: routed on Sunday, 2 working hours from Monday 09:00 Warsaw.
        assert timers["first_response"]["due_at"].startswith("2026-11-16T10:00")

        # Five attempts: first response met, cadence still counting.
        await publish_events(
            settings, TOPIC_FEEDBACK, [attempt(accepted, now + i * H) for i in range(5)]
        )
        timers = await wait_for_timers(
            client, accepted, {"first_response": "met", "contact_cadence": "open"}
        )
        await eventually(
            lambda: _attempts(client, accepted, 5), timeout=30
        )  # every attempt counted
        # The sixth attempt completes the cadence; acceptance meets the SAL clock.
        await publish_events(settings, TOPIC_FEEDBACK, [attempt(accepted, now + 5 * H)])
        await publish_events(settings, TOPIC_FEEDBACK, [status(accepted, "sal", now + 6 * H)])
        timers = await wait_for_timers(
            client,
            accepted,
            {"first_response": "met", "contact_cadence": "met", "sal_acceptance": "met"},
        )
        assert timers["contact_cadence"]["met_at"].startswith((routed_at + 5 * H).isoformat()[:19])

        # Returned without contact: cadence and acceptance met, no first response owed.
        await publish_events(settings, TOPIC_FEEDBACK, [status(returned, "returned", now + H)])
        await wait_for_timers(
            client,
            returned,
            {"first_response": "cancelled", "contact_cadence": "met", "sal_acceptance": "met"},
        )
        met = Counter(sla for kind, sla, _ in await fired(client, accepted) if kind == "sla.met")
        assert met == {"first_response": 1, "contact_cadence": 1, "sal_acceptance": 1}
        assert [e for e in await fired(client, returned) if e[0] != "sla.met"] == []


async def _attempts(client, lead_id, n: int) -> bool:
    return (await slas(client, lead_id))["contact_cadence"]["attempts"] == n


async def test_cadence_without_its_attempts_breaches_and_marks_the_lead_unreachable(stack):
    settings, clock = await simulated(stack, speed=3600)
    lead = uuid.uuid4()
    async with service_client("sla-timer", settings) as client:
        await ready(client)
        now = clock.now()
        # Routed 13 days ago; inbound owes 6 attempts in 12 days and got one.
        await publish_events(settings, TOPIC_ROUTING, [routed(lead, now - 13 * D)])
        await publish_events(settings, TOPIC_FEEDBACK, [attempt(lead, now - 12 * D)])
        timers = await wait_for_timers(client, lead, {"contact_cadence": "breached"})
        assert timers["contact_cadence"]["levels_fired"] == ["warning", "breached"]

        async def cadence_events():
            return [e for e in await fired(client, lead) if e[1] == "contact_cadence"]

        await eventually(lambda: _len(cadence_events(), 2), timeout=30)
        # The breach says what it means; a cadence ends in "unreachable", not an escalation.
        assert await cadence_events() == [
            ("sla.warning", "contact_cadence", None),
            ("sla.breached", "contact_cadence", "unreachable"),
        ]
        # The lead is marked unreachable: every other clock stops, no more escalations.
        await publish_events(settings, TOPIC_FEEDBACK, [status(lead, "unreachable", now)])
        await eventually(lambda: _no_pending(client, lead), timeout=30)


async def _len(awaitable, n: int) -> bool:
    return len(await awaitable) == n


async def _no_pending(client, lead_id) -> bool:
    return all(t["next_fire_at"] is None for t in (await slas(client, lead_id)).values())


async def test_pql_contact_clock_is_met_by_first_contact_and_breaches_without_it(stack):
    settings, clock = await simulated(stack, speed=60)
    contacted, ignored, mql = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with service_client("sla-timer", settings) as client:
        await ready(client)
        now = clock.now()
        await publish_events(
            settings,
            TOPIC_ROUTING,
            [
                routed(contacted, now, channel="plg", kind="pql"),
                routed(ignored, now - 37 * H, channel="plg", kind="pql"),
                routed(mql, now, channel="plg"),
            ],
        )
        await publish_events(settings, TOPIC_FEEDBACK, [attempt(contacted, now + H)])
        timers = await wait_for_timers(client, contacted, {"pql_contact": "met"})
        assert timers["pql_contact"]["clock"] == "wall"
        started = datetime.fromisoformat(timers["pql_contact"]["started_at"])
        assert datetime.fromisoformat(timers["pql_contact"]["due_at"]) == started + 24 * H

        timers = await wait_for_timers(client, ignored, {"pql_contact": "breached"})
        assert timers["pql_contact"]["levels_fired"] == FULL_LADDER
        pql = [e for e in await fired(client, ignored) if e[1] == "pql_contact"]
        assert pql == [
            ("sla.warning", "pql_contact", None),
            ("sla.breached", "pql_contact", None),
            ("sla.escalated", "pql_contact", "team_lead"),
            ("sla.escalated", "pql_contact", "manager"),
        ]
        assert "pql_contact" not in await wait_for_timers(client, mql, {"first_response": "open"})


async def test_sql_to_sqo_counts_business_days_of_the_team_calendar(stack):
    settings, clock = await simulated(stack, speed=60)
    on_time, late = uuid.uuid4(), uuid.uuid4()
    async with service_client("sla-timer", settings) as client:
        await ready(client)
        now = clock.now()
        await publish_events(
            settings,
            TOPIC_ROUTING,
            [routed(lead, now - 30 * D, calendar=NEW_YORK_TEAM) for lead in (on_time, late)],
        )
        await wait_for_timers(client, on_time, {"sal_acceptance": "breached"})
        # SQL on the Wednesday before Thanksgiving, New York time: 5 business days skip the
        # holiday and the weekend → the Thursday after, same time of day.
        sql_at = datetime(2026, 11, 25, 10, 0, tzinfo=NEW_YORK)
        await publish_events(
            settings,
            TOPIC_FEEDBACK,
            [status(on_time, "sql", sql_at), status(late, "sql", now - 20 * D)],
        )
        timers = await wait_for_timers(client, on_time, {"sql_to_sqo": "open"})
        assert timers["sql_to_sqo"]["clock"] == "business_days"
        due = datetime.fromisoformat(timers["sql_to_sqo"]["due_at"])
        assert due == datetime(2026, 12, 3, 10, 0, tzinfo=NEW_YORK)
        late_timers = await wait_for_timers(client, late, {"sql_to_sqo": "breached"})
        assert late_timers["sql_to_sqo"]["levels_fired"] == FULL_LADDER

        await publish_events(settings, TOPIC_FEEDBACK, [status(on_time, "sqo", sql_at + D)])
        await wait_for_timers(client, on_time, {"sql_to_sqo": "met"})
        events = Counter(
            (kind, detail) for kind, sla, detail in await fired(client, late) if sla == "sql_to_sqo"
        )
        assert events == {
            ("sla.warning", None): 1,
            ("sla.breached", None): 1,
            ("sla.escalated", "team_lead"): 1,
            ("sla.escalated", "manager"): 1,
        }


async def test_won_deal_handoff_clock_runs_48_wall_hours(stack):
    settings, clock = await simulated(stack, speed=60)
    fresh, stale = uuid.uuid4(), uuid.uuid4()
    async with service_client("sla-timer", settings) as client:
        await ready(client)
        now = clock.now()
        await publish_events(
            settings, TOPIC_ROUTING, [routed(lead, now - 60 * D) for lead in (fresh, stale)]
        )
        await wait_for_timers(client, fresh, {"sal_acceptance": "breached"})
        await publish_events(
            settings,
            TOPIC_FEEDBACK,
            [status(fresh, "won", now), status(stale, "won", now - 73 * H)],
        )
        timers = await wait_for_timers(client, fresh, {"cs_handoff": "open"})
        started = datetime.fromisoformat(timers["cs_handoff"]["started_at"])
        assert datetime.fromisoformat(timers["cs_handoff"]["due_at"]) == started + 48 * H
        # a deal nobody handed over breaches; the handover meets the other clock
        timers = await wait_for_timers(client, stale, {"cs_handoff": "breached"})
        assert timers["cs_handoff"]["levels_fired"] == FULL_LADDER
        await publish_events(settings, TOPIC_FEEDBACK, [status(fresh, "handed_off", now + H)])
        await wait_for_timers(client, fresh, {"cs_handoff": "met"})


async def test_overdue_timers_fire_once_each_when_sla_timer_starts_again(stack):
    settings, clock = await simulated(stack, speed=60)
    lead = uuid.uuid4()
    async with service_client("sla-timer", settings) as client:
        await ready(client)
        await publish_events(settings, TOPIC_ROUTING, [routed(lead, clock.now())])
        await wait_for_timers(
            client,
            lead,
            {"first_response": "open", "contact_cadence": "open", "sal_acceptance": "open"},
        )
        assert await fired(client, lead) == []
    # sla-timer is down while 40 simulated days pass: every level of every clock comes due.
    later = settings.model_copy(
        update={"clock_anchor": settings.clock_anchor - 40 * D.total_seconds() / 60}
    )
    async with service_client("sla-timer", later) as client:
        timers = await wait_for_timers(
            client,
            lead,
            {
                "first_response": "breached",
                "contact_cadence": "breached",
                "sal_acceptance": "breached",
            },
        )
        assert all(t["next_fire_at"] is None for t in timers.values())
        expected = Counter(
            {
                ("sla.warning", "first_response", None): 1,
                ("sla.breached", "first_response", None): 1,
                ("sla.escalated", "first_response", "team_lead"): 1,
                ("sla.escalated", "first_response", "manager"): 1,
                ("sla.warning", "sal_acceptance", None): 1,
                ("sla.breached", "sal_acceptance", None): 1,
                ("sla.escalated", "sal_acceptance", "team_lead"): 1,
                ("sla.escalated", "sal_acceptance", "manager"): 1,
                ("sla.warning", "contact_cadence", None): 1,
                ("sla.breached", "contact_cadence", "unreachable"): 1,
            }
        )
        await eventually(lambda: _counted(client, lead, expected), timeout=30)
        await client.app.state.runtime.stop.pause(1.0)  # a storm would show up by now
        assert Counter(await fired(client, lead)) == expected


async def _counted(client, lead_id, expected: Counter) -> bool:
    return Counter(await fired(client, lead_id)) == expected


async def test_attempts_seen_before_routing_count_once_the_clocks_open(stack):
    settings, clock = await simulated(stack, speed=60)
    lead = uuid.uuid4()
    async with service_client("sla-timer", settings) as client:
        await ready(client)
        rt = client.app.state.runtime
        now = clock.now()
        await publish_events(
            settings, TOPIC_FEEDBACK, [attempt(lead, now + H), attempt(lead, now + 2 * H)]
        )

        async def remembered():
            async with rt.db.unit_of_work() as session:
                return await session.scalar(
                    sa.select(early_attempts.c.attempts).where(early_attempts.c.lead_id == lead)
                )

        assert await eventually(lambda: _equals(remembered(), 2), timeout=60)
        await publish_events(settings, TOPIC_ROUTING, [routed(lead, now)])
        timers = await wait_for_timers(
            client, lead, {"first_response": "met", "contact_cadence": "open"}
        )
        assert timers["contact_cadence"]["attempts"] == 2
        assert timers["first_response"]["met_at"].startswith((now + H).isoformat()[:19])


async def _equals(awaitable, value) -> bool:
    return (await awaitable) == value


@pytest.mark.parametrize(
    ("channel", "attempts", "within"),
    [("inbound", 6, 12 * D), ("outbound", 12, 21 * D), ("partner", 6, 14 * D), ("plg", 6, 12 * D)],
)
def test_default_policy_terms_reproduce_the_domain_table(channel, attempts, within):
    policy = default_policy()
    cadence = sla_kinds.term(policy, sla_kinds.CONTACT_CADENCE, channel)
    assert (cadence.attempts_required, cadence.limit, cadence.clock) == (attempts, within, "wall")
    # A cadence ends in "unreachable": warning and breach, no escalation ladder.
    steps = sla_kinds.ladder(policy, sla_kinds.CONTACT_CADENCE, cadence)
    assert [s.level for s in steps] == ["warning", "breached"]
    assert not cadence.escalate_on_breach
    expected = {
        sla_kinds.SAL_ACCEPTANCE: (24 * H, "wall"),
        sla_kinds.SQL_TO_SQO: (5 * D, "business_days"),
        sla_kinds.PQL_CONTACT: (24 * H, "wall"),
        sla_kinds.CS_HANDOFF: (48 * H, "wall"),
    }
    for sla, (limit, clock) in expected.items():
        term = sla_kinds.term(policy, sla, channel)
        assert (term.limit, term.clock) == (limit, clock), sla
        steps = sla_kinds.ladder(policy, sla, term)
        assert [s.level for s in steps] == FULL_LADDER
        assert [s.fraction for s in steps] == [0.75, 1.0, 1.0, 1.5]


async def test_status_changes_before_routing_are_held_and_applied_when_the_clocks_open(stack):
    settings, clock = await simulated(stack, speed=60)
    leads = {name: uuid.uuid4() for name in ("sal", "lost", "mixed", "sql")}
    in_order = {name: uuid.uuid4() for name in ("sal", "lost")}
    async with service_client("sla-timer", settings) as client:
        await ready(client)
        rt = client.app.state.runtime
        now = clock.now()
        # Feedback's events overtake routing's: a status (and an attempt) before lead.routed.
        await publish_events(
            settings,
            TOPIC_FEEDBACK,
            [
                status(leads["sal"], "sal", now + H),
                status(leads["lost"], "lost", now + H),
                attempt(leads["mixed"], now + H),
                status(leads["mixed"], "returned", now + 2 * H),
                status(leads["sql"], "sql", now - H),
            ],
        )

        async def held():
            async with rt.db.unit_of_work() as session:
                return await session.scalar(sa.select(sa.func.count()).select_from(early_statuses))

        await eventually(lambda: _equals(held(), 4), timeout=60)
        assert await slas(client, leads["sql"]) == {}  # no clock opened without a routing
        await publish_events(
            settings, TOPIC_ROUTING, [routed(lead, now) for lead in leads.values()]
        )
        # The usual order, for comparison.
        await publish_events(
            settings, TOPIC_ROUTING, [routed(lead, now) for lead in in_order.values()]
        )
        await wait_for_timers(client, in_order["sal"], {"sal_acceptance": "open"})
        await wait_for_timers(client, in_order["lost"], {"sal_acceptance": "open"})
        await publish_events(
            settings,
            TOPIC_FEEDBACK,
            [status(in_order["sal"], "sal", now + H), status(in_order["lost"], "lost", now + H)],
        )

        accepted = {"first_response": "open", "contact_cadence": "met", "sal_acceptance": "met"}
        gone = {"first_response": "cancelled", "contact_cadence": "cancelled",
                "sal_acceptance": "cancelled"}  # fmt: skip
        for lead, states in (
            (leads["sal"], accepted),
            (in_order["sal"], accepted),
            (leads["lost"], gone),
            (in_order["lost"], gone),
        ):
            timers = await wait_for_timers(client, lead, states)
            if states is accepted:
                assert timers["sal_acceptance"]["met_at"].startswith((now + H).isoformat()[:19])
        # Attempt, then returned: first response met by the attempt, the rest by the return.
        mixed = await wait_for_timers(
            client,
            leads["mixed"],
            {"first_response": "met", "contact_cadence": "met", "sal_acceptance": "met"},
        )
        assert mixed["first_response"]["met_at"].startswith((now + H).isoformat()[:19])
        assert mixed["contact_cadence"]["attempts"] == 1
        # An SQL seen before the routing opens its clock at the routing, on the routed team.
        sql = await wait_for_timers(client, leads["sql"], {"sql_to_sqo": "open"})
        assert sql["sql_to_sqo"]["team"] == "emea"
        assert sql["sql_to_sqo"]["started_at"] == sql["first_response"]["started_at"]
        assert await held() == 0
        for lead in (leads["sal"], in_order["sal"]):
            met = Counter(s for kind, s, _ in await fired(client, lead) if kind == "sla.met")
            assert met == {"contact_cadence": 1, "sal_acceptance": 1}
        for lead in (leads["lost"], in_order["lost"]):
            assert await fired(client, lead) == []


async def test_partner_cadence_is_met_at_six_touches_and_warns_once_past_eight(stack):
    settings, clock = await simulated(stack, speed=60)
    partner, inbound = uuid.uuid4(), uuid.uuid4()
    async with service_client("sla-timer", settings) as client:
        await ready(client)
        now = clock.now()
        await publish_events(
            settings,
            TOPIC_ROUTING,
            [routed(partner, now, channel="partner"), routed(inbound, now)],
        )
        timers = await wait_for_timers(client, partner, {"contact_cadence": "open"})
        cadence = timers["contact_cadence"]
        assert (cadence["attempts_required"], cadence["attempts_allowed"]) == (6, 8)
        assert (
            datetime.fromisoformat(cadence["due_at"])
            == datetime.fromisoformat(cadence["started_at"]) + 14 * D
        )

        await publish_events(
            settings, TOPIC_FEEDBACK, [attempt(partner, now + i * H) for i in range(1, 7)]
        )
        timers = await wait_for_timers(client, partner, {"contact_cadence": "met"})
        assert timers["contact_cadence"]["attempts"] == 6
        # Touches seven and eight are within the cap: counted, nothing emitted.
        await publish_events(
            settings, TOPIC_FEEDBACK, [attempt(partner, now + i * H) for i in (7, 8)]
        )
        await eventually(lambda: _attempts(client, partner, 8), timeout=30)
        assert [e for e in await fired(client, partner) if e[0] == "sla.warning"] == []
        # The ninth and tenth go past it: one warning, not one per touch.
        await publish_events(
            settings, TOPIC_FEEDBACK, [attempt(partner, now + i * H) for i in (9, 10)]
        )
        await eventually(lambda: _attempts(client, partner, 10), timeout=30)

        async def warnings():
            return [e for e in await fired(client, partner) if e[0] == "sla.warning"]

        await eventually(lambda: _len(warnings(), 1), timeout=30)
        assert await warnings() == [("sla.warning", "contact_cadence", None)]
        rt = client.app.state.runtime
        async with rt.db.unit_of_work() as session:
            raw = await session.execute(sa.text("SELECT payload FROM sla_timer.outbox"))
            levels = [
                e.data["level"]
                for e in map(CloudEvent.from_bytes, (r.payload for r in raw))
                if e.type == "sla.warning" and e.subject == str(partner)
            ]
        assert levels == ["attempts_exceeded"]

        # Inbound sets no cap: eight touches are counted and warn nothing.
        await publish_events(
            settings, TOPIC_FEEDBACK, [attempt(inbound, now + i * H) for i in range(1, 9)]
        )
        await eventually(lambda: _attempts(client, inbound, 8), timeout=30)
        timers = await slas(client, inbound)
        assert timers["contact_cadence"]["state"] == "met"
        assert timers["contact_cadence"]["attempts_allowed"] is None
        assert [e for e in await fired(client, inbound) if e[0] == "sla.warning"] == []


def policy_with(tmp_path: Path, version: str, *, acceptance: str = "24h", **escalation) -> str:
    """A policy file: the shipped default under `version`, with the SAL acceptance limit and
    the escalation ladder changed."""
    policy = yaml.safe_load(
        (Path(__file__).parents[2] / "shared/leadflow/contracts/policy_default.yaml").read_text()
    )
    policy["version"] = version
    policy["slas"]["sal_acceptance"]["limit"] = acceptance
    policy["slas"]["escalation"].update(escalation)
    path = tmp_path / f"{version}.yaml"
    path.write_text(yaml.safe_dump(policy))
    return str(path)


async def sla_events(client, lead_id: uuid.UUID, sla: str) -> list[CloudEvent]:
    """The events sla-timer emitted about the lead's `sla` clock, in emission order."""
    rt = client.app.state.runtime
    async with rt.db.unit_of_work() as session:
        raw = await session.execute(sa.text("SELECT payload FROM sla_timer.outbox ORDER BY id"))
        events = [CloudEvent.from_bytes(row.payload) for row in raw]
    return [e for e in events if e.subject == str(lead_id) and e.data["sla"] == sla]


def steps_of(events: list[CloudEvent]) -> list[tuple]:
    """(type, level, escalate_to, reassign) of each event."""
    return [
        (e.type, e.data["level"], e.data.get("escalate_to"), e.data.get("reassign")) for e in events
    ]


async def test_the_team_lead_is_escalated_at_team_lead_at_between_breach_and_manager(
    stack, tmp_path: Path
):
    settings, clock = await simulated(stack, speed=120)
    policy = policy_with(
        tmp_path, "2026.12-team-lead-later", acceptance="1h", team_lead_at=1.25, manager_at=1.5,
        reassign_on_breach=True,
    )  # fmt: skip
    settings = settings.model_copy(update={"policy_file": policy})
    lead = uuid.uuid4()
    async with service_client("sla-timer", settings) as client:
        await ready(client)
        # Acceptance within 1 hour: warning at 45 minutes, breach at 60, the team lead at 75, the
        # manager at 90. Routed 50 minutes ago, every next level is 10 to 20 real seconds away.
        routed_at = clock.now() - 50 * MINUTE
        await publish_events(settings, TOPIC_ROUTING, [routed(lead, routed_at)])
        timers = await wait_for_timers(client, lead, {"sal_acceptance": "open"})
        started = datetime.fromisoformat(timers["sal_acceptance"]["started_at"])
        at = {
            "warning": started + 45 * MINUTE,
            "breached": started + 60 * MINUTE,
            "escalated_team_lead": started + 75 * MINUTE,
            "escalated_manager": started + 90 * MINUTE,
        }
        assert datetime.fromisoformat(timers["sal_acceptance"]["due_at"]) == at["breached"]

        async def climbed():
            timers = await slas(client, lead)
            return timers["sal_acceptance"]["next_fire_at"] is None and timers

        acceptance = (await eventually(climbed, timeout=120))["sal_acceptance"]
        assert acceptance["state"] == "breached"
        assert acceptance["levels_fired"] == FULL_LADDER
        events = await sla_events(client, lead, "sal_acceptance")
    # Each level once, in ladder order (the ladder is climbed: nothing more can fire); only the
    # team lead's escalation asks for a reassignment.
    assert steps_of(events) == [
        ("sla.warning", "warning", None, None),
        ("sla.breached", "breached", None, None),
        ("sla.escalated", "escalated_team_lead", "team_lead", True),
        ("sla.escalated", "escalated_manager", "manager", False),
    ]
    # Each at its own instant: the team lead's escalation after the breach, before the manager's.
    fired_at = [event.time for event in events]
    assert at["warning"] <= fired_at[0]
    assert at["breached"] <= fired_at[1] < at["escalated_team_lead"]
    assert at["escalated_team_lead"] <= fired_at[2] < at["escalated_manager"]
    assert at["escalated_manager"] <= fired_at[3]


async def test_a_clock_stored_before_the_team_lead_step_escalates_with_its_breach_once(
    stack, tmp_path: Path
):
    settings, clock = await simulated(stack, speed=60)
    lead = uuid.uuid4()
    async with service_client("sla-timer", settings) as client:
        await ready(client)
        rt = client.app.state.runtime
        opened_under = rt.policy.version
        # An acceptance clock as sla-timer stored it before the team lead had a step of its
        # own: the breach escalates to the team lead. Started 31 hours ago, it is breached.
        started = clock.now() - 31 * H
        old_ladder = [
            {"level": "warning", "at": (started + 18 * H).isoformat()},
            {"level": "breached", "at": (started + 24 * H).isoformat()},
            {"level": "escalated_manager", "at": (started + 36 * H).isoformat()},
        ]
        async with rt.db.unit_of_work() as session:
            await session.execute(
                sa.insert(timer_rows),
                {
                    "id": uuid.uuid4(), "lead_id": lead, "sla": "sal_acceptance",
                    "channel": "inbound", "team": "emea", "clock": "wall",
                    "limit_seconds": 24 * H.total_seconds(), "started_at": started,
                    "due_at": started + 24 * H, "ladder": old_ladder,
                    "next_fire_at": started + 18 * H, "policy_version": rt.policy.version,
                },
            )  # fmt: skip
        timers = await wait_for_timers(client, lead, {"sal_acceptance": "breached"})
        assert timers["sal_acceptance"]["levels_fired"] == ["warning", "breached"]

        async def escalated():
            return len(await sla_events(client, lead, "sal_acceptance")) == 3

        await eventually(escalated, timeout=30)
        as_before = [
            ("sla.warning", "warning", None, None),
            ("sla.breached", "breached", None, None),
            ("sla.escalated", "breached", "team_lead", False),
        ]
        assert steps_of(await sla_events(client, lead, "sal_acceptance")) == as_before
    # A new policy version does not move the clock: it keeps the ladder it was opened with, and
    # its manager's escalation, at 36 hours, is the next level.
    policy = policy_with(tmp_path, "2026.12-team-lead-later", team_lead_at=1.25)
    async with service_client(
        "sla-timer", settings.model_copy(update={"policy_file": policy})
    ) as client:
        await ready(client)
        assert client.app.state.runtime.policy.version == "2026.12-team-lead-later"
        acceptance = (await slas(client, lead))["sal_acceptance"]
        assert acceptance["policy_version"] == opened_under
        assert acceptance["levels_fired"] == ["warning", "breached"]
        assert datetime.fromisoformat(acceptance["next_fire_at"]) == started + 36 * H
        assert steps_of(await sla_events(client, lead, "sal_acceptance")) == as_before
