"""`Idempotency-Key` for write endpoints: the first answer is stored with the request's hash in
the same transaction as the write; a replay gets that answer, a reuse with another body a 422.

The key is claimed before the work, so a concurrent duplicate waits on the claim's row lock and
then replays the committed answer instead of doing the work twice."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from fastapi.responses import JSONResponse
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow.db import JSON
from leadflow.errors import Unprocessable

REPLAYED_HEADER = "Idempotent-Replayed"


def idempotency_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "idempotency",
        metadata,
        sa.Column("api_key", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("request_hash", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("response", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )


def request_hash(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\x00")
    return digest.hexdigest()


async def claim(
    session: AsyncSession, table: sa.Table, *, api_key: str, key: str, path: str, body: bytes
) -> JSONResponse | None:
    """None: the key is ours, do the work and `record` the answer. Otherwise the earlier answer
    (or a 422 when the key comes back with another path or body)."""
    fingerprint = request_hash(path, body)
    claimed = await session.scalar(
        insert(table)
        .values(api_key=api_key, key=key, request_hash=fingerprint, status=0, response={})
        .on_conflict_do_nothing()
        .returning(table.c.key)
    )
    if claimed is not None:
        return None
    first = (
        await session.execute(
            sa.select(table.c.status, table.c.response, table.c.request_hash).where(
                table.c.api_key == api_key, table.c.key == key
            )
        )
    ).one()
    if first.request_hash and first.request_hash != fingerprint:
        raise Unprocessable(
            "this Idempotency-Key was already used with a different request",
            field="Idempotency-Key",
        )
    return JSONResponse(first.response, status_code=first.status, headers={REPLAYED_HEADER: "true"})


async def record(
    session: AsyncSession,
    table: sa.Table,
    *,
    api_key: str,
    key: str,
    status: int,
    response: Any,
) -> None:
    await session.execute(
        sa.update(table)
        .where(table.c.api_key == api_key, table.c.key == key)
        .values(status=status, response=response)
    )
