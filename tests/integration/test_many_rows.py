"""ManyRows: many rows in one statement over one array per column (real PostgreSQL): the rows
go in in the order given, every kind of column and JSON value comes back as it went in, and
ON CONFLICT applies to each row."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from leadflow.db import JSON, Database, ManyRows
from sqlalchemy.dialects.postgresql import ARRAY, UUID

metadata = sa.MetaData(schema="public")
probe = sa.Table(
    "many_rows_probe",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("label", sa.Text),
    sa.Column("at", sa.DateTime(timezone=True)),
    sa.Column("weight", sa.Float),
    sa.Column("payload", sa.LargeBinary),
    sa.Column("details", JSON),
)
COLUMNS = ["event_id", "label", "at", "weight", "payload", "details"]
T0 = datetime(2026, 12, 5, 9, tzinfo=UTC)
DETAILS = [
    {"fit": 95, "reasons": ["title: vp"], "nested": {"list": [[1, 2], [3]]}},
    [1, [2, [3]], {"a": None}],  # a JSON list is a value, not another dimension of the array
    [],
    {},
    "a JSON string, ż",
    42,
    {"beyond 64 bits": 2**70},
    None,
]


def rows(n: int, offset: int = 0) -> list[dict]:
    return [
        {
            "event_id": uuid.uuid5(uuid.NAMESPACE_URL, f"many-rows/{offset + i}"),
            "label": None if i % 5 == 0 else f"row {offset + i} — ą",
            "at": T0 + timedelta(seconds=offset + i),
            "weight": (offset + i) / 7,
            "payload": bytes([i % 256]) * (i % 7),
            "details": DETAILS[i % len(DETAILS)],
        }
        for i in range(n)
    ]


@pytest.fixture
async def db(settings):
    """The database with the probe table, emptied for each test."""
    db = Database(settings.database_url)
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        await conn.execute(sa.delete(probe))
    yield db
    await db.dispose()


async def stored(db: Database) -> list[dict]:
    async with db.unit_of_work() as session:
        found = await session.execute(sa.select(probe).order_by(probe.c.id))
        return [{name: row[name] for name in COLUMNS} for row in found.mappings()]


async def test_rows_go_in_in_order_and_come_back_as_they_went_in(db):
    many = ManyRows(probe, COLUMNS)
    given = rows(300)
    async with db.unit_of_work() as session:
        await session.execute(many.insert(), many.params(given))
    again = rows(20, offset=290)  # ten written already, ten new
    async with db.unit_of_work() as session:
        await session.execute(many.insert().on_conflict_do_nothing(), many.params(again))
    assert await stored(db) == given + again[10:]


async def test_an_update_sets_each_keyed_row_from_its_own_values_and_leaves_the_rest(db):
    many = ManyRows(probe, COLUMNS)
    given = rows(40)
    async with db.unit_of_work() as session:
        await session.execute(many.insert(), many.params(given))
    changed = [
        {**row, "label": f"changed {i}", "details": DETAILS[(i + 3) % len(DETAILS)]}
        for i, row in enumerate(given[::3])
    ]
    changing = ManyRows(probe, ["event_id", "label", "details"])
    async with db.unit_of_work() as session:
        done = await session.execute(changing.update("event_id"), changing.params(changed))
    assert done.rowcount == len(changed)
    assert await stored(db) == [given[i] if i % 3 else changed[i // 3] for i in range(len(given))]


def test_an_array_column_is_refused():
    table = sa.Table(
        "with_array", sa.MetaData(), sa.Column("tags", ARRAY(sa.Text)), sa.Column("n", sa.Integer)
    )
    with pytest.raises(TypeError):
        ManyRows(table, ["tags", "n"])
