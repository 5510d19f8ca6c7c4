"""Erasure over the real PostgreSQL and broker: `DELETE /v1/leads/{id}` removes the person from
ingest and emits `lead.erased` once per lead id; scoring, routing and sla-timer remove what they
hold when they consume it, and a replayed `lead.erased` changes nothing.

Each service's tables are read directly: every text, json, bytea and array column of its schema
is searched for the person's email, name and phone, counted before and after."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import pytest
import sqlalchemy as sa
from leadflow.contracts.events import (
    CloudEvent,
    LeadErased,
    LeadStatusChanged,
    Payload,
    make_event,
)
from leadflow.db import Database
from leadflow.kafka import make_producer
from leadflow_ingest.domain.normalise import normalise_email
from leadflow_tools.receiver import WebhookReceiver
from support.harness import (
    ADMIN,
    QUALIFIED_LEAD,
    SOURCE,
    eventually,
    routing_and_notify,
    sample_breach,
    sample_mql,
    service_client,
)

EMAIL = "zenobia.quarterfield@analytical-engines.example"
PERSON = {
    **QUALIFIED_LEAD,
    "email": "Zenobia.Quarterfield@Analytical-Engines.example",
    "external_id": "crm-zq-1",
    "first_name": "Zenobia",
    "last_name": "Quarterfield",
    "phone": "+48 601 234 567",
    "intent_note": "Zenobia asked for a demo",
    "favourite_colour": "Zenobia's teal",  # an unknown field: kept in properties
}
NEEDLES = (EMAIL, "zenobia", "quarterfield", "601 234 567", "crm-zq-1")
SEARCHED_TYPES = ("text", "character varying", "jsonb", "json", "bytea", "ARRAY")


async def personal_data_hits(db: Database, schema: str, needles=NEEDLES) -> dict[str, int]:
    """Rows per column of the schema holding any needle (case-insensitive), every row counted."""
    hits: dict[str, int] = {}
    async with db.unit_of_work() as session:
        columns = (
            await session.execute(
                sa.text(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = :schema AND data_type = ANY(:types)"
                ),
                {"schema": schema, "types": list(SEARCHED_TYPES)},
            )
        ).all()
        for table, column, data_type in columns:
            text = f'"{column}"::text'
            if data_type == "bytea":
                text = f"convert_from(\"{column}\", 'UTF8')"
            found = " OR ".join(f"strpos(lower({text}), :n{i}) > 0" for i in range(len(needles)))
            count = await session.scalar(
                sa.text(f'SELECT count(*) FROM "{schema}"."{table}" WHERE {found}'),
                {f"n{i}": n.lower() for i, n in enumerate(needles)},
            )
            if count:
                hits[f"{table}.{column}"] = count
    return hits


async def outbox_events(db: Database, schema: str, type_: str, lead_id: str) -> list[CloudEvent]:
    async with db.unit_of_work() as session:
        rows = (
            await session.execute(sa.text(f"SELECT payload FROM {schema}.outbox ORDER BY id"))
        ).scalars()
        events = [CloudEvent.from_bytes(raw) for raw in rows]
    return [e for e in events if e.type == type_ and e.subject == lead_id]


async def inbox_count(db: Database, schema: str, event_id: uuid.UUID) -> int:
    async with db.unit_of_work() as session:
        return await session.scalar(
            sa.text(f"SELECT count(*) FROM {schema}.inbox WHERE event_id = :id"), {"id": event_id}
        )


async def table_rows(db: Database, query: str, **params) -> list[dict]:
    async with db.unit_of_work() as session:
        return [dict(r._mapping) for r in (await session.execute(sa.text(query), params)).all()]


@pytest.fixture
async def db(settings):
    database = Database(settings.database_url)
    yield database
    await database.dispose()


@pytest.fixture
async def publish(settings):
    producer = make_producer(settings, "test-erasure")
    await producer.start()

    async def send(payload: Payload, event_id: uuid.UUID | None = None) -> CloudEvent:
        event = make_event(payload, source="test", event_id=event_id)
        await producer.send_and_wait(
            settings.topic_prefix + payload.topic,
            event.to_bytes(),
            key=str(payload.lead_id).encode(),
        )
        return event

    yield send
    await producer.stop()


async def ready(client) -> bool:
    return (await client.get("/readyz")).status_code == 200


# ingest


async def test_delete_erases_the_lead_in_ingest_and_emits_lead_erased_once(settings, db):
    async with service_client("ingest", settings) as ingest:
        created = await ingest.post("/v1/leads", json=PERSON, headers=SOURCE)
        assert created.status_code == 202, created.text
        lead_id = created.json()["lead_id"]
        activity = await ingest.post(
            "/v1/activities",
            json={"lead_id": lead_id, "type": "form_submit", "properties": {"email": EMAIL}},
            headers=SOURCE,
        )
        assert activity.status_code == 202, activity.text
        before = await personal_data_hits(db, "ingest")
        assert before["leads.email"] == 1 and before["leads.snapshot"] == 1
        assert before["activities.properties"] == 1

        assert normalise_email.cache_info().currsize > 0
        first = await ingest.delete(f"/v1/leads/{lead_id}", headers=ADMIN)
        assert first.status_code == 202, first.text
        assert first.json()["lead_id"] == lead_id
        assert first.json()["erased_lead_ids"] == [lead_id]
        # no address this process checked is kept in memory past an erasure
        assert normalise_email.cache_info().currsize == 0
        again = await ingest.delete(f"/v1/leads/{lead_id}", headers=ADMIN)
        assert (again.status_code, again.json()) == (202, first.json())

        assert await personal_data_hits(db, "ingest") == {}
        [row] = await table_rows(
            db, "SELECT * FROM ingest.leads WHERE id = :id", id=uuid.UUID(lead_id)
        )
        assert row["erased_at"] is not None and row["email"] is None
        assert row["snapshot"]["source"]["channel"] == "inbound"  # what reports need stays
        assert row["snapshot"]["company"]["industry"] == "software"
        assert row["snapshot"]["properties"] == {} and row["snapshot"]["erased"] is True
        assert len(await outbox_events(db, "ingest", "lead.erased", lead_id)) == 1

        gone = await ingest.get(f"/v1/leads/{lead_id}")
        assert gone.status_code == 410
        assert gone.headers["content-type"] == "application/problem+json"
        late = await ingest.post(
            "/v1/activities", json={"lead_id": lead_id, "type": "page_view"}, headers=SOURCE
        )
        assert late.status_code == 410 and late.json()["field"] == "lead_id"


async def test_two_erasures_at_once_emit_lead_erased_once_and_answer_the_same(settings, db):
    async with service_client("ingest", settings) as ingest:
        lead_id = (await ingest.post("/v1/leads", json=PERSON, headers=ADMIN)).json()["lead_id"]
        answers = await asyncio.gather(
            *(ingest.delete(f"/v1/leads/{lead_id}", headers=ADMIN) for _ in range(4))
        )
        assert {a.status_code for a in answers} == {202}
        assert len({a.text for a in answers}) == 1
        assert len(await outbox_events(db, "ingest", "lead.erased", lead_id)) == 1


async def test_erasing_an_unknown_lead_is_404_and_needs_the_admin_scope(settings):
    async with service_client("ingest", settings) as ingest:
        unknown = await ingest.delete(f"/v1/leads/{uuid.uuid4()}", headers=ADMIN)
        assert unknown.status_code == 404
        assert unknown.headers["content-type"] == "application/problem+json"
        assert unknown.json()["field"] == "lead_id"
        bad = await ingest.delete("/v1/leads/not-a-uuid", headers=ADMIN)
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "lead_id"
        created = await ingest.post("/v1/leads", json=PERSON, headers=SOURCE)
        refused = await ingest.delete(f"/v1/leads/{created.json()['lead_id']}", headers=SOURCE)
        assert refused.status_code == 403
        assert (await ingest.get(f"/v1/leads/{created.json()['lead_id']}")).status_code == 200


async def test_erasing_a_merged_lead_erases_the_survivor_and_every_merged_one(settings, db):
    async with service_client("ingest", settings) as ingest:
        by_email = {**PERSON, "external_id": None}
        first = (await ingest.post("/v1/leads", json=by_email, headers=ADMIN)).json()["lead_id"]
        other = {**PERSON, "email": "z.quarterfield@home.example", "external_id": "crm-zq-1"}
        second = (await ingest.post("/v1/leads", json=other, headers=ADMIN)).json()["lead_id"]
        merged = (await ingest.post("/v1/leads", json=PERSON, headers=ADMIN)).json()
        survivor = merged["lead_id"]  # the older of the two
        assert survivor == first and merged["duplicate"] is True
        merged_away = second

        erased = await ingest.delete(f"/v1/leads/{merged_away}", headers=ADMIN)
        assert erased.status_code == 202, erased.text
        assert erased.json()["lead_id"] == survivor
        assert sorted(erased.json()["erased_lead_ids"]) == sorted([survivor, merged_away])
        again = await ingest.delete(f"/v1/leads/{survivor}", headers=ADMIN)
        assert again.json() == erased.json()

        hits = await personal_data_hits(db, "ingest", (*NEEDLES, "z.quarterfield@home.example"))
        assert hits == {}
        assert await table_rows(db, "SELECT * FROM ingest.lead_aliases") == []
        for lead_id in (survivor, merged_away):
            assert len(await outbox_events(db, "ingest", "lead.erased", lead_id)) == 1
            assert (await ingest.get(f"/v1/leads/{lead_id}")).status_code == 410


async def test_the_same_person_sent_again_is_a_new_lead_never_the_erased_one(settings, db):
    async with service_client("ingest", settings) as ingest:
        old = (await ingest.post("/v1/leads", json=PERSON, headers=ADMIN)).json()["lead_id"]
        assert (await ingest.delete(f"/v1/leads/{old}", headers=ADMIN)).status_code == 202
        again = await ingest.post("/v1/leads", json=PERSON, headers=ADMIN)
        assert again.status_code == 202
        assert again.json()["duplicate"] is False and again.json()["lead_id"] != old
        assert (await ingest.get(f"/v1/leads/{old}")).status_code == 410
        fresh = await ingest.get(f"/v1/leads/{again.json()['lead_id']}")
        assert fresh.json()["email"] == EMAIL and fresh.json()["external_id"] == "crm-zq-1"
        by_email = await ingest.post(
            "/v1/activities", json={"email": EMAIL, "type": "page_view"}, headers=ADMIN
        )
        assert by_email.json()["lead_id"] == again.json()["lead_id"]
        [row] = await table_rows(
            db, "SELECT snapshot FROM ingest.leads WHERE id = :id", id=uuid.UUID(old)
        )
        assert row["snapshot"]["email"] is None


# scoring


async def test_scoring_forgets_an_erased_lead_and_a_replay_changes_nothing(settings, db, publish):
    async with (
        service_client("ingest", settings) as ingest,
        service_client("scoring", settings) as scoring,
    ):
        await eventually(lambda: ready(scoring), timeout=90)
        lead_id = (await ingest.post("/v1/leads", json=PERSON, headers=ADMIN)).json()["lead_id"]
        usage = {"user_id": EMAIL, "account": "acct-zq", "feature": "routing"}
        await ingest.post(
            "/v1/activities",
            json={"lead_id": lead_id, "type": "product_usage", "properties": usage},
            headers=ADMIN,
        )

        async def promoted():
            return await outbox_events(db, "scoring", "lead.mql", lead_id)

        await eventually(promoted, timeout=60)

        async def usage_recorded():
            return (await personal_data_hits(db, "scoring")).get("product_usage.user_id")

        await eventually(usage_recorded, timeout=60)
        before = await personal_data_hits(db, "scoring")
        assert before["lead_scores.lead"] == 1
        score = (await scoring.get(f"/v1/leads/{lead_id}/score")).json()

        assert (await ingest.delete(f"/v1/leads/{lead_id}", headers=ADMIN)).status_code == 202

        async def erased():
            rows = await table_rows(
                db,
                "SELECT lead FROM scoring.lead_scores WHERE lead_id = :id",
                id=uuid.UUID(lead_id),
            )
            return rows and rows[0]["lead"].get("erased")

        await eventually(erased, timeout=60)
        assert await personal_data_hits(db, "scoring") == {}
        after = (await scoring.get(f"/v1/leads/{lead_id}/score")).json()
        assert (after["fit"], after["is_mql"]) == (score["fit"], score["is_mql"])  # reports keep it
        state = await table_rows(
            db, "SELECT * FROM scoring.lead_scores WHERE lead_id = :id", id=uuid.UUID(lead_id)
        )

        replay = await publish(LeadErased(lead_id=uuid.UUID(lead_id)))
        await eventually(lambda: inbox_count(db, "scoring", replay.id), timeout=60)
        assert (
            await table_rows(
                db, "SELECT * FROM scoring.lead_scores WHERE lead_id = :id", id=uuid.UUID(lead_id)
            )
            == state
        )
        assert await personal_data_hits(db, "scoring") == {}


# routing and notify


async def test_routing_and_notify_redact_assignments_context_and_deliveries_and_cancel_pending_ones(
    stack,
):
    settings = await stack.isolated_settings(webhook_retry_schedule=(0, 3600))
    db = Database(settings.database_url)
    producer = make_producer(settings, "test-erasure-routing")
    await producer.start()

    async def send(payload: Payload) -> CloudEvent:
        event = make_event(payload, source="test")
        await producer.send_and_wait(
            settings.topic_prefix + payload.topic,
            event.to_bytes(),
            key=str(payload.lead_id).encode(),
        )
        return event

    try:
        async with (
            WebhookReceiver(status=503) as receiver,
            routing_and_notify(settings) as notify,
        ):
            routing = notify.routing
            await eventually(lambda: ready(routing), timeout=90)
            await eventually(lambda: ready(notify), timeout=90)
            rep = await routing.post("/v1/reps", json={"name": "Rep One"}, headers=ADMIN)
            assert rep.status_code == 201, rep.text
            endpoint = await notify.post(
                "/v1/webhook-endpoints",
                json={"url": receiver.url, "event_types": ["lead.routed", "sla.*"]},
                headers=ADMIN,
            )
            assert endpoint.status_code == 201, endpoint.text
            mql = sample_mql(1).model_copy(
                update={"email": EMAIL, "first_name": "Zenobia", "last_name": "Quarterfield"}
            )
            await send(mql)
            await eventually(lambda: receiver.received, timeout=60)  # tried once, 503: pending
            before = await personal_data_hits(db, "routing")
            assert before["assignments.mql"] == 1
            held = await personal_data_hits(db, "notify")
            assert held["deliveries.body"] == 1 and held["lead_context.context"] == 1

            erased = await send(LeadErased(lead_id=mql.lead_id))
            await eventually(lambda: inbox_count(db, "routing", erased.id), timeout=60)
            await eventually(lambda: inbox_count(db, "notify", erased.id), timeout=60)
            assert await personal_data_hits(db, "routing") == {}
            assert await personal_data_hits(db, "notify") == {}
            [delivery] = await table_rows(
                db, "SELECT * FROM notify.deliveries WHERE lead_id = :id", id=mql.lead_id
            )
            assert (delivery["state"], delivery["last_error"]) == ("cancelled", "lead erased")
            body = orjson.loads(delivery["body"])
            assert body["data"]["lead"]["erased"] is True
            assert body["data"]["lead"]["source"]["campaign"] == "q4"
            state = await table_rows(
                db, "SELECT * FROM notify.deliveries WHERE lead_id = :id", id=mql.lead_id
            )
            assignment = await routing.get(f"/v1/leads/{mql.lead_id}/assignment")
            assert assignment.status_code == 200  # the decision stays for the reports
            # nothing more is sent for an erased lead: no manual reassignment, no replay
            refused = await routing.post(f"/v1/leads/{mql.lead_id}/reassign", headers=ADMIN)
            assert refused.status_code == 410, refused.text
            assert refused.json()["field"] == "lead_id"
            refused = await notify.post(f"/v1/deliveries/{delivery['id']}/replay", headers=ADMIN)
            assert refused.status_code == 410, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")

            # a later event of the erased lead queues nothing and brings no personal data back
            late_breach = await send(sample_breach(mql.lead_id))
            await eventually(lambda: inbox_count(db, "notify", late_breach.id), timeout=60)
            replay = await send(LeadErased(lead_id=mql.lead_id))
            await eventually(lambda: inbox_count(db, "routing", replay.id), timeout=60)
            await eventually(lambda: inbox_count(db, "notify", replay.id), timeout=60)
            assert (
                await table_rows(
                    db, "SELECT * FROM notify.deliveries WHERE lead_id = :id", id=mql.lead_id
                )
                == state
            )
            assert await personal_data_hits(db, "notify") == {}

            # erased before its MQL arrives (another topic, no order between them): not routed
            late = sample_mql(2)
            first = await send(LeadErased(lead_id=late.lead_id))
            await eventually(lambda: inbox_count(db, "routing", first.id), timeout=60)
            mql_event = await send(late)
            await eventually(lambda: inbox_count(db, "routing", mql_event.id), timeout=60)
            assert (await routing.get(f"/v1/leads/{late.lead_id}/assignment")).status_code == 404
    finally:
        await producer.stop()
        await db.dispose()


# sla-timer


async def test_sla_timer_keeps_no_notes_of_an_erased_lead(settings, db, publish):
    lead_id = uuid.uuid4()
    now = datetime.now(UTC)
    notes = {"problem": "Zenobia needs it before Q2", "budget": True}
    async with service_client("sla-timer", settings) as sla:
        await eventually(lambda: ready(sla), timeout=90)
        # held back (no lead.routed yet): only what the clocks need is kept
        held = await publish(
            LeadStatusChanged(
                lead_id=lead_id,
                from_status="sal",
                status="sql",
                changed_at=now,
                qualification=notes,
            )
        )
        await eventually(lambda: inbox_count(db, "sla_timer", held.id), timeout=60)
        [row] = await table_rows(
            db, "SELECT change FROM sla_timer.early_statuses WHERE lead_id = :id", id=lead_id
        )
        assert row["change"]["status"] == "sql" and "qualification" not in row["change"]
        # a change held with its notes before that rule
        legacy = make_event(
            LeadStatusChanged(
                lead_id=lead_id,
                from_status="sql",
                status="sqo",
                changed_at=now + timedelta(minutes=1),
                qualification=notes,
            ),
            source="feedback",
        )
        async with db.unit_of_work() as session:
            await session.execute(
                sa.text(
                    "INSERT INTO sla_timer.early_statuses (event_id, lead_id, changed_at, change) "
                    "VALUES (:e, :l, :c, CAST(:d AS jsonb))"
                ),
                {
                    "e": legacy.id,
                    "l": lead_id,
                    "c": now + timedelta(minutes=1),
                    "d": orjson.dumps(legacy.data).decode(),
                },
            )
        assert (await personal_data_hits(db, "sla_timer")) == {"early_statuses.change": 1}

        erased = await publish(LeadErased(lead_id=lead_id))
        await eventually(lambda: inbox_count(db, "sla_timer", erased.id), timeout=60)
        assert await personal_data_hits(db, "sla_timer") == {}
        state = await table_rows(
            db,
            "SELECT change FROM sla_timer.early_statuses WHERE lead_id = :id ORDER BY changed_at",
            id=lead_id,
        )
        assert [s["change"]["status"] for s in state] == ["sql", "sqo"]

        replay = await publish(LeadErased(lead_id=lead_id))
        await eventually(lambda: inbox_count(db, "sla_timer", replay.id), timeout=60)
        assert (
            await table_rows(
                db,
                "SELECT change FROM sla_timer.early_statuses WHERE lead_id = :id "
                "ORDER BY changed_at",
                id=lead_id,
            )
            == state
        )
