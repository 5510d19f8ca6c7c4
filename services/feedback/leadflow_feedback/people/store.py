"""The SQL of people's accounts and of failed sign-ins."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from leadflow.paging import Listing, PageRequest
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_feedback.domain.roles import Role
from leadflow_feedback.domain.sign_in import Failures
from leadflow_feedback.models import sign_in_failures, users

USERS = Listing(
    name="users",
    key=users.c.id,
    sorts={"created_at": users.c.created_at, "email": users.c.email, "name": users.c.name},
    default_sort="created_at",
    filters={
        "role": (users.c.role, Role),
        "email": (users.c.email, str),
        "disabled": (users.c.disabled_at.is_not(None), bool),
    },
)


async def add_user(session: AsyncSession, **values: Any) -> Any:
    return (await session.execute(sa.insert(users).values(**values).returning(users))).one()


async def user_by_id(session: AsyncSession, user_id: uuid.UUID, *, lock: bool = False) -> Any:
    query = sa.select(users).where(users.c.id == user_id)
    return (await session.execute(query.with_for_update() if lock else query)).first()


async def user_by_email(session: AsyncSession, email: str) -> Any:
    return (await session.execute(sa.select(users).where(users.c.email == email))).first()


async def user_by_identity(session: AsyncSession, issuer: str, subject: str) -> Any:
    query = sa.select(users).where(users.c.oidc_issuer == issuer, users.c.oidc_subject == subject)
    return (await session.execute(query)).first()


async def page_users(session: AsyncSession, wanted: PageRequest) -> list[Any]:
    return list((await session.execute(wanted.select(sa.select(users)))).all())


async def change_user(session: AsyncSession, user_id: uuid.UUID, **values: Any) -> Any:
    query = sa.update(users).where(users.c.id == user_id).values(**values).returning(users)
    return (await session.execute(query)).one()


async def failures_locked(
    session: AsyncSession, kind: str, subject: str, now: datetime
) -> Failures:
    """The failures of one account or address, its row locked until the transaction ends, so
    that sign-ins tried at once are counted one after the other."""
    await session.execute(
        insert(sign_in_failures)
        .values(kind=kind, subject=subject, failures=0, last_failure_at=now)
        .on_conflict_do_nothing()
    )
    row = (
        await session.execute(
            sa.select(sign_in_failures)
            .where(sign_in_failures.c.kind == kind, sign_in_failures.c.subject == subject)
            .with_for_update()
        )
    ).one()
    return Failures(row.failures, row.last_failure_at, row.locked_until)


async def save_failures(session: AsyncSession, kind: str, subject: str, f: Failures) -> None:
    await session.execute(
        sa.update(sign_in_failures)
        .where(sign_in_failures.c.kind == kind, sign_in_failures.c.subject == subject)
        .values(failures=f.count, last_failure_at=f.last_failure_at, locked_until=f.locked_until)
    )


async def forget_failures(session: AsyncSession, kind: str, subject: str) -> None:
    await session.execute(
        sa.delete(sign_in_failures).where(
            sign_in_failures.c.kind == kind, sign_in_failures.c.subject == subject
        )
    )


async def forget_unfailed(session: AsyncSession, kind: str, subject: str) -> None:
    """Drop the row a successful sign-in left behind without any failure."""
    await session.execute(
        sa.delete(sign_in_failures).where(
            sign_in_failures.c.kind == kind,
            sign_in_failures.c.subject == subject,
            sign_in_failures.c.failures == 0,
        )
    )
