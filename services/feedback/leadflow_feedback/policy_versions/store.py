"""The SQL of the policy's versions."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from leadflow.paging import Listing, PageRequest
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback.models import policy_versions as _v
from leadflow_feedback.policy_versions.schemas import State

VERSIONS = Listing(
    name="policy-versions",
    key=_v.c.number,
    sorts={"number": _v.c.number, "created_at": _v.c.created_at},
    default_sort="number",
    filters={"state": (_v.c.state, State), "version": (_v.c.version, str)},
)


async def lock_versions(session: AsyncSession) -> None:
    """Serialise the writers of versions until the transaction ends (numbers and publications
    are each the next one); readers are not held up."""
    await session.execute(sa.text(f"LOCK TABLE {_v.fullname} IN EXCLUSIVE MODE"))


async def add_version(session: AsyncSession, **values: Any) -> Any:
    return (await session.execute(sa.insert(_v).values(**values).returning(_v))).one()


async def next_number(session: AsyncSession) -> int:
    return (await session.scalar(sa.select(sa.func.coalesce(sa.func.max(_v.c.number), 0)))) + 1


async def next_publication(session: AsyncSession) -> int:
    query = sa.select(sa.func.coalesce(sa.func.max(_v.c.publication), 0))
    return (await session.scalar(query)) + 1


async def version(session: AsyncSession, number: int) -> Any:
    return (await session.execute(sa.select(_v).where(_v.c.number == number))).first()


async def version_labelled(session: AsyncSession, label: str) -> Any:
    return (await session.execute(sa.select(_v).where(_v.c.version == label))).first()


async def current(session: AsyncSession) -> Any:
    return (await session.execute(sa.select(_v).where(_v.c.state == "published"))).first()


async def published_before(session: AsyncSession, publication: int) -> Any:
    """The version whose last publication came latest before `publication`."""
    query = (
        sa.select(_v)
        .where(_v.c.publication < publication)
        .order_by(_v.c.publication.desc())
        .limit(1)
    )
    return (await session.execute(query)).first()


async def page_versions(session: AsyncSession, wanted: PageRequest) -> list[Any]:
    """A page of versions, without their texts and documents."""
    columns = [c for c in _v.c if c.name not in ("text", "document")]
    return list((await session.execute(wanted.select(sa.select(*columns)))).all())


async def change_version(session: AsyncSession, number: int, **values: Any) -> Any:
    query = sa.update(_v).where(_v.c.number == number).values(**values).returning(_v)
    return (await session.execute(query)).one()
