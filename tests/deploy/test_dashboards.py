"""The Grafana dashboards are what file provisioning loads: uid, title, panels with queries."""

from __future__ import annotations

import json
import re

import pytest
from deploy_support import DASHBOARDS, GRAFANA, names_in
from leadflow_tools.registry import SERVICE_ORDER

PANEL_TYPES = {"row", "stat", "timeseries", "gauge", "table", "bargauge", "text", "heatmap"}


def panels_of(dashboard: dict) -> list[dict]:
    return dashboard["panels"] + [p for row in dashboard["panels"] for p in row.get("panels", [])]


@pytest.fixture(params=DASHBOARDS, ids=lambda p: p.name)
def dashboard(request) -> dict:
    return json.loads(request.param.read_text(encoding="utf-8"))


def test_both_dashboards_are_provisioned():
    uids = {json.loads(p.read_text(encoding="utf-8"))["uid"] for p in DASHBOARDS}
    assert {"leadflow-sla", "leadflow-service-health"} <= uids


def test_dashboard_has_what_provisioning_needs(dashboard):
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"]), dashboard["uid"]
    assert dashboard["title"].strip()
    assert isinstance(dashboard["schemaVersion"], int)
    assert "id" not in dashboard or dashboard["id"] is None, "provisioned dashboards carry no id"
    panels = panels_of(dashboard)
    assert len([p for p in panels if p["type"] != "row"]) >= 6
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        assert panel["title"].strip(), panel["id"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        assert grid["h"] > 0 and grid["y"] >= 0, panel["title"]
        if panel["type"] == "row":
            continue
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), f"{panel['title']}: duplicate refId"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == panel["datasource"]["uid"], panel["title"]


def test_panels_do_not_overlap(dashboard):
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


@pytest.mark.parametrize(
    "metric",
    [
        "leadflow_http_request_duration_seconds_count",
        "leadflow_http_request_duration_seconds_bucket",
        "leadflow_consumer_lag",
        "leadflow_consumer_retries_total",
        "leadflow_events_consumed_total",
        "leadflow_outbox_backlog",
        "leadflow_outbox_oldest_unpublished_age_seconds",
        "leadflow_outbox_published_total",
        "leadflow_webhook_deliveries_total",
        "process_resident_memory_bytes",
    ],
)
def test_the_service_health_dashboard_shows(metric):
    dashboard = json.loads((GRAFANA / "dashboards" / "service-health.json").read_text())
    read = set()
    for panel in panels_of(dashboard):
        for target in panel.get("targets", []):
            read |= names_in(target["expr"])[0]
    assert metric in read
    text = json.dumps(dashboard)
    assert 'up{job=~\\"$service\\"}' in text, "no panel shows which instances are up"


def test_the_service_selector_covers_every_service():
    dashboard = json.loads((GRAFANA / "dashboards" / "service-health.json").read_text())
    [service] = [v for v in dashboard["templating"]["list"] if v["name"] == "service"]
    assert sorted(service["allValue"].split("|")) == sorted(SERVICE_ORDER)
