"""The deployment files parse and agree with the code: compose, image, alerts, dashboard, runbook.

Metric names are checked against what the processes really export: the services are loaded
through their entry points and prometheus_client's registry is read, and a metric an alert
uses must also be updated somewhere in the code (a metric that is defined but never set
would leave its alert silent forever).
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import leadflow.metrics as leadflow_metrics
import pytest
import yaml
from deploy_support import (
    ALERTMANAGER_FILE,
    COMPOSE_FILE,
    DASHBOARDS,
    DEPLOY,
    GRAFANA,
    PROMETHEUS_DIR,
    ROOT,
    RULES_FILE,
    SUFFIXES,
    alert_rules,
    alertmanager_configs,
    all_queries,
    dashboard_queries,
    load_yaml,
    names_in,
    recording_rules,
)
from leadflow.contracts.policy import default_policy
from leadflow.metrics import RESPONSE_BUCKETS
from leadflow_tools.cli import main as leadflow_cli
from leadflow_tools.registry import SERVICE_ORDER, service_spec
from prometheus_client import REGISTRY, Counter, Gauge, Histogram, Summary

DOCKERFILE = DEPLOY / "Dockerfile"
RUNBOOK = DEPLOY / "RUNBOOK.md"
README = DEPLOY / "README.md"
DEPLOY_DATA_FILES = sorted(
    p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml", ".json"} and p.is_file()
)
ONE_SHOT = "migrate"


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def alerts() -> list[dict]:
    return alert_rules()


@pytest.fixture(scope="module")
def recorded() -> dict[str, str]:
    return recording_rules()


@pytest.fixture(scope="module")
def exported() -> dict[str, str]:
    """Sample name -> metric family, for every metric a running service exposes on /metrics."""
    for name in SERVICE_ORDER:
        service_spec(name)  # loads the service's app module and everything it imports
    names: dict[str, str] = {}
    for family in REGISTRY.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.name
    return names


def github_anchor(heading: str) -> str:
    text = unicodedata.normalize("NFKD", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_anchors() -> set[str]:
    text = RUNBOOK.read_text(encoding="utf-8")
    return {github_anchor(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        current += " " + line.removesuffix("\\").strip()
        if not line.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


# --- every file parses ------------------------------------------------------------------------


@pytest.mark.parametrize("path", [COMPOSE_FILE, *DEPLOY_DATA_FILES], ids=lambda p: p.name)
def test_every_deploy_file_parses(path):
    text = path.read_text(encoding="utf-8")
    documents = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
    assert documents and all(documents), f"{path} is empty or has an empty document"


def test_the_deploy_files_exist():
    for path in (DOCKERFILE, DEPLOY / "Dockerfile.dockerignore", RULES_FILE, RUNBOOK, README):
        assert path.is_file(), path
    assert (PROMETHEUS_DIR / "prometheus.yml").is_file()
    assert ALERTMANAGER_FILE.is_file()
    assert list((GRAFANA / "provisioning" / "datasources").glob("*.yml"))
    assert list((GRAFANA / "provisioning" / "dashboards").glob("*.yml"))
    assert GRAFANA / "dashboards" / "leadflow-sla.json" in DASHBOARDS


# --- docker-compose.yml ----------------------------------------------------------------------


def test_every_service_runs_after_migrate_with_a_health_check_on_its_port(compose):
    services = compose["services"]
    for name in SERVICE_ORDER:
        assert name in services, f"docker-compose.yml has no service {name}"
        service = services[name]
        port = service_spec(name).port
        assert service["command"] == ["serve", name]
        depends = service["depends_on"]
        assert depends[ONE_SHOT]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["kafka"]["condition"] == "service_healthy", name
        check = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/healthz" in check, name
        assert "urllib" in check, f"{name}: the slim image has no curl"
        assert any(str(p).endswith(f":{port}") for p in service["ports"]), name
        assert service["image"] == services[ONE_SHOT]["image"], name


def test_every_long_running_service_has_a_health_check(compose):
    for name, service in compose["services"].items():
        if name == ONE_SHOT:  # exits after its work; nothing to check
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_migrate_is_one_shot_and_applies_migrations_and_topics(compose):
    migrate = compose["services"][ONE_SHOT]
    assert migrate.get("restart") == "no"
    script = " ".join(migrate["entrypoint"] + migrate["command"])
    assert "leadflow migrate" in script and "leadflow topics" in script
    assert script.index("leadflow migrate") < script.index("leadflow topics")
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert migrate["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}


def test_compose_settings_come_from_variables_with_local_defaults(compose):
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    documented = README.read_text(encoding="utf-8")
    for match in re.finditer(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}", text):
        name, rest = match.groups()
        assert rest.startswith(":-"), f"${{{name}}} needs a local default: ${{{name}:-...}}"
        assert name in documented, f"{name} is not documented in deploy/README.md"
    secret = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEYS", re.I)
    for service_name, service in compose["services"].items():
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{service_name}: use the mapping form"
        for key, value in environment.items():
            if value is None:  # passed through from the caller's environment, or unset
                assert key in documented, f"{key} is not documented in deploy/README.md"
                continue
            if secret.search(key):
                assert "${" in str(value), f"{service_name}.{key}: a literal secret"


def test_leadflow_services_get_one_environment(compose):
    services = compose["services"]
    base = services[ONE_SHOT]["environment"]
    assert base["LEADFLOW_HOST"] == "0.0.0.0"
    assert "@postgres:5432/" in base["LEADFLOW_DATABASE_URL"]
    assert base["LEADFLOW_KAFKA_BOOTSTRAP"].endswith("kafka:9092}")
    for name in SERVICE_ORDER:
        assert services[name]["environment"] == base, name
        assert "LEADFLOW_PORT" not in services[name]["environment"], name


def test_the_build_context_leaves_out_local_state():
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").split()
    for entry in (".git", ".venv", ".tools", ".env", "tests", "**/__pycache__"):
        assert entry in ignored, entry


# --- deploy/Dockerfile ----------------------------------------------------------------------


def test_dockerfile_is_multi_stage_slim_and_not_root():
    instructions = dockerfile_instructions()
    args = dict(a.split("=", 1) for i, a in instructions if i == "ARG" and "=" in a)
    stages = [a for i, a in instructions if i == "FROM"]
    assert len(stages) >= 2, "build and runtime stages"
    final_image = stages[-1].split()[0].replace("${PYTHON_IMAGE}", args["PYTHON_IMAGE"])
    assert final_image.startswith("python:3.11-slim")
    last_from = max(n for n, (i, _) in enumerate(instructions) if i == "FROM")
    users = [a for n, (i, a) in enumerate(instructions) if i == "USER" and n > last_from]
    assert users, "the runtime stage needs a USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, "the runtime stage must not run as root"


def test_dockerfile_installs_the_locked_workspace_and_runs_the_cli():
    instructions = dockerfile_instructions()
    runs = " ".join(a for i, a in instructions if i == "RUN")
    assert "uv sync --frozen --no-dev" in runs
    copies = " ".join(a for i, a in instructions if i == "COPY")
    assert "uv.lock" in copies
    for member in sorted(ROOT.glob("services/*/pyproject.toml")):
        assert str(member.relative_to(ROOT)) in copies, f"{member.parent.name} is not installed"
    entrypoint = json.loads(next(a for i, a in instructions if i == "ENTRYPOINT"))
    command = json.loads(next(a for i, a in instructions if i == "CMD"))
    assert entrypoint == ["leadflow"]
    assert command[0] == "serve" and command[1] in SERVICE_ORDER


@pytest.mark.parametrize(
    "argv",
    [["serve", "ingest"], ["serve", "sla-timer"], ["migrate"], ["topics"]],
    ids=" ".join,
)
def test_the_commands_the_containers_run_exist(argv, capsys):
    with pytest.raises(SystemExit) as done:
        leadflow_cli([*argv, "--help"])
    assert done.value.code == 0


# --- Prometheus -----------------------------------------------------------------------------


def test_prometheus_scrapes_every_service_and_loads_the_rules(compose):
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in SERVICE_ORDER:
        job = jobs[name]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        assert targets == [f"{name}:{service_spec(name).port}"], name
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in mounts
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    managers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert managers == ["alertmanager:9093"] and "alertmanager" in compose["services"]


def test_every_alert_has_severity_summary_and_a_runbook_section(alerts):
    anchors = runbook_anchors()
    assert alerts
    for rule in alerts:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        link = rule["annotations"]["runbook_url"]
        match = re.fullmatch(r"deploy/RUNBOOK\.md#([\w-]+)", link)
        assert match, f"{name}: runbook_url {link!r} is not a RUNBOOK.md section"
        assert match.group(1) in anchors, f"{name}: RUNBOOK.md has no section #{match.group(1)}"
        assert match.group(1) == github_anchor(name), f"{name}: link its own section"


def test_every_runbook_section_belongs_to_an_alert(alerts):
    text = RUNBOOK.read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (Leadflow\w+)\s*$", text, flags=re.M))
    assert sections == {rule["alert"] for rule in alerts}


def test_service_down_covers_every_service(alerts):
    [down] = [rule for rule in alerts if rule["alert"] == "LeadflowServiceDown"]
    jobs = re.search(r'up\{job=~"([^"]+)"\}', down["expr"]).group(1).split("|")
    assert sorted(jobs) == sorted(SERVICE_ORDER)


def test_metric_names_in_alerts_and_dashboards_are_exported(alerts, recorded, exported):
    for query in all_queries(alerts, recorded):
        metrics, recordings = names_in(query)
        unknown = metrics - exported.keys()
        assert not unknown, f"not exported by any service: {sorted(unknown)} in {query!r}"
        undefined = recordings - recorded.keys()
        assert not undefined, f"no recording rule for {sorted(undefined)} in {query!r}"


def test_metrics_the_alerts_and_dashboards_read_are_updated_by_the_code(alerts, recorded, exported):
    by_attribute = {
        attribute: value.describe()[0].name
        for attribute, value in vars(leadflow_metrics).items()
        if isinstance(value, Counter | Gauge | Histogram | Summary)
    }
    code = "\n".join(
        path.read_text(encoding="utf-8")
        for folder in (ROOT / "shared", ROOT / "services")
        for path in folder.rglob("*.py")
        if path.name != "metrics.py"
    )
    updated = {
        by_attribute[attribute]
        for attribute in re.findall(r"\b(\w+)\.(?:labels|inc|dec|set|observe|time|clear)\(", code)
        if attribute in by_attribute
    }
    for query in all_queries(alerts, recorded):
        families = {exported[name] for name in names_in(query)[0]}
        never = (families & set(by_attribute.values())) - updated
        assert not never, f"defined but never updated: {sorted(never)} in {query!r}"


@pytest.mark.parametrize(
    "metric",
    [
        "leadflow_consumer_lag",
        "leadflow_outbox_oldest_unpublished_age_seconds",
        "leadflow_sla_timers_overdue",
    ],
)
def test_pipeline_gauges_feed_an_alert_and_a_panel(metric, alerts):
    assert any(metric in names_in(rule["expr"])[0] for rule in alerts), f"no alert on {metric}"
    dashboards = [json.loads(path.read_text(encoding="utf-8")) for path in DASHBOARDS]
    queries = [q for dashboard in dashboards for q in dashboard_queries(dashboard)]
    assert any(metric in names_in(q)[0] for q in queries), f"no dashboard panel shows {metric}"


def test_sla_alert_thresholds_follow_the_shipped_policy(alerts, recorded):
    policy = default_policy()
    limits = {
        channel: int(terms.first_response.limit.total_seconds())
        for channel, terms in policy.slas.channels.items()
    }
    inbound = limits.pop("inbound")
    [others] = set(limits.values())  # the rules give every other channel one limit
    for limit in (inbound, others):
        assert limit in RESPONSE_BUCKETS, f"no bucket at the {limit} s limit"
    on_time = recorded["channel:leadflow_first_response_on_time:increase1h"]
    assert f'channel="inbound", le="{float(inbound)}"' in on_time
    assert f'channel!="inbound", le="{float(others)}"' in on_time
    [p90] = [rule for rule in alerts if rule["alert"] == "LeadflowFirstResponseP90AboveSla"]
    assert f'{{channel="inbound"}} > {inbound}' in p90["expr"]
    assert f'{{channel!="inbound"}} > {others}' in p90["expr"]
    [rate] = [rule for rule in alerts if rule["alert"] == "LeadflowFirstResponseBreachRateHigh"]
    allowed = round(1 - policy.commitments.sales.min_contacted_within_limit_share, 4)
    assert re.search(rf"> {allowed:.2f}\b", rate["expr"]), rate["expr"]


# --- Alertmanager and Grafana ----------------------------------------------------------------


@pytest.mark.parametrize("where", sorted(alertmanager_configs()))
def test_alertmanager_routes_only_to_defined_receivers(where):
    config = yaml.safe_load(alertmanager_configs()[where])
    receivers = {receiver["name"] for receiver in config["receivers"]}

    def walk(route: dict) -> None:
        if "receiver" in route:
            assert route["receiver"] in receivers
        for child in route.get("routes", []):
            walk(child)

    assert config["route"]["receiver"] in receivers
    walk(config["route"])


def test_the_panels_the_runbook_names_exist():
    titles = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in dashboard["panels"]:
            titles.add(panel["title"])
            titles.update(p["title"] for p in panel.get("panels", []))
    text = RUNBOOK.read_text(encoding="utf-8")
    named = set(re.findall(r"(?<![*\w])\*([^*\n]+)\*(?![*\w])", text))  # *Panel title*
    assert named, "the runbook names no dashboard panel"
    assert not named - titles, f"RUNBOOK.md names panels the dashboard lacks: {named - titles}"


def test_grafana_provisions_the_datasources_and_dashboards_it_uses(compose):
    grafana = compose["services"]["grafana"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    datasources = {
        ds["uid"]: ds
        for path in (GRAFANA / "provisioning" / "datasources").glob("*.yml")
        for ds in load_yaml(path)["datasources"]
    }
    assert datasources["prometheus"]["url"] == "http://prometheus:9090"
    [provider] = [
        p
        for path in (GRAFANA / "provisioning" / "dashboards").glob("*.yml")
        for p in load_yaml(path)["providers"]
    ]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == provider["options"]["path"]
    assert (GRAFANA / "dashboards" / Path(home).name).is_file()

    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert dashboard["uid"] not in uids
        uids.add(dashboard["uid"])
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        panels = dashboard["panels"] + [
            p for row in dashboard["panels"] for p in row.get("panels", [])
        ]
        ids = [panel["id"] for panel in panels]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in panels:
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] in datasources, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
                assert used <= variables, f"{panel['title']}: undefined {used - variables}"
