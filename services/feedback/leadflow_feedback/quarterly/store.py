"""The SQL of the quarterly review: the policy versions published within a window, and the
opportunities whose pipeline each quarter's end is measured from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback.domain.reports import LeadFacts, StatusStep
from leadflow_feedback.models import leads as _l
from leadflow_feedback.models import policy_versions as _v
from leadflow_feedback.models import status_history as _s


async def published_between(session: AsyncSession, start: datetime, end: datetime) -> list[Any]:
    query = (
        sa.select(_v.c.number, _v.c.version, _v.c.state, _v.c.published_at, _v.c.published_by)
        .where(_v.c.published_at >= start, _v.c.published_at < end)
        .order_by(_v.c.published_at)
    )
    return [dict(row._mapping) for row in (await session.execute(query)).all()]


async def opportunities_before(
    session: AsyncSession, end: datetime, team: str | None = None
) -> list[LeadFacts]:
    """Every lead that became an SQO before `end` (of `team`, when given), with its whole status
    history in the order it was written: what the pipeline at any instant before `end` is
    counted from."""
    sqo = sa.select(_s.c.lead_id).where(_s.c.status == "sqo", _s.c.changed_at < end)
    query = (
        sa.select(_l.c.lead_id, _l.c.status, _s.c.status.label("step"), _s.c.reason,
                  _s.c.changed_at, _s.c.details)
        .join(_s, _s.c.lead_id == _l.c.lead_id)
        .where(_l.c.lead_id.in_(sqo))
        .order_by(_l.c.lead_id, _s.c.id)
    )  # fmt: skip
    if team is not None:
        query = query.where(_l.c.team == team)
    leads: dict[Any, LeadFacts] = {}
    for row in await session.execute(query):
        lead = leads.setdefault(row.lead_id, LeadFacts(lead_id=row.lead_id, status=row.status))
        lead.history.append(StatusStep(row.step, row.reason, row.changed_at, row.details))
    return list(leads.values())
