"""A single lead's identity in one statement (create unless known) over the real PostgreSQL:
a person is one lead however the writers race, and a refused write leaves nothing behind."""

import asyncio
import uuid

import sqlalchemy as sa
from leadflow.clock import clock_from_settings
from leadflow.contracts.events import CloudEvent
from leadflow.contracts.policy import load_policy
from leadflow.db import Database, kernel_tables
from leadflow.outbox import Outbox
from leadflow_ingest.domain.ownership import Writer
from leadflow_ingest.models import lead_aliases, leads, metadata
from leadflow_ingest.schemas import LeadIn
from leadflow_ingest.store import find_leads
from leadflow_ingest.use_cases import accept_lead
from support.harness import ADMIN, MARKETO, QUALIFIED_LEAD, SOURCE, eventually, service_client

OUTBOX, _ = kernel_tables(metadata)


async def written(db: Database) -> tuple[list[tuple], list[str]]:
    """(every lead row as (id, email, external_id, merged_into), the outbox's event types)."""
    async with db.unit_of_work() as session:
        rows = (
            await session.execute(
                sa.select(leads.c.id, leads.c.email, leads.c.external_id, leads.c.merged_into)
            )
        ).all()
        payloads = (await session.scalars(sa.select(OUTBOX.c.payload).order_by(OUTBOX.c.id))).all()
    return [tuple(r) for r in rows], [CloudEvent.from_bytes(p).type for p in payloads]


async def test_a_person_created_meanwhile_by_another_writer_becomes_its_update(stack):
    settings = await stack.isolated_settings()
    db = Database(settings.database_url)
    clock = clock_from_settings(settings)
    outbox = Outbox(OUTBOX, source="ingest", clock=clock)
    policy = load_policy(settings.policy_file)
    writer = Writer(key_name="admin")
    body = {**QUALIFIED_LEAD, "email": "race@identity.example", "external_id": "crm-race"}

    async def second_writer():
        async with db.unit_of_work() as session:
            return await accept_lead(
                session, outbox, policy, LeadIn.model_validate(body), writer=writer, now=clock.now()
            )

    async def waiting_on_a_lock() -> bool:
        async with db.unit_of_work() as session:
            return bool(
                await session.scalar(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    )
                )
            )

    try:
        async with db.unit_of_work() as session:
            first = await accept_lead(
                session, outbox, policy, LeadIn.model_validate(body), writer=writer, now=clock.now()
            )
            assert first.duplicate is False
            # The second writer's statement began before this commit: it finds no lead, and its
            # insert waits on this one's unique email, then inserts nothing.
            second = asyncio.create_task(second_writer())
            await eventually(waiting_on_a_lock, timeout=10)
            assert not second.done()
        result = await asyncio.wait_for(second, 10)
        assert result.lead_id == first.lead_id
        assert result.duplicate is True
        rows, types = await written(db)
        assert rows == [(first.lead_id, "race@identity.example", "crm-race", None)]
        assert types == ["lead.created", "lead.updated"]
    finally:
        await db.dispose()


async def test_many_concurrent_posts_of_one_new_person_make_one_lead(stack):
    settings = await stack.isolated_settings()
    body = {**QUALIFIED_LEAD, "email": "Crowd@Identity.example", "external_id": "crm-crowd"}
    async with service_client("ingest", settings) as ingest:
        answers = await asyncio.gather(
            *(ingest.post("/v1/leads", json=body, headers=ADMIN) for _ in range(12))
        )
    assert [a.status_code for a in answers] == [202] * 12
    assert len({a.json()["lead_id"] for a in answers}) == 1
    assert sorted(a.json()["duplicate"] for a in answers) == [False] + [True] * 11
    db = Database(settings.database_url)
    try:
        rows, types = await written(db)
    finally:
        await db.dispose()
    assert [(r[1], r[2]) for r in rows] == [("crowd@identity.example", "crm-crowd")]
    assert types == ["lead.created"] + ["lead.updated"] * 11


async def test_identities_are_found_directly_and_through_a_merge(stack):
    settings = await stack.isolated_settings()
    db = Database(settings.database_url)
    try:
        async with service_client("ingest", settings) as ingest:

            async def post(**fields):
                response = await ingest.post("/v1/leads", json=fields, headers=ADMIN)
                assert response.status_code == 202, response.text
                return response.json()

            a = await post(email="a@found.example")
            b = await post(email="b@found.example", external_id="ext-b")
            c = await post(email="c@found.example", external_id="ext-c")
            # a new address with a known external id: the same lead, the address an alias
            assert (await post(email="b2@found.example", external_id="ext-b"))["lead_id"] == (
                b["lead_id"]
            )
            merged = await post(email="a@found.example", external_id="ext-b")
            assert merged["lead_id"] == a["lead_id"]
        async with db.unit_of_work() as session:
            by = {
                (email, external): await find_leads(session, email, external)
                for email, external in [
                    ("a@found.example", None),
                    ("b@found.example", None),  # merged into a: an alias now
                    ("b2@found.example", None),
                    ("nobody@found.example", "ext-b"),
                    ("c@found.example", "ext-b"),
                    ("nobody@found.example", None),
                ]
            }
            aliases = set(
                (await session.execute(sa.select(lead_aliases.c.kind, lead_aliases.c.value))).all()
            )
        lead_a, lead_c = uuid.UUID(a["lead_id"]), uuid.UUID(c["lead_id"])
        assert by[("a@found.example", None)] == (lead_a, None)
        assert by[("b@found.example", None)] == (lead_a, None)
        assert by[("b2@found.example", None)] == (lead_a, None)
        assert by[("nobody@found.example", "ext-b")] == (None, lead_a)
        assert by[("c@found.example", "ext-b")] == (lead_c, lead_a)
        assert by[("nobody@found.example", None)] == (None, None)
        assert {("email", "b@found.example"), ("email", "b2@found.example")} <= aliases
        rows, types = await written(db)
        assert len(rows) == 3  # a, b (merged into a) and c: nothing else was created
        assert types.count("lead.created") == 3
    finally:
        await db.dispose()


async def test_a_refused_write_to_a_known_lead_creates_nothing(stack):
    settings = await stack.isolated_settings()
    db = Database(settings.database_url)
    try:
        async with service_client("ingest", settings) as ingest:
            theirs = await ingest.post(
                "/v1/leads",
                json={"email": "owned@identity.example", "external_id": "mk-1"},
                headers=MARKETO,
            )
            assert theirs.status_code == 202
            for fields in (
                {"email": "owned@identity.example"},
                {"email": "someone.else@identity.example", "external_id": "mk-1"},
            ):
                refused = await ingest.post("/v1/leads", json=fields, headers=SOURCE)
                assert refused.status_code == 403, refused.text
                assert refused.json()["field"] in ("email", "external_id")
        rows, types = await written(db)
        assert [(r[1], r[2]) for r in rows] == [("owned@identity.example", "mk-1")]
        assert types == ["lead.created"]
    finally:
        await db.dispose()
