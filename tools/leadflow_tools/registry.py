"""The installed services, found through the `leadflow.services` entry point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from leadflow.service import ServiceSpec

SERVICE_ORDER = ("ingest", "scoring", "routing", "sla-timer", "feedback", "notify")


def service_spec(name: str) -> ServiceSpec:
    for ep in entry_points(group="leadflow.services"):
        if ep.name == name:
            return ep.load()
    known = ", ".join(sorted(ep.name for ep in entry_points(group="leadflow.services")))
    raise SystemExit(f"unknown service '{name}' (installed: {known or 'none'})")


def all_specs() -> list[ServiceSpec]:
    return [service_spec(name) for name in SERVICE_ORDER]


def migrate_all(database_url: str, names: list[str] | None = None) -> None:
    from leadflow.migrations import upgrade

    for spec in all_specs():
        if names and spec.name not in names:
            continue
        upgrade(spec.package, database_url)
