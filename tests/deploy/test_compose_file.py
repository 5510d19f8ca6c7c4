"""docker-compose.yml is a valid Compose file, checked without Docker.

Variables are interpolated the way `docker compose config` does (with their `:-` defaults),
then every service is checked against the Compose specification's shapes: known keys,
depends_on conditions and targets, health checks, restart policies, ports and volumes.
"""

from __future__ import annotations

import re

import pytest
import yaml
from deploy_support import COMPOSE_FILE, ROOT

TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets", "include"}
SERVICE_KEYS = {
    "build", "command", "container_name", "depends_on", "deploy", "entrypoint", "env_file",
    "environment", "expose", "extra_hosts", "healthcheck", "hostname", "image", "init",
    "labels", "logging", "networks", "ports", "profiles", "pull_policy", "read_only",
    "restart", "security_opt", "stop_grace_period", "stop_signal", "tmpfs", "user",
    "volumes", "working_dir", "ulimits", "cap_drop", "cap_add",
}  # fmt: skip
HEALTHCHECK_KEYS = {"test", "interval", "timeout", "retries", "start_period", "start_interval"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
DURATION = re.compile(r"(\d+(\.\d+)?(us|ms|s|m|h))+")
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str) -> str:
    """${VAR:-default} -> default, ${VAR} -> "" (unset), $$ -> $, as Compose does."""
    resolved = VARIABLE.sub(lambda m: m.group(2) or "", text)
    assert not re.search(r"(?<!\$)\$\{", resolved), "an interpolation Compose cannot resolve"
    return resolved.replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(interpolate(COMPOSE_FILE.read_text(encoding="utf-8")))


def test_top_level_keys_are_compose_keys_or_extensions(compose):
    for key in compose:
        assert key in TOP_LEVEL or key.startswith("x-"), key


def test_every_service_uses_known_keys_and_has_an_image(compose):
    for name, service in compose["services"].items():
        unknown = set(service) - SERVICE_KEYS
        assert not unknown, f"{name}: {sorted(unknown)} are not Compose service keys"
        assert "image" in service or "build" in service, name
        for key in ("command", "entrypoint"):
            value = service.get(key)
            assert value is None or isinstance(value, str | list), f"{name}.{key}"
        environment = service.get("environment", {})
        assert isinstance(environment, dict), name
        for key, value in environment.items():
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"{name}: {key}"
            assert value is None or isinstance(value, str | int | float | bool), f"{name}: {key}"


def test_depends_on_names_services_with_valid_conditions_and_no_cycle(compose):
    services = compose["services"]
    graph = {}
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: use the long form with conditions"
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            assert rule["condition"] in CONDITIONS, f"{name} -> {target}: {rule['condition']}"
            if rule["condition"] == "service_healthy":
                assert services[target].get("healthcheck"), f"{target} has no healthcheck"
        graph[name] = set(depends)

    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"depends_on cycle: {' -> '.join((*path, name))}"
        if name not in done:
            for target in graph[name]:
                visit(target, (*path, name))
            done.add(name)

    for name in graph:
        visit(name, ())


def test_health_checks_and_restart_policies_are_well_formed(compose):
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        if check:
            assert set(check) <= HEALTHCHECK_KEYS, f"{name}: {set(check) - HEALTHCHECK_KEYS}"
            assert check["test"][0] in ("CMD", "CMD-SHELL", "NONE"), name
            for key in ("interval", "timeout", "start_period"):
                if key in check:
                    assert DURATION.fullmatch(str(check[key])), f"{name}.{key}"
            assert isinstance(check.get("retries", 1), int)
        restart = str(service.get("restart", "no"))
        assert re.fullmatch(r"no|always|unless-stopped|on-failure(:\d+)?", restart), name


def test_ports_and_volumes_resolve(compose):
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert re.fullmatch(
                r"((\d{1,3}\.){3}\d{1,3}:)?\d{1,5}:\d{1,5}(/(tcp|udp))?", str(port)
            ), f"{name}: port {port}"
        for volume in service.get("volumes", []):
            source, target, *mode = volume.split(":")
            assert target.startswith("/"), f"{name}: {volume}"
            assert mode in ([], ["ro"], ["rw"]), f"{name}: {volume}"
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source} is not declared"
    used = {v.split(":")[0] for s in compose["services"].values() for v in s.get("volumes", [])}
    assert named <= used, f"declared but unused volumes: {named - used}"


def test_interpolation_reads_the_defaults():
    assert interpolate("${A:-x}/${B}/$${C}") == "x//${C}"
