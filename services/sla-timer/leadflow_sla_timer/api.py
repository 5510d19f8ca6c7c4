"""HTTP API of sla-timer: the SLA clocks of one lead."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from fastapi import APIRouter
from leadflow.service import RuntimeDep

from leadflow_sla_timer.models import timers

router = APIRouter(prefix="/v1", tags=["slas"])


@router.get("/leads/{lead_id}/slas")
async def get_slas(lead_id: uuid.UUID, rt: RuntimeDep) -> dict:
    t = timers.c
    async with rt.db.unit_of_work() as session:
        rows = (
            await session.execute(
                sa.select(
                    t.id,
                    t.sla,
                    t.state,
                    t.channel,
                    t.team,
                    t.clock,
                    t.started_at,
                    t.due_at,
                    t.level,
                    t.ladder,
                    t.met_at,
                    t.next_fire_at,
                    t.policy_version,
                    t.attempts,
                    t.attempts_required,
                    t.attempts_allowed,
                    t.attempts_exceeded_at,
                )
                .where(t.lead_id == lead_id)
                .order_by(t.started_at)
            )
        ).all()
    out = []
    for r in rows:
        fired = [s["level"] for s in r.ladder[: r.level]]
        out.append(
            {
                "timer_id": r.id,
                "sla": r.sla,
                "state": r.state,
                "channel": r.channel,
                "team": r.team,
                "clock": r.clock,
                "started_at": r.started_at,
                "due_at": r.due_at,
                "level": fired[-1] if fired else "none",
                "levels_fired": fired,
                "met_at": r.met_at,
                "next_fire_at": r.next_fire_at,
                "policy_version": r.policy_version,
                "attempts": r.attempts,
                "attempts_required": r.attempts_required,
                "attempts_allowed": r.attempts_allowed,
                "attempts_exceeded_at": r.attempts_exceeded_at,
            }
        )
    return {"lead_id": lead_id, "timers": out}
