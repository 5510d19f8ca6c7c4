"""HTTP API of ingest: leads and activities from marketing automation platforms."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from leadflow import idempotency as idem
from leadflow.auth import require_scope
from leadflow.errors import LeadGone, NotFound, ProblemError, Unprocessable, validation_errors
from leadflow.service import RuntimeDep
from leadflow.settings import ApiKeySpec
from pydantic import ValidationError

from leadflow_ingest import hubspot
from leadflow_ingest.intake import (
    Writer,
    accept_activity,
    accept_lead,
    accept_leads,
    erase_lead,
)
from leadflow_ingest.models import idempotency, leads
from leadflow_ingest.schemas import (
    ActivityAccepted,
    ActivityIn,
    BatchItemResult,
    BatchResult,
    LeadAccepted,
    LeadErasure,
    LeadIn,
)

router = APIRouter(prefix="/v1", tags=["leads"])
SourceKey = Annotated[ApiKeySpec, Depends(require_scope("leads:write"))]
# Erasing a person is the data controller's decision, not a marketing platform's.
AdminKey = Annotated[ApiKeySpec, Depends(require_scope("admin"))]
IdempotencyKey = Annotated[str | None, Header(max_length=200)]
BATCH_LIMIT = 1000


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
        result = await accept_lead(
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
    return Response(result.model_dump_json(), status_code=202, media_type="application/json")


def _batch_items(raw: Any) -> list[Any]:  # noqa: ANN401 - decoded JSON
    items = raw.get("leads") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise Unprocessable(
            "the body is a JSON array of leads, or an object with a `leads` array",
            field="leads",
        )
    if not items:
        raise Unprocessable("the batch is empty", field="leads")
    if len(items) > BATCH_LIMIT:
        raise Unprocessable(
            f"a batch holds at most {BATCH_LIMIT} leads; this one has {len(items)}", field="leads"
        )
    return items


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
) -> JSONResponse:
    """Up to 1,000 leads in one request, each accepted or refused on its own: the answer holds
    one result per item, in order. Valid items are written even when others are not."""
    raw_body = await request.body()
    try:
        raw = orjson.loads(raw_body)
    except orjson.JSONDecodeError as exc:
        raise Unprocessable(f"the body is not valid JSON: {exc}", field="body") from None
    items = _batch_items(raw)
    writer = _writer(key)
    results: list[BatchItemResult] = []
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
        valid: dict[int, LeadIn] = {}
        refused: dict[int, BatchItemResult] = {}
        for index, item in enumerate(items):
            try:
                valid[index] = LeadIn.model_validate(item)
            except ValidationError as exc:
                refused[index] = BatchItemResult(
                    index=index, status=422, errors=validation_errors(exc.errors())
                )
        outcomes = dict(
            zip(
                valid,
                await accept_leads(
                    session,
                    rt.outbox,
                    rt.policy,
                    list(valid.values()),
                    writer=writer,
                    now=rt.clock.now(),
                ),
                strict=True,
            )
        )
        for index in range(len(items)):
            outcome = outcomes.get(index)
            if outcome is None:
                results.append(refused[index])
            elif isinstance(outcome, ProblemError):
                field = outcome.extra.get("field", "body")
                results.append(
                    BatchItemResult(
                        index=index,
                        status=outcome.status,
                        errors=[{"field": field, "message": outcome.detail}],
                    )
                )
            else:
                results.append(
                    BatchItemResult(
                        index=index,
                        status=202,
                        lead_id=outcome.lead_id,
                        event_id=outcome.event_id,
                        duplicate=outcome.duplicate,
                    )
                )
        accepted_count = sum(1 for r in results if r.status == 202)
        answer = BatchResult(
            accepted=accepted_count, rejected=len(results) - accepted_count, results=results
        ).model_dump(mode="json", exclude_none=True)
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
        return await accept_activity(
            session, rt.outbox, rt.policy, body, writer=_writer(key), now=rt.clock.now()
        )


@router.post("/sources/hubspot/webhook", tags=["sources"])
async def post_hubspot_webhook(request: Request, rt: RuntimeDep) -> JSONResponse:
    """HubSpot contact webhooks (creation and property changes), checked by their v3 signature
    with the app's client secret (`LEADFLOW_HUBSPOT_CLIENT_SECRET`)."""
    secret = rt.settings.hubspot_client_secret
    if not secret:
        raise NotFound("the HubSpot adapter is not configured (LEADFLOW_HUBSPOT_CLIENT_SECRET)")
    body = await request.body()
    uri = rt.settings.hubspot_webhook_url or str(request.url)
    hubspot.verify_v3(secret, request.method, uri, body, dict(request.headers))
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Unprocessable(f"the body is not valid JSON: {exc}", field="body") from None
    events = hubspot.parse_events(raw)
    async with rt.db.unit_of_work() as session:
        summary = await hubspot.ingest_events(
            session, rt.outbox, rt.policy, events, now=rt.clock.now()
        )
    return JSONResponse(summary, status_code=200)


@router.get(
    "/leads/{lead_id}",
    responses={
        301: {"description": "merged into another lead"},
        410: {"description": "erased: its personal data is gone"},
    },
)
async def get_lead(lead_id: uuid.UUID, rt: RuntimeDep) -> Any:  # noqa: ANN401
    """The lead as ingest knows it. A lead merged into another redirects to the survivor; an
    erased lead is 410 Gone."""
    async with rt.db.unit_of_work() as session:
        row = (
            await session.execute(
                sa.select(
                    leads.c.snapshot,
                    leads.c.created_at,
                    leads.c.updated_at,
                    leads.c.merged_into,
                    leads.c.erased_at,
                ).where(leads.c.id == lead_id)
            )
        ).first()
    if row is None:
        raise NotFound(f"lead {lead_id} not found")
    if row.erased_at is not None:
        raise LeadGone(lead_id)
    if row.merged_into is not None:
        return RedirectResponse(f"/v1/leads/{row.merged_into}", status_code=301)
    return {**row.snapshot, "created_at": row.created_at, "updated_at": row.updated_at}


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
        return await erase_lead(session, rt.outbox, lead_id, now=rt.clock.now())
