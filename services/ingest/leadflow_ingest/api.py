"""HTTP API of ingest: leads and activities from marketing automation platforms."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse
from leadflow.auth import require_scope
from leadflow.errors import NotFound
from leadflow.service import RuntimeDep
from leadflow.settings import ApiKeySpec
from sqlalchemy.dialects.postgresql import insert

from leadflow_ingest.intake import accept_activity, accept_lead
from leadflow_ingest.models import idempotency, leads
from leadflow_ingest.schemas import ActivityAccepted, ActivityIn, LeadAccepted, LeadIn

router = APIRouter(prefix="/v1", tags=["leads"])
SourceKey = Annotated[ApiKeySpec, Depends(require_scope("leads:write"))]


@router.post("/leads", status_code=202, response_model=LeadAccepted)
async def post_lead(
    body: LeadIn,
    rt: RuntimeDep,
    key: SourceKey,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> JSONResponse:
    """Create or update a lead. Same email (any case) or external id is the same lead."""
    async with rt.db.unit_of_work() as session:
        if idempotency_key:
            first = (
                await session.execute(
                    sa.select(idempotency.c.status, idempotency.c.response).where(
                        idempotency.c.api_key == key.name, idempotency.c.key == idempotency_key
                    )
                )
            ).first()
            if first is not None:
                return JSONResponse(
                    first.response,
                    status_code=first.status,
                    headers={"Idempotent-Replayed": "true"},
                )
        result = await accept_lead(
            session, rt.outbox, body, source_key=key.name, now=rt.clock.now()
        )
        content = result.model_dump(mode="json")
        if idempotency_key:
            await session.execute(
                insert(idempotency)
                .values(api_key=key.name, key=idempotency_key, status=202, response=content)
                .on_conflict_do_nothing()
            )
    return JSONResponse(content, status_code=202)


@router.post("/activities", status_code=202, response_model=ActivityAccepted)
async def post_activity(body: ActivityIn, rt: RuntimeDep, key: SourceKey) -> ActivityAccepted:
    async with rt.db.unit_of_work() as session:
        return await accept_activity(session, rt.outbox, body, now=rt.clock.now())


@router.get("/leads/{lead_id}")
async def get_lead(lead_id: uuid.UUID, rt: RuntimeDep) -> dict:
    async with rt.db.unit_of_work() as session:
        row = (
            await session.execute(
                sa.select(leads.c.snapshot, leads.c.created_at, leads.c.updated_at).where(
                    leads.c.id == lead_id
                )
            )
        ).first()
    if row is None:
        raise NotFound(f"lead {lead_id} not found")
    return {**row.snapshot, "created_at": row.created_at, "updated_at": row.updated_at}
