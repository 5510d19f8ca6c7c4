"""All of scoring's SQL: statements built once at import, each run over a whole batch at a time."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from leadflow.contracts.erasure import forget_events
from leadflow.db import ManyRows, kernel_tables
from sqlalchemy.dialects.postgresql import ARRAY, UUID, insert
from sqlalchemy.engine import Row, RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_scoring.models import lead_scores, metadata, pql_accounts, product_usage

OUTBOX = kernel_tables(metadata)[0]
# Every column of a score row but its key, as a batch writes it back.
SCORE_COLUMNS = tuple(c.name for c in lead_scores.c if c.name != "lead_id")
# A score row as it is created (the table's defaults), before the values of the event that
# creates it.
NEW_ROW: dict[str, Any] = {
    **dict.fromkeys(SCORE_COLUMNS),
    "lead": {}, "interactions": [], "breakdown": [], "reasons": [],
    "fit": 0, "engagement": 0.0, "intent_tier": 0, "is_mql": False,
}  # fmt: skip

_s = lead_scores.c
_u = product_usage.c
_ids = sa.bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))
_accounts = sa.bindparam("accounts", type_=ARRAY(sa.Text))
_since = sa.bindparam("since", type_=sa.DateTime(timezone=True))
_now = sa.bindparam("now", type_=sa.DateTime(timezone=True))

# A lead not known yet gets an empty row first, so that every touched lead can be locked and
# read (the batch then writes what its events say into it); RETURNING names the new ones.
_new_rows = ManyRows(lead_scores, ["lead_id", "lead", "interactions", "breakdown"])
_create_rows = (
    _new_rows.insert().on_conflict_do_nothing(index_elements=[_s.lead_id]).returning(_s.lead_id)
)
# Locked in key order, so that two batches touching the same leads never deadlock.
_lock_rows = (
    sa.select(lead_scores).where(_s.lead_id == sa.any_(_ids)).order_by(_s.lead_id).with_for_update()
)
# A batch's changed score rows written back with one statement, not one execution per lead.
_score_rows = ManyRows(lead_scores, ["lead_id", *SCORE_COLUMNS])
_write_rows = _score_rows.update("lead_id")
_delete_rows = sa.delete(lead_scores).where(_s.lead_id == sa.any_(_ids))
_usage_accounts = (
    sa.select(_u.account).where(_u.lead_id == sa.any_(_ids), _u.occurred_at > _since).distinct()
)
# A PQL account is never weighed again: only the usage of the others is read.
_usage_of = sa.select(product_usage).where(
    _u.account == sa.any_(_accounts),
    _u.occurred_at > _since,
    ~sa.exists().where(pql_accounts.c.account == _u.account),
)
_promoted_of = sa.select(pql_accounts.c.account).where(pql_accounts.c.account == sa.any_(_accounts))
_usage_known = sa.select(_u.activity_id, _u.lead_id).where(_u.activity_id == sa.any_(_ids))
_add_usage = insert(product_usage).on_conflict_do_nothing()
_move_usage = (
    sa.update(product_usage)
    .where(_u.lead_id == sa.any_(_ids))
    .values(lead_id=sa.bindparam("survivor", type_=UUID(as_uuid=True)))
)
_drop_usage = sa.delete(product_usage).where(
    _u.lead_id == sa.bindparam("lead", type_=UUID(as_uuid=True))
)
_claim_accounts = insert(pql_accounts).on_conflict_do_nothing().returning(pql_accounts.c.account)
# Rows another instance is reviewing are skipped, not waited for.
_due = (
    sa.select(_s.lead_id)
    .where(_s.next_review_at <= _now)
    .order_by(_s.next_review_at)
    .limit(sa.bindparam("limit", type_=sa.Integer))
    .with_for_update(skip_locked=True)
)
_earliest_review = sa.select(sa.func.min(_s.next_review_at))
_score_of = sa.select(
    _s.fit,
    _s.engagement,
    _s.intent_tier,
    _s.is_mql,
    _s.breakdown,
    _s.reasons,
    _s.policy_version,
    _s.scored_at,
    _s.mql_at,
    _s.mql_kind,
    _s.next_review_at,
    _s.recycled_at,
    _s.recycle_reason,
    _s.nurture_until,
).where(_s.lead_id == sa.bindparam("lead", type_=UUID(as_uuid=True)))


# -- score rows -----------------------------------------------------------------------------


async def create_rows(session: AsyncSession, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Create an empty score row for each lead of `ids` without one; returns those created."""
    rows = [{"lead_id": i, "lead": {}, "interactions": [], "breakdown": []} for i in ids]
    return set(await session.scalars(_create_rows, _new_rows.params(rows)))


async def lock_rows(session: AsyncSession, ids: Sequence[uuid.UUID]) -> Sequence[RowMapping]:
    """Lock and read the score rows of `ids` (those that exist), in key order."""
    return (await session.execute(_lock_rows, {"ids": ids})).mappings().all()


async def write_rows(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write back changed score rows (one per lead): each `{"lead_id", <every SCORE_COLUMNS
    value>}`."""
    await session.execute(_write_rows, _score_rows.params(rows))


async def delete_rows(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    await session.execute(_delete_rows, {"ids": ids})


async def score_of(session: AsyncSession, lead_id: uuid.UUID) -> Row | None:
    """The lead's current score and its explanation as the API shows them; None: no row."""
    return (await session.execute(_score_of, {"lead": lead_id})).first()


# -- decay review -----------------------------------------------------------------------------


async def due_for_review(session: AsyncSession, now: datetime, limit: int) -> list[uuid.UUID]:
    """Lock up to `limit` leads whose next review is at or before `now`, earliest first."""
    return list((await session.scalars(_due, {"now": now, "limit": limit})).all())


async def earliest_review(session: AsyncSession) -> datetime | None:
    return await session.scalar(_earliest_review)


# -- product usage and PQL accounts ------------------------------------------------------------


async def accounts_used_by(
    session: AsyncSession, ids: Sequence[uuid.UUID], since: datetime
) -> set[str]:
    """The product accounts the leads of `ids` used after `since`."""
    return set(await session.scalars(_usage_accounts, {"ids": ids, "since": since}))


async def usage_of(
    session: AsyncSession, accounts: Sequence[str], since: datetime
) -> Sequence[RowMapping]:
    """The usage rows of `accounts` after `since`, of the accounts that are not a PQL yet."""
    params = {"accounts": accounts, "since": since}
    return (await session.execute(_usage_of, params)).mappings().all()


async def promoted_among(session: AsyncSession, accounts: Sequence[str]) -> set[str]:
    """Which of `accounts` were promoted as PQL already."""
    return set(await session.scalars(_promoted_of, {"accounts": accounts}))


async def stored_usage(
    session: AsyncSession, activity_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """activity id -> lead, of the activities of `activity_ids` recorded already."""
    found = await session.execute(_usage_known, {"ids": activity_ids})
    return {activity_id: lead_id for activity_id, lead_id in found}


async def add_usage(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    await session.execute(_add_usage, rows)


async def move_usage(
    session: AsyncSession, *, ids: Sequence[uuid.UUID], survivor: uuid.UUID
) -> None:
    """The usage of the merged leads `ids` becomes the survivor's."""
    await session.execute(_move_usage, {"ids": ids, "survivor": survivor})


async def drop_usage(session: AsyncSession, *, lead: uuid.UUID) -> None:
    await session.execute(_drop_usage, {"lead": lead})


async def claim_accounts(session: AsyncSession, claims: Sequence[Mapping[str, Any]]) -> set[str]:
    """Record PQL promotions (`{account, lead_id, promoted_at}`); returns the accounts claimed
    here, without those another unit of work claimed first."""
    return set(await session.scalars(_claim_accounts, claims))


# -- erasure ----------------------------------------------------------------------------------


async def forget_outbox_events(session: AsyncSession, lead_id: uuid.UUID) -> None:
    """The lead's outbox rows: published ones deleted, waiting ones kept without personal data."""
    await forget_events(session, OUTBOX, [lead_id])
