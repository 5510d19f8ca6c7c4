"""The CRM connectors a service applies: the connectors file at first, then the latest document
changed through notify's API (`PUT /v1/connectors`), taken without a restart.

Notify (`OWNER`) validates a document exactly as the file is validated, keeps it in its own
`current_connectors` table and publishes it as `connectors.published`; ingest keeps the latest
publication in its own `current_connectors` table (the highest `publication` wins, so a late copy
of an older one changes nothing). Each use of the connectors reads that one row by its key and
rebuilds what it derives from them only when the publication changed."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow.consumer import Received, Subscription
from leadflow.contracts.events import ConnectorsPublished

OWNER = "notify"  # the service whose API changes the connectors and publishes them
ROW_ID = 1  # current_connectors holds one row
TABLE = "current_connectors"


def define_table(metadata: sa.MetaData) -> sa.Table:
    """The latest published connectors document of a service schema; none before the first."""
    return sa.Table(
        TABLE,
        metadata,
        sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("publication", sa.Integer, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_by", sa.Text, nullable=False),
        sa.Column("document", JSONB(none_as_null=True), nullable=False),
    )


def create_table(op, schema: str) -> None:
    """The migration creating `define_table`'s table in `schema`."""
    op.create_table(
        TABLE,
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("publication", sa.Integer(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_by", sa.Text(), nullable=False),
        sa.Column("document", JSONB(astext_type=sa.Text()), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        schema=schema,
    )


def table_of(metadata: sa.MetaData) -> sa.Table:
    return metadata.tables[f"{metadata.schema}.{TABLE}"]


async def stored(session: AsyncSession, metadata: sa.MetaData, *, lock: bool = False):
    """The stored row (publication, published_at, published_by, document), or None."""
    table = table_of(metadata)
    statement = sa.select(table).where(table.c.id == ROW_ID)
    if lock:
        statement = statement.with_for_update()
    return (await session.execute(statement)).first()


async def keep(session: AsyncSession, metadata: sa.MetaData, published: ConnectorsPublished):
    """Store `published` unless a later publication is stored already."""
    table = table_of(metadata)
    values = {
        "id": ROW_ID,
        "publication": published.publication,
        "published_at": published.published_at,
        "published_by": published.published_by,
        "document": published.document,
    }
    statement = insert(table).values(**values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={c: statement.excluded[c] for c in values if c != "id"},
            where=table.c.publication < statement.excluded.publication,
        )
    )


def subscription(metadata: sa.MetaData) -> Subscription:
    """The consumer keeping a service's copy of the connectors: the highest publication wins."""

    async def apply(session: AsyncSession, received: list[Received[ConnectorsPublished]]) -> None:
        await keep(session, metadata, max((r.payload for r in received), key=_publication))

    return Subscription("connectors", (ConnectorsPublished,), apply)


def _publication(published: ConnectorsPublished) -> int:
    return published.publication
