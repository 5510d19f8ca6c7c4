"""Async PostgreSQL access: one engine per process, one unit of work per request or batch."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, Insert, insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.sql.dml import Update

from leadflow.publications import CURRENT_POLICY


def service_metadata(schema: str) -> sa.MetaData:
    """The metadata of one service's schema, with the kernel's outbox and inbox tables in it."""
    metadata = sa.MetaData(schema=schema)
    sa.Table(
        "outbox",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        sa.Index("ix_outbox_unpublished", "id", postgresql_where=sa.text("published_at IS NULL")),
    )
    sa.Table(
        "inbox",
        metadata,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    # Where each consumer stands in each partition, written in the transaction of the batch that
    # got there: the truth a consumer resumes from (the broker's committed offsets are only a
    # convenience). The anchor is a record read before, at a position checked since: when the
    # broker's log no longer holds it, the broker lost the log the consumer read.
    sa.Table(
        "consumer_positions",
        metadata,
        sa.Column("consumer", sa.Text, primary_key=True),
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("last_digest", sa.BigInteger),
        sa.Column("anchor_offset", sa.BigInteger),
        sa.Column("anchor_digest", sa.BigInteger),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    # How far the outbox relay has written each partition, and the fingerprint of the last
    # record it wrote there: a broker whose log no longer holds that record lost what was
    # published, and the relay sends its replay window again.
    sa.Table(
        "relay_positions",
        metadata,
        sa.Column("topic", sa.Text, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("next_offset", sa.BigInteger, nullable=False),
        sa.Column("last_digest", sa.BigInteger),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    )
    # Who changed what and when: configuration changes and erasures, each written in the
    # transaction of the change, secrets and personal data redacted (leadflow.audit). The
    # database refuses to update or delete a row (a trigger made by the migration).
    sa.Table(
        "audit_log",
        metadata,
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("entity", sa.Text, nullable=False),
        sa.Column("entity_id", sa.Text, nullable=False),
        sa.Column("before", JSONB(none_as_null=True)),
        sa.Column("after", JSONB(none_as_null=True)),
        sa.Index("ix_audit_log_entity", "entity", "entity_id", "id"),
    )
    # API keys issued through the API (leadflow.keys): the issuing service's record and every
    # other service's copy, kept from `api_key.changed` events. Digests only, never a key.
    sa.Table(
        "api_keys",
        metadata,
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("sha256", sa.Text, nullable=False, unique=True),
        sa.Column("scopes", ARRAY(sa.Text), nullable=False),
        sa.Column("source", sa.Text),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
    )
    # The policy this service applies (leadflow.policies): the latest `policy.published` it
    # took, one row, read again by every process of the service; none before the first.
    CURRENT_POLICY.define(metadata)
    return metadata


def api_keys_table(metadata: sa.MetaData) -> sa.Table:
    return metadata.tables[f"{metadata.schema}.api_keys"]


def audit_table(metadata: sa.MetaData) -> sa.Table:
    return metadata.tables[f"{metadata.schema}.audit_log"]


def kernel_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    return metadata.tables[f"{metadata.schema}.outbox"], metadata.tables[f"{metadata.schema}.inbox"]


def position_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """(consumer_positions, relay_positions) of a service schema."""
    return (
        metadata.tables[f"{metadata.schema}.consumer_positions"],
        metadata.tables[f"{metadata.schema}.relay_positions"],
    )


JSON = JSONB(none_as_null=True)

# One transaction-scoped advisory lock per key, taken in the order of the (sorted) array.
_lock_keys = (
    sa.func.unnest(sa.bindparam("keys", type_=sa.ARRAY(sa.BigInteger)))
    .table_valued("key")
    .render_derived(name="keys")
)
LOCK_KEYS = sa.select(sa.func.pg_advisory_xact_lock(_lock_keys.c.key))


def lead_lock_key(scope: str, lead_id: uuid.UUID) -> int:
    """The advisory lock key of a lead within `scope` (a service): services sharing one
    database do not wait on each other's locks."""
    digest = hashlib.blake2b(lead_id.bytes, digest_size=8, person=scope.encode()[:16]).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_leads(session: AsyncSession, scope: str, lead_ids: Iterable[uuid.UUID]) -> None:
    """Serialise this unit of work with every other one of `scope` about the same leads, until
    it ends: one statement, the keys in sorted order, so two batches cannot deadlock."""
    keys = sorted({lead_lock_key(scope, lead_id) for lead_id in lead_ids})
    if keys:
        await session.execute(LOCK_KEYS, {"keys": keys})


_TOUCHED = "leadflow.touched"


def touch(session: AsyncSession, tag: str) -> None:
    """Mark this unit of work as having changed `tag` (see Database.on_commit)."""
    session.info.setdefault(_TOUCHED, set()).add(tag)


# Errors that mean "unreachable right now", whoever raises them.
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    PoolTimeoutError,  # every connection busy: overloaded, not broken
    ConnectionError,
    TimeoutError,
    OSError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.TooManyConnectionsError,
)
# Every type that may be transient; is_transient decides for the instance.
TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    DBAPIError,
    *NETWORK_ERRORS,
)


def is_transient(exc: BaseException) -> bool:
    """True for failures that go away by themselves: the database or network is unreachable."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        # the driver's own error (or what it wraps) tells a lost connection from a bad query
        cause = getattr(exc.orig, "__cause__", None)
        return bool(exc.connection_invalidated) or any(
            isinstance(e, NETWORK_ERRORS) for e in (exc.orig, cause) if e is not None
        )
    return isinstance(exc, NETWORK_ERRORS)


def dump_json(value: object) -> str:
    """JSON for json/jsonb columns: orjson (several times the standard library's speed), and
    the standard library for what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


# A run of digits as long as 2**63's: orjson would read an integer beyond 64 bits as a float.
# Found by mapping every digit to "9" and every other byte to a space, then searching for the
# run: several times faster than a regular expression over the text, which cost more than the
# parse itself.
_DIGITS_ONLY = bytes(0x39 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_NUMBER = b"9" * 19


def load_json(text: str) -> object:
    """A json/jsonb column's value: orjson, unless the text holds a number as long as an
    integer beyond 64 bits (orjson reads those as floats; the standard library keeps them)."""
    if _LONG_NUMBER in text.encode().translate(_DIGITS_ONLY):
        return json.loads(text)
    return orjson.loads(text)


class ManyRows:
    """Many rows of `table` written by one statement with one array parameter per column:
    `INSERT … SELECT … FROM unnest(…) WITH ORDINALITY ORDER BY ordinality`, so the rows go in
    the order given (an identity column numbers them so), or `UPDATE … FROM` the same rows
    (`update`). Against executemany, one execution per row, it measured about 40 % less
    PostgreSQL time and 20 % less Python time per row (docs/benchmarks.md, eleventh round).
    JSON columns travel as text and are cast back (an array of JSON values that are themselves
    lists would read as another dimension). Neither `ON CONFLICT DO UPDATE` nor `update` can
    change one row twice in a statement: give them one row per key.

        _add = ManyRows(timeline, ["event_id", "lead_id", "details"])
        await session.execute(_add.insert().on_conflict_do_nothing(), _add.params(rows))
    """

    def __init__(self, table: sa.Table, columns: Sequence[str]) -> None:
        types = {name: table.c[name].type for name in columns}
        if any(isinstance(kind, sa.ARRAY) for kind in types.values()):
            raise TypeError("ManyRows: an array column would unnest as rows")
        self.table = table
        self.columns = tuple(columns)
        self._json = frozenset(name for name, kind in types.items() if isinstance(kind, sa.JSON))
        arrays = (
            sa.func.unnest(
                *(
                    sa.bindparam(
                        f"many_{name}", type_=ARRAY(sa.Text if name in self._json else kind)
                    )
                    for name, kind in types.items()
                )
            )
            .table_valued(*self.columns, with_ordinality="ordinal")
            .render_derived(name="many_rows")
        )
        self.rows = sa.select(
            *(
                sa.cast(arrays.c[name], types[name]).label(name)
                if name in self._json
                else arrays.c[name]
                for name in self.columns
            )
        ).order_by(arrays.c.ordinal)

    def insert(self) -> Insert:
        """The INSERT of the rows (add ON CONFLICT to it as needed)."""
        return insert(self.table).from_select(self.columns, self.rows)

    def update(self, key: str) -> Update:
        """The UPDATE of the table's rows whose `key` matches a row's (one row per key): each
        other column given is set to that row's value."""
        rows = self.rows.subquery("changed")
        return (
            sa.update(self.table)
            .where(self.table.c[key] == rows.c[key])
            .values({name: rows.c[name] for name in self.columns if name != key})
        )

    def params(self, rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
        """The statement's parameters: one list per column, in the rows' order."""
        rows = list(rows)
        return {
            # named apart from the columns: an UPDATE's SET reserves the columns' names
            f"many_{name}": [None if row[name] is None else dump_json(row[name]) for row in rows]
            if name in self._json
            else [row[name] for row in rows]
            for name in self.columns
        }


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            # No ping per checkout (a round trip before every transaction): a connection found
            # dead when used raises a transient error (503 problem / consumer retry) and
            # SQLAlchemy then invalidates the whole pool, so every stale connection is replaced.
            pool_pre_ping=False,
            pool_timeout=5,
            connect_args={"timeout": 5, "command_timeout": 30},
            json_serializer=dump_json,
            json_deserializer=load_json,
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._after_commit: list[Callable[[], None]] = []

    def on_commit(self, tag: str, callback: Callable[[], None]) -> None:
        """Run `callback` after a unit of work that `touch`ed `tag` commits (e.g. wake the outbox
        relay after events were written). Untouched commits, such as the relay's own, wake no one."""
        self._after_commit.append((tag, callback))

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """One transaction: commits when the block ends, rolls back if it raises."""
        async with self.sessions() as session:
            async with session.begin():
                yield session
            touched = session.info.pop(_TOUCHED, ())
        for tag, callback in self._after_commit:
            if tag in touched:
                callback()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
