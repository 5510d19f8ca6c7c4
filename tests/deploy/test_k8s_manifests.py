"""deploy/k8s agrees with the code: kinds, settings, ports, probe paths, scaling limits.

Every manifest is parsed (yaml.safe_load_all) and validated, strictly (no unknown field), against
the Kubernetes OpenAPI schemas of the oldest and newest versions we support (kubernetes-validate
ships them; no cluster needed); each service's app is built (no I/O) to read the routes its
probes call; every environment variable must be a field of Settings.
"""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml
from deploy_support import DEPLOY, K8S, load_yaml
from leadflow.service import create_app
from leadflow.settings import Settings
from leadflow_tools.registry import SERVICE_ORDER, service_spec

API_VERSIONS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "PodDisruptionBudget": "policy/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
}
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
SECRET = "leadflow-secrets"
# Kubernetes versions whose schemas every manifest must satisfy (oldest and newest supported).
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
# Custom resources have no schema in Kubernetes itself; their shape is checked below.
CUSTOM_KINDS = {"PodMonitor"}
SECRET_SETTINGS = {
    "LEADFLOW_DATABASE_URL",
    "LEADFLOW_API_KEYS",
    "LEADFLOW_HUBSPOT_CLIENT_SECRET",
    "LEADFLOW_HUBSPOT_PRIVATE_APP_TOKEN",
    "LEADFLOW_SMTP_PASSWORD",
}


@pytest.fixture(scope="module")
def documents() -> list[dict]:
    docs = []
    for path in MANIFESTS:
        docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def find(documents: list[dict], kind: str, name: str) -> dict:
    [doc] = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


@pytest.fixture(scope="module")
def config(documents) -> dict[str, str]:
    return find(documents, "ConfigMap", "leadflow-config")["data"]


def setting_name(variable: str) -> str:
    assert variable.startswith("LEADFLOW_"), variable
    return variable.removeprefix("LEADFLOW_").lower()


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schema(documents, version: str):
    checked = 0
    problems = []
    for doc in documents:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            problems.append(f"{doc['kind']}/{doc['metadata']['name']} at {where}: {exc.message}")
        checked += 1
    assert not problems, "\n".join(problems)
    assert checked >= 20  # five services × (Deployment, Service, PDB, HPA), the Job, and more


def test_every_manifest_has_a_known_kind_and_api_version(documents):
    assert documents
    for doc in documents:
        kind = doc["kind"]
        assert kind in API_VERSIONS, f"unexpected kind {kind}"
        assert doc["apiVersion"] == API_VERSIONS[kind], kind
        assert doc["metadata"]["name"]
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == "leadflow", doc["metadata"]["name"]
    assert not [d for d in documents if d["kind"] == "Secret"], "no secret values in deploy/k8s"


def test_kustomization_lists_every_manifest_that_needs_no_crd():
    kustomization = load_yaml(K8S / "kustomization.yaml")
    listed = set(kustomization["resources"])
    for path in MANIFESTS:
        kinds = {d["kind"] for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d}
        if kinds <= {"PodMonitor"}:
            assert path.name not in listed, f"{path.name} needs the Prometheus Operator CRDs"
        else:
            assert path.name in listed, f"{path.name} is not in kustomization.yaml"
    assert listed <= {p.name for p in MANIFESTS}


@pytest.mark.parametrize("name", SERVICE_ORDER)
def test_each_service_runs_several_replicas_on_its_port_with_real_probe_paths(name, documents):
    spec = service_spec(name)
    deployment = find(documents, "Deployment", name)
    assert deployment["spec"]["replicas"] >= 2, f"{name}: one replica is a single point of failure"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [container] = containers(deployment)
    assert container["args"] == ["serve", name]
    [port] = container["ports"]
    assert port["containerPort"] == spec.port and port["name"] == "http"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(spec.port)

    app = create_app(spec, Settings(env="test"))
    paths = {getattr(route, "path", None) for route in app.routes} - {None}
    assert annotations["prometheus.io/path"] in paths
    probes = {kind: container[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    for probe in [*probes.values(), container["startupProbe"]["httpGet"]]:
        assert probe["path"] in paths, f"{name}: no route {probe['path']}"
        assert probe["port"] in (port["name"], port["containerPort"])

    service = find(documents, "Service", name)
    assert service["spec"]["selector"].items() <= labels.items()
    [service_port] = service["spec"]["ports"]
    assert service_port["port"] == spec.port
    assert service_port["targetPort"] in (port["name"], port["containerPort"])

    budget = find(documents, "PodDisruptionBudget", name)
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"].get("maxUnavailable", 0) < deployment["spec"]["replicas"]


@pytest.mark.parametrize("name", SERVICE_ORDER)
def test_autoscaling_stops_at_the_partition_count(name, documents, config):
    """A consumer group puts at most one member per partition to work; a member without a
    partition is ready but idle, so consuming replicas past the partition count add nothing."""
    autoscaler = find(documents, "HorizontalPodAutoscaler", name)
    target = autoscaler["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", name)
    assert find(documents, "Deployment", name)
    low, high = autoscaler["spec"]["minReplicas"], autoscaler["spec"]["maxReplicas"]
    assert 2 <= low <= find(documents, "Deployment", name)["spec"]["replicas"] <= high
    assert high <= int(config["LEADFLOW_TOPIC_PARTITIONS"])


def test_every_environment_variable_is_a_setting_and_secrets_come_from_the_secret(
    documents, config
):
    fields = set(Settings.model_fields)
    for variable in config:
        assert setting_name(variable) in fields, f"ConfigMap: {variable} is not a setting"
        assert variable not in SECRET_SETTINGS, f"ConfigMap holds the secret {variable}"
    workloads = [d for d in documents if d["kind"] in ("Deployment", "Job")]
    for doc in workloads:
        for container in containers(doc):
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] == "leadflow-config"
            for variable in container.get("env", []):
                assert setting_name(variable["name"]) in fields, variable["name"]
                assert "value" not in variable or variable["name"] not in SECRET_SETTINGS
                if variable["name"] in SECRET_SETTINGS:
                    assert variable["valueFrom"]["secretKeyRef"]["name"] == SECRET
            names = {v["name"] for v in container.get("env", [])}
            assert {"LEADFLOW_DATABASE_URL", "LEADFLOW_API_KEYS"} <= names, doc["metadata"]


def test_the_config_map_values_are_valid_production_settings(config, monkeypatch):
    for variable, value in config.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", "postgresql://leadflow@db.internal/leadflow")
    monkeypatch.setenv("LEADFLOW_API_KEYS", '[{"name": "crm", "sha256": "' + "0" * 64 + '"}]')
    settings = Settings()
    assert settings.env == "production"
    assert settings.host == "0.0.0.0"
    assert not settings.webhook_allow_private


def test_every_container_runs_the_one_image_as_the_dockerfile_user(documents):
    kustomization = load_yaml(K8S / "kustomization.yaml")
    [image] = kustomization["images"]
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    uid = int(re.findall(r"^USER (\d+)", dockerfile, flags=re.M)[-1])
    for doc in (d for d in documents if d["kind"] in ("Deployment", "Job")):
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        for container in pod["containers"]:
            assert container["image"].rsplit(":", 1)[0] == image["name"]
            assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_migration_job_migrates_then_creates_topics(documents):
    job = find(documents, "Job", "leadflow-migrate")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    [container] = containers(job)
    script = " ".join(container.get("command", []) + container.get("args", []))
    assert script.index("leadflow migrate") < script.index("leadflow topics")


def test_the_pod_monitor_scrapes_the_service_pods_with_the_service_as_job(documents):
    monitor = find(documents, "PodMonitor", "leadflow")
    assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
    [selected] = monitor["spec"]["selector"]["matchExpressions"]
    assert sorted(selected["values"]) == sorted(SERVICE_ORDER)
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    for name in SERVICE_ORDER:
        labels = find(documents, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert labels["app.kubernetes.io/name"] == name
        assert endpoint["port"] in {
            p["name"] for p in containers(find(documents, "Deployment", name))[0]["ports"]
        }
