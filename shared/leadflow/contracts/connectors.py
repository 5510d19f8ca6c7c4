"""The CRM connectors of one installation, validated from the `connectors` file.

One YAML file under version control (`LEADFLOW_CONNECTORS_FILE`) says which CRMs Leadflow
works with and how their records map to Leadflow's: what goes out to them on `lead.routed`
(notify) and what comes back from them as contact attempts and status changes (ingest, then
feedback). Credentials are never in this file: only the names of the settings or files that
hold them.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConnectorsError(ValueError):
    """The connectors file is missing, not YAML or invalid; `problems` lists (path, reason)."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- HubSpot ---------------------------------------------------------------------------


class HubSpotOutbound(_Strict):
    """What notify does in HubSpot when a lead is routed."""

    enabled: bool = False


class HubSpotInbound(_Strict):
    """How HubSpot's property changes and logged engagements become feedback."""

    enabled: bool = False


class HubSpotConnector(_Strict):
    outbound: HubSpotOutbound = Field(default_factory=HubSpotOutbound)
    inbound: HubSpotInbound = Field(default_factory=HubSpotInbound)


# --- Salesforce ------------------------------------------------------------------------


class SalesforceOutbound(_Strict):
    """What notify does in Salesforce when a lead is routed."""

    enabled: bool = False


class SalesforceInbound(_Strict):
    """How Salesforce Outbound Messages become feedback."""

    enabled: bool = False


class SalesforceConnector(_Strict):
    outbound: SalesforceOutbound = Field(default_factory=SalesforceOutbound)
    inbound: SalesforceInbound = Field(default_factory=SalesforceInbound)


# --- Any other sales tool --------------------------------------------------------------


class GenericWebhook(_Strict):
    """An inbound webhook of another sales tool, mapped to attempts and status changes."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")


class Connectors(_Strict):
    hubspot: HubSpotConnector = Field(default_factory=HubSpotConnector)
    salesforce: SalesforceConnector = Field(default_factory=SalesforceConnector)
    webhooks: list[GenericWebhook] = Field(default_factory=list)


def _dotted(loc: tuple[object, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(root)"


def parse_connectors(data: object, source: str = "connectors") -> Connectors:
    """Validate a connectors document already read; raises ConnectorsError naming each path."""
    if data is None:
        return Connectors()
    if not isinstance(data, dict):
        raise ConnectorsError(f"{source} must be a mapping with a `connectors` section")
    section = data.get("connectors", data)
    try:
        return Connectors.model_validate(section or {})
    except ValidationError as exc:
        problems = [(_dotted(e["loc"]), e["msg"]) for e in exc.errors()]
        listing = "\n".join(f"  connectors.{path}: {reason}" for path, reason in problems)
        raise ConnectorsError(f"{source} is invalid:\n{listing}", problems) from None


def load_connectors(path: str | Path | None) -> Connectors:
    """The connectors in `path` (none configured when `path` is None); raises ConnectorsError."""
    if path is None:
        return Connectors()
    source = f"connectors file {str(path)!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConnectorsError(f"{source} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConnectorsError(f"{source} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConnectorsError(f"{source} is not valid YAML: {exc}") from None
    return parse_connectors(data, source)
