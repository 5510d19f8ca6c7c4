"""The unassigned queue over the real PostgreSQL and broker: an MQL no rep can take now waits
(`lead.unassigned`, once), and is routed, oldest first and exactly once, when a rep becomes
eligible: back from out of office, working hours beginning, a place freed, a rule created.
Round robin and weighted pass over reps at capacity."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from leadflow import metrics
from leadflow.contracts.events import (
    TOPIC_FEEDBACK,
    TOPIC_INGEST,
    TOPIC_SCORING,
    CloudEvent,
    LeadErased,
    LeadStatusChanged,
    make_event,
)
from leadflow.db import Database
from leadflow.kafka import make_producer
from support.harness import ADMIN, emitted, eventually, sample_mql, service_client

MONDAY_6_UTC = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)


async def add_team(client, name: str, strategy: str = "round_robin") -> str:
    response = await client.post(
        "/v1/teams", json={"name": name, "strategy": strategy}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def add_rep(client, name: str, team_id: str | None = None, **fields) -> str:
    body = {"name": name, **fields, **({"team_id": team_id} if team_id else {})}
    response = await client.post("/v1/reps", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def add_rule(client, name: str, team_id: str, **conditions) -> None:
    response = await client.post(
        "/v1/rules",
        json={"name": name, "conditions": conditions, "team_id": team_id},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text


async def publish_in_order(settings, topic: str, events: list[CloudEvent]) -> None:
    """On one key (one partition), so routing takes them in this order."""
    producer = make_producer(settings, "test-in-order")
    await producer.start()
    try:
        for event in events:
            await producer.send(settings.topic_prefix + topic, event.to_bytes(), key=b"in-order")
        await producer.flush()
    finally:
        await producer.stop()


def as_events(payloads: list) -> list[CloudEvent]:
    return [make_event(payload, source="test") for payload in payloads]


async def wait_emitted(settings, event_type: str, count: int) -> list[CloudEvent]:
    async def enough():
        found = await emitted(settings, event_type)
        return found if len(found) >= count else None

    return await eventually(enough, timeout=90)


async def waiting(client) -> list[dict]:
    response = await client.get("/v1/unassigned")
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def wait_waiting(client, count: int) -> list[dict] | bool:
    async def enough():
        found = await waiting(client)
        return (found or True) if len(found) == count else None

    return await eventually(enough, timeout=90)


def gauge(gauge_metric, team: str) -> float | None:
    for sample in gauge_metric.collect()[0].samples:
        if sample.labels.get("team") == team:
            return sample.value
    return None


def observed(histogram) -> float:
    return sum(s.value for s in histogram.collect()[0].samples if s.name.endswith("_count"))


async def seen_by_the_worker(team: str, count: int) -> None:
    """The queue's worker looked at the queue after the leads were queued (its gauge says
    how many wait): evidence that a recheck happened, rather than a pause."""
    await eventually(lambda: gauge(metrics.unassigned_waiting, team) == count, timeout=60)


async def test_mqls_wait_while_the_only_rep_is_away_then_are_routed_in_arrival_order_once(stack):
    settings = await stack.isolated_settings(unassigned_recheck_seconds=0.3)
    unassigned_before = metrics.mql_unassigned.labels("Partners", "all_out_of_office")._value.get()
    waits_before = observed(metrics.unassigned_wait)
    async with (
        service_client("routing", settings) as routing,
        service_client("routing", settings) as replica,
        service_client("sla-timer", settings) as sla,
    ):
        team = await add_team(routing, "Partners")
        ola = await add_rep(routing, "Ola", team, out_of_office=True)
        await add_rule(routing, "partners", team, channel=["partner"])
        mqls = [sample_mql(n, channel="partner") for n in range(12)]
        await publish_in_order(settings, TOPIC_SCORING, as_events(mqls))

        queue = await wait_waiting(routing, 12)
        assert [w["lead_id"] for w in queue] == [str(m.lead_id) for m in mqls]
        assert {(w["team"], w["team_id"], w["reason"]) for w in queue} == {
            ("Partners", team, "all_out_of_office")
        }
        await seen_by_the_worker("Partners", 12)
        told = await emitted(settings, "lead.unassigned")
        assert [e.data["lead_id"] for e in told] == [str(m.lead_id) for m in mqls]
        assert {e.data["reason"] for e in told} == {"all_out_of_office"}
        assert told[0].data["trace"]["considered"][0]["skipped"] == "out_of_office"
        assert await emitted(settings, "lead.routed") == []
        assignment = (await routing.get(f"/v1/leads/{mqls[0].lead_id}/assignment")).json()
        assert assignment["rep_id"] is None  # the trace says why
        assert (
            metrics.mql_unassigned.labels("Partners", "all_out_of_office")._value.get()
            - unassigned_before
            == 12
        )

        back = await replica.patch(f"/v1/reps/{ola}", json={"out_of_office": False}, headers=ADMIN)
        assert back.status_code == 200, back.text
        routed = await wait_emitted(settings, "lead.routed", 12)
        assert [e.data["lead_id"] for e in routed] == [str(m.lead_id) for m in mqls]
        assert {e.data["rep_id"] for e in routed} == {ola}
        assert {e.data["reason"] for e in routed} == {"mql"}
        await wait_waiting(routing, 0)
        await seen_by_the_worker("Partners", 0)
        # a further change looks at the queue again: nobody is routed twice
        again = await routing.patch(f"/v1/reps/{ola}", json={"weight": 2}, headers=ADMIN)
        assert again.status_code == 200
        await seen_by_the_worker("Partners", 0)
        routed = await emitted(settings, "lead.routed")
        assert Counter(e.data["lead_id"] for e in routed) == {str(m.lead_id): 1 for m in mqls}
        assert len(await emitted(settings, "lead.unassigned")) == 12
        assert observed(metrics.unassigned_wait) - waits_before == 12
        trace = (await routing.get(f"/v1/leads/{mqls[0].lead_id}/assignment")).json()["trace"]
        waited_since = datetime.fromisoformat(trace["waited_since"])
        assert waited_since == datetime.fromisoformat(told[0].data["queued_at"])

        # each lead's first-response clock starts when it was routed, not when it was queued
        async def clocks_started():
            timers = {}
            for event in routed:
                body = (await sla.get(f"/v1/leads/{event.data['lead_id']}/slas")).json()
                found = {t["sla"]: t for t in body.get("timers", [])}
                if "first_response" not in found:
                    return None
                timers[event.data["lead_id"]] = found["first_response"]
            return timers

        timers = await eventually(clocks_started, timeout=90)
    for event, queued in zip(routed, told, strict=True):
        started = datetime.fromisoformat(timers[event.data["lead_id"]]["started_at"])
        assert started == datetime.fromisoformat(event.data["routed_at"])
        assert started > datetime.fromisoformat(queued.data["queued_at"])


async def test_an_mql_outside_working_hours_waits_until_the_hours_begin(stack):
    settings = await stack.isolated_settings(
        clock_start=MONDAY_6_UTC, unassigned_recheck_seconds=0.3
    )
    async with service_client("routing", settings) as routing:
        day_shift = await add_rep(
            routing, "Day shift", timezone="UTC", working_hours={"mon": [["09:00", "17:00"]]}
        )
        mql = sample_mql(1)
        await publish_in_order(settings, TOPIC_SCORING, as_events([mql]))
        [queued] = await wait_waiting(routing, 1)
        assert (queued["team"], queued["reason"]) == ("fallback", "outside_working_hours")
        await seen_by_the_worker("fallback", 1)
        assert await emitted(settings, "lead.routed") == []

        clock = routing.app.state.runtime.clock
        clock.start += timedelta(hours=3)  # 09:00 and a little: the day shift begins
        [routed] = await wait_emitted(settings, "lead.routed", 1)
    assert routed.data["rep_id"] == day_shift
    assert datetime.fromisoformat(routed.data["routed_at"]) >= MONDAY_6_UTC + timedelta(hours=3)
    [told] = await emitted(settings, "lead.unassigned")
    assert datetime.fromisoformat(told.data["queued_at"]) < MONDAY_6_UTC + timedelta(hours=3)


async def test_an_mql_waits_while_the_rep_is_full_and_takes_the_place_a_won_lead_frees(stack):
    settings = await stack.isolated_settings()  # the default recheck: the close wakes it
    async with service_client("routing", settings) as routing:
        team = await add_team(routing, "Desk")
        solo = await add_rep(routing, "Solo", team, capacity=1)
        await add_rule(routing, "outbound", team, channel=["outbound"])
        first, second = (sample_mql(n, channel="outbound") for n in range(2))
        await publish_in_order(settings, TOPIC_SCORING, as_events([first, second]))
        [routed] = await wait_emitted(settings, "lead.routed", 1)
        assert (routed.data["lead_id"], routed.data["rep_id"]) == (str(first.lead_id), solo)
        [queued] = await wait_waiting(routing, 1)
        assert (queued["lead_id"], queued["reason"]) == (str(second.lead_id), "at_capacity")
        [told] = await wait_emitted(settings, "lead.unassigned", 1)
        [entry] = told.data["trace"]["considered"]
        assert (entry["skipped"], entry["open_leads"], entry["capacity"]) == ("at_capacity", 1, 1)

        won = LeadStatusChanged(
            lead_id=first.lead_id, from_status="working", status="won", changed_at=datetime.now(UTC)
        )
        await publish_in_order(settings, TOPIC_FEEDBACK, as_events([won]))
        events = await wait_emitted(settings, "lead.routed", 2)
        await wait_waiting(routing, 0)
    assert (events[1].data["lead_id"], events[1].data["rep_id"]) == (str(second.lead_id), solo)


async def test_a_lead_no_team_claims_waits_until_a_rule_gives_it_one(stack):
    settings = await stack.isolated_settings(unassigned_recheck_seconds=0.3)
    async with service_client("routing", settings) as routing:
        mql = sample_mql(1, country="SE")
        await publish_in_order(settings, TOPIC_SCORING, as_events([mql]))
        [queued] = await wait_waiting(routing, 1)
        assert (queued["team"], queued["team_id"], queued["reason"]) == (None, None, "no_team")
        [told] = await wait_emitted(settings, "lead.unassigned", 1)
        assert (told.data.get("team"), told.data.get("team_id"), told.data["reason"]) == (
            None,
            None,
            "no_team",
        )
        await seen_by_the_worker("none", 1)

        nordics = await add_team(routing, "Nordics")
        astrid = await add_rep(routing, "Astrid", nordics)
        assert [w["lead_id"] for w in await waiting(routing)] == [str(mql.lead_id)]  # no rule yet
        await add_rule(routing, "nordics", nordics, country=["SE", "NO", "DK"])
        [routed] = await wait_emitted(settings, "lead.routed", 1)
        await wait_waiting(routing, 0)
    assert (routed.data["rep_id"], routed.data["team"]) == (astrid, "Nordics")
    assert len(await emitted(settings, "lead.unassigned")) == 1


async def test_a_replayed_mql_changes_nothing_and_an_erased_lead_leaves_the_queue(stack):
    settings = await stack.isolated_settings(unassigned_recheck_seconds=0.3)
    async with service_client("routing", settings) as routing:
        await add_rep(routing, "Gone", active=False)
        mql = sample_mql(1)
        event = make_event(mql, source="test")
        resent = make_event(mql, source="test")  # the same MQL in another event
        await publish_in_order(settings, TOPIC_SCORING, [event, event, resent])
        [queued] = await wait_waiting(routing, 1)
        assert queued["reason"] == "all_inactive"

        async def both_handled():
            db = Database(settings.database_url)
            try:
                async with db.unit_of_work() as session:
                    handled = await session.scalar(
                        sa.text("SELECT count(*) FROM routing.inbox WHERE consumer = 'mql'")
                    )
                    return handled == 2  # the event once (its copy is a duplicate), the resent one
            finally:
                await db.dispose()

        await eventually(both_handled, timeout=60)
        await publish_in_order(settings, TOPIC_SCORING, [event])
        await seen_by_the_worker("fallback", 1)
        assert len(await emitted(settings, "lead.unassigned")) == 1
        assert len(await waiting(routing)) == 1

        await publish_in_order(settings, TOPIC_INGEST, as_events([LeadErased(lead_id=mql.lead_id)]))
        await wait_waiting(routing, 0)
        await add_rep(routing, "Here")  # someone could take it now: nobody does
        await seen_by_the_worker("fallback", 0)
        assignment = (await routing.get(f"/v1/leads/{mql.lead_id}/assignment")).json()
    assert assignment["rep_id"] is None
    assert await emitted(settings, "lead.routed") == []


async def test_round_robin_and_weighted_pass_over_reps_at_capacity(stack):
    settings = await stack.isolated_settings()
    async with service_client("routing", settings) as routing:
        rr = await add_team(routing, "Rotation")
        full = await add_rep(routing, "Full", rr, capacity=0)
        free = await add_rep(routing, "Free", rr)
        await add_rule(routing, "partners", rr, channel=["partner"])
        weighted = await add_team(routing, "Weighted", "weighted")
        heavy = await add_rep(routing, "Heavy", weighted, weight=3, capacity=1)
        light = await add_rep(routing, "Light", weighted, weight=1)
        await add_rule(routing, "outbound", weighted, channel=["outbound"])
        partner = [sample_mql(n, channel="partner") for n in range(4)]
        outbound = [sample_mql(n, channel="outbound") for n in range(4)]
        await publish_in_order(settings, TOPIC_SCORING, as_events(partner + outbound))
        routed = await wait_emitted(settings, "lead.routed", 8)
        got = {e.data["lead_id"]: e.data["rep_id"] for e in routed}
        trace = (await routing.get(f"/v1/leads/{partner[0].lead_id}/assignment")).json()["trace"]
    assert {got[str(m.lead_id)] for m in partner} == {free}
    assert Counter(got[str(m.lead_id)] for m in outbound) == {heavy: 1, light: 3}
    skipped = {c["rep_id"]: c["skipped"] for c in trace["considered"]}
    assert skipped == {full: "at_capacity", free: None}
    assert await emitted(settings, "lead.unassigned") == []


async def test_a_lead_reassigned_with_nobody_else_waits_then_goes_to_the_next_rep(stack):
    settings = await stack.isolated_settings(unassigned_recheck_seconds=0.3)
    async with service_client("routing", settings) as routing:
        team = await add_team(routing, "Solo desk")
        ann = await add_rep(routing, "Ann", team)
        await add_rule(routing, "partners", team, channel=["partner"])
        mql = sample_mql(1, channel="partner")
        await publish_in_order(settings, TOPIC_SCORING, as_events([mql]))
        [first] = await wait_emitted(settings, "lead.routed", 1)
        assert first.data["rep_id"] == ann

        moved = await routing.post(f"/v1/leads/{mql.lead_id}/reassign", headers=ADMIN)
        assert moved.status_code == 202, moved.text
        assert moved.json()["rep_id"] is None
        [queued] = await wait_waiting(routing, 1)
        assert (queued["team"], queued["reason"]) == ("Solo desk", "no_reps")
        [told] = await wait_emitted(settings, "lead.unassigned", 1)
        assert told.data["trace"]["considered"][0]["skipped"] == "reassigned_from"
        await seen_by_the_worker("Solo desk", 1)  # Ann is not given it back

        bob = await add_rep(routing, "Bob", team)
        routed = await wait_emitted(settings, "lead.routed", 2)
        await wait_waiting(routing, 0)
    assert (routed[1].data["rep_id"], routed[1].data["reason"]) == (bob, "manual")
