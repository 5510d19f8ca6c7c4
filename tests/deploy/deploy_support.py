"""What the tests of deploy/ share: the files' places, the PromQL they hold, the tools they run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from leadflow_tools.devstack import die_with_parent, free_port, stop_process, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_DIR = DEPLOY / "prometheus"
RULES_FILE = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS_FILE = PROMETHEUS_DIR / "alerts.test.yml"
ALERTMANAGER_FILE = DEPLOY / "alertmanager" / "alertmanager.yml"
ALERTMANAGER_CONFIGMAP = DEPLOY / "k8s" / "alertmanager-config.yaml"
GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
K8S = DEPLOY / "k8s"

# Sample names each metric type exposes, by family type.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


EXPORTED_PREFIXES = ("leadflow_", "process_")


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_groups() -> list[dict]:
    return load_yaml(RULES_FILE)["groups"]


def alert_rules() -> list[dict]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def recording_rules() -> dict[str, str]:
    return {
        rule["record"]: rule["expr"]
        for group in rule_groups()
        for rule in group["rules"]
        if "record" in rule
    }


def alertmanager_configs() -> dict[str, str]:
    """Every Alertmanager configuration in the repository, by where it is: the Compose stack's
    files and each file of the Kubernetes ConfigMap."""
    configs = {
        str(path.relative_to(ROOT)): path.read_text(encoding="utf-8")
        for path in sorted(ALERTMANAGER_FILE.parent.glob("*.yml"))
    }
    configmap = load_yaml(ALERTMANAGER_CONFIGMAP)
    for key, text in configmap["data"].items():
        configs[f"{ALERTMANAGER_CONFIGMAP.relative_to(ROOT)}:{key}"] = text
    return configs


def dashboard_queries(dashboard: dict) -> list[str]:
    queries = []

    def walk(panels: list[dict]) -> None:
        for panel in panels:
            queries.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") == "query":
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def all_queries(alerts: list[dict], recorded: dict[str, str]) -> list[str]:
    """Every PromQL expression of the alert and recording rules and of every dashboard."""
    queries = [rule["expr"] for rule in alerts] + list(recorded.values())
    for path in DASHBOARDS:
        queries += dashboard_queries(json.loads(path.read_text(encoding="utf-8")))
    return queries


def names_in(query: str) -> tuple[set[str], set[str]]:
    """(metric names the services export, recording-rule names) a PromQL query reads.

    Exported names are Leadflow's own (leadflow_*) and the process metrics prometheus_client
    adds (process_*); `up` and other names Prometheus makes itself are not counted."""
    query = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', query)  # strings
    query = re.sub(r"\[[^\]]*\]", "", query)  # range and subquery selectors
    query = re.sub(r"\$\{?\w+\}?", "", query)  # dashboard variables
    tokens = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", query))
    return (
        {t for t in tokens if t.startswith(EXPORTED_PREFIXES)},
        {t for t in tokens if ":" in t},
    )


def tool(name: str, package: str) -> str:
    """The path of a system command the test needs; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not installed: run `make system-deps` (Debian package {package})",
            pytrace=False,
        )
    return path


@contextmanager
def running(
    binary: str, args: list[str], workdir: Path, name: str, timeout: float
) -> Iterator[str]:
    """A Prometheus-family binary (Prometheus, Alertmanager) listening on a free port, its log in
    `workdir/<name>.log`, yielded as its base URL once `/-/ready` answers; stopped at the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [binary, *args, f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            preexec_fn=die_with_parent(),
        )
        try:

            def ready() -> bool:
                try:
                    return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(ready, f"{name} (log {log_path})", timeout, proc)
            yield url
        finally:
            stop_process(proc)
