"""The latest publication of a document, kept in one row of a service's own schema.

A document published to every service (the policy, the CRM connectors) arrives as an event
carrying a `publication` number; each service keeps the latest one in a one-row table of its
schema and reads that row where it applies the document. The highest `publication` wins, so a
late copy of an older one changes nothing. `LatestPublication` is that table: its metadata, its
migration, reading the row and keeping a publication; `CURRENT_POLICY` and `CURRENT_CONNECTORS`
are the documents kept this way.

The columns are those the table's first migration created (`create_table` is what it calls): a
change to them is a new migration, and a new column must be added by that migration alone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow.contracts.events import ConnectorsPublished, Payload, PolicyPublished

ROW_ID = 1  # each table holds one row

_INTEGER = sa.Integer()
_TEXT = sa.Text()
_INSTANT = sa.DateTime(timezone=True)
_DOCUMENT = JSONB(none_as_null=True)


@dataclass(frozen=True)
class LatestPublication:
    """The one-row table `table_name` keeping the latest `event` a service took: `columns`, in
    their order in the table, each a field of `event` (a `publication` among them)."""

    table_name: str
    event: type[Payload]
    columns: Mapping[str, sa.types.TypeEngine[Any]]

    def __post_init__(self) -> None:
        unknown = [name for name in self.columns if name not in self.event.model_fields]
        if unknown or "publication" not in self.columns:
            raise ValueError(f"{self.table_name}: columns not of {self.event.__name__}: {unknown}")

    def _columns(self) -> list[sa.Column[Any]]:
        return [
            sa.Column("id", sa.SmallInteger(), primary_key=True, autoincrement=False),
            *(sa.Column(name, type_, nullable=False) for name, type_ in self.columns.items()),
        ]

    def define(self, metadata: sa.MetaData) -> sa.Table:
        """The table in a service's metadata; no row before the first publication."""
        return sa.Table(self.table_name, metadata, *self._columns())

    def create_table(self, op: Any, schema: str) -> None:
        """The migration creating the table in `schema`."""
        op.create_table(self.table_name, *self._columns(), schema=schema)

    def drop_table(self, op: Any, schema: str) -> None:
        """The migration dropping it again."""
        op.drop_table(self.table_name, schema=schema)

    def table(self, metadata: sa.MetaData) -> sa.Table:
        return metadata.tables[f"{metadata.schema}.{self.table_name}"]

    async def stored(self, session: AsyncSession, metadata: sa.MetaData, *, lock: bool = False):
        """The stored row (its `columns`), or None before the first publication; `lock` holds
        it until the unit of work ends."""
        table = self.table(metadata)
        statement = sa.select(table).where(table.c.id == ROW_ID)
        if lock:
            statement = statement.with_for_update()
        return (await session.execute(statement)).first()

    async def keep(self, session: AsyncSession, metadata: sa.MetaData, published: Payload) -> None:
        """Store `published` unless a later publication is stored already."""
        table = self.table(metadata)
        values = {"id": ROW_ID, **{name: getattr(published, name) for name in self.columns}}
        statement = insert(table).values(**values)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[table.c.id],
                set_={name: statement.excluded[name] for name in self.columns},
                where=table.c.publication < statement.excluded.publication,
            )
        )

    def keep_latest(
        self, metadata: sa.MetaData
    ) -> Callable[[AsyncSession, list[Any]], Awaitable[None]]:
        """The `apply` of a subscription taking `event`: of the events received (each with its
        `payload`), the highest publication is kept."""

        async def apply(session: AsyncSession, received: list[Any]) -> None:
            latest = max((item.payload for item in received), key=attrgetter("publication"))
            await self.keep(session, metadata, latest)

        return apply


# The policy a service applies (leadflow.policies), in every service's schema.
CURRENT_POLICY = LatestPublication(
    "current_policy",
    PolicyPublished,
    {
        "number": _INTEGER,
        "version": _TEXT,
        "publication": _INTEGER,
        "published_at": _INSTANT,
        "document": _DOCUMENT,
    },
)

# The CRM connectors a service applies (leadflow.current_connectors), where it reads them.
CURRENT_CONNECTORS = LatestPublication(
    "current_connectors",
    ConnectorsPublished,
    {
        "publication": _INTEGER,
        "published_at": _INSTANT,
        "published_by": _TEXT,
        "document": _DOCUMENT,
    },
)
