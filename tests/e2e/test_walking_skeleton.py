"""The whole path, every service a real process: lead in, MQL, routed, signed webhook out, SLA met."""

import json

from leadflow.webhooks import verify
from support.harness import QUALIFIED_LEAD


async def test_a_qualified_lead_is_routed_delivered_and_its_first_response_sla_met(lead_run):
    run, urls, http = lead_run, lead_run.urls, lead_run.http
    created = await run.ingest(QUALIFIED_LEAD)
    lead_id = run.lead_id
    assert created["duplicate"] is False

    [(headers, body)] = await run.delivered(timeout=60)
    verify(run.secret, headers, body)  # raises if the signature does not match
    webhook = json.loads(body)
    assert webhook["type"] == "lead.routed"
    assert webhook["data"]["lead"]["lead_id"] == lead_id
    assert webhook["data"]["lead"]["email"] == "ada.lovelace@analytical-engines.example"
    assert webhook["data"]["assignment"]["rep_id"] == run.rep["id"]
    assert webhook["data"]["lead"]["source"]["campaign"] == "q4-webinar"

    score = (await http.get(f"{urls['scoring']}/v1/leads/{lead_id}/score")).json()
    assert score["is_mql"] is True and score["fit"] == 100
    assignment = (await http.get(f"{urls['routing']}/v1/leads/{lead_id}/assignment")).json()
    assert assignment["rep_id"] == run.rep["id"]

    opened = await run.first_response("open", timeout=30)
    assert opened["channel"] == "inbound"

    await run.connected_call()
    met = await run.first_response("met", timeout=30)
    assert met["met_at"] is not None

    metrics = (await http.get(f"{urls['sla-timer']}/metrics")).text
    assert 'leadflow_lead_response_seconds_count{channel="inbound",team="fallback"} 1.0' in metrics
