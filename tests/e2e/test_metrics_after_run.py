"""After a lead's whole run through the real processes, each service's /metrics shows what
happened: real values for that run's channel and team, not merely the series' names; and, open
to any scraper without a key, it says nothing of who the leads are."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from support.harness import NO_KEY, QUALIFIED_LEAD, eventually


async def scrape(http: httpx.AsyncClient, url: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} of a service's /metrics."""
    text = (await http.get(f"{url}/metrics", headers=NO_KEY)).text
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


async def test_metrics_show_the_run_with_real_values(lead_run):
    urls, http = lead_run.urls, lead_run.http
    await lead_run.ingest(QUALIFIED_LEAD)
    await lead_run.first_response("open", timeout=60)
    await lead_run.delivered(timeout=60)
    await lead_run.connected_call()
    await lead_run.first_response("met", timeout=60)

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
    notify = await scrape(http, urls["notify"])
    assert value(notify, "leadflow_webhook_deliveries_total", outcome="delivered") == 1
    assert (
        value(
            notify,
            "leadflow_notifications_total",
            channel="webhook",
            event_type="lead.routed",
            outcome="sent",
        )
        == 1
    )
    # Each relay publishes after its transaction commits: what the page showed a moment ago
    # may not be published yet, so each service is scraped until it is.
    for name in ("sla-timer", "feedback", "routing"):

        async def published(name=name) -> bool:
            samples = await scrape(http, urls[name])
            return total(samples, "leadflow_outbox_published_total", service=name) >= 1

        await eventually(
            published, timeout=30, describe=lambda name=name: f"{name}: nothing published"
        )


PEOPLE = [
    {
        "email": "Zofia.Wisniewska@Kwiatki-Hurt.example",
        "first_name": "Zofia",
        "last_name": "Wisniewska",
        "phone": "+48 601 234 567",
        "company": {**QUALIFIED_LEAD["company"], "name": "Kwiatki Hurtownia"},
    },
    {
        "email": "bartholomew.quint@quintessential-widgets.example",
        "first_name": "Bartholomew",
        "last_name": "Quint",
        "phone": "+44 20 7946 0958",
        "company": {**QUALIFIED_LEAD["company"], "name": "Quintessential Widgets"},
    },
]


async def test_metrics_hold_no_personal_data_of_the_leads_sent(lead_run):
    """/metrics takes no key, so it must not carry who a lead is: after leads ran through every
    service (scored, routed, delivered, contacted), no service's metrics text holds an e-mail
    (or its parts), a name, a phone number or a company of those leads."""
    urls, http = lead_run.urls, lead_run.http
    for person in PEOPLE:
        await lead_run.ingest({**QUALIFIED_LEAD, **person})
        await lead_run.first_response("open", timeout=60)
        await lead_run.connected_call()
    await eventually(lambda: len(lead_run.receiver.received) >= len(PEOPLE), timeout=60)
    texts = {
        name: (await http.get(f"{url}/metrics", headers=NO_KEY)).text.lower()
        for name, url in urls.items()
    }
    assert all(texts.values())
    for person in PEOPLE:
        local, domain = person["email"].lower().split("@")
        digits = "".join(c for c in person["phone"] if c.isdigit())
        needles = [
            person["email"].lower(),
            local,
            domain,
            person["first_name"].lower(),
            person["last_name"].lower(),
            person["company"]["name"].lower(),
            person["phone"].lower(),
            digits,
            digits[-9:],
        ]
        for name, text in texts.items():
            found = [needle for needle in needles if needle in text]
            assert not found, f"{name}/metrics holds {found}"
