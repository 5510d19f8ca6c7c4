"""Batch intake writes the leads new to Leadflow and to the batch together and the others one by
one; the answer and the events are those of handling the items in order (real PostgreSQL)."""

import pytest
import sqlalchemy as sa
from leadflow.contracts.events import CloudEvent
from leadflow.db import Database
from support.harness import QUALIFIED_LEAD, SOURCE, service_client


@pytest.fixture
async def ingest(stack):
    settings = await stack.isolated_settings()
    async with service_client("ingest", settings) as client:
        client.settings = settings
        yield client


def lead(email: str, **changes) -> dict:
    return {**QUALIFIED_LEAD, "email": email, **changes}


async def outbox_events(settings) -> list[CloudEvent]:
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            rows = (
                await session.execute(sa.text("SELECT payload FROM ingest.outbox ORDER BY id"))
            ).all()
            leads = await session.scalar(sa.text("SELECT count(*) FROM ingest.leads"))
    finally:
        await db.dispose()
    return [CloudEvent.from_bytes(r.payload) for r in rows], leads


async def test_a_mixed_batch_gets_one_answer_per_item_and_events_in_order(ingest):
    known = await ingest.post(
        "/v1/leads", json=lead("known@old.example", external_id="crm-known"), headers=SOURCE
    )
    assert known.status_code == 202
    known_id = known.json()["lead_id"]
    items = [
        lead("a@new.example", external_id="crm-a"),  # 0 new
        lead("known@old.example", title="VP Sales"),  # 1 update of a known lead
        lead("b@new.example", external_id="crm-b"),  # 2 new
        lead("A@New.example", title="Head of Data"),  # 3 the lead of item 0, again
        {"first_name": "no email"},  # 4 invalid
        lead("c@new.example", source={"system": "marketo", "channel": "inbound"}),  # 5 spoofed
        lead("other@old.example", external_id="crm-known"),  # 6 the known lead by external id
        lead("d@new.example"),  # 7 new, no external id
    ]
    response = await ingest.post("/v1/leads:batch", json=items, headers=SOURCE)
    assert response.status_code == 200
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(8))
    assert [r["status"] for r in results] == [202, 202, 202, 202, 422, 403, 202, 202]
    assert (body["accepted"], body["rejected"]) == (6, 2)
    assert [r.get("duplicate") for r in results] == [
        False, True, False, True, None, None, True, False,
    ]  # fmt: skip
    assert results[1]["lead_id"] == results[6]["lead_id"] == known_id
    assert results[3]["lead_id"] == results[0]["lead_id"]
    assert len({results[i]["lead_id"] for i in (0, 2, 7)}) == 3
    assert results[4]["errors"][0]["field"] == "email"
    assert results[5]["errors"][0]["field"] == "source.system"

    events, leads = await outbox_events(ingest.settings)
    assert leads == 4  # known, a, b, d
    by_id = {str(e.id): e for e in events}
    for i in (0, 1, 2, 3, 6, 7):
        assert results[i]["event_id"] in by_id
    a_events = [e for e in events if e.subject == results[0]["lead_id"]]
    assert [e.type for e in a_events] == ["lead.created", "lead.updated"]
    assert a_events[1].data["title"] == "Head of Data"
    known_events = [e for e in events if e.subject == known_id]
    assert [e.type for e in known_events] == ["lead.created", "lead.updated", "lead.updated"]
    assert known_events[1].data["title"] == "VP Sales"
    created = {e.data["email"] for e in events if e.type == "lead.created"}
    assert created == {"known@old.example", "a@new.example", "b@new.example", "d@new.example"}
    assert by_id[results[2]["event_id"]].data["source"]["system"] == "hubspot"


async def test_the_same_batch_sent_again_updates_the_same_leads(ingest):
    items = [lead(f"buyer{n}@prospect{n}.example", external_id=f"crm-{n}") for n in range(50)]
    first = (await ingest.post("/v1/leads:batch", json=items, headers=SOURCE)).json()
    again = (await ingest.post("/v1/leads:batch", json=items, headers=SOURCE)).json()
    assert first["accepted"] == again["accepted"] == 50
    assert [r["lead_id"] for r in again["results"]] == [r["lead_id"] for r in first["results"]]
    assert {r["duplicate"] for r in first["results"]} == {False}
    assert {r["duplicate"] for r in again["results"]} == {True}
    events, leads = await outbox_events(ingest.settings)
    assert leads == 50
    assert [e.type for e in events] == ["lead.created"] * 50 + ["lead.updated"] * 50
