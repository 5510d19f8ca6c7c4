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

from contextvars import ContextVar
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow import paging
from leadflow.db import audit_table, service_metadata
from leadflow.paging import Listing, Page, PageRequest

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


AuditPage = Page[AuditEntry]


def _log(metadata: sa.MetaData) -> sa.Table:
    """The service's `audit_log`; an app built on metadata without one gets a stand-in of the
    same shape (reading it then fails as a missing table does)."""
    if f"{metadata.schema}.audit_log" in metadata.tables:
        return audit_table(metadata)
    return audit_table(service_metadata(metadata.schema or "public"))


def listing(metadata: sa.MetaData) -> Listing:
    """The audit log as a list (leadflow.paging): newest first, filtered by who, what and which."""
    table = _log(metadata)
    return Listing(
        name="audit",
        key=table.c.id,
        sorts={"id": table.c.id},
        default_sort="-id",
        filters={
            "entity": (table.c.entity, str),
            "entity_id": (table.c.entity_id, str),
            "actor": (table.c.actor, str),
            "action": (table.c.action, Action),
        },
    )


async def entries(
    session: AsyncSession,
    wanted: PageRequest,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditPage:
    """The page of entries `wanted` asks for (newest first unless sorted otherwise), within
    [since, until)."""
    table = wanted.listing.key.table
    query = sa.select(table)
    if since is not None:
        query = query.where(table.c.at >= since)
    if until is not None:
        query = query.where(table.c.at < until)
    rows = (await session.execute(wanted.select(query))).all()
    return wanted.page(rows, lambda row: AuditEntry.model_validate(dict(row._mapping)))


def router(metadata: sa.MetaData, admin: Any) -> APIRouter:
    """`GET /v1/audit` over the service's log, for holders of `admin` (the `admin` dependency)."""
    audit = APIRouter(prefix="/v1", tags=["audit"])
    page_of = paging.query(listing(metadata))

    @audit.get("/audit", response_model=AuditPage, dependencies=[Depends(admin)])
    async def list_audit(
        request: Request,
        wanted: PageRequest = Depends(page_of),
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AuditPage:
        """Configuration changes and erasures made through this service, newest first, with
        who made them; cursor-paginated as every list (`next_cursor`, and a `Link: rel="next"`
        header)."""
        async with request.app.state.runtime.db.unit_of_work() as session:
            return await entries(session, wanted, since=since, until=until)

    return audit
