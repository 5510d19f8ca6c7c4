"""HTTP API of notify: webhook endpoints and their subscriptions, deliveries and replays, the
CRM connectors it writes to."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from leadflow import paging
from leadflow.auth import KEY_RESPONSES, require_scope
from leadflow.errors import ProblemError, Unprocessable
from leadflow.paging import Page, PageRequest
from leadflow.service import RuntimeDep
from leadflow.settings import ApiKeySpec

from leadflow_notify import store, use_cases
from leadflow_notify.schemas import (
    KNOWN_EVENT_TYPES,
    AlertmanagerIn,
    AlertsOut,
    ConnectorsOut,
    DeliveryOut,
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    EventTypesOut,
    NoticeOut,
    ReplayOut,
    SecretIn,
)

router = APIRouter(prefix="/v1", tags=["notify"], responses=KEY_RESPONSES)
Admin = Annotated[ApiKeySpec, Depends(require_scope("admin"))]
Alerting = Annotated[ApiKeySpec, Depends(require_scope("alerts:write"))]
# Endpoints, their subscriptions and what was sent to them or to people.
ConfigRead = Depends(require_scope("config:read"))
EndpointPage = Annotated[PageRequest, Depends(paging.query(store.ENDPOINTS))]
DeliveryPage = Annotated[PageRequest, Depends(paging.query(store.DELIVERIES))]
NoticePage = Annotated[PageRequest, Depends(paging.query(store.NOTICES))]


@router.get("/event-types", response_model=EventTypesOut, dependencies=[ConfigRead])
async def event_types() -> EventTypesOut:
    """Every event type an endpoint can subscribe to (patterns such as `sla.*` match these)."""
    return EventTypesOut(event_types=list(KNOWN_EVENT_TYPES))


@router.post("/webhook-endpoints", status_code=201, response_model=EndpointOut)
async def create_endpoint(body: EndpointIn, rt: RuntimeDep, _: Admin) -> EndpointOut:
    """Subscribe a URL to event types (patterns allowed) and, optionally, filters; each event
    it subscribes to is delivered once, signed (Standard Webhooks)."""
    return await use_cases.create_endpoint(rt, body)


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret", response_model=EndpointOut)
async def rotate_secret(
    endpoint_id: uuid.UUID, rt: RuntimeDep, _: Admin, body: SecretIn | None = None
) -> EndpointOut:
    """Start a rotation: deliveries are signed with the new secret and the previous one (two
    signatures) until `DELETE …/previous-secret`, so the receiver can switch without downtime.
    Re-enables an endpoint disabled by a 410."""
    return await use_cases.rotate_secret(rt, endpoint_id, body.secret if body else None)


@router.delete("/webhook-endpoints/{endpoint_id}/previous-secret", status_code=204)
async def finish_rotation(endpoint_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> Response:
    """End a rotation: only the newest secret signs from now on."""
    await use_cases.finish_rotation(rt, endpoint_id)
    return Response(status_code=204)


@router.get("/webhook-endpoints", response_model=Page[EndpointOut], dependencies=[ConfigRead])
async def list_endpoints(rt: RuntimeDep, wanted: EndpointPage) -> Page[EndpointOut]:
    """The endpoints with their subscriptions; secrets are shown only when created.
    Cursor-paginated as every list."""
    return await use_cases.list_endpoints(rt, wanted)


@router.get(
    "/webhook-endpoints/{endpoint_id}", response_model=EndpointOut, dependencies=[ConfigRead]
)
async def get_endpoint(endpoint_id: uuid.UUID, rt: RuntimeDep) -> EndpointOut:
    return await use_cases.get_endpoint(rt, endpoint_id)


@router.patch("/webhook-endpoints/{endpoint_id}", response_model=EndpointOut)
async def change_endpoint(
    endpoint_id: uuid.UUID, body: EndpointPatch, rt: RuntimeDep, _: Admin
) -> EndpointOut:
    """Change the URL, the event types, the team, the filters or whether it is enabled, each
    checked as on creation (`team_id`, `filters` null: none). Audited."""
    return await use_cases.change_endpoint(rt, endpoint_id, body)


@router.delete("/webhook-endpoints/{endpoint_id}", status_code=204)
async def delete_endpoint(
    endpoint_id: uuid.UUID,
    rt: RuntimeDep,
    _: Admin,
    force: Annotated[
        bool, Query(description="cancel the deliveries still pending and delete anyway")
    ] = False,
) -> Response:
    """Delete an endpoint and its deliveries. While deliveries to it are still pending it is a
    409 saying how many (`uses.pending_deliveries`); `force=true` cancels them. Audited."""
    await use_cases.delete_endpoint(rt, endpoint_id, force=force)
    return Response(status_code=204)


@router.get("/deliveries", response_model=Page[DeliveryOut], dependencies=[ConfigRead])
async def list_deliveries(rt: RuntimeDep, wanted: DeliveryPage) -> Page[DeliveryOut]:
    """Deliveries to webhook endpoints and routed leads written to CRMs (`connector`),
    filtered by state, endpoint, connector, event type or lead. Cursor-paginated as every
    list."""
    return await use_cases.list_deliveries(rt, wanted)


@router.get("/connectors", response_model=ConnectorsOut, dependencies=[ConfigRead])
async def connectors(rt: RuntimeDep) -> ConnectorsOut:
    """The connectors in force (the last `PUT /v1/connectors`, else the connectors file): the
    whole document, and what notify writes to HubSpot and Salesforce when a lead is routed;
    which credentials are configured (true or false), never their values."""
    return await use_cases.connectors_view(rt)


# A connectors document is written as YAML; JSON, being YAML too, is taken as well.
CONNECTORS_MEDIA_TYPES = ("application/yaml", "text/yaml", "application/x-yaml", "application/json")


@router.put(
    "/connectors",
    response_model=ConnectorsOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the whole connectors document, as the connectors file holds it",
            "content": {m: {"schema": {"type": "string"}} for m in CONNECTORS_MEDIA_TYPES},
        }
    },
    responses={
        415: {"description": "the body is not YAML or JSON"},
        422: {"description": "the document is invalid: `errors` names each path and its `line`"},
    },
)
async def replace_connectors(request: Request, rt: RuntimeDep, _: Admin) -> ConnectorsOut:
    """Replace the connectors in force, validated exactly as the connectors file (a refused
    document changes nothing); notify and ingest apply it without a restart. Secrets stay in
    settings and files: the document only names them. Audited."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media not in CONNECTORS_MEDIA_TYPES:
        raise ProblemError(
            f"send the connectors as one of {', '.join(CONNECTORS_MEDIA_TYPES)}",
            status=415,
            title="Unsupported media type",
        )
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise Unprocessable("the connectors document must be UTF-8 text") from None
    return await use_cases.replace_connectors(rt, text)


@router.post("/deliveries/{delivery_id}/replay", status_code=202, response_model=ReplayOut)
async def replay_delivery(delivery_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> ReplayOut:
    """Send a delivery again (dead-lettered, or to repeat it); not for an erased lead."""
    return await use_cases.replay(rt, delivery_id)


@router.get("/notices", response_model=Page[NoticeOut], dependencies=[ConfigRead])
async def list_notices(rt: RuntimeDep, wanted: NoticePage) -> Page[NoticeOut]:
    """What people were told (or could not be told) of their leads' clocks. Cursor-paginated
    as every list."""
    return await use_cases.list_notices(rt, wanted)


@router.post("/notices/{notice_id}/replay", status_code=202, response_model=ReplayOut)
async def replay_notice(notice_id: uuid.UUID, rt: RuntimeDep, _: Admin) -> ReplayOut:
    """Send a dead-lettered notice again; not for an erased lead."""
    return await use_cases.replay_notice(rt, notice_id)


@router.post("/alerts/alertmanager", status_code=202, response_model=AlertsOut)
async def take_alerts(body: AlertmanagerIn, rt: RuntimeDep, _: Alerting) -> AlertsOut:
    """Alertmanager's webhook (payload version 4): each alert's firing and its resolution go
    to the on-call person (`LEADFLOW_ONCALL_*`) once, as digests like every message."""
    return await use_cases.take_alerts(rt, body)
