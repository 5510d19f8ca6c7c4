"""What routing keeps of an erased lead: assignments and deliveries without personal data, no
pending delivery, and the lead's id, so that an MQL arriving after the erasure is not routed.

`lead.mql` (scoring's topic) and `lead.erased` (ingest's) are not ordered with each other, hence
the record of erased ids. Deliveries already sent keep their row (attempts, status, times) with
the lead's personal data removed from the stored body; pending ones are cancelled rather than
sent without the data the sales tool needs (state `cancelled`, last_error `lead erased`)."""

from __future__ import annotations

import uuid
from datetime import datetime

import orjson
import sqlalchemy as sa
from leadflow.contracts.erasure import forget_events, without_personal_data
from leadflow.db import kernel_tables, lock_leads
from sqlalchemy.dialects.postgresql import UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_routing.models import assignments, deliveries, metadata

erased_leads = sa.Table(
    "erased_leads",
    metadata,
    sa.Column("lead_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
)

CANCELLED = "cancelled"


async def is_erased(session: AsyncSession, lead_id: uuid.UUID) -> bool:
    found = await session.scalar(
        sa.select(erased_leads.c.lead_id).where(erased_leads.c.lead_id == lead_id)
    )
    return found is not None


def body_without_personal_data(raw: bytes) -> bytes:
    """A stored webhook body with the lead in it redacted; other bodies stay as they are."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return b"{}"
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict) and isinstance(data.get("lead"), dict):
        data["lead"] = without_personal_data(data["lead"])
    return orjson.dumps(body)


async def erase(session: AsyncSession, lead_id: uuid.UUID, now: datetime) -> None:
    """Remove the lead's personal data from routing's tables; a replay finds nothing left.
    Serialised with the routing of the same lead (`lock_leads`), so a batch routing it at the
    same moment is either seen here or sees the lead erased."""
    await lock_leads(session, "routing", [lead_id])
    await session.execute(
        insert(erased_leads).values(lead_id=lead_id, erased_at=now).on_conflict_do_nothing()
    )
    rows = (
        await session.execute(
            sa.select(assignments.c.id, assignments.c.mql)
            .where(assignments.c.lead_id == lead_id)
            .with_for_update()
        )
    ).all()
    for row in rows:
        if not row.mql.get("erased"):
            await session.execute(
                sa.update(assignments)
                .where(assignments.c.id == row.id)
                .values(mql=without_personal_data(row.mql))
            )
    d = deliveries.c
    await session.execute(
        sa.update(deliveries)
        .where(d.lead_id == lead_id, d.state == "pending")
        .values(state=CANCELLED, next_attempt_at=None, last_error="lead erased")
    )
    for row in (
        await session.execute(sa.select(d.id, d.body).where(d.lead_id == lead_id).with_for_update())
    ).all():
        redacted = body_without_personal_data(row.body)
        if redacted != row.body:
            await session.execute(sa.update(deliveries).where(d.id == row.id).values(body=redacted))
    await forget_events(session, kernel_tables(metadata)[0], [lead_id])
