"""HTTP API of ingest: leads and activities from marketing automation platforms; what sales tools
report back (HubSpot's webhook, Salesforce's Outbound Messages, generic signed webhooks)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from leadflow import idempotency as idem
from leadflow import paging
from leadflow.auth import KEY_RESPONSES, require_scope
from leadflow.errors import NotFound
from leadflow.paging import Page, PageRequest
from leadflow.service import RuntimeDep
from leadflow.settings import ApiKeySpec

from leadflow_ingest import store, use_cases
from leadflow_ingest.domain import hubspot, salesforce
from leadflow_ingest.domain.ownership import Writer
from leadflow_ingest.models import idempotency
from leadflow_ingest.schemas import (
    BATCH_LIMIT,
    ActivityAccepted,
    ActivityIn,
    BatchResult,
    HubSpotWebhookResult,
    LeadAccepted,
    LeadErasure,
    LeadIn,
    LeadView,
    SalesReportsAccepted,
    parse_batch,
    parse_hubspot_events,
)

router = APIRouter(prefix="/v1", tags=["leads"], responses=KEY_RESPONSES)
SourceKey = Annotated[ApiKeySpec, Depends(require_scope("leads:write"))]
# Erasing a person is the data controller's decision, not a marketing platform's.
AdminKey = Annotated[ApiKeySpec, Depends(require_scope("admin"))]
# A lead as ingest knows it is the person's personal data.
LeadsRead = Depends(require_scope("leads:read"))
IdempotencyKey = Annotated[str | None, Header(max_length=200)]


def _writer(key: ApiKeySpec) -> Writer:
    return Writer(key_name=key.name, source=key.source)


@router.post("/leads", status_code=202, response_model=LeadAccepted)
async def post_lead(
    body: LeadIn,
    request: Request,
    rt: RuntimeDep,
    key: SourceKey,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Create or update a lead. Same email (any case) or external id is the same lead; a lead
    carrying the email of one known lead and the external id of another merges the two."""
    async with rt.db.unit_of_work() as session:
        if idempotency_key:
            replay = await idem.claim(
                session,
                idempotency,
                api_key=key.name,
                key=idempotency_key,
                path=request.url.path,
                body=await request.body(),
            )
            if replay is not None:
                return replay
        result = await use_cases.accept_lead(
            session, rt.outbox, rt.policy, body, writer=_writer(key), now=rt.clock.now()
        )
        if idempotency_key:
            await idem.record(
                session,
                idempotency,
                api_key=key.name,
                key=idempotency_key,
                status=202,
                response=result.model_dump(mode="json"),
            )
    # serialised by pydantic in one step: the hot path of every platform's intake
    return Response(result.model_dump_json(), status_code=202, media_type="application/json")


@router.post(
    "/leads:batch",
    response_model=BatchResult,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "maxItems": BATCH_LIMIT,
                        "items": {"$ref": "#/components/schemas/LeadIn"},
                    }
                }
            },
        }
    },
)
async def post_leads_batch(
    request: Request, rt: RuntimeDep, key: SourceKey, idempotency_key: IdempotencyKey = None
) -> Response:
    """Up to 1,000 leads in one request, each accepted or refused on its own: the answer holds
    one result per item, in order. Valid items are written even when others are not."""
    raw_body = await request.body()
    items = parse_batch(raw_body)
    async with rt.db.unit_of_work() as session:
        if idempotency_key:
            replay = await idem.claim(
                session,
                idempotency,
                api_key=key.name,
                key=idempotency_key,
                path=request.url.path,
                body=raw_body,
            )
            if replay is not None:
                return replay
        result = await use_cases.accept_batch(
            session, rt.outbox, rt.policy, items, writer=_writer(key), now=rt.clock.now()
        )
        answer = result.model_dump(mode="json", exclude_none=True)
        if idempotency_key:
            await idem.record(
                session,
                idempotency,
                api_key=key.name,
                key=idempotency_key,
                status=200,
                response=answer,
            )
    return JSONResponse(answer, status_code=200)


@router.post("/activities", status_code=202, response_model=ActivityAccepted)
async def post_activity(body: ActivityIn, rt: RuntimeDep, key: SourceKey) -> ActivityAccepted:
    """An activity of a known lead (by `lead_id` or `email`): page view, download, webinar…"""
    async with rt.db.unit_of_work() as session:
        return await use_cases.accept_activity(
            session, rt.outbox, rt.policy, body, writer=_writer(key), now=rt.clock.now()
        )


# Marketing platforms' webhooks carry their own signatures, not an API key.
sources = APIRouter(prefix="/v1", tags=["sources"])


@sources.post(
    "/sources/hubspot/webhook",
    response_model=HubSpotWebhookResult,
    response_model_exclude_none=True,
    responses={
        401: {"description": "no valid `X-HubSpot-Signature-v3`, or one older than 5 minutes"},
        404: {"description": "the HubSpot adapter is not configured"},
        503: {
            "description": "HubSpot's API could not be read for the batch's contacts: nothing "
            "was recorded; HubSpot sends the batch again (`Retry-After`)"
        },
    },
)
async def post_hubspot_webhook(request: Request, rt: RuntimeDep) -> HubSpotWebhookResult:
    """HubSpot contact webhooks (creation and property changes), checked by their v3 signature
    with the app's client secret (`LEADFLOW_HUBSPOT_CLIENT_SECRET`)."""
    secret = rt.settings.hubspot_client_secret
    if not secret:
        raise NotFound("the HubSpot adapter is not configured (LEADFLOW_HUBSPOT_CLIENT_SECRET)")
    body = await request.body()
    uri = rt.settings.hubspot_webhook_url or str(request.url)
    # HubSpot signs with the wall-clock time of its request, not Leadflow's clock
    hubspot.verify_v3(secret, request.method, uri, body, dict(request.headers), now=time.time())
    events = parse_hubspot_events(body)
    return await use_cases.accept_hubspot_webhook(rt, events)


@sources.post(
    "/sources/salesforce/outbound-messages",
    response_class=Response,
    responses={
        200: {
            "description": "the SOAP `notificationsResponse` with `Ack` true: every notification "
            "was recorded (Salesforce stops delivering the message)",
            "content": {"text/xml": {"schema": {"type": "string"}}},
        },
        403: {"description": "the message comes from another Salesforce organisation"},
        404: {"description": "the Salesforce connector is not configured"},
        422: {"description": "not an Outbound Message: the problem names what is wrong"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/xml": {"schema": {"type": "string"}}},
        }
    },
)
async def post_salesforce_outbound_message(request: Request, rt: RuntimeDep) -> Response:
    """Salesforce Outbound Messages (SOAP `notifications` sent by a Flow on a Lead's status
    change or a Task created): checked against the configured organisation id, each Lead
    status or Task mapped by the connectors file and passed on to feedback once, then
    acknowledged. A message delivered again changes nothing and is acknowledged again."""
    await use_cases.accept_outbound_message(rt, await request.body())
    return Response(salesforce.ACK, media_type="text/xml; charset=utf-8")


@sources.post(
    "/sources/webhooks/{name}",
    status_code=202,
    response_model=SalesReportsAccepted,
    responses={
        401: {"description": "no valid HMAC signature in the webhook's signature header"},
        404: {"description": "no webhook of this name is configured"},
        422: {"description": "the body lacks a field the webhook's mapping reads (named)"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def post_sales_webhook(
    name: Annotated[str, Path(max_length=63, pattern=r"^[a-z0-9][a-z0-9_-]*$")],
    request: Request,
    rt: RuntimeDep,
) -> SalesReportsAccepted:
    """Another sales tool's webhook (Pipedrive, Close, an in-house tool): checked by the HMAC
    signature the connectors file configures for `name`, mapped to a contact attempt or a
    status change by its field paths and value tables, and passed on to feedback once per
    record."""
    body = await request.body()
    return await use_cases.accept_webhook_report(rt, name, body, dict(request.headers))


@router.get("/leads", response_model=Page[LeadView], dependencies=[LeadsRead])
async def search_leads(
    q: Annotated[
        str, Query(min_length=2, max_length=320, description="e-mail, name, company or id")
    ],
    rt: RuntimeDep,
    wanted: Annotated[PageRequest, Depends(paging.query(store.LEADS))],
) -> Page[LeadView]:
    """Leads whose e-mail, name or company name holds `q` (any case), or whose id or external
    id is `q`; merged and erased leads are not found. Personal data: `leads:read`."""
    return await use_cases.search_leads(rt, wanted, q)


@router.get(
    "/leads/{lead_id}",
    response_model=LeadView,
    responses={
        301: {"description": "merged into another lead"},
        410: {"description": "erased: its personal data is gone"},
    },
    dependencies=[LeadsRead],
)
async def get_lead(lead_id: uuid.UUID, rt: RuntimeDep) -> LeadView | Response:
    """The lead as ingest knows it. A lead merged into another redirects to the survivor; an
    erased lead is 410 Gone."""
    async with rt.db.unit_of_work() as session:
        found = await use_cases.show_lead(session, lead_id)
    if isinstance(found, uuid.UUID):
        return RedirectResponse(f"/v1/leads/{found}", status_code=301)
    return found


@router.delete(
    "/leads/{lead_id}",
    status_code=202,
    response_model=LeadErasure,
    responses={404: {"description": "no such lead"}},
)
async def delete_lead(lead_id: uuid.UUID, rt: RuntimeDep, key: AdminKey) -> LeadErasure:
    """Erase the person's personal data (right to erasure). The lead it was merged into and
    every lead merged into that one are erased together; each emits `lead.erased`, on which
    every service removes what it holds (hence 202). Ids, times, channel and scores stay for
    the reports. Erasing again answers the same. A later lead with the same email or external
    id is new input and becomes a new lead; the erased one is never linked to it again."""
    async with rt.db.unit_of_work() as session:
        return await use_cases.erase_lead(session, rt.outbox, lead_id, now=rt.clock.now())
