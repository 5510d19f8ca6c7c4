"""What happens to corrective plans: a party's missed streak (`sla.corrective_plan_required`)
opens its plan, or links the period to the plan still open; the plan's status and actions are
changed over the API, each change audited in its transaction."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from leadflow import audit
from leadflow.consumer import Received
from leadflow.contracts.events import SlaCorrectivePlanRequired
from leadflow.errors import NotFound, Unprocessable
from leadflow.paging import Page, PageRequest
from leadflow.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback.plans import rules, store
from leadflow_feedback.plans.schemas import (
    ActionChange,
    ActionIn,
    ActionOut,
    PlanChange,
    PlanDetail,
    PlanOut,
)

log = logging.getLogger(__name__)
ENTITY = "corrective-plan"
ACTION_ENTITY = "corrective-plan-action"


def plan_out(row: Any) -> PlanOut:
    return PlanOut.model_validate({f: getattr(row, f) for f in PlanOut.model_fields})


def action_out(row: Any, now: datetime) -> ActionOut:
    values = {f: getattr(row, f) for f in ActionOut.model_fields if f != "overdue"}
    return ActionOut(**values, overdue=rules.overdue(values, now))


def _summary(row: Any) -> dict[str, Any]:
    return {"party": row.party, "owner": row.owner, "status": row.status, "missed": row.missed}


def _action_summary(row: Any) -> dict[str, Any]:
    return {"owner": row.owner, "due_at": row.due_at.isoformat(), "done": row.done}


# --- opened by the period judgement ----------------------------------------------------------


async def open_plans(
    rt: Runtime, session: AsyncSession, received: list[Received[SlaCorrectivePlanRequired]]
) -> None:
    for item in received:
        await open_or_extend(rt, session, item.payload.lead_id, item.payload)


async def open_or_extend(
    rt: Runtime, session: AsyncSession, period_id: uuid.UUID, required: SlaCorrectivePlanRequired
) -> None:
    """The party's open plan gets the period linked; without one, a plan opens."""
    await store.lock_party(session, required.party)
    current = await store.open_plan_of(session, required.party)
    if current is not None:
        change = rules.extend_plan(current._asdict(), period_id, required)
        if change is not None:
            await store.change_plan(session, current.id, **change, changed_at=rt.clock.now())
        return
    if await store.plan(session, period_id) is not None:  # replayed after it was closed
        return
    opened = rules.open_plan(period_id, required, rt.policy, rt.clock.now())
    row = await store.add_plan(session, opened.values)
    await audit.record(
        session, rt.spec.metadata, action="created", entity=ENTITY, entity_id=row.id,
        after=_summary(row),
    )  # fmt: skip
    log.info("corrective plan opened", extra={"party": row.party, "plan_id": str(row.id)})


# --- the API ---------------------------------------------------------------------------------


async def plans(rt: Runtime, wanted: PageRequest) -> Page[PlanOut]:
    async with rt.db.unit_of_work() as session:
        rows = await store.page_plans(session, wanted)
    return wanted.page(rows, plan_out)


async def _found(session: AsyncSession, plan_id: uuid.UUID, *, lock: bool = False) -> Any:
    row = await store.plan(session, plan_id, lock=lock)
    if row is None:
        raise NotFound(f"corrective plan {plan_id} not found", field="plan_id")
    return row


async def _detail(rt: Runtime, session: AsyncSession, row: Any) -> PlanDetail:
    actions = await store.actions_of(session, [row.id])
    now = rt.clock.now()
    return PlanDetail(**plan_out(row).model_dump(), actions=[action_out(a, now) for a in actions])


async def plan(rt: Runtime, plan_id: uuid.UUID) -> PlanDetail:
    async with rt.db.unit_of_work() as session:
        return await _detail(rt, session, await _found(session, plan_id))


async def change_plan(rt: Runtime, plan_id: uuid.UUID, body: PlanChange) -> PlanDetail:
    async with rt.db.unit_of_work() as session:
        before = await _found(session, plan_id, lock=True)
        try:
            rules.move(before.status, body.status)
        except rules.PlanRefused as refused:
            raise Unprocessable(refused.message, field=refused.field) from None
        if body.status != before.status and body.status in rules.OPEN_STATUSES:
            await store.lock_party(session, before.party)
        after = await store.change_plan(
            session, plan_id, status=body.status, changed_at=rt.clock.now()
        )
        await audit.record(
            session, rt.spec.metadata, action="changed", entity=ENTITY, entity_id=plan_id,
            before=_summary(before), after=_summary(after),
        )  # fmt: skip
        return await _detail(rt, session, after)


async def add_action(rt: Runtime, plan_id: uuid.UUID, body: ActionIn) -> ActionOut:
    now = rt.clock.now()
    async with rt.db.unit_of_work() as session:
        parent = await _found(session, plan_id, lock=True)
        if parent.status not in rules.OPEN_STATUSES:
            raise Unprocessable(f"the plan is {parent.status}; it takes no more actions",
                                field="plan_id")  # fmt: skip
        row = await store.add_action(
            session,
            {
                "id": uuid.uuid4(),
                "plan_id": plan_id,
                "description": body.description,
                "owner": body.owner or parent.owner,
                "due_at": body.due_at or parent.due_at,
                "done": False,
                "created_at": now,
            },
        )
        await audit.record(
            session, rt.spec.metadata, action="created", entity=ACTION_ENTITY, entity_id=row.id,
            after={**_action_summary(row), "plan_id": str(plan_id)},
        )  # fmt: skip
        return action_out(row, now)


async def change_action(
    rt: Runtime, plan_id: uuid.UUID, action_id: uuid.UUID, body: ActionChange
) -> ActionOut:
    now = rt.clock.now()
    async with rt.db.unit_of_work() as session:
        before = await store.action(session, plan_id, action_id)
        if before is None:
            raise NotFound(f"action {action_id} of plan {plan_id} not found", field="action_id")
        values: dict[str, Any] = {}
        if body.owner is not None:
            values["owner"] = body.owner
        if body.due_at is not None:
            values["due_at"] = body.due_at
        if body.done is not None and body.done != before.done:
            values["done"] = body.done
            values["done_at"] = now if body.done else None
        if not values:
            return action_out(before, now)
        after = await store.change_action(session, action_id, **values)
        await audit.record(
            session, rt.spec.metadata, action="changed", entity=ACTION_ENTITY, entity_id=action_id,
            before=_action_summary(before), after=_action_summary(after),
        )  # fmt: skip
        return action_out(after, now)


async def open_with_actions(session: AsyncSession, now: datetime) -> dict[str, Any]:
    """The review page's part: the open plans with their actions, and the overdue actions."""
    rows = await store.open_plans(session)
    actions = await store.actions_of(session, [r.id for r in rows])
    by_plan: dict[uuid.UUID, list[ActionOut]] = {}
    for a in actions:
        by_plan.setdefault(a.plan_id, []).append(action_out(a, now))
    open_ = [
        PlanDetail(**plan_out(r).model_dump(), actions=by_plan.get(r.id, [])).model_dump(
            mode="json"
        )
        for r in rows
    ]
    overdue = [a for p in open_ for a in p["actions"] if a["overdue"]]
    return {"open": open_, "overdue_actions": overdue}
