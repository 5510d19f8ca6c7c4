"""The whole path, every service a real process: lead in, MQL, routed, signed webhook out, SLA met."""

import json

import httpx
from leadflow.testing import ADMIN, QUALIFIED_LEAD, SALES, SOURCE, WebhookReceiver, eventually
from leadflow.webhooks import verify


async def test_a_qualified_lead_is_routed_delivered_and_its_first_response_sla_met(services):
    urls = {name: proc.url for name, proc in services.items()}
    async with WebhookReceiver() as receiver, httpx.AsyncClient(timeout=10) as http:
        rep = (
            await http.post(
                f"{urls['routing']}/v1/reps",
                headers=ADMIN,
                json={"name": "Rep One", "email": "rep1@vendor.example"},
            )
        ).json()
        endpoint = await http.post(
            f"{urls['routing']}/v1/webhook-endpoints",
            headers=ADMIN,
            json={"url": receiver.url, "event_types": ["lead.routed"]},
        )
        assert endpoint.status_code == 201, endpoint.text
        secret = endpoint.json()["secret"]

        created = await http.post(f"{urls['ingest']}/v1/leads", headers=SOURCE, json=QUALIFIED_LEAD)
        assert created.status_code == 202, created.text
        lead_id = created.json()["lead_id"]
        assert created.json()["duplicate"] is False

        async def delivered():
            return receiver.received

        [(headers, body)] = await eventually(delivered, timeout=60)
        verify(secret, headers, body)  # raises if the signature does not match
        webhook = json.loads(body)
        assert webhook["type"] == "lead.routed"
        assert webhook["data"]["lead"]["lead_id"] == lead_id
        assert webhook["data"]["lead"]["email"] == "ada.lovelace@analytical-engines.example"
        assert webhook["data"]["assignment"]["rep_id"] == rep["id"]
        assert webhook["data"]["lead"]["source"]["campaign"] == "q4-webinar"

        score = (await http.get(f"{urls['scoring']}/v1/leads/{lead_id}/score")).json()
        assert score["is_mql"] is True and score["fit"] == 100
        assignment = (await http.get(f"{urls['routing']}/v1/leads/{lead_id}/assignment")).json()
        assert assignment["rep_id"] == rep["id"]

        async def timer(state):
            slas = (await http.get(f"{urls['sla-timer']}/v1/leads/{lead_id}/slas")).json()
            first = [t for t in slas["timers"] if t["sla"] == "first_response"]
            return first and first[0]["state"] == state and first[0]

        opened = await eventually(lambda: timer("open"), timeout=30)
        assert opened["channel"] == "inbound"

        attempt = await http.post(
            f"{urls['feedback']}/v1/leads/{lead_id}/attempts",
            headers=SALES,
            json={"channel": "call", "rep_id": rep["id"], "outcome": "connected"},
        )
        assert attempt.status_code == 202, attempt.text
        met = await eventually(lambda: timer("met"), timeout=30)
        assert met["met_at"] is not None

        metrics = (await http.get(f"{urls['sla-timer']}/metrics")).text
        assert (
            'leadflow_lead_response_seconds_count{channel="inbound",team="fallback"} 1.0' in metrics
        )
