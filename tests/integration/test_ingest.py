"""Ingest over the real PostgreSQL and broker: intake, identity, idempotency, merge, batch,
Kafka intake, consent, negative signals, per-source keys and the HubSpot adapter."""

import time
import uuid

import orjson
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from leadflow.contracts.events import TOPIC_INBOUND, CloudEvent
from leadflow.db import Database
from leadflow_ingest.domain.hubspot import signature_v3
from support.harness import (
    ADMIN,
    MARKETO,
    QUALIFIED_LEAD,
    SOURCE,
    eventually,
    rows_in,
    service_client,
)

HUBSPOT_SECRET = "hs-client-secret-for-tests"


@pytest.fixture
async def ingest(stack):
    settings = await stack.isolated_settings(hubspot_client_secret=HUBSPOT_SECRET)
    async with service_client("ingest", settings) as client:
        client.settings = settings
        yield client


async def events(settings, type_=None) -> list[CloudEvent]:
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            rows = (
                await session.execute(sa.text("SELECT payload FROM ingest.outbox ORDER BY id"))
            ).all()
    finally:
        await db.dispose()
    found = [CloudEvent.from_bytes(row.payload) for row in rows]
    return [e for e in found if type_ is None or e.type == type_]


def lead(**changes):
    return {**QUALIFIED_LEAD, **changes}


async def test_create_normalises_and_keeps_unknown_fields(ingest):
    body = lead(
        email="  Ada.Lovelace@Analytical-Engines.example ",
        first_name="  Ada  ",
        company={"name": " Analytical  Engines ", "industry": "SaaS", "employees": 250,
                 "country": "Poland"},
        favourite_colour="green",
    )  # fmt: skip
    response = await ingest.post("/v1/leads", json=body, headers=ADMIN)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["duplicate"] is False
    got = (await ingest.get(f"/v1/leads/{answer['lead_id']}")).json()
    assert got["email"] == "ada.lovelace@analytical-engines.example"
    assert got["first_name"] == "Ada"
    assert got["company"]["name"] == "Analytical Engines"
    assert got["company"]["industry"] == "software"
    assert got["company"]["country"] == "PL"
    assert got["company"]["size_band"] == "250-999"
    assert got["company"]["domain"] == "analytical-engines.example"
    assert got["properties"] == {"favourite_colour": "green"}
    assert got["routable"] is True
    created = await events(ingest.settings, "lead.created")
    assert [e.data["lead_id"] for e in created] == [answer["lead_id"]]


async def test_unknown_industry_and_country_are_kept_raw(ingest):
    body = lead(company={"industry": "Underwater basket weaving", "country": "Atlantis"})
    answer = (await ingest.post("/v1/leads", json=body, headers=ADMIN)).json()
    got = (await ingest.get(f"/v1/leads/{answer['lead_id']}")).json()
    assert got["company"]["industry"] == "other"
    assert got["company"]["industry_raw"] == "Underwater basket weaving"
    assert got["company"]["country"] is None
    assert got["company"]["country_raw"] == "Atlantis"


async def test_same_email_any_case_or_external_id_is_the_same_lead(ingest):
    first = (await ingest.post("/v1/leads", json=lead(external_id="crm-1"), headers=ADMIN)).json()
    again = await ingest.post(
        "/v1/leads",
        json={"email": QUALIFIED_LEAD["email"].upper(), "title": "Chief Technology Officer"},
        headers=ADMIN,
    )
    by_external = await ingest.post(
        "/v1/leads", json={"email": "ada@new-address.example", "external_id": "crm-1"},
        headers=ADMIN,
    )  # fmt: skip
    assert again.json()["lead_id"] == first["lead_id"]
    assert again.json()["duplicate"] is True
    assert by_external.json()["lead_id"] == first["lead_id"]
    kinds = [e.type for e in await events(ingest.settings)]
    assert kinds == ["lead.created", "lead.updated", "lead.updated"]
    got = (await ingest.get(f"/v1/leads/{first['lead_id']}")).json()
    assert got["title"] == "Chief Technology Officer"  # the update applied …
    assert got["company"]["industry"] == "software"  # … and what it omitted was kept
    # the new address now finds the same lead too
    via_new = await ingest.post("/v1/leads", json={"email": "ADA@new-address.example"},
                                headers=ADMIN)  # fmt: skip
    assert via_new.json()["lead_id"] == first["lead_id"]


async def test_idempotency_key_replays_the_first_answer(ingest):
    headers = {**ADMIN, "Idempotency-Key": "req-42"}
    first = await ingest.post("/v1/leads", json=lead(), headers=headers)
    replay = await ingest.post("/v1/leads", json=lead(), headers=headers)
    assert replay.status_code == 202
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert len(await events(ingest.settings)) == 1
    other_body = await ingest.post("/v1/leads", json=lead(title="CEO"), headers=headers)
    assert other_body.status_code == 422
    assert other_body.json()["field"] == "Idempotency-Key"
    assert len(await events(ingest.settings)) == 1


async def test_two_known_identities_of_one_person_are_merged(ingest):
    a = (await ingest.post("/v1/leads", json=lead(email="ada@one.example"), headers=ADMIN)).json()
    b = (
        await ingest.post(
            "/v1/leads", json=lead(email="ada@two.example", external_id="sf-77"), headers=ADMIN
        )
    ).json()
    assert a["lead_id"] != b["lead_id"]
    await ingest.post(
        "/v1/leads",
        json={"email": "ada@two.example", "external_id": "sf-77"},
        headers={**ADMIN},
    )
    merge = await ingest.post(
        "/v1/leads", json={"email": "ada@one.example", "external_id": "sf-77"}, headers=ADMIN
    )
    assert merge.status_code == 202
    assert merge.json()["lead_id"] == a["lead_id"]  # the older lead survives
    updates = await events(ingest.settings, "lead.updated")
    assert updates[-1].data["merged_lead_ids"] == [b["lead_id"]]
    assert all(not e.data["merged_lead_ids"] for e in updates[:-1])
    gone = await ingest.get(f"/v1/leads/{b['lead_id']}", follow_redirects=False)
    assert gone.status_code == 301
    assert gone.headers["location"] == f"/v1/leads/{a['lead_id']}"
    # both old identities now lead to the survivor, and activities follow it
    via_b = await ingest.post("/v1/leads", json={"email": "ada@two.example"}, headers=ADMIN)
    assert via_b.json()["lead_id"] == a["lead_id"]
    activity = await ingest.post(
        "/v1/activities", json={"lead_id": b["lead_id"], "type": "demo_request"}, headers=ADMIN
    )
    assert activity.json()["lead_id"] == a["lead_id"]


async def test_batch_accepts_valid_items_and_names_each_bad_field(ingest):
    items = [
        lead(email="one@batch.example"),
        {"email": "not an email", "intent_tier": 9},
        lead(email="ONE@batch.example", title="CFO"),
        "not an object",
    ]
    response = await ingest.post("/v1/leads:batch", json=items, headers=ADMIN)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["accepted"], answer["rejected"]) == (2, 2)
    statuses = [r["status"] for r in answer["results"]]
    assert statuses == [202, 422, 202, 422]
    assert [r["index"] for r in answer["results"]] == [0, 1, 2, 3]
    fields = {e["field"] for e in answer["results"][1]["errors"]}
    assert fields == {"email", "intent_tier"}
    assert answer["results"][2]["duplicate"] is True
    assert answer["results"][2]["lead_id"] == answer["results"][0]["lead_id"]
    assert [e.type for e in await events(ingest.settings)] == ["lead.created", "lead.updated"]


async def test_batch_limits_and_shape(ingest):
    too_many = [lead(email=f"p{i}@many.example") for i in range(1001)]
    response = await ingest.post("/v1/leads:batch", json={"leads": too_many}, headers=ADMIN)
    assert response.status_code == 422
    assert response.json()["field"] == "leads"
    broken = await ingest.post(
        "/v1/leads:batch", content=b"[{", headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.headers["content-type"] == "application/problem+json"
    assert await rows_in(ingest.settings, "ingest.leads") == 0


async def test_kafka_intake_takes_the_same_payload_and_dead_letters_garbage(ingest):
    settings = ingest.settings
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        topic = settings.topic_prefix + TOPIC_INBOUND
        await producer.send_and_wait(topic, b"{not json", key=b"marketo")
        await producer.send_and_wait(topic, orjson.dumps({"email": 5}), key=b"marketo")
        await producer.send_and_wait(
            topic, orjson.dumps(lead(email="Kafka.Lead@Stream.example")), key=b"marketo"
        )
    finally:
        await producer.stop()

    async def created():
        found = await events(settings, "lead.created")
        return found if found else None

    found = await eventually(created, timeout=60)
    assert found[0].data["email"] == "kafka.lead@stream.example"
    assert await rows_in(settings, "ingest.leads") == 1


async def test_no_consent_is_stored_but_never_promoted(stack):
    settings = await stack.isolated_settings()
    body = lead(email="no.consent@example.com", consent={"basis": "none"})
    async with (
        service_client("ingest", settings) as ingest,
        service_client("scoring", settings) as scoring,
    ):
        answer = (await ingest.post("/v1/leads", json=body, headers=ADMIN)).json()
        got = (await ingest.get(f"/v1/leads/{answer['lead_id']}")).json()
        assert got["routable"] is False
        assert got["consent_basis"] == "none"

        async def scored():
            response = await scoring.get(f"/v1/leads/{answer['lead_id']}/score")
            return response.json() if response.status_code == 200 else None

        score = await eventually(scored, timeout=60)
        assert score["is_mql"] is True  # it qualifies on the rules …
        assert score["mql_at"] is None  # … and is still never promoted, so never routed
        db = Database(settings.database_url)
        try:
            async with db.unit_of_work() as session:
                promoted = await session.scalar(
                    sa.text("SELECT count(*) FROM scoring.outbox WHERE topic = 'leadflow.scoring'"
                            " AND convert_from(payload, 'UTF8')::jsonb->>'type' = 'lead.mql'")
                )  # fmt: skip
        finally:
            await db.dispose()
        assert promoted == 0


async def test_negative_signals_at_intake(ingest):
    student = (
        await ingest.post("/v1/leads", json=lead(email="kid@uni.edu", title="Student"),
                          headers=ADMIN)
    ).json()  # fmt: skip
    got = (await ingest.get(f"/v1/leads/{student['lead_id']}")).json()
    assert got["flags"] == ["student"]
    invalid = (
        await ingest.post("/v1/leads", json=lead(email="a..b@example.com"), headers=ADMIN)
    ).json()
    assert (await ingest.get(f"/v1/leads/{invalid['lead_id']}")).json()["flags"] == [
        "invalid_email"
    ]
    seeker = (
        await ingest.post("/v1/leads", json=lead(email="seeker@corp.example"), headers=ADMIN)
    ).json()
    assert (await ingest.get(f"/v1/leads/{seeker['lead_id']}")).json()["flags"] == []
    visit = await ingest.post(
        "/v1/activities",
        json={"email": "seeker@corp.example", "type": "page_view", "page_category": "careers"},
        headers=ADMIN,
    )
    assert visit.status_code == 202
    assert (await ingest.get(f"/v1/leads/{seeker['lead_id']}")).json()["flags"] == ["job_seeker"]
    updates = [e for e in await events(ingest.settings, "lead.updated")
               if e.data["lead_id"] == seeker["lead_id"]]  # fmt: skip
    assert updates and updates[-1].data["flags"] == ["job_seeker"]
    # the flag survives a later update of the lead that does not mention it
    await ingest.post("/v1/leads", json={"email": "seeker@corp.example", "title": "CTO"},
                      headers=ADMIN)  # fmt: skip
    assert (await ingest.get(f"/v1/leads/{seeker['lead_id']}")).json()["flags"] == ["job_seeker"]


async def test_context_completeness_is_recorded(ingest):
    full = lead(email="full@ctx.example")
    thin = lead(email="thin@ctx.example", source={"channel": "outbound"}, intent_note=None)
    a = (await ingest.post("/v1/leads", json=full, headers=ADMIN)).json()
    b = (await ingest.post("/v1/leads", json=thin, headers=ADMIN)).json()
    assert (await ingest.get(f"/v1/leads/{a['lead_id']}")).json()["context_missing"] == []
    assert (await ingest.get(f"/v1/leads/{b['lead_id']}")).json()["context_missing"] == [
        "source.campaign",
        "source.lead_magnet",
        "intent_note",
    ]


async def test_a_source_key_writes_only_its_own_leads(ingest):
    spoof = await ingest.post(
        "/v1/leads", json=lead(source={"system": "marketo", "channel": "inbound"}), headers=SOURCE
    )
    assert spoof.status_code == 403
    assert spoof.json()["field"] == "source.system"
    theirs = await ingest.post(
        "/v1/leads",
        json=lead(email="m@marketo.example", source={"campaign": "q4"}),
        headers=MARKETO,
    )
    assert theirs.status_code == 202
    got = (await ingest.get(f"/v1/leads/{theirs.json()['lead_id']}")).json()
    assert got["source"]["system"] == "marketo"
    before = len(await events(ingest.settings))
    takeover = await ingest.post(
        "/v1/leads", json={"email": "m@marketo.example", "title": "Intern"}, headers=SOURCE
    )
    assert takeover.status_code == 403
    assert takeover.json()["field"] == "email"
    activity = await ingest.post(
        "/v1/activities", json={"email": "m@marketo.example", "type": "blog"}, headers=SOURCE
    )
    assert activity.status_code == 422  # not an activity type: refused before any lookup
    activity = await ingest.post(
        "/v1/activities", json={"email": "m@marketo.example", "type": "email_open"},
        headers=SOURCE,
    )  # fmt: skip
    assert activity.status_code == 403
    assert len(await events(ingest.settings)) == before
    assert (await ingest.get(f"/v1/leads/{theirs.json()['lead_id']}")).json()["title"] == "CTO"


def hubspot_request(events_, *, secret=HUBSPOT_SECRET, timestamp=None, uri=None):
    body = orjson.dumps(events_)
    ts = str(timestamp if timestamp is not None else int(time.time() * 1000))
    uri = uri or "http://ingest/v1/sources/hubspot/webhook"
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": ts,
        "X-HubSpot-Signature-v3": signature_v3(secret, "POST", uri, body, ts),
    }
    return body, headers


def hs_event(event_id, kind, prop=None, value=None, object_id=901, at=1_767_000_000_000):
    event = {
        "eventId": event_id,
        "subscriptionId": 11,
        "portalId": 62515,
        "occurredAt": at + event_id,
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "CRM",
    }
    if prop:
        event |= {"propertyName": prop, "propertyValue": value}
    return event


async def test_hubspot_contact_webhooks_make_a_lead(ingest):
    batch = [
        hs_event(1, "contact.creation"),
        hs_event(2, "contact.propertyChange", "firstname", " Grace "),
        hs_event(3, "contact.propertyChange", "industry", "Computer Software"),
        hs_event(4, "contact.propertyChange", "numberofemployees", "420"),
        hs_event(5, "contact.propertyChange", "hs_legal_basis",
                 "Legitimate interest – prospect/lead"),
        hs_event(6, "contact.propertyChange", "lifecyclestage", "marketingqualifiedlead"),
    ]  # fmt: skip
    body, headers = hubspot_request(batch)
    first = await ingest.post("/v1/sources/hubspot/webhook", content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["waiting_for_email"] == 1  # no email yet: kept, no lead
    assert await rows_in(ingest.settings, "ingest.leads") == 0

    body, headers = hubspot_request(
        [hs_event(7, "contact.propertyChange", "email", "Grace@Navy.example")]
    )
    second = await ingest.post("/v1/sources/hubspot/webhook", content=body, headers=headers)
    assert second.status_code == 200
    [made] = second.json()["leads"]
    got = (await ingest.get(f"/v1/leads/{made['lead_id']}")).json()
    assert got["external_id"] == "hubspot:62515:901"
    assert got["email"] == "grace@navy.example"
    assert got["first_name"] == "Grace"
    assert got["company"]["industry"] == "software"
    assert got["company"]["employees"] == 420
    assert got["consent_basis"] == "legitimate_interest"
    assert got["source"]["system"] == "hubspot"
    assert got["properties"]["hubspot"] == {"lifecyclestage": "marketingqualifiedlead"}

    # HubSpot retries a batch it thinks failed: nothing happens twice
    before = len(await events(ingest.settings))
    again = await ingest.post("/v1/sources/hubspot/webhook", content=body, headers=headers)
    assert again.json()["duplicates"] == 1
    assert len(await events(ingest.settings)) == before


async def test_hubspot_forged_or_stale_signature_is_refused(ingest):
    batch = [hs_event(1, "contact.propertyChange", "email", "mallory@evil.example")]
    body, headers = hubspot_request(batch, secret="not-the-secret")
    forged = await ingest.post("/v1/sources/hubspot/webhook", content=body, headers=headers)
    assert forged.status_code == 401
    assert forged.json()["field"] == "X-HubSpot-Signature-v3"
    stale_ts = int((time.time() - 600) * 1000)
    body, headers = hubspot_request(batch, timestamp=stale_ts)
    stale = await ingest.post("/v1/sources/hubspot/webhook", content=body, headers=headers)
    assert stale.status_code == 401
    body, headers = hubspot_request(batch)
    tampered = await ingest.post(
        "/v1/sources/hubspot/webhook", content=body.replace(b"mallory", b"mallorz"),
        headers=headers,
    )  # fmt: skip
    assert tampered.status_code == 401
    unsigned = await ingest.post("/v1/sources/hubspot/webhook", content=body,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    assert unsigned.status_code == 401
    assert await rows_in(ingest.settings, "ingest.hubspot_events") == 0
    assert await rows_in(ingest.settings, "ingest.leads") == 0


def test_hubspot_signature_matches_an_independent_computation():
    import base64
    import hashlib
    import hmac

    body = b'[{"eventId":1}]'
    expected = base64.b64encode(
        hmac.new(
            b"secret",
            b"POSThttps://example.com/hook?x=a:b" + body + b"1700000000000",
            hashlib.sha256,
        ).digest()
    ).decode()
    # HubSpot signs the URI with %3A and friends decoded
    got = signature_v3("secret", "POST", "https://example.com/hook?x=a%3Ab", body, "1700000000000")
    assert got == expected


async def test_unknown_lead_and_unknown_activity_lead(ingest):
    missing = await ingest.get(f"/v1/leads/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    activity = await ingest.post(
        "/v1/activities", json={"email": "ghost@nowhere.example", "type": "demo_request"},
        headers=ADMIN,
    )  # fmt: skip
    assert activity.status_code == 404
    assert activity.json()["field"] == "email"
