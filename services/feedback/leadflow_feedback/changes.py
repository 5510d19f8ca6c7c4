"""Writing a status change: the read model, its history row and `lead.status_changed`, in one
unit of work. Used by the sales-tool API and by the SLA consequences (cadence → unreachable)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from leadflow.contracts.events import CloudEvent, LeadStatusChanged
from leadflow.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback import timeline
from leadflow_feedback.models import leads, status_history


def nurture_end(rt: Runtime, status: str, reason: str | None, at: datetime) -> datetime | None:
    if status != "recycled" or not reason or reason not in rt.policy.reasons:
        return None
    return at + timedelta(days=rt.policy.reasons[reason].nurture_days)


async def record_change(
    rt: Runtime,
    session: AsyncSession,
    lead_id: uuid.UUID,
    *,
    from_status: str | None,
    status: str,
    reason: str | None,
    changed_at: datetime,
    rep_id: uuid.UUID | None = None,
    qualification: dict[str, Any] | None = None,
    opportunity: dict[str, Any] | None = None,
) -> tuple[CloudEvent, datetime | None]:
    """Apply an already-checked change; returns the event and the end of nurture (recycle)."""
    nurture_until = nurture_end(rt, status, reason, changed_at)
    details = {
        k: v
        for k, v in {
            "qualification": qualification or None,
            "opportunity": opportunity or None,
            "rep_id": str(rep_id) if rep_id else None,
            "nurture_until": nurture_until.isoformat() if nurture_until else None,
        }.items()
        if v is not None
    }
    await session.execute(
        sa.update(leads)
        .where(leads.c.lead_id == lead_id)
        .values(status=status, reason=reason, updated_at=changed_at)
    )
    await session.execute(
        sa.insert(status_history).values(
            lead_id=lead_id,
            from_status=from_status,
            status=status,
            reason=reason,
            details=details or None,
            changed_at=changed_at,
        )
    )
    event = await rt.outbox.emit(
        session,
        LeadStatusChanged(
            lead_id=lead_id,
            from_status=from_status,
            status=status,
            reason=reason,
            changed_at=changed_at,
            rep_id=rep_id,
            nurture_until=nurture_until,
            qualification=qualification or None,
            opportunity=opportunity or None,
        ),
        policy_version=rt.policy.version,
    )
    await timeline.record(session, event)
    return event, nurture_until
