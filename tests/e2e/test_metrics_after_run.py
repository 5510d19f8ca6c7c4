"""After a lead's whole run through the real processes, each service's /metrics shows what
happened: real values for that run's channel and team, not merely the series' names."""

from __future__ import annotations

import httpx
from leadflow.testing import ADMIN, QUALIFIED_LEAD, SALES, SOURCE, WebhookReceiver, eventually
from prometheus_client.parser import text_string_to_metric_families


async def scrape(http: httpx.AsyncClient, url: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} of a service's /metrics."""
    text = (await http.get(f"{url}/metrics")).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


async def test_metrics_show_the_run_with_real_values(services):
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
        created = await http.post(f"{urls['ingest']}/v1/leads", headers=SOURCE, json=QUALIFIED_LEAD)
        assert created.status_code == 202, created.text
        lead_id = created.json()["lead_id"]

        async def first_response(state: str):
            body = (await http.get(f"{urls['sla-timer']}/v1/leads/{lead_id}/slas")).json()
            return [
                t for t in body["timers"] if t["sla"] == "first_response" and t["state"] == state
            ]

        await eventually(lambda: first_response("open"), timeout=60)
        await eventually(lambda: receiver.received, timeout=60)
        attempt = await http.post(
            f"{urls['feedback']}/v1/leads/{lead_id}/attempts",
            headers=SALES,
            json={"channel": "call", "rep_id": rep["id"], "outcome": "connected"},
        )
        assert attempt.status_code == 202, attempt.text
        await eventually(lambda: first_response("met"), timeout=60)

        run = {"channel": "inbound", "team": "fallback"}
        sla = await scrape(http, urls["sla-timer"])
        # The response time of this run's lead, in the run's channel and team.
        count = value(sla, "leadflow_lead_response_seconds_count", **run)
        assert count == 1
        assert value(sla, "leadflow_lead_response_seconds_bucket", **run, le="+Inf") == count
        assert value(sla, "leadflow_lead_response_seconds_sum", **run) >= 0
        for clock in ("first_response", "contact_cadence", "sal_acceptance"):
            assert value(sla, "leadflow_sla_timers_started_total", sla=clock, **run) == 1, clock
        assert total(sla, "leadflow_events_consumed_total", service="sla-timer",
                     type="lead.routed", outcome="processed") == 1  # fmt: skip
        assert total(sla, "leadflow_events_consumed_total", service="sla-timer",
                     type="lead.mql", outcome="processed") == 1  # fmt: skip

        # The open-timers gauge is refreshed every 15 s: cadence and acceptance still run,
        # the first response does not.
        async def gauges():
            now = await scrape(http, urls["sla-timer"])
            open_timers = {
                clock: value(now, "leadflow_sla_open_timers", sla=clock)
                for clock in ("first_response", "contact_cadence", "sal_acceptance")
            }
            wanted = {"first_response": 0, "contact_cadence": 1, "sal_acceptance": 1}
            return open_timers == wanted and open_timers

        await eventually(gauges, timeout=45)

        feedback = await scrape(http, urls["feedback"])
        assert value(feedback, "leadflow_contact_attempts_total", channel="call") == 1
        ingest = await scrape(http, urls["ingest"])
        assert value(ingest, "leadflow_leads_ingested_total", outcome="created") == 1
        scoring = await scrape(http, urls["scoring"])
        assert value(scoring, "leadflow_mql_total", kind="mql") == 1
        routing = await scrape(http, urls["routing"])
        assert total(routing, "leadflow_leads_routed_total", team="fallback") == 1
        assert value(routing, "leadflow_webhook_deliveries_total", outcome="delivered") == 1
        for name, samples in (("sla-timer", sla), ("feedback", feedback), ("routing", routing)):
            published = total(samples, "leadflow_outbox_published_total", service=name)
            assert published >= 1, name
