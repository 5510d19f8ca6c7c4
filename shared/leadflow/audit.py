"""The audit log: who changed which configuration or erased which lead, when, and what it was
before and after, written in the transaction of the change itself (a change that rolls back
leaves no entry; an entry never lacks its change).

Every service keeps its own append-only `audit_log` (leadflow.db.service_metadata; the
migration's trigger refuses UPDATE, DELETE and TRUNCATE) and answers `GET /v1/audit`. The actor
is the credential the request was authorised with (`key:<name>`), set once per request by the
authorisation dependency; work no request started (a consumer, a worker, the command line) is
`system`. Secrets and personal data never reach the log: their values are replaced by
`[redacted]` before the row is written, at any depth of the document."""

from __future__ import annotations

import base64
import binascii
from contextvars import ContextVar
from datetime import datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow.db import audit_table
from leadflow.errors import Unprocessable

Action = Literal["created", "changed", "deleted", "replaced", "revoked", "erased", "published"]

actor: ContextVar[str] = ContextVar("leadflow_audit_actor", default="system")

REDACTED = "[redacted]"
# Field names whose values are credentials: webhook secrets and signing keys, tokens, passwords,
# channel webhook URLs (whoever holds one can post to the channel).
SECRET_FIELDS = frozenset(
    {"secret", "secrets", "token", "password", "api_key", "key", "sha256", "authorization",
     "slack_webhook_url", "teams_webhook_url", "webhook_url", "signing_secret", "password_hash"}
)  # fmt: skip
# Field names whose values are personal data of a lead or a person.
PERSONAL_FIELDS = frozenset(
    {"email", "phone", "first_name", "last_name", "name", "display_name", "full_name",
     "slack_user_id", "teams_user_id", "address"}
)  # fmt: skip


def redact(value: Any) -> Any:
    """`value` with every secret and personal field's value replaced, at any depth."""
    if isinstance(value, dict):
        return {
            k: (
                REDACTED
                if v is not None and (k.lower() in SECRET_FIELDS or k.lower() in PERSONAL_FIELDS)
                else redact(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _document(value: Any) -> Any:
    """A pydantic model, a row mapping or a plain value as JSON-ready data."""
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if hasattr(value, "_mapping"):
        value = dict(value._mapping)
    if isinstance(value, dict):
        return {str(k): _document(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_document(v) for v in value]
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)  # uuids, instants, decimals, enums: as their text


async def record(
    session: AsyncSession,
    metadata: sa.MetaData,
    *,
    action: Action,
    entity: str,
    entity_id: object,
    before: Any = None,
    after: Any = None,
) -> None:
    """Write one entry in the session's transaction: `entity` (`team`, `rep`, `rule`, `lead`...)
    `entity_id` was `action` by the current actor; `before`/`after` as they were, redacted."""
    await session.execute(
        sa.insert(audit_table(metadata)).values(
            actor=actor.get(),
            action=action,
            entity=entity,
            entity_id=str(entity_id),
            before=redact(_document(before)),
            after=redact(_document(after)),
        )
    )


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str = Field(description="`key:<name>` of the credential used, or `system`")
    action: Action
    entity: str
    entity_id: str
    before: Any = Field(description="the entity before the change, redacted; null when created")
    after: Any = Field(description="the entity after the change, redacted; null when deleted")


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_cursor: str | None = Field(description="pass as `cursor` for the next (older) page")


def _cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"audit:{entry_id}".encode()).decode().rstrip("=")


def _before_id(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, number = text.partition(":")
        if kind != "audit" or not number.isdigit():
            raise ValueError(text)
        return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Unprocessable("not a cursor this list gave out", field="cursor") from None


async def entries(
    session: AsyncSession,
    metadata: sa.MetaData,
    *,
    limit: int,
    cursor: str | None = None,
    entity: str | None = None,
    entity_id: str | None = None,
    actor_is: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditPage:
    """Entries newest first, `limit` at a time, filtered; the cursor continues after the last."""
    table = audit_table(metadata)
    query = sa.select(table).order_by(table.c.id.desc()).limit(limit + 1)
    conditions = {
        table.c.entity: entity,
        table.c.entity_id: entity_id,
        table.c.actor: actor_is,
        table.c.action: action,
    }
    for column, wanted in conditions.items():
        if wanted is not None:
            query = query.where(column == wanted)
    if since is not None:
        query = query.where(table.c.at >= since)
    if until is not None:
        query = query.where(table.c.at < until)
    if cursor is not None:
        query = query.where(table.c.id < _before_id(cursor))
    rows = (await session.execute(query)).mappings().all()
    items = [AuditEntry.model_validate(dict(row)) for row in rows[:limit]]
    more = len(rows) > limit
    return AuditPage(items=items, next_cursor=_cursor(items[-1].id) if more else None)


def router(metadata: sa.MetaData, admin: Any) -> APIRouter:
    """`GET /v1/audit` over the service's log, for holders of `admin` (the `admin` dependency)."""
    audit = APIRouter(prefix="/v1", tags=["audit"])

    @audit.get("/audit", response_model=AuditPage, dependencies=[Depends(admin)])
    async def list_audit(
        request: Request,
        response: Response,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
        entity: Annotated[str | None, Query(max_length=100)] = None,
        entity_id: Annotated[str | None, Query(max_length=200)] = None,
        actor: Annotated[str | None, Query(max_length=200)] = None,
        action: Action | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AuditPage:
        """Configuration changes and erasures made through this service, newest first, with
        who made them; cursor-paginated (`next_cursor`, and a `Link: rel="next"` header)."""
        async with request.app.state.runtime.db.unit_of_work() as session:
            page = await entries(
                session, metadata, limit=limit, cursor=cursor, entity=entity,
                entity_id=entity_id, actor_is=actor, action=action, since=since, until=until,
            )  # fmt: skip
        if page.next_cursor is not None:
            following = request.url.include_query_params(cursor=page.next_cursor)
            response.headers["Link"] = f'<{following}>; rel="next"'
        return page

    return audit
