"""The SQL of corrective plans and their actions."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from leadflow.paging import Listing, PageRequest
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback.models import corrective_plans as _p
from leadflow_feedback.models import plan_actions as _a
from leadflow_feedback.plans.rules import OPEN_STATUSES, PlanStatus

PLANS = Listing(
    name="corrective-plans",
    key=_p.c.id,
    sorts={"opened_at": _p.c.opened_at, "due_at": _p.c.due_at},
    default_sort="-opened_at",
    filters={"party": (_p.c.party, str), "status": (_p.c.status, PlanStatus)},
)


async def lock_party(session: AsyncSession, party: str) -> None:
    """Serialise the openings of one party's plans (one open plan per party)."""
    key = f"corrective-plan/{party}"
    await session.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(key))))


async def open_plan_of(session: AsyncSession, party: str) -> Any:
    query = sa.select(_p).where(_p.c.party == party, _p.c.status.in_(OPEN_STATUSES))
    return (await session.execute(query.with_for_update())).first()


async def add_plan(session: AsyncSession, values: dict[str, Any]) -> Any:
    query = sa.insert(_p).values(**values).returning(_p)
    return (await session.execute(query)).first()


async def plan(session: AsyncSession, plan_id: uuid.UUID, *, lock: bool = False) -> Any:
    query = sa.select(_p).where(_p.c.id == plan_id)
    return (await session.execute(query.with_for_update() if lock else query)).first()


async def change_plan(session: AsyncSession, plan_id: uuid.UUID, **values: Any) -> Any:
    query = sa.update(_p).where(_p.c.id == plan_id).values(**values).returning(_p)
    return (await session.execute(query)).one()


async def page_plans(session: AsyncSession, wanted: PageRequest) -> list[Any]:
    return list((await session.execute(wanted.select(sa.select(_p)))).all())


async def open_plans(session: AsyncSession) -> list[Any]:
    query = sa.select(_p).where(_p.c.status.in_(OPEN_STATUSES)).order_by(_p.c.opened_at)
    return list((await session.execute(query)).all())


async def actions_of(session: AsyncSession, plan_ids: list[uuid.UUID]) -> list[Any]:
    if not plan_ids:
        return []
    query = sa.select(_a).where(_a.c.plan_id.in_(plan_ids)).order_by(_a.c.due_at, _a.c.created_at)
    return list((await session.execute(query)).all())


async def action(session: AsyncSession, plan_id: uuid.UUID, action_id: uuid.UUID) -> Any:
    query = sa.select(_a).where(_a.c.plan_id == plan_id, _a.c.id == action_id).with_for_update()
    return (await session.execute(query)).first()


async def add_action(session: AsyncSession, values: dict[str, Any]) -> Any:
    return (await session.execute(sa.insert(_a).values(**values).returning(_a))).one()


async def change_action(session: AsyncSession, action_id: uuid.UUID, **values: Any) -> Any:
    query = sa.update(_a).where(_a.c.id == action_id).values(**values).returning(_a)
    return (await session.execute(query)).one()
