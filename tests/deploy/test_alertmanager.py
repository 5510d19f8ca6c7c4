"""Alertmanager delivers Leadflow's alerts to notify's intake, and to Slack where configured.

Every Alertmanager configuration in the repository (the Compose stack's files and the
Kubernetes ConfigMap's) is routed with amtool for every alert of deploy/prometheus/alerts.yml
and must reach a webhook receiver at notify's `POST /v1/alerts/alertmanager` that also sends
resolutions. A real Alertmanager (the Debian package's binary) then runs the Slack
configuration against two local servers: one standing in for notify's intake, one
implementing the contract of a Slack incoming webhook as far as Alertmanager uses it (a JSON
POST to the webhook URL, answered 200 with the body `ok`).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from deploy_support import (
    COMPOSE_FILE,
    DEPLOY,
    alert_rules,
    alertmanager_configs,
    running,
    tool,
)
from leadflow_tools.devstack import wait_for

NOTIFY_INTAKE = "/v1/alerts/alertmanager"
# notify as Compose names it, and as a Service of the namespace `leadflow` in Kubernetes.
NOTIFY_HOSTS = {"notify:8006", "notify.leadflow.svc:8006"}
SECRETS_DIR = "/etc/alertmanager/secrets/"
SLACK_PATH = "/services/T0LEADFLOW/B0ALERTS/local"
PLACEHOLDER_HOST = re.compile(r"(^|\.)(example\.(com|org|net)|invalid|test)$|placeholder")


def amtool(*argv: str) -> subprocess.CompletedProcess:
    binary = tool("amtool", "prometheus-alertmanager")
    return subprocess.run([binary, *argv], capture_output=True, text=True, timeout=60)


def receivers_for(config_path: Path, labels: dict[str, str]) -> list[str]:
    """The receivers Alertmanager's routing tree picks for an alert with these labels."""
    done = amtool(
        "config", "routes", "test", f"--config.file={config_path}",
        *(f"{name}={value}" for name, value in labels.items()),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().split(",")


def alert_label_sets() -> list[dict[str, str]]:
    """The labels each alert rule gives its alerts (what Alertmanager routes on), and none."""
    sets = [{}]
    for rule in alert_rules():
        sets.append({"alertname": rule["alert"], **rule.get("labels", {})})
    return sets


@pytest.fixture(params=sorted(alertmanager_configs()))
def config(request, tmp_path) -> tuple[dict, Path]:
    path = tmp_path / "alertmanager.yml"
    path.write_text(alertmanager_configs()[request.param], encoding="utf-8")
    return yaml.safe_load(path.read_text(encoding="utf-8")), path


def test_every_alert_reaches_notify_intake_with_its_resolution(config):
    parsed, path = config
    receivers = {receiver["name"]: receiver for receiver in parsed["receivers"]}
    for labels in alert_label_sets():
        for name in receivers_for(path, labels):
            hooks = receivers[name].get("webhook_configs", [])
            intake = [
                hook
                for hook in hooks
                if urlsplit(hook["url"]).netloc in NOTIFY_HOSTS
                and urlsplit(hook["url"]).path == NOTIFY_INTAKE
            ]
            assert intake, f"{labels or 'the default route'}: {name} does not reach notify"
            assert all(hook.get("send_resolved") is True for hook in intake), name


def test_a_slack_webhook_url_is_only_ever_read_from_a_secret_file(config):
    parsed, _ = config
    assert "slack_api_url" not in parsed.get("global", {})
    for receiver in parsed["receivers"]:
        for slack in receiver.get("slack_configs", []):
            assert "api_url" not in slack, receiver["name"]
            assert slack["api_url_file"].startswith(SECRETS_DIR), receiver["name"]
            assert slack.get("send_resolved") is True, receiver["name"]


def test_compose_and_kubernetes_route_alerts_alike():
    """The ConfigMap holds the Compose stack's files, notify named as a Kubernetes Service."""
    configs = alertmanager_configs()
    compose = {where.rsplit("/", 1)[1]: text for where, text in configs.items() if ":" not in where}
    kubernetes = {where.rsplit(":", 1)[1]: text for where, text in configs.items() if ":" in where}
    assert set(compose) == set(kubernetes) and "alertmanager.yml" in compose
    for name, text in compose.items():
        expected = yaml.safe_load(text.replace("//notify:8006/", "//notify.leadflow.svc:8006/"))
        assert yaml.safe_load(kubernetes[name]) == expected, name


def test_no_deployment_file_sends_anything_to_a_placeholder_address():
    paths = [COMPOSE_FILE, *(p for p in DEPLOY.rglob("*") if p.is_file())]
    for path in paths:
        for url in re.findall(r"https?://[^\s\"'`)<>\]]+", path.read_text(encoding="utf-8")):
            host = (urlsplit(url).hostname or "").lower()
            assert not PLACEHOLDER_HOST.search(host), f"{path.relative_to(DEPLOY.parent)}: {url}"


class Recorder(BaseHTTPRequestHandler):
    """Notify's Alertmanager intake and a Slack incoming webhook, each as the other side sees
    it: every JSON POST is recorded; Slack answers `ok`, as its incoming webhooks do."""

    received: list[tuple[str, dict]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, body))
        answer = b"ok" if self.path == SLACK_PATH else b""
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    handler = type("Handler", (Recorder,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler.received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def alertmanager(receiver, tmp_path):
    """/usr/bin/prometheus-alertmanager running alertmanager-slack.yml, its notify and Slack
    addresses pointed at the local receiver and its waits shortened to a second."""
    base, _ = receiver
    config = yaml.safe_load(alertmanager_configs()["deploy/alertmanager/alertmanager-slack.yml"])
    config["route"].update(group_wait="1s", group_interval="1s")
    for route in config["route"].get("routes", []):
        route.update(group_wait="1s", group_interval="1s")
    [target] = config["receivers"]
    [hook] = target["webhook_configs"]
    hook["url"] = base + urlsplit(hook["url"]).path
    authorization = hook["http_config"]["authorization"]  # notify's intake takes an API key
    key = tmp_path / Path(authorization["credentials_file"]).name
    key.write_text("lf_alerts_key", encoding="utf-8")
    authorization["credentials_file"] = str(key)
    [slack] = target["slack_configs"]
    secret = tmp_path / Path(slack["api_url_file"]).name
    secret.write_text(base + SLACK_PATH, encoding="utf-8")
    slack["api_url_file"] = str(secret)
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config), encoding="utf-8")

    args = [
        f"--config.file={tmp_path / 'alertmanager.yml'}",
        f"--storage.path={tmp_path / 'data'}",
        "--cluster.listen-address=",
    ]
    binary = tool("prometheus-alertmanager", "prometheus-alertmanager")
    with running(binary, args, tmp_path, "alertmanager", 60) as url:
        yield url


def post_alert(alertmanager: str, alert: dict, ends_at: datetime) -> None:
    body = [{**alert, "endsAt": ends_at.isoformat()}]
    response = httpx.post(f"{alertmanager}/api/v2/alerts", json=body, timeout=5)
    assert response.status_code == 200, response.text


def test_alertmanager_sends_an_alert_and_its_resolution_to_notify_and_slack(alertmanager, receiver):
    _, received = receiver
    [rule] = [r for r in alert_rules() if r["alert"] == "LeadflowWebhookDeadLetters"]
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": rule["alert"], "job": "notify", **rule["labels"]},
        "annotations": {
            "summary": "Webhook deliveries dead-lettered",
            "runbook_url": rule["annotations"]["runbook_url"],
        },
        "startsAt": now.isoformat(),
    }

    def delivered(path: str, status: str) -> list[dict]:
        return [body for p, body in list(received) if p == path and body.get("status") == status]

    post_alert(alertmanager, alert, now + timedelta(hours=1))
    wait_for(lambda: delivered(NOTIFY_INTAKE, "firing"), "the firing alert at notify", 30)
    [firing, *_] = delivered(NOTIFY_INTAKE, "firing")
    assert firing["version"] == "4"
    [sent] = firing["alerts"]
    assert sent["labels"] == alert["labels"] and sent["status"] == "firing"
    assert sent["annotations"]["runbook_url"] == rule["annotations"]["runbook_url"]
    assert firing["groupLabels"] == {"alertname": rule["alert"], "job": "notify"}

    wait_for(lambda: slack_posts(received), "the firing alert at Slack", 30)
    [message, *_] = slack_posts(received)
    [attachment] = message["attachments"]
    assert attachment["title"].startswith("[FIRING:1]")
    assert "*Webhook deliveries dead-lettered*" in attachment["text"]
    assert "Runbook: deploy/RUNBOOK.md#leadflowwebhookdeadletters" in attachment["text"]

    post_alert(alertmanager, alert, datetime.now(UTC) - timedelta(seconds=1))
    wait_for(lambda: delivered(NOTIFY_INTAKE, "resolved"), "the resolution at notify", 30)
    [resolved, *_] = delivered(NOTIFY_INTAKE, "resolved")
    assert resolved["version"] == "4"
    assert [a["status"] for a in resolved["alerts"]] == ["resolved"]
    wait_for(
        lambda: any(
            m["attachments"][0]["title"].startswith("[RESOLVED]") for m in slack_posts(received)
        ),
        "the resolution at Slack",
        30,
    )


def slack_posts(received: list[tuple[str, dict]]) -> list[dict]:
    return [body for path, body in list(received) if path == SLACK_PATH]
