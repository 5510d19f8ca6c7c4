"""The SQL of customer success: hand-offs, onboarding milestones, product usage, churns and
success stories, and the customers the review reads them with."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from leadflow.contracts.erasure import ERASED_TEXT, HANDOFF_TEXT_FIELDS
from leadflow.db import JSON
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback.models import churns as _c
from leadflow_feedback.models import handoffs as _h
from leadflow_feedback.models import leads as _l
from leadflow_feedback.models import onboarding as _o
from leadflow_feedback.models import product_usage as _u
from leadflow_feedback.models import status_history as _s
from leadflow_feedback.models import success_stories as _st
from leadflow_feedback.models import timeline as _t
from leadflow_feedback.success.rules import Customer, Story

# The events whose source and company the timeline keeps: a customer's first source, segment.
_TOUCHES = ("lead.created", "lead.updated", "lead.mql")
# What an erased customer's hand-off texts and story texts read as: the columns require a text,
# and the rows stay, because the reports count them.
ERASED = ERASED_TEXT


async def won_at(session: AsyncSession, lead_id: uuid.UUID) -> datetime | None:
    """When the lead was (last) won."""
    query = sa.select(sa.func.max(_s.c.changed_at)).where(
        _s.c.lead_id == lead_id, _s.c.status == "won"
    )
    return await session.scalar(query)


async def is_erased(session: AsyncSession, lead_id: uuid.UUID) -> bool:
    query = sa.select(_l.c.erased_at.isnot(None)).where(_l.c.lead_id == lead_id)
    return bool(await session.scalar(query))


async def churn_of(session: AsyncSession, lead_id: uuid.UUID) -> Any:
    return (await session.execute(sa.select(_c).where(_c.c.lead_id == lead_id))).first()


async def onboarding_of(session: AsyncSession, lead_id: uuid.UUID) -> Any:
    return (await session.execute(sa.select(_o).where(_o.c.lead_id == lead_id))).first()


async def handoff_of(session: AsyncSession, lead_id: uuid.UUID) -> Any:
    return (await session.execute(sa.select(_h).where(_h.c.lead_id == lead_id))).first()


async def add_handoff(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(sa.insert(_h).values(**values))


async def reach_milestone(session: AsyncSession, lead_id: uuid.UUID, **values: Any) -> bool:
    """Set a milestone's instant (`kickoff_at`, or `activated_at` with its feature) unless it is
    set already; True when this call set it."""
    column = "kickoff_at" if "kickoff_at" in values else "activated_at"
    query = (
        insert(_o)
        .values(lead_id=lead_id, **values)
        .on_conflict_do_update(
            index_elements=[_o.c.lead_id],
            set_=values,
            where=_o.c[column].is_(None),
        )
        .returning(_o.c.lead_id)
    )
    return (await session.execute(query)).first() is not None


async def add_usage(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(_u).on_conflict_do_nothing(), rows)


async def uses_of(session: AsyncSession, lead_id: uuid.UUID, feature: str) -> list[datetime]:
    query = sa.select(_u.c.occurred_at).where(_u.c.lead_id == lead_id, _u.c.feature == feature)
    return list((await session.scalars(query)).all())


async def add_churn(session: AsyncSession, values: dict[str, Any]) -> Any:
    return (await session.execute(sa.insert(_c).values(**values).returning(_c))).one()


async def add_story(session: AsyncSession, values: dict[str, Any]) -> Any:
    return (await session.execute(sa.insert(_st).values(**values).returning(_st))).one()


async def stories_of(session: AsyncSession, lead_id: uuid.UUID) -> list[Any]:
    query = sa.select(_st).where(_st.c.lead_id == lead_id).order_by(_st.c.reported_at)
    return list((await session.execute(query)).all())


async def stories(
    session: AsyncSession, *, start: datetime, end: datetime, team: str | None = None
) -> list[Story]:
    """The success stories reported in [start, end), of one team's customers when given."""
    query = sa.select(_st).where(_st.c.reported_at >= start, _st.c.reported_at < end)
    if team is not None:
        query = query.join(_l, _l.c.lead_id == _st.c.lead_id).where(_l.c.team == team)
    return [
        Story(r.id, r.lead_id, r.title, r.outcome, list(r.topics or []), r.reported_at)
        for r in await session.execute(query)
    ]


_won = (
    sa.select(_s.c.lead_id, sa.func.max(_s.c.changed_at).label("won_at"))
    .where(_s.c.status == "won")
    .group_by(_s.c.lead_id)
    .subquery()
)


async def customers(
    session: AsyncSession,
    *,
    won_from: datetime | None = None,
    won_before: datetime | None = None,
    churned_from: datetime | None = None,
    churned_before: datetime | None = None,
    lead_ids: list[uuid.UUID] | None = None,
    team: str | None = None,
) -> list[Customer]:
    """Won leads (won in [won_from, won_before), churned in [churned_from, churned_before), or
    these, when given; routed to `team`, when given) with their milestones, churn, first source
    and segment."""
    query = (
        sa.select(
            _l.c.lead_id, _l.c.channel, _l.c.calendar, _l.c.source, _won.c.won_at,
            _h.c.handed_off_at, _o.c.kickoff_at, _o.c.activated_at, _c.c.churned_at,
            _c.c.reason.label("churn_reason"),
        )
        .join(_won, _won.c.lead_id == _l.c.lead_id)
        .outerjoin(_h, _h.c.lead_id == _l.c.lead_id)
        .outerjoin(_o, _o.c.lead_id == _l.c.lead_id)
        .outerjoin(_c, _c.c.lead_id == _l.c.lead_id)
    )  # fmt: skip
    if lead_ids is not None:
        query = query.where(_l.c.lead_id.in_(lead_ids))
    if team is not None:
        query = query.where(_l.c.team == team)
    if won_from is not None:
        query = query.where(_won.c.won_at >= won_from)
    if won_before is not None:
        query = query.where(_won.c.won_at < won_before)
    if churned_from is not None:
        query = query.where(_c.c.churned_at >= churned_from)
    if churned_before is not None:
        query = query.where(_c.c.churned_at < churned_before)
    rows = (await session.execute(query)).mappings().all()
    if not rows:
        return []
    ids = [row["lead_id"] for row in rows]
    first_source: dict[uuid.UUID, dict[str, Any]] = {}
    company: dict[uuid.UUID, dict[str, Any]] = {}
    touches = await session.execute(
        sa.select(_t.c.lead_id, _t.c.details)
        .where(_t.c.lead_id.in_(ids), _t.c.type.in_(_TOUCHES))
        .order_by(_t.c.occurred_at, _t.c.id)
    )
    for lead_id, details in touches:
        details = details or {}
        if details.get("source") and lead_id not in first_source:
            first_source[lead_id] = details["source"]
        if details.get("company"):
            company[lead_id] = details["company"]  # the latest known
    return [
        Customer(
            lead_id=row["lead_id"],
            won_at=row["won_at"],
            channel=row["channel"],
            calendar=row["calendar"],
            handed_off_at=row["handed_off_at"],
            kickoff_at=row["kickoff_at"],
            activated_at=row["activated_at"],
            first_source=first_source.get(row["lead_id"]) or row["source"],
            industry=company.get(row["lead_id"], {}).get("industry"),
            size_band=company.get(row["lead_id"], {}).get("size_band"),
            churned_at=row["churned_at"],
            churn_reason=row["churn_reason"],
        )
        for row in rows
    ]


async def forget_texts(session: AsyncSession, lead_ids: list[uuid.UUID]) -> None:
    """Erasure: the free text customer success wrote about these leads goes (the hand-off's use
    case, promised outcomes, risks and plan, wherever feedback keeps them; the churn's note; the
    success stories' title and outcome). What the reports count stays: that a hand-off happened
    and when, the churn's reason and instant, each story with its topics and date."""
    if not lead_ids:
        return
    texts = dict.fromkeys(HANDOFF_TEXT_FIELDS, ERASED)
    await session.execute(sa.update(_h).where(_h.c.lead_id.in_(lead_ids)).values(**texts))
    await session.execute(
        sa.update(_c).where(_c.c.lead_id.in_(lead_ids), _c.c.note.isnot(None)).values(note=None)
    )
    await session.execute(
        sa.update(_st).where(_st.c.lead_id.in_(lead_ids)).values(title=ERASED, outcome=ERASED)
    )
    # the hand-off as the status change carried it: in the history row and on the timeline
    for table in (_s, _t):
        await session.execute(
            sa.update(table)
            .where(table.c.lead_id.in_(lead_ids), table.c.details.has_key("handoff"))
            .values(
                details=table.c.details.op("-", return_type=JSON)(sa.literal("handoff", sa.Text))
            )
        )
