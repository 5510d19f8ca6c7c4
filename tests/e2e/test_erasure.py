"""Erasure across five processes: a lead goes the whole way (scored, MQL, routed, delivered,
SLA clock, contact attempt, feedback timeline), is erased with `DELETE /v1/leads/{id}`, and then
no table of any service holds its email, name or phone; `lead.erased` was emitted once and
every service consumed it; the lead answers 410 Gone."""

import json

import sqlalchemy as sa
from leadflow.contracts.events import CloudEvent
from leadflow.db import Database
from support.harness import ADMIN, QUALIFIED_LEAD, SOURCE, eventually

EMAIL = "zenobia.quarterfield@analytical-engines.example"
PERSON = {
    **QUALIFIED_LEAD,
    "email": "Zenobia.Quarterfield@Analytical-Engines.example",
    "external_id": "crm-zq-e2e",
    "first_name": "Zenobia",
    "last_name": "Quarterfield",
    "phone": "+48 601 234 567",
    "intent_note": "Zenobia asked for a demo",
}
NEEDLES = (EMAIL, "zenobia", "quarterfield", "601 234 567", "crm-zq-e2e")
SEARCHED_TYPES = ("text", "character varying", "jsonb", "json", "bytea", "ARRAY")
CONSUMING_SCHEMAS = ("scoring", "routing", "sla_timer", "feedback", "notify")


async def personal_data_hits(db: Database) -> dict[str, int]:
    """Rows per column, in every schema of the database, holding any needle (case-insensitive):
    every text, json, bytea and array column, every row counted."""
    hits: dict[str, int] = {}
    async with db.unit_of_work() as session:
        columns = (
            await session.execute(
                sa.text(
                    "SELECT table_schema, table_name, column_name, data_type "
                    "FROM information_schema.columns JOIN information_schema.tables "
                    "USING (table_catalog, table_schema, table_name) "
                    "WHERE table_type = 'BASE TABLE' AND data_type = ANY(:types) "
                    "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
                ),
                {"types": list(SEARCHED_TYPES)},
            )
        ).all()
        assert {c.table_schema for c in columns} >= {"ingest", *CONSUMING_SCHEMAS}
        params = {f"n{i}": n.lower() for i, n in enumerate(NEEDLES)}
        for schema, table, column, data_type in columns:
            text = f'"{column}"::text'
            if data_type == "bytea":
                text = f"convert_from(\"{column}\", 'UTF8')"
            found = " OR ".join(f"strpos(lower({text}), :{name}) > 0" for name in params)
            count = await session.scalar(
                sa.text(f'SELECT count(*) FROM "{schema}"."{table}" WHERE {found}'), params
            )
            if count:
                hits[f"{schema}.{table}.{column}"] = count
    return hits


async def erased_events(db: Database, lead_id: str) -> list[CloudEvent]:
    async with db.unit_of_work() as session:
        rows = (await session.execute(sa.text("SELECT payload FROM ingest.outbox"))).scalars()
        events = [CloudEvent.from_bytes(raw) for raw in rows]
    return [e for e in events if e.type == "lead.erased" and e.subject == lead_id]


async def consumed_by(db: Database, event_id) -> dict[str, int]:
    counts = {}
    async with db.unit_of_work() as session:
        for schema in CONSUMING_SCHEMAS:
            counts[schema] = await session.scalar(
                sa.text(f"SELECT count(*) FROM {schema}.inbox WHERE event_id = :id"),
                {"id": event_id},
            )
    return counts


async def test_an_erased_lead_leaves_no_personal_data_in_any_service(lead_run, settings):
    urls, http, receiver = lead_run.urls, lead_run.http, lead_run.receiver
    db = Database(settings.database_url)
    try:
        await lead_run.ingest(PERSON)
        lead_id = lead_run.lead_id
        activity = await http.post(
            f"{urls['ingest']}/v1/activities",
            headers=SOURCE,
            json={"lead_id": lead_id, "type": "form_submit", "properties": {"email": EMAIL}},
        )
        assert activity.status_code == 202, activity.text

        [(_, body)] = await lead_run.delivered(timeout=60)
        assert json.loads(body)["data"]["lead"]["email"] == EMAIL
        await lead_run.first_response("open", timeout=30)
        await lead_run.connected_call()
        await lead_run.first_response("met", timeout=30)

        async def held_everywhere():
            hits = await personal_data_hits(db)
            schemas = {name.split(".")[0] for name in hits}
            return (
                hits if schemas >= {"ingest", "scoring", "routing", "feedback", "notify"} else None
            )

        before = await eventually(held_everywhere, timeout=60)
        assert sum(before.values()) >= 6, before

        erased = await http.delete(f"{urls['ingest']}/v1/leads/{lead_id}", headers=ADMIN)
        assert erased.status_code == 202, erased.text
        assert erased.json()["erased_lead_ids"] == [lead_id]

        async def nothing_left():
            return await personal_data_hits(db) == {}

        await eventually(nothing_left, timeout=60)
        [event] = await erased_events(db, lead_id)

        async def consumed_everywhere():
            counts = await consumed_by(db, event.id)
            return counts if all(counts.values()) else None

        assert set((await eventually(consumed_everywhere, timeout=60)).values()) == {1}

        again = await http.delete(f"{urls['ingest']}/v1/leads/{lead_id}", headers=ADMIN)
        assert (again.status_code, again.json()) == (202, erased.json())
        assert len(await erased_events(db, lead_id)) == 1
        gone = await http.get(f"{urls['ingest']}/v1/leads/{lead_id}")
        assert gone.status_code == 410
        assert gone.headers["content-type"] == "application/problem+json"
        score = await http.get(f"{urls['scoring']}/v1/leads/{lead_id}/score")
        assert score.json()["is_mql"] is True  # the reports keep what names nobody
        assert len(receiver.received) == 1
        assert await personal_data_hits(db) == {}
    finally:
        await db.dispose()
