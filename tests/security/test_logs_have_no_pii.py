"""An end-to-end run at DEBUG level through every way a lead's personal data comes in (HTTP, batch,
the Kafka topic, HubSpot webhooks; valid, invalid and poison) and every way it goes out (routing,
signed webhook, SLA clock, feedback): afterwards the six services' logs hold no email address,
phone number or name of any lead. Logs carry ids only."""

import json
import re
import time

import httpx
import orjson
import pytest
import sqlalchemy as sa
from leadflow.contracts.events import TOPIC_INBOUND
from leadflow.db import Database
from leadflow.kafka import make_producer
from leadflow_ingest.domain.hubspot import signature_v3
from leadflow_tools.receiver import WebhookReceiver
from leadflow_tools.registry import SERVICE_ORDER
from leadflow_tools.supervisor import ServiceProcess, start_all
from support.harness import ADMIN, QUALIFIED_LEAD, SALES, SOURCE, eventually

HUBSPOT_SECRET = "hubspot-app-secret-for-logs"


def person(n: int) -> dict:
    """Personal data that cannot occur in a log by chance."""
    return {
        "email": f"Zofia.Brzeczyszczykiewicz{n}@Pii-Probe{n}.example",
        "first_name": f"Zofiaqx{n}",
        "last_name": f"Brzeczyszczykiewicz{n}",
        "phone": f"+48 601 77{n:02d} 9{n:02d}",
    }


def lead(n: int, **extra) -> dict:
    return {**QUALIFIED_LEAD, **person(n), "external_id": f"pii-{n}", **extra}


def needles(n: int) -> list[str]:
    p = person(n)
    local, domain = p["email"].split("@")
    return [
        p["email"].lower(),
        local.lower(),
        p["first_name"].lower(),
        p["last_name"].lower(),
        re.sub(r"\D", "", p["phone"]),  # digits in any formatting
        p["phone"].replace(" ", "").lower(),
    ]


SCHEMAS = ("ingest", "scoring", "routing", "sla_timer", "feedback", "notify")
# What the sales tool's answers set off last: (emitting schema, event type, consuming schemas).
LAST_FLOWS = (
    ("feedback", "lead.contact_attempt", ("sla_timer", "notify")),
    ("feedback", "lead.status_changed", ("sla_timer", "routing", "scoring", "notify")),
    ("sla_timer", "sla.met", ("feedback", "notify")),
    ("sla_timer", "sla.warning", ("feedback", "notify")),
    ("sla_timer", "sla.breached", ("feedback", "notify")),
    ("sla_timer", "sla.escalated", ("feedback", "routing", "notify")),
)
_TYPE = "convert_from(o.payload, 'UTF8')::jsonb->>'type'"
LAST_EVENTS = sa.text(
    f"SELECT (SELECT count(*) FROM feedback.outbox o WHERE {_TYPE} = 'lead.contact_attempt')"
    " AS attempts, "
    + " + ".join(
        [
            f"(SELECT count(*) FROM {source}.outbox o WHERE {_TYPE} = '{kind}' AND NOT EXISTS"
            f" (SELECT 1 FROM {target}.inbox i WHERE i.event_id = o.event_id))"
            for source, kind, targets in LAST_FLOWS
            for target in targets
        ]
        + [f"(SELECT count(*) FROM {s}.outbox WHERE published_at IS NULL)" for s in SCHEMAS]
    )
    + " AS waiting"
)


async def last_events_handled(settings, attempts: int) -> bool:
    """Every attempt is recorded, every event of `LAST_FLOWS` is in the inbox of each service
    that takes it, and no service has an event waiting to be published."""
    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            row = (await session.execute(LAST_EVENTS)).one()
    finally:
        await db.dispose()
    return row.attempts >= attempts and row.waiting == 0


@pytest.mark.e2e
@pytest.mark.timeout(400)
async def test_logs_of_an_end_to_end_run_hold_no_personal_data(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("LEADFLOW_LOG_LEVEL", "DEBUG")
    monkeypatch.setenv("LEADFLOW_HUBSPOT_CLIENT_SECRET", HUBSPOT_SECRET)
    procs = {n: ServiceProcess(n, settings, tmp_path / f"{n}.log") for n in SERVICE_ORDER}
    used: list[int] = []
    try:
        await start_all(list(procs.values()), timeout=240)
        urls = {name: p.url for name, p in procs.items()}
        async with WebhookReceiver() as receiver, httpx.AsyncClient(timeout=15) as http:
            rep = await http.post(f"{urls['routing']}/v1/reps", headers=ADMIN, json={"name": "R"})
            assert rep.status_code == 201
            endpoint = await http.post(
                f"{urls['notify']}/v1/webhook-endpoints", headers=ADMIN, json={"url": receiver.url}
            )
            assert endpoint.status_code == 201
            ingest = f"{urls['ingest']}/v1"

            # valid: one by one, in a batch, again as a duplicate
            one = await http.post(f"{ingest}/leads", headers=SOURCE, json=lead(1))
            assert one.status_code == 202
            batch = await http.post(
                f"{ingest}/leads:batch", headers=SOURCE, json={"leads": [lead(2), lead(3)]}
            )
            assert batch.status_code in (200, 202, 207), batch.text
            again = await http.post(f"{ingest}/leads", headers=SOURCE, json=lead(1))
            assert again.json()["duplicate"] is True
            # invalid: refused with the field named; the personal data around it must not be logged
            bad = await http.post(
                f"{ingest}/leads", headers=SOURCE, json=lead(4, company={"employees": "many"})
            )
            assert bad.status_code == 422
            wrong_key = await http.post(f"{ingest}/leads", headers=SALES, json=lead(5))
            assert wrong_key.status_code == 403
            # the Kafka topic: one good, one poison that goes to the dead-letter topic
            producer = make_producer(settings, "pii-probe")
            await producer.start()
            try:
                topic = settings.topic_prefix + TOPIC_INBOUND
                await producer.send_and_wait(topic, orjson.dumps(lead(6)), key=b"6")
                await producer.send_and_wait(
                    topic, orjson.dumps(lead(7, intent_tier="very high")), key=b"7"
                )
                await producer.send_and_wait(topic, b"{" + orjson.dumps(person(8)), key=b"8")
            finally:
                await producer.stop()
            # HubSpot contact webhooks
            hubspot_url = f"{ingest}/sources/hubspot/webhook"
            p9 = person(9)
            events = [
                {"eventId": 90 + i, "subscriptionType": "contact.propertyChange", "portalId": 7,
                 "objectId": 909, "occurredAt": 1_767_000_000_000 + i, "propertyName": name,
                 "propertyValue": value}
                for i, (name, value) in enumerate(
                    [("email", p9["email"]), ("firstname", p9["first_name"]),
                     ("lastname", p9["last_name"]), ("phone", p9["phone"])]
                )
            ]  # fmt: skip
            body = orjson.dumps(events)
            ts = str(int(time.time() * 1000))
            signed = {
                "Content-Type": "application/json",
                "X-HubSpot-Request-Timestamp": ts,
                "X-HubSpot-Signature-v3": signature_v3(
                    HUBSPOT_SECRET, "POST", hubspot_url, body, ts
                ),
            }
            hubspot = await http.post(hubspot_url, content=body, headers=signed)
            assert hubspot.status_code in (200, 202, 204), hubspot.text
            forged = await http.post(
                hubspot_url, content=body, headers={**signed, "X-HubSpot-Signature-v3": "AAAA"}
            )
            assert forged.status_code == 401
            used = [1, 2, 3, 4, 5, 6, 7, 8, 9]

            def routed():
                leads = {json.loads(b)["data"]["lead"]["lead_id"] for _, b in receiver.received}
                return leads if len(leads) >= 4 else None  # 1, 2, 3 and 6 qualify

            lead_ids = await eventually(routed, timeout=180)
            # the sales tool answers: attempts and status changes
            for lead_id in lead_ids:
                attempt = await http.post(
                    f"{urls['feedback']}/v1/leads/{lead_id}/attempts",
                    headers=SALES,
                    json={"channel": "call", "outcome": "left voicemail"},
                )
                assert attempt.status_code in (200, 201, 202), attempt.text
            for name in ("ingest", "scoring", "routing", "sla-timer", "feedback", "notify"):
                for path in ("/metrics", "/readyz"):
                    await http.get(urls[name] + path)
            # the last events have passed through every service that takes them
            await eventually(lambda: last_events_handled(settings, len(lead_ids)), timeout=120)
    finally:
        for proc in procs.values():
            proc.stop()
    logs = {name: p.log_path.read_text(errors="replace").lower() for name, p in procs.items()}
    assert all(logs.values()), "every service wrote a log"
    assert "dead-lettered" in logs["ingest"]  # the poison message was handled and logged
    leaks = [
        (service, needle)
        for service, text in logs.items()
        for n in used
        for needle in needles(n)
        if needle in text
    ]
    assert used and not leaks, leaks
