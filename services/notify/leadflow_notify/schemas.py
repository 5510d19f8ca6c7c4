"""Request and response bodies of the notify API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from leadflow.contracts.connectors import HubSpotOutbound, SalesforceOutbound
from leadflow.contracts.events import PAYLOAD_TYPES, Channel
from leadflow.contracts.slas import KINDS
from leadflow.text import StorableModel
from leadflow.webhooks import check_secret
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from leadflow_notify.domain.subscriptions import unknown_patterns

KNOWN_EVENT_TYPES = tuple(sorted(PAYLOAD_TYPES))


class EndpointFilters(BaseModel):
    """Conditions an event must meet besides its type; each names the values it accepts."""

    model_config = ConfigDict(extra="forbid")
    teams: list[str] | None = Field(default=None, min_length=1, description="team names")
    channels: list[Channel] | None = Field(default=None, min_length=1)
    slas: list[str] | None = Field(default=None, min_length=1, description="SLA kinds")
    levels: list[str] | None = Field(
        default=None,
        min_length=1,
        description="ladder levels: warning, breached, escalated_manager, …",
    )

    @field_validator("slas")
    @classmethod
    def _known_slas(cls, slas: list[str] | None) -> list[str] | None:
        unknown = sorted(set(slas or ()) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown SLA kinds {unknown}; known: {sorted(KINDS)}")
        return slas

    def stored(self) -> dict[str, list[str]] | None:
        kept = {k: list(v) for k, v in self.model_dump(exclude_none=True).items()}
        return kept or None


def known_event_types(event_types: list[str]) -> list[str]:
    """The event types (or patterns) each matching a known type, once each; else ValueError."""
    unknown = unknown_patterns(event_types, KNOWN_EVENT_TYPES)
    if unknown:
        raise ValueError(f"unknown event types {unknown}; known: {', '.join(KNOWN_EVENT_TYPES)}")
    return list(dict.fromkeys(event_types))


class EndpointIn(StorableModel):
    model_config = ConfigDict(extra="forbid")
    url: HttpUrl
    event_types: list[str] = Field(
        default_factory=lambda: ["lead.routed"],
        min_length=1,
        description=(
            "event types, or patterns with `*` (`sla.*`, `*`), each matching at least one of: "
            + ", ".join(KNOWN_EVENT_TYPES)
        ),
    )
    team_id: uuid.UUID | None = Field(default=None, description="only this team's leads")
    filters: EndpointFilters | None = None
    secret: str | None = Field(default=None, pattern=r"^whsec_[A-Za-z0-9+/=]{24,}$")

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, event_types: list[str]) -> list[str]:
        return known_event_types(event_types)

    @field_validator("secret")
    @classmethod
    def _signs(cls, secret: str | None) -> str | None:
        return None if secret is None else check_secret(secret)


class EndpointPatch(StorableModel):
    """What `PATCH /v1/webhook-endpoints/{id}` changes: only the fields given, each checked as
    on creation; `team_id` or `filters` null remove the condition. Secrets change by rotation."""

    model_config = ConfigDict(extra="forbid")
    url: HttpUrl | None = None
    event_types: list[str] | None = Field(default=None, min_length=1)
    team_id: uuid.UUID | None = Field(default=None, description="only this team's leads")
    filters: EndpointFilters | None = None
    enabled: bool | None = Field(
        default=None, description="false: nothing more is queued for it; true: again"
    )

    @field_validator("event_types")
    @classmethod
    def _known_types(cls, event_types: list[str] | None) -> list[str] | None:
        return None if event_types is None else known_event_types(event_types)


class SecretIn(StorableModel):
    model_config = ConfigDict(extra="forbid")
    secret: str | None = Field(default=None, pattern=r"^whsec_[A-Za-z0-9+/=]{24,}$")

    @field_validator("secret")
    @classmethod
    def _signs(cls, secret: str | None) -> str | None:
        return None if secret is None else check_secret(secret)


class EndpointOut(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    team_id: uuid.UUID | None
    filters: dict[str, Any] | None = None
    enabled: bool
    secret: str | None = Field(default=None, description="shown only when created")


class EventTypesOut(BaseModel):
    event_types: list[str]


class DeliveryOut(BaseModel):
    """A delivery to a webhook endpoint, or of a routed lead to a CRM (`connector`)."""

    id: uuid.UUID
    endpoint_id: uuid.UUID | None
    connector: Literal["hubspot", "salesforce"] | None = None
    lead_id: uuid.UUID
    event_type: str
    state: str
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    delivered_at: datetime | None


class NoticeOut(BaseModel):
    """One level of a clock for one person on one channel, and what became of it."""

    id: uuid.UUID
    lead_id: uuid.UUID
    recipient: str
    channel: str
    level: str
    event_type: str
    state: str = Field(description="pending, sent, dead, cancelled or undeliverable")
    attempts: int
    message_id: uuid.UUID | None
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    sent_at: datetime | None


class ReplayOut(BaseModel):
    delivery_id: uuid.UUID
    state: str


class AlertIn(StorableModel):
    """One alert of Alertmanager's webhook (payload version 4)."""

    model_config = ConfigDict(extra="allow")
    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # Alertmanager's field names
    endsAt: datetime | None = None
    generatorURL: str | None = None
    fingerprint: str = Field(min_length=1, max_length=64)


class AlertmanagerIn(StorableModel):
    """Alertmanager's webhook body (version 4); the fields notify does not use are accepted
    (and, like every body, refused with a 422 if they hold what cannot be stored)."""

    model_config = ConfigDict(extra="allow")
    version: Literal["4"]
    status: Literal["firing", "resolved"]
    externalURL: str | None = None
    alerts: list[AlertIn] = Field(max_length=1000)


class AlertsOut(BaseModel):
    accepted: int = Field(description="alerts turned into messages for the on-call person")
    notices: int = Field(description="messages queued (one per alert, state and channel)")


class HubSpotCredentials(BaseModel):
    private_app_token: bool = Field(description="whether a token (or its file) is configured")


class SalesforceCredentials(BaseModel):
    client_id: bool
    client_secret: bool = Field(description="whether a secret (or its file) is configured")


class HubSpotOut(BaseModel):
    outbound: HubSpotOutbound
    api_url: str
    credentials: HubSpotCredentials


class SalesforceOut(BaseModel):
    outbound: SalesforceOutbound
    credentials: SalesforceCredentials


class ConnectorsOut(BaseModel):
    """What notify writes to each CRM on `lead.routed`, as configured (the connectors file,
    `LEADFLOW_CONNECTORS_FILE`); of the credentials only whether each is there, never a value."""

    file: str | None
    # The change through `PUT /v1/connectors` in force (None: the file's connectors).
    publication: int | None = None
    document: dict[str, Any]  # the whole connectors document in force (names of secrets only)
    hubspot: HubSpotOut
    salesforce: SalesforceOut
