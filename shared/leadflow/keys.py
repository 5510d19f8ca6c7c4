"""API keys kept in the database, issued, rotated and revoked through the API without a restart.

One service issues keys (`ISSUER`, feedback): `POST /v1/keys` makes a key, shows it once and
stores only its SHA-256 digest with its name, scopes, source, creator and times; rotating makes
a new key and gives the old one an end (a grace period during which both work); revoking ends a
key at once. Each change is written with its audit entry and an `api_key.changed` event (digest
only) in one transaction. Every service, the issuer included, keeps a copy of the keys from
those events in its own `api_keys` table and reads its copy again every `REFRESH_SECONDS`, so a
new, rotated or revoked key takes effect everywhere within seconds. Keys from
`LEADFLOW_API_KEYS` stay valid beside them: the way to make the first admin key.

`GET /v1/keys` on any service lists the keys as that service knows them, with when each was last
used there (never a digest), paged as every list (leadflow.paging)."""

from __future__ import annotations

import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow import audit, paging
from leadflow.consumer import Received, Subscription
from leadflow.contracts.events import ApiKeyChanged
from leadflow.db import Database, api_keys_table
from leadflow.errors import NotFound, Unprocessable
from leadflow.paging import Listing, Page, PageRequest
from leadflow.settings import ApiKeySpec, Scope

log = logging.getLogger(__name__)

ISSUER = "feedback"  # the service whose API issues keys
REFRESH_SECONDS = 1.0  # how often a service reads its copy of the keys again
KEY_PREFIX = "lf_"


def new_key() -> str:
    """A key of 256 random bits, recognisable as Leadflow's by its prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    """A key of the database as a service accepts it: the spec `auth` checks, and when it ends."""

    id: uuid.UUID
    spec: ApiKeySpec
    expires_at: datetime | None


class KeyRing:
    """The keys issued through the API that this process accepts: its service's copy, read again
    every `REFRESH_SECONDS`; uses are remembered and written back at the next read."""

    def __init__(self, db: Database, metadata: sa.MetaData) -> None:
        self.db = db
        self.table = api_keys_table(metadata)
        self._keys: list[IssuedKey] = []
        self._used: dict[uuid.UUID, datetime] = {}
        self.loaded = False

    def specs(self, now: datetime) -> list[ApiKeySpec]:
        """The keys valid at `now` (a rotated key until its grace period ends)."""
        return [k.spec for k in self._keys if k.expires_at is None or k.expires_at > now]

    def used(self, sha256: str, at: datetime) -> None:
        for key in self._keys:
            if key.spec.sha256 == sha256:
                self._used[key.id] = at

    async def refresh(self) -> None:
        table = self.table
        used, self._used = self._used, {}
        async with self.db.unit_of_work() as session:
            if used:
                await session.execute(
                    sa.update(table)
                    .where(table.c.id == sa.bindparam("key_id"))
                    .values(
                        last_used_at=sa.func.greatest(table.c.last_used_at, sa.bindparam("at"))
                    ),
                    [{"key_id": k, "at": at} for k, at in used.items()],
                )
            rows = (
                await session.execute(
                    sa.select(table).where(table.c.revoked_at.is_(None)).order_by(table.c.id)
                )
            ).all()
        self._keys = [
            IssuedKey(
                row.id,
                ApiKeySpec(name=row.name, sha256=row.sha256, scopes=row.scopes, source=row.source),
                row.expires_at,
            )
            for row in rows
        ]
        self.loaded = True

    async def run(self, stop) -> None:
        """Read the copy again every `REFRESH_SECONDS` until `stop`; a failed read keeps the
        keys of the last one (the database being away fails the requests' own work anyway)."""
        await stop.every(REFRESH_SECONDS, self.refresh, failed="API keys not read")


# --- every service: its copy, from the events ---------------------------------------------


def subscription(db_metadata: sa.MetaData) -> Subscription:
    """The consumer keeping this service's copy of the keys: the latest change of each wins."""
    table = api_keys_table(db_metadata)

    async def apply(session: AsyncSession, received: list[Received[ApiKeyChanged]]) -> None:
        latest: dict[uuid.UUID, ApiKeyChanged] = {}
        for item in received:
            key = item.payload
            if key.key_id not in latest or key.changed_at >= latest[key.key_id].changed_at:
                latest[key.key_id] = key
        for key in latest.values():
            values = _row(key)
            statement = insert(table).values(**values)
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=[table.c.id],
                    set_={c: statement.excluded[c] for c in values if c != "id"},
                    where=table.c.changed_at <= statement.excluded.changed_at,
                )
            )

    return Subscription("api-keys", (ApiKeyChanged,), apply)


def _row(key: ApiKeyChanged) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "name": key.name,
        "sha256": key.sha256,
        "scopes": list(key.scopes),
        "source": key.source,
        "created_by": key.created_by,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "changed_at": key.changed_at,
    }


# --- the issuer ---------------------------------------------------------------------------


class KeyIn(BaseModel):
    name: str = Field(min_length=1, max_length=100, description="who or what holds the key")
    scopes: list[Scope] = Field(min_length=1, description="what the key may read and write")
    source: str | None = Field(
        default=None,
        max_length=100,
        description="the source system whose leads a `leads:write` key writes",
    )
    expires_at: datetime | None = Field(default=None, description="when the key stops working")


class RotateIn(BaseModel):
    grace_seconds: int = Field(
        default=86_400,
        ge=0,
        le=30 * 86_400,
        description="how long the old key keeps working beside the new one",
    )


class KeyOut(BaseModel):
    id: uuid.UUID
    name: str
    scopes: list[str]
    source: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(
        default=None, description="when this service last took the key"
    )


class NewKeyOut(KeyOut):
    key: str = Field(description="the key itself: shown this once, stored only as a digest")


# Columns by name, not of one schema's table: the same list pages whichever service's `api_keys`
# the statement reads (the router is made before a service's metadata is at hand).
_created_at = sa.column("created_at", sa.DateTime(timezone=True))
KEYS = Listing(
    name="keys",
    key=sa.column("id", sa.Uuid()),
    sorts={"created_at": _created_at, "name": sa.column("name", sa.Text)},
    default_sort="created_at",
    filters={
        "name": (sa.column("name", sa.Text), str),
        "source": (sa.column("source", sa.Text), str),
        "revoked": (sa.column("revoked_at", sa.DateTime(timezone=True)).is_not(None), bool),
    },
)
KeyPage = Page[KeyOut]


def _out(row: Any) -> KeyOut:
    return KeyOut.model_validate({f: getattr(row, f) for f in KeyOut.model_fields})


async def _emit(rt: Any, session: AsyncSession, row: Any) -> None:
    await rt.outbox.emit(
        session,
        ApiKeyChanged(
            lead_id=row.id, key_id=row.id, name=row.name, sha256=row.sha256,
            scopes=row.scopes, source=row.source, created_by=row.created_by,
            created_at=row.created_at, expires_at=row.expires_at, revoked_at=row.revoked_at,
            changed_at=row.changed_at,
        ),
    )  # fmt: skip


async def _issue(
    rt: Any, session: AsyncSession, body: KeyIn, now: datetime, rotates: uuid.UUID | None = None
) -> NewKeyOut:
    table = api_keys_table(rt.spec.metadata)
    if body.expires_at is not None and body.expires_at <= now:
        raise Unprocessable("a key must not have ended already", field="expires_at")
    key = new_key()
    row = (
        await session.execute(
            sa.insert(table)
            .values(
                id=uuid.uuid4(), name=body.name, sha256=digest(key), scopes=list(body.scopes),
                source=body.source, created_by=audit.actor.get(), created_at=now,
                expires_at=body.expires_at, changed_at=now,
            )
            .returning(table)
        )
    ).one()  # fmt: skip
    await _emit(rt, session, row)
    after = {**_out(row).model_dump(mode="json"), "rotates": str(rotates) if rotates else None}
    await audit.record(
        session, rt.spec.metadata, action="created", entity="api-key", entity_id=row.id,
        after=after,
    )  # fmt: skip
    return NewKeyOut(**_out(row).model_dump(), key=key)


async def _locked(session: AsyncSession, table: sa.Table, key_id: uuid.UUID) -> Any:
    row = (
        await session.execute(sa.select(table).where(table.c.id == key_id).with_for_update())
    ).first()
    if row is None:
        raise NotFound(f"API key {key_id} not found", field="key_id")
    return row


async def _end(rt: Any, session: AsyncSession, before: Any, now: datetime, **values: Any) -> KeyOut:
    table = api_keys_table(rt.spec.metadata)
    row = (
        await session.execute(
            sa.update(table)
            .where(table.c.id == before.id)
            .values(**values, changed_at=now)
            .returning(table)
        )
    ).one()
    await _emit(rt, session, row)
    await audit.record(
        session, rt.spec.metadata, action="revoked" if "revoked_at" in values else "changed",
        entity="api-key", entity_id=row.id, before=_out(before), after=_out(row),
    )  # fmt: skip
    return _out(row)


def router(admin: Any, *, issuer: bool) -> APIRouter:
    """The keys' endpoints of a service, for holders of `admin`: every service lists its copy;
    the issuer also creates, rotates and revokes."""
    keys = APIRouter(prefix="/v1", tags=["keys"], dependencies=[Depends(admin)])

    @keys.get("/keys", response_model=KeyPage)
    async def list_keys(
        request: Request, wanted: PageRequest = Depends(paging.query(KEYS))
    ) -> KeyPage:
        """The keys issued through the API as this service knows them, revoked ones included
        (`revoked=false`: only the others), with when this service last took each; never a key
        or its digest. Cursor-paginated as every list."""
        rt = request.app.state.runtime
        table = api_keys_table(rt.spec.metadata)
        async with rt.db.unit_of_work() as session:
            rows = (await session.execute(wanted.select(sa.select(table)))).all()
        return wanted.page(rows, _out)

    if not issuer:
        return keys

    @keys.post("/keys", status_code=201, response_model=NewKeyOut)
    async def create_key(body: KeyIn, request: Request) -> NewKeyOut:
        """Issue a key: the answer shows it once; it works in every service within seconds."""
        rt = request.app.state.runtime
        async with rt.db.unit_of_work() as session:
            return await _issue(rt, session, body, rt.clock.now())

    @keys.post("/keys/{key_id}/rotate", status_code=201, response_model=NewKeyOut)
    async def rotate_key(key_id: uuid.UUID, body: RotateIn, request: Request) -> NewKeyOut:
        """A new key with the same name, scopes and source; the old one keeps working for the
        grace period, then stops."""
        rt = request.app.state.runtime
        now = rt.clock.now()
        table = api_keys_table(rt.spec.metadata)
        async with rt.db.unit_of_work() as session:
            old = await _locked(session, table, key_id)
            if old.revoked_at is not None:
                raise Unprocessable("a revoked key cannot be rotated", field="key_id")
            ends = now + timedelta(seconds=body.grace_seconds)
            if old.expires_at is None or old.expires_at > ends:
                await _end(rt, session, old, now, expires_at=ends)
            spec = KeyIn(name=old.name, scopes=old.scopes, source=old.source)
            return await _issue(rt, session, spec, now, rotates=old.id)

    @keys.delete("/keys/{key_id}", status_code=204)
    async def revoke_key(key_id: uuid.UUID, request: Request) -> Response:
        """Revoke a key: every service refuses it within seconds. Revoking again changes
        nothing."""
        rt = request.app.state.runtime
        now = rt.clock.now()
        table = api_keys_table(rt.spec.metadata)
        async with rt.db.unit_of_work() as session:
            old = await _locked(session, table, key_id)
            if old.revoked_at is None:
                await _end(rt, session, old, now, revoked_at=now)
        return Response(status_code=204)

    return keys
