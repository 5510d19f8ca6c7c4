"""The SQL of the quarterly review: the policy versions published within a window."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback.models import policy_versions as _v


async def published_between(session: AsyncSession, start: datetime, end: datetime) -> list[Any]:
    query = (
        sa.select(_v.c.number, _v.c.version, _v.c.state, _v.c.published_at, _v.c.published_by)
        .where(_v.c.published_at >= start, _v.c.published_at < end)
        .order_by(_v.c.published_at)
    )
    return [dict(row._mapping) for row in (await session.execute(query)).all()]
