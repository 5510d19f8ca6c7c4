"""A real Prometheus (the Debian package's binary) scrapes the six services while leads flow.

The services run as real processes against the session's PostgreSQL and broker, on a clock
that runs 360 times faster than real time from a Tuesday morning, so that one lead nobody
contacts breaches its 2-business-hour first-response SLA within 20 real seconds (or, routed
late in the business day on a slow machine, the next simulated morning, a few minutes
later). Prometheus gets a
scrape config generated for the services' ports and the alert rules of
deploy/prometheus/alerts.yml (evaluated every second instead of every minute), and the tests
read it back through its HTTP API, as Grafana and Alertmanager would.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import httpx
import pytest
import yaml
from deploy_support import (
    DASHBOARDS,
    SUFFIXES,
    alert_rules,
    all_queries,
    dashboard_queries,
    names_in,
    recording_rules,
    rule_groups,
    running,
    tool,
)
from leadflow.clock import Clock
from leadflow_tools.registry import SERVICE_ORDER
from leadflow_tools.supervisor import ServiceProcess, start_all
from prometheus_client.parser import text_string_to_metric_families
from support.harness import eventually, routed_leads, sample_lead

pytestmark = pytest.mark.e2e

# 09:00 on a Tuesday in Europe/Warsaw, the default policy's business calendar.
CLOCK_START = datetime(2026, 11, 17, 8, 0, tzinfo=UTC)
CLOCK_SPEED = 360.0
CONTACTED = 2  # leads that get a first contact attempt; one more is left to breach


@pytest.fixture(scope="module")
async def settings(stack):
    return await stack.isolated_settings(
        clock_start=CLOCK_START, clock_speed=CLOCK_SPEED, clock_anchor=time.time()
    )


@pytest.fixture(scope="module")
async def services(settings, tmp_path_factory):
    logs = tmp_path_factory.mktemp("service-logs")
    procs = {name: ServiceProcess(name, settings, logs / f"{name}.log") for name in SERVICE_ORDER}
    try:
        await start_all(list(procs.values()), timeout=240)
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


@pytest.fixture(scope="module")
async def traffic(services, settings):
    """Leads through the whole pipeline: routed, delivered, contacted or left to breach."""
    urls = {name: proc.url for name, proc in services.items()}
    async with routed_leads(urls) as run:
        leads = [(await run.ingest(sample_lead(n)))["lead_id"] for n in range(CONTACTED + 1)]

        async def contacted(lead_id: str) -> dict | None:
            # The first attempt ends the clock (met_at) and is measured even when a slow
            # machine let the breach fire first; only the state tells the two apart.
            timer = await run.first_response_timer(lead_id)
            return timer if timer and timer["met_at"] is not None else None

        for lead_id in leads:
            await run.first_response(lead_id=lead_id, timeout=120)
        for lead_id in leads[:CONTACTED]:
            await run.connected_call(lead_id)
        try:
            for lead_id in leads[:CONTACTED]:
                await eventually(lambda lead_id=lead_id: contacted(lead_id), timeout=120)
            # A lead routed late in the business day breaches the next morning: wait for the
            # simulated clock to reach its due time, however long that is in real seconds.
            clock = Clock(settings.clock_start, settings.clock_speed, settings.clock_anchor)
            timer = await run.first_response_timer(leads[CONTACTED])
            due = datetime.fromisoformat(timer["due_at"])
            wait = max(clock.real_seconds(due - clock.now()), 0) + 90
            await run.first_response("breached", timeout=wait, lead_id=leads[CONTACTED])
            await eventually(lambda: len(run.receiver.received) >= len(leads), timeout=120)
        except AssertionError as exc:
            timers = [await run.first_response_timer(lead_id) for lead_id in leads]
            ready = {n: (await run.http.get(f"{u}/readyz")).json() for n, u in urls.items()}
            raise AssertionError(f"{exc}; timers {timers}; readiness {ready}") from exc
    return leads


@pytest.fixture(scope="module")
def prometheus(services, tmp_path_factory):
    """/usr/bin/prometheus scraping every service each second, with Leadflow's rules loaded."""
    binary = tool("prometheus", "prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    groups = rule_groups()
    for group in groups:
        group["interval"] = "1s"
    rules = workdir / "alerts.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": name,
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{proc.port}"]}],
            }
            for name, proc in services.items()
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    args = [
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
    ]
    with running(binary, args, workdir, "prometheus", 120) as url:
        yield url


async def api(http: httpx.AsyncClient, prometheus: str, path: str, **params) -> object:
    response = await http.get(f"{prometheus}/api/v1/{path}", params=params)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (path, params, body)
    return body["data"]


def samples(text: str, metric: str) -> dict[frozenset, float]:
    """{labels: value} of one sample name in a /metrics page."""
    return {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == metric
    }


async def vector(
    http: httpx.AsyncClient,
    prometheus: str,
    query: str,
    drop: tuple = ("__name__", "job", "instance"),
) -> dict[frozenset, float]:
    """An instant query's result as {labels but `drop`: value}."""
    data = await api(http, prometheus, "query", query=query)
    return {
        frozenset((k, v) for k, v in r["metric"].items() if k not in drop): float(r["value"][1])
        for r in data["result"]
    }


async def test_prometheus_scrapes_every_service(services, prometheus):
    async with httpx.AsyncClient(timeout=5) as http:

        async def all_up():
            data = await api(http, prometheus, "targets")
            health = {t["labels"]["job"]: t["health"] for t in data["activeTargets"]}
            return (
                health
                if set(health) == set(SERVICE_ORDER) and all(h == "up" for h in health.values())
                else None
            )

        await eventually(all_up, timeout=60)
        up = await vector(http, prometheus, "up", drop=("__name__", "instance"))
        assert up == {frozenset({("job", name)}): 1.0 for name in SERVICE_ORDER}


@pytest.mark.parametrize(
    "metric",
    [
        "leadflow_lead_response_seconds_count",
        "leadflow_lead_response_seconds_bucket",
        "leadflow_sla_open_timers",
        "leadflow_sla_timers_overdue",
        "leadflow_sla_timers_started_total",
        "leadflow_sla_breaches_total",
        "leadflow_sla_warnings_total",
        "leadflow_sla_timer_fire_lag_seconds_count",
    ],
)
async def test_prometheus_shows_the_sla_metrics_sla_timer_reports(
    metric, services, traffic, prometheus
):
    sla_timer = services["sla-timer"].url
    async with httpx.AsyncClient(timeout=5) as http:

        async def same():
            reported = samples((await http.get(f"{sla_timer}/metrics")).text, metric)
            stored = await vector(http, prometheus, f'{metric}{{job="sla-timer"}}')
            return (reported, stored) if reported and reported == stored else None

        reported, _ = await eventually(same, timeout=60)
    if metric == "leadflow_lead_response_seconds_count":
        inbound = {dict(labels)["channel"]: value for labels, value in reported.items()}
        assert inbound == {"inbound": float(CONTACTED)}
    if metric == "leadflow_sla_breaches_total":
        first = {dict(k)["sla"]: v for k, v in reported.items()}
        assert first["first_response"] >= 1


async def test_prometheus_shows_the_pipeline_metrics_every_service_reports(
    services, traffic, prometheus
):
    leads = float(CONTACTED + 1)
    async with httpx.AsyncClient(timeout=5) as http:

        async def query_until(query: str, expected, drop=("__name__", "job", "instance")):
            async def check():
                got = await vector(http, prometheus, query, drop=drop)
                return got if expected(got) else None

            return await eventually(check, timeout=60)

        await query_until(
            'leadflow_leads_ingested_total{job="ingest"}',
            lambda got: got == {frozenset({("outcome", "created")}): leads},
        )
        await query_until(
            'leadflow_webhook_deliveries_total{job="notify", outcome="delivered"}',
            lambda got: list(got.values()) == [leads],
        )
        # Every service wrote events for these leads through its outbox, and the relay sent them;
        # all but notify, whose topic carries only what it could not deliver: nothing here.
        publishing = set(SERVICE_ORDER) - {"notify"}
        await query_until(
            "sum by (job) (leadflow_outbox_published_total)",
            lambda got: {dict(k)["job"] for k, v in got.items() if v > 0} == publishing,
            drop=(),
        )


async def test_the_alert_rules_load_and_evaluate_healthy(services, traffic, prometheus):
    expected = {
        (group["name"], rule.get("alert") or rule["record"])
        for group in rule_groups()
        for rule in group["rules"]
    }
    async with httpx.AsyncClient(timeout=5) as http:

        async def evaluated():
            data = await api(http, prometheus, "rules")
            rules = {
                (group["name"], rule["name"]): rule
                for group in data["groups"]
                for rule in group["rules"]
            }
            return rules if all(r["health"] != "unknown" for r in rules.values()) else None

        rules = await eventually(evaluated, timeout=60)
        assert set(rules) == expected
        unhealthy = {k: r.get("lastError") for k, r in rules.items() if r["health"] != "ok"}
        assert not unhealthy
        # The SLA recording rules produce series from the real histogram.
        responses = await eventually(
            lambda: vector(http, prometheus, "channel:leadflow_lead_responses:increase6h")
        )
        assert {dict(k)["channel"] for k in responses} == {"inbound"}
        # No service is down, so the alert on it is not even pending.
        alerts = await api(http, prometheus, "alerts")
        assert "LeadflowServiceDown" not in {a["labels"]["alertname"] for a in alerts["alerts"]}


async def test_every_dashboard_query_is_valid_promql(services, prometheus):
    """Prometheus parses and runs every panel's query, variables set as Grafana would."""
    async with httpx.AsyncClient(timeout=10) as http:
        for path in DASHBOARDS:
            for query in dashboard_queries(json.loads(path.read_text(encoding="utf-8"))):
                query = query.replace("$window", "1h").replace("$channel", ".*")
                # A variable's label_values(selector, label) is Grafana's; run its PromQL part.
                query = re.sub(r"^label_values\((.+),\s*(\w+)\)$", r"count by (\2) (\1)", query)
                response = await http.get(f"{prometheus}/api/v1/query", params={"query": query})
                assert response.status_code == 200, (path.name, query, response.text)
                assert response.json()["status"] == "success", (path.name, query)


async def test_every_metric_an_alert_or_panel_reads_is_in_a_real_scrape(services, traffic):
    scraped: dict[str, set[str]] = {}
    async with httpx.AsyncClient(timeout=5) as http:
        for name, proc in services.items():
            text = (await http.get(f"{proc.url}/metrics")).text
            for family in text_string_to_metric_families(text):
                for suffix in SUFFIXES.get(family.type, ("",)):
                    scraped.setdefault(family.name + suffix, set()).add(name)
    used = set()
    for query in all_queries(alert_rules(), recording_rules()):
        used |= names_in(query)[0]
    assert used, "the alerts and dashboards read no leadflow metric"
    missing = used - scraped.keys()
    assert not missing, (
        f"used by alerts or dashboards, absent from every /metrics: {sorted(missing)}"
    )
