"""HTTP API of feedback: contact attempts and status changes from sales tools."""

from __future__ import annotations

import uuid
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Header
from leadflow import metrics
from leadflow.auth import require_scope
from leadflow.errors import NotFound
from leadflow.events import LeadContactAttempt
from leadflow.service import RuntimeDep
from leadflow.settings import ApiKeySpec

from leadflow_feedback.lifecycle import after_contact_attempt
from leadflow_feedback.models import attempts, leads, status_history
from leadflow_feedback.schemas import AttemptAccepted, AttemptIn

router = APIRouter(prefix="/v1", tags=["feedback"])
SalesTool = Annotated[ApiKeySpec, Depends(require_scope("sales:write"))]


@router.post("/leads/{lead_id}/attempts", status_code=202, response_model=AttemptAccepted)
async def post_attempt(
    lead_id: uuid.UUID,
    body: AttemptIn,
    rt: RuntimeDep,
    key: SalesTool,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> AttemptAccepted:
    """Record a contact attempt; the first one on a routed lead moves it to `working`."""
    scoped_key = f"{key.name}:{idempotency_key}" if idempotency_key else None
    async with rt.db.unit_of_work() as session:
        lead = (
            await session.execute(
                sa.select(leads.c.status, leads.c.channel)
                .where(leads.c.lead_id == lead_id)
                .with_for_update()
            )
        ).first()
        if lead is None:
            raise NotFound(f"lead {lead_id} is not known to feedback (not yet an MQL?)")
        if scoped_key:
            earlier = await session.scalar(
                sa.select(attempts.c.id).where(attempts.c.idempotency_key == scoped_key)
            )
            if earlier is not None:
                return AttemptAccepted(
                    attempt_id=earlier,
                    lead_id=lead_id,
                    event_id=None,
                    status=lead.status,
                    duplicate=True,
                )
        attempt_id = uuid.uuid4()
        occurred_at = body.occurred_at or rt.clock.now()
        await session.execute(
            sa.insert(attempts).values(
                id=attempt_id,
                lead_id=lead_id,
                channel=body.channel,
                occurred_at=occurred_at,
                rep_id=body.rep_id,
                outcome=body.outcome,
                idempotency_key=scoped_key,
            )
        )
        status = after_contact_attempt(lead.status)
        if status != lead.status:
            await session.execute(
                sa.update(leads)
                .where(leads.c.lead_id == lead_id)
                .values(status=status, updated_at=occurred_at)
            )
            await session.execute(
                sa.insert(status_history).values(
                    lead_id=lead_id, from_status=lead.status, status=status, changed_at=occurred_at
                )
            )
        event = await rt.outbox.emit(
            session,
            LeadContactAttempt(
                lead_id=lead_id,
                attempt_id=attempt_id,
                channel=body.channel,
                occurred_at=occurred_at,
                rep_id=body.rep_id,
                outcome=body.outcome,
            ),
        )
    metrics.contact_attempts.labels(body.channel).inc()
    return AttemptAccepted(attempt_id=attempt_id, lead_id=lead_id, event_id=event.id, status=status)


@router.get("/leads/{lead_id}/lifecycle")
async def get_lifecycle(lead_id: uuid.UUID, rt: RuntimeDep) -> dict:
    async with rt.db.unit_of_work() as session:
        lead = (await session.execute(sa.select(leads).where(leads.c.lead_id == lead_id))).first()
        if lead is None:
            raise NotFound(f"lead {lead_id} is not known to feedback")
        history = (
            await session.execute(
                sa.select(
                    status_history.c.from_status,
                    status_history.c.status,
                    status_history.c.reason,
                    status_history.c.changed_at,
                )
                .where(status_history.c.lead_id == lead_id)
                .order_by(status_history.c.id)
            )
        ).all()
        n_attempts = await session.scalar(
            sa.select(sa.func.count()).select_from(attempts).where(attempts.c.lead_id == lead_id)
        )
    return {
        "lead_id": lead_id,
        "status": lead.status,
        "channel": lead.channel,
        "team": lead.team,
        "attempts": n_attempts,
        "history": [h._asdict() for h in history],
    }
