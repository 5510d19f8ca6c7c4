"""HTTP of corrective plans: read with `reports:read`, changed with `admin`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends
from leadflow import paging
from leadflow.auth import scoped_router
from leadflow.paging import Page, PageRequest
from leadflow.service import RuntimeDep

from leadflow_feedback.plans import store, use_cases
from leadflow_feedback.plans.schemas import (
    ActionChange,
    ActionIn,
    ActionOut,
    PlanChange,
    PlanDetail,
    PlanOut,
)

reads = scoped_router("reports:read", "corrective plans")
changes = scoped_router("admin", "corrective plans")
routers = [reads, changes]
PlanPage = Annotated[PageRequest, Depends(paging.query(store.PLANS))]


@reads.get("/plans", response_model=Page[PlanOut])
async def list_plans(rt: RuntimeDep, wanted: PlanPage) -> Page[PlanOut]:
    """The corrective plans, newest first unless sorted otherwise; filter by party or status."""
    return await use_cases.plans(rt, wanted)


@reads.get("/plans/{plan_id}", response_model=PlanDetail)
async def get_plan(plan_id: uuid.UUID, rt: RuntimeDep) -> PlanDetail:
    """One plan with its actions (each saying whether it is overdue)."""
    return await use_cases.plan(rt, plan_id)


@changes.patch("/plans/{plan_id}", response_model=PlanDetail)
async def change_plan(plan_id: uuid.UUID, body: PlanChange, rt: RuntimeDep) -> PlanDetail:
    """Move the plan: open → in_progress → done, or cancelled; a closed plan stays closed."""
    return await use_cases.change_plan(rt, plan_id, body)


@changes.post("/plans/{plan_id}/actions", status_code=201, response_model=ActionOut)
async def add_action(plan_id: uuid.UUID, body: ActionIn, rt: RuntimeDep) -> ActionOut:
    """Add an action to an open plan; its owner and due date are the plan's unless given."""
    return await use_cases.add_action(rt, plan_id, body)


@changes.patch("/plans/{plan_id}/actions/{action_id}", response_model=ActionOut)
async def change_action(
    plan_id: uuid.UUID, action_id: uuid.UUID, body: ActionChange, rt: RuntimeDep
) -> ActionOut:
    """Mark an action done (or not), or change its owner or due date."""
    return await use_cases.change_action(rt, plan_id, action_id, body)
