"""sla-timer fires a backlog of due timers with several claimers at once (real PostgreSQL): SKIP
LOCKED gives each claim timers no other claim holds, so however the claims interleave (and with
two instances firing the same table) every due level fires exactly once, in ladder order, in the
same transaction as its timer's move; what is not due yet stays for later.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from leadflow.clock import Clock
from leadflow.contracts.events import CloudEvent
from leadflow.contracts.policy import default_policy
from leadflow.db import Database, kernel_tables
from leadflow.loops import Stop
from leadflow.outbox import Outbox
from leadflow_sla_timer import use_cases
from leadflow_sla_timer.models import metadata, timers
from support.harness import eventually

OUTBOX, _ = kernel_tables(metadata)
M = timedelta(minutes=1)

# How far each ladder step lies from now: negative is due. Each timer gets one of these shapes.
# The "new_" shapes are the ladders sla-timer stores (the team lead's escalation a step of its
# own, the breach marked "escalate": false); the others were stored before it had one.
SHAPES = {
    "warning_due": [("warning", -M), ("breached", 60 * M), ("escalated_manager", 120 * M)],
    "breach_due": [("warning", -9 * M), ("breached", -M), ("escalated_manager", 60 * M)],
    "all_due": [("warning", -30 * M), ("breached", -20 * M), ("escalated_manager", -M)],
    "cadence_breach_due": [("warning", -9 * M), ("breached", -M)],  # escalate: false
    "nothing_due": [("warning", 30 * M), ("breached", 60 * M)],
    "new_breach_due": [("warning", -9 * M), ("breached", -M), ("escalated_team_lead", 30 * M),
                       ("escalated_manager", 60 * M)],
    "new_team_lead_due": [("warning", -30 * M), ("breached", -20 * M),
                          ("escalated_team_lead", -M), ("escalated_manager", 60 * M)],
    "new_all_due": [("warning", -30 * M), ("breached", -20 * M),
                    ("escalated_team_lead", -20 * M), ("escalated_manager", -M)],
}  # fmt: skip
# What each fired step emits: (type, level, escalate_to, outcome).
EMITS = {
    "warning": [("sla.warning", "warning", None, None)],
    "breached": [
        ("sla.breached", "breached", None, None),
        ("sla.escalated", "breached", "team_lead", None),
    ],
    "escalated_team_lead": [("sla.escalated", "escalated_team_lead", "team_lead", None)],
    "escalated_manager": [("sla.escalated", "escalated_manager", "manager", None)],
}


def runtime(settings, claimers: int) -> SimpleNamespace:
    clock = Clock()
    return SimpleNamespace(
        db=Database(settings.database_url),
        clock=clock,
        outbox=Outbox(OUTBOX, source="sla-timer", clock=clock),
        policy=default_policy(),
        settings=settings.model_copy(update={"sla_timer_claimers": claimers}),
        stop=Stop(),
    )


async def open_timers(rt, per_shape: int) -> dict[uuid.UUID, str]:
    """Open `per_shape` timers of every shape; returns each timer's shape by id."""
    now = datetime.now(UTC)
    rows, shapes = [], {}
    for shape, steps in SHAPES.items():
        cadence = shape.startswith("cadence")
        for _ in range(per_shape):
            ladder = [{"level": level, "at": (now + offset).isoformat()} for level, offset in steps]
            if cadence or shape.startswith("new_"):
                ladder[1]["escalate"] = False
            timer_id = uuid.uuid4()
            shapes[timer_id] = shape
            rows.append(
                {
                    "id": timer_id,
                    "lead_id": uuid.uuid4(),
                    "sla": "contact_cadence" if cadence else "first_response",
                    "channel": "inbound",
                    "team": "emea",
                    "clock": "wall",
                    "limit_seconds": 3600.0,
                    "started_at": now - 10 * M,
                    "due_at": datetime.fromisoformat(ladder[1]["at"]),
                    "ladder": ladder,
                    "next_fire_at": datetime.fromisoformat(ladder[0]["at"]),
                    "policy_version": "test",
                }
            )
    async with rt.db.unit_of_work() as session:
        await session.execute(sa.insert(timers), rows)
    return shapes


def expected_events(shape: str) -> list[tuple]:
    emitted = []
    for level, offset in SHAPES[shape]:
        if offset < timedelta(0):
            if shape.startswith("cadence") and level == "breached":
                emitted.append(("sla.breached", "breached", None, "unreachable"))
            elif shape.startswith("new_") and level == "breached":
                emitted.append(("sla.breached", "breached", None, None))
            else:
                emitted += EMITS[level]
    return emitted


async def check_fired_once(rt, shapes: dict[uuid.UUID, str]) -> None:
    """Every due level of every timer fired once, in ladder order; the timers moved on."""
    async with rt.db.unit_of_work() as session:
        outbox = (await session.execute(sa.select(OUTBOX.c.payload).order_by(OUTBOX.c.id))).all()
        moved = {row.id: row for row in (await session.execute(sa.select(timers))).all()}
    fired = defaultdict(list)
    for (payload,) in outbox:
        event = CloudEvent.from_bytes(payload)
        data = event.data
        fired[uuid.UUID(data["timer_id"])].append(
            (event.type, data["level"], data.get("escalate_to"), data.get("outcome"))
        )
    now = datetime.now(UTC)
    assert set(fired) == {t for t, shape in shapes.items() if shape != "nothing_due"}
    for timer_id, shape in shapes.items():
        assert fired.get(timer_id, []) == expected_events(shape), shape
        timer = moved[timer_id]
        due = [step for step in timer.ladder if datetime.fromisoformat(step["at"]) <= now]
        assert timer.level == len(due), shape
        assert timer.state == ("breached" if any(s["level"] == "breached" for s in due) else "open")
        following = timer.ladder[len(due)]["at"] if len(due) < len(timer.ladder) else None
        assert timer.next_fire_at == (following and datetime.fromisoformat(following)), shape
        assert timer.version == (2 if due else 1), shape
    assert len(outbox) == sum(len(expected_events(s)) for s in shapes.values())


@pytest.fixture
def claims(monkeypatch):
    """Small backlog claims (so that many of them race), and the most claims seen at once."""
    monkeypatch.setattr(use_cases, "BACKLOG_BATCH", 40)
    seen = {"now": 0, "most": 0, "claims": 0}
    fire_due = use_cases.fire_due

    async def counted(rt, limit: int = use_cases.BATCH) -> int:
        seen["now"] += 1
        seen["most"] = max(seen["most"], seen["now"])
        seen["claims"] += 1
        try:
            return await fire_due(rt, limit)
        finally:
            seen["now"] -= 1

    monkeypatch.setattr(use_cases, "fire_due", counted)
    return seen


async def test_parallel_claimers_of_two_instances_fire_each_due_level_once(settings, claims):
    first, second = runtime(settings, claimers=4), runtime(settings, claimers=3)
    try:
        shapes = await open_timers(first, per_shape=300)
        await asyncio.gather(use_cases.fire_backlog(first), use_cases.fire_backlog(second))
        assert claims["most"] >= 5  # the claims really overlapped
        await check_fired_once(first, shapes)
        # nothing left to fire: another pass claims nothing and writes nothing
        await use_cases.fire_backlog(first)
        await check_fired_once(first, shapes)
    finally:
        await first.db.dispose()
        await second.db.dispose()


async def test_the_firing_worker_fires_a_backlog_with_several_claimers(settings, claims):
    rt = runtime(settings, claimers=3)
    worker = asyncio.create_task(use_cases.run_firing(rt))
    try:
        shapes = await open_timers(rt, per_shape=250)

        async def all_moved() -> bool:
            async with rt.db.unit_of_work() as session:
                due = await session.scalar(
                    sa.select(sa.func.count())
                    .select_from(timers)
                    .where(timers.c.next_fire_at <= datetime.now(UTC))
                )
            return due == 0

        await eventually(all_moved, timeout=60)
        assert claims["most"] >= 3  # the backlog went to several claimers at once
        await check_fired_once(rt, shapes)
    finally:
        rt.stop.set()
        await asyncio.wait_for(worker, timeout=30)
        await rt.db.dispose()
