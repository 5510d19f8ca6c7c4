"""The one list mechanism (leadflow.paging): keyset pages over the real PostgreSQL that neither
repeat nor skip an item when rows are added between pages, descending sorts, equality filters,
the envelope and the `Link` header, and the 422 naming a bad cursor, sort, limit or filter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi import Depends, FastAPI
from leadflow import paging
from leadflow.db import Database
from leadflow.errors import Unprocessable, install_problem_handlers
from leadflow.paging import Listing, PageRequest

meta = sa.MetaData(schema="paging_test")
items = sa.Table(
    "items",
    meta,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
ITEMS = Listing(
    name="items",
    key=items.c.id,
    sorts={"name": items.c.name, "at": items.c.at},
    default_sort="name",
    filters={"kind": (items.c.kind, str)},
    default_limit=3,
    max_limit=10,
)
T0 = datetime(2026, 12, 1, tzinfo=UTC)


def wanted(**asked) -> PageRequest:
    asked = {"limit": 3, "sort": "name", "cursor": None, "filters": {}, **asked}
    return PageRequest(ITEMS, **asked)


@pytest.fixture
async def db(settings):
    database = Database(settings.database_url)
    async with database.unit_of_work() as session:
        await session.execute(sa.text("CREATE SCHEMA IF NOT EXISTS paging_test"))
        await session.run_sync(lambda s: meta.create_all(s.connection()))
    yield database
    await database.dispose()


async def add(db: Database, *rows: tuple[str, str, int]) -> None:
    async with db.unit_of_work() as session:
        await session.execute(
            sa.insert(items),
            [
                {"id": uuid.uuid4(), "name": n, "kind": k, "at": T0 + timedelta(minutes=m)}
                for n, k, m in rows
            ],
        )


async def read(db: Database, request: PageRequest):
    async with db.unit_of_work() as session:
        rows = (await session.execute(request.select(sa.select(items)))).all()
    return request.page(rows, lambda row: row.name)


async def read_all(db: Database, between=None, **asked) -> list[str]:
    seen: list[str] = []
    page = await read(db, wanted(**asked))
    seen += page.items
    while page.next_cursor:
        if between is not None:
            await between()
        page = await read(db, wanted(**asked, cursor=page.next_cursor))
        seen += page.items
    return seen


async def test_pages_neither_repeat_nor_skip_items_when_rows_are_added_between_them(db):
    await add(db, *[(name, "a", n) for n, name in enumerate("gfedcba")])
    added = iter("ABCDEFG")  # upper case sorts before every item already paged

    async def insert_before_the_cursor():
        await add(db, (next(added), "a", 99))

    seen = await read_all(db, between=insert_before_the_cursor)
    assert [name for name in seen if name.islower()] == list("abcdefg")


async def test_a_descending_sort_a_filter_and_ties_broken_by_the_key(db):
    await add(db, ("x", "a", 1), ("x", "a", 2), ("x", "a", 3), ("y", "b", 4), ("z", "a", 5))
    assert await read_all(db, sort="-name", filters={"kind": "a"}) == ["z", "x", "x", "x"]
    assert await read_all(db, sort="-at", limit=1) == ["z", "y", "x", "x", "x"]


async def test_the_last_page_has_no_cursor_and_an_empty_list_one_page(db):
    assert (await read(db, wanted())).model_dump() == {"items": [], "next_cursor": None}
    await add(db, ("a", "a", 1), ("b", "a", 2), ("c", "a", 3))
    assert (await read(db, wanted())).next_cursor is None


@pytest.mark.parametrize(
    "cursor",
    ["forged", "", "eyJ4IjoxfQ", paging.PageRequest(Listing(
        name="others", key=items.c.id, sorts={"name": items.c.name}, default_sort="name"
    ), 1, "name", None, {})._cursor("a", "2634dbef-2910-4797-989a-efcda88cc90b")],
    ids=["forged", "empty", "not-a-cursor", "another-list"],
)  # fmt: skip
def test_a_cursor_this_list_did_not_give_out_is_refused_naming_cursor(cursor):
    with pytest.raises(Unprocessable) as refused:
        wanted(cursor=cursor or "x").select(sa.select(items))
    assert refused.value.extra["field"] == "cursor"


def test_a_cursor_of_another_sort_is_refused():
    cursor = wanted()._cursor("a", str(uuid.uuid4()))
    wanted(cursor=cursor).select(sa.select(items))  # its own sort takes it
    with pytest.raises(Unprocessable):
        wanted(sort="-name", cursor=cursor).select(sa.select(items))


def test_a_listing_refuses_a_default_sort_it_does_not_have():
    with pytest.raises(ValueError, match="default sort"):
        Listing(name="bad", key=items.c.id, sorts={"name": items.c.name}, default_sort="at")


async def test_the_query_parameters_the_envelope_and_the_link_header():
    app = FastAPI()
    install_problem_handlers(app)
    names = [f"n{i}" for i in range(5)]

    @app.get("/things", response_model=paging.Page[str])
    async def things(asked: PageRequest = Depends(paging.query(ITEMS))):
        start = int(asked.cursor or 0)
        shown = names[start : start + asked.limit]
        following = start + asked.limit
        if following < len(names):
            url = asked.url.include_query_params(cursor=str(following))
            asked.response.headers["Link"] = f'<{url}>; rel="next"'
        return {"items": shown, "next_cursor": None, "sort": asked.sort, **asked.filters}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ok = await client.get("/things", params={"kind": "a", "sort": "-at"})
        assert ok.status_code == 200 and ok.json()["items"] == ["n0", "n1", "n2"]
        assert ok.headers["link"] == '<http://test/things?kind=a&sort=-at&cursor=3>; rel="next"'
        for bad, name in (({"sort": "kind"}, "sort"), ({"limit": 11}, "limit")):
            refused = await client.get("/things", params=bad)
            assert refused.status_code == 422
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert name in {e["field"].split(".")[-1] for e in refused.json()["errors"]}
    documented = {p["name"] for p in app.openapi()["paths"]["/things"]["get"]["parameters"]}
    assert documented == {"limit", "cursor", "sort", "kind"}
