"""Routing handles a poll batch of MQLs in one unit of work, reading the rules and the team's
reps once: capacities still hold inside the batch, and capacity freed by
another transaction goes to the leads waiting for it, then counts for the next batch (real
PostgreSQL and broker)."""

import asyncio
from collections import Counter
from datetime import UTC, datetime

import sqlalchemy as sa
from leadflow.contracts.events import (
    TOPIC_FEEDBACK,
    TOPIC_SCORING,
    CloudEvent,
    LeadStatusChanged,
    make_event,
)
from leadflow.db import Database
from leadflow.kafka import make_producer
from support.harness import ADMIN, eventually, sample_mql, service_client


async def add_team(client, name: str, strategy: str) -> str:
    response = await client.post(
        "/v1/teams", json={"name": name, "strategy": strategy}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def add_rep(client, name: str, team_id: str, **fields) -> str:
    response = await client.post(
        "/v1/reps", json={"name": name, "team_id": team_id, **fields}, headers=ADMIN
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def wait_routed(settings, count: int, event_type: str = "lead.routed") -> list[CloudEvent]:
    async def enough():
        rows = await query(settings, "SELECT payload FROM routing.outbox ORDER BY id")
        found = [CloudEvent.from_bytes(r.payload) for r in rows]
        found = [e for e in found if e.type == event_type]
        return found if len(found) >= count else None

    return await eventually(enough, timeout=120)


async def publish_together(settings, topic: str, payloads: list) -> None:
    """All on one key (one partition) and sent before one flush, so that the routing consumer
    gets them in one poll."""
    producer = make_producer(settings, "test-batch")
    await producer.start()
    try:
        futures = [
            await producer.send(
                settings.topic_prefix + topic,
                make_event(payload, source="test").to_bytes(),
                key=b"one-partition",
            )
            for payload in payloads
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def query(settings, sql: str) -> list:
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            return (await session.execute(sa.text(sql))).all()
    finally:
        await db.dispose()


async def test_a_batch_of_mqls_keeps_capacities_and_sees_capacity_freed_since(stack):
    settings = await stack.isolated_settings()
    async with service_client("routing", settings) as routing:
        team = await add_team(routing, "Balanced", "load_balanced")
        big = await add_rep(routing, "Big", team, capacity=3)
        small = await add_rep(routing, "Small", team, capacity=2)
        rule = await routing.post(
            "/v1/rules",
            json={"name": "outbound", "conditions": {"channel": ["outbound"]}, "team_id": team},
            headers=ADMIN,
        )
        assert rule.status_code == 201, rule.text

        first = [sample_mql(n, channel="outbound") for n in range(7)]
        await publish_together(settings, TOPIC_SCORING, first)
        events = await wait_routed(settings, 5)
        waiting = await wait_routed(settings, 2, "lead.unassigned")
        # five places in the team, seven leads: the last two find no one free and wait
        assert Counter(e.data["rep_id"] for e in events) == {big: 3, small: 2}
        assert [e.data["lead_id"] for e in waiting] == [str(m.lead_id) for m in first[5:]]
        # several of them were decided in one transaction (one inbox claim time)
        groups = await query(
            settings,
            "SELECT count(*) AS n FROM routing.inbox WHERE consumer = 'mql' "
            "GROUP BY processed_at ORDER BY n DESC",
        )
        assert groups[0].n > 1
        # each lead.routed carries the MQL it routed and the rep's name, for notify to deliver
        assert {e.data["mql"]["lead_id"] for e in events} == {str(m.lead_id) for m in first[:5]}
        names = {big: "Big", small: "Small"}
        assert all(e.data.get("rep_name") == names[e.data["rep_id"]] for e in events)

        # Big's three leads are won: the feedback consumer closes them in its own transaction
        won = [e.data["lead_id"] for e in events if e.data["rep_id"] == big]
        await publish_together(
            settings,
            TOPIC_FEEDBACK,
            [
                LeadStatusChanged(
                    lead_id=lead_id,
                    from_status="working",
                    status="won",
                    changed_at=datetime.now(UTC),
                )
                for lead_id in won
            ],
        )

        async def closed():
            [(n,)] = await query(
                settings,
                "SELECT count(*) FROM routing.assignments WHERE closed_at IS NOT NULL AND current",
            )
            return n == 3

        await eventually(closed, timeout=60)
        # the two waiting leads take two of Big's three places, in the order they came
        freed = (await wait_routed(settings, 7))[5:]
        assert [(e.data["lead_id"], e.data["rep_id"]) for e in freed] == [
            (str(m.lead_id), big) for m in first[5:]
        ]

        second = [sample_mql(n, channel="outbound") for n in range(7, 10)]
        await publish_together(settings, TOPIC_SCORING, second)
        events = (await wait_routed(settings, 8))[7:]
        waiting = (await wait_routed(settings, 4, "lead.unassigned"))[2:]
    # the next batch sees Big's last free place, and no more: the others wait
    assert Counter(e.data["rep_id"] for e in events) == {big: 1}
    assert {e.data["lead_id"] for e in waiting} | {events[0].data["lead_id"]} == {
        str(m.lead_id) for m in second
    }
