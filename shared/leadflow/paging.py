"""How every list of every service is read: `limit` at a time, sorted by one of the fields the
list allows (`sort=name`, `sort=-name` for descending), narrowed by equality filters, continued
with an opaque `cursor`; answered as `{"items": [...], "next_cursor": ...}` with an RFC 8288
`Link: <…>; rel="next"` header while more follow.

Paging is by key, not by offset: the cursor holds the last item's sort value and its unique
key, so an item added or removed meanwhile never shifts the next page (nothing is seen twice or
skipped). A cursor names its list and its sort: one given out by another list, or for another
sort, is refused. A bad `cursor`, `sort`, `limit` or filter value is a 422 problem naming the
parameter.

A list declares itself once as a `Listing` (its sortable fields and filters, each a column or a
non-null expression of the select it pages); `query(listing)` is the endpoint's dependency
(its parameters appear in the OpenAPI document), `PageRequest.select` narrows, orders and
limits the statement, and `PageRequest.page` turns the rows read into the page and sets the
`Link` header."""

from __future__ import annotations

import base64
import binascii
import inspect
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

import sqlalchemy as sa
from fastapi import Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.engine import Row
from sqlalchemy.sql import ColumnElement, Select

from leadflow.errors import Unprocessable

T = TypeVar("T")
SORT_LABEL = "paging_sort"
KEY_LABEL = "paging_key"


class Page(BaseModel, Generic[T]):
    """One page of a list."""

    items: list[T]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null on the last one"
    )


@dataclass(frozen=True)
class Listing:
    """What a list may be sorted and filtered by.

    `key` is unique per item (the tie-breaker, and the second half of the cursor); each sort is
    a column or expression that is never null (paging compares values). A filter is a column
    and the type its query value is read as (`uuid.UUID`, `bool`, `str`, a `Literal`...)."""

    name: str
    key: ColumnElement[Any]
    sorts: Mapping[str, ColumnElement[Any]]
    default_sort: str
    filters: Mapping[str, tuple[ColumnElement[Any], Any]] = field(default_factory=dict)
    default_limit: int = 50
    max_limit: int = 500

    def __post_init__(self) -> None:
        if self.default_sort.removeprefix("-") not in self.sorts:
            raise ValueError(f"{self.name}: default sort {self.default_sort!r} is not a sort")

    @property
    def sort_values(self) -> tuple[str, ...]:
        return tuple(v for name in self.sorts for v in (name, f"-{name}"))


@dataclass
class PageRequest:
    """One request for a page: what the query parameters asked for, checked."""

    listing: Listing
    limit: int
    sort: str
    cursor: str | None
    filters: dict[str, Any]
    url: Any = None  # the request's URL, for the `Link` header
    response: Response | None = None

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def sort_expression(self) -> ColumnElement[Any]:
        return self.listing.sorts[self.sort.removeprefix("-")]

    def select(self, query: Select) -> Select:
        """`query` filtered, started after the cursor, ordered and limited to one more row than
        the page (which tells whether another page follows)."""
        sort, key = self.sort_expression, self.listing.key
        query = query.add_columns(sort.label(SORT_LABEL), key.label(KEY_LABEL))
        for name, value in self.filters.items():
            if value is not None:
                query = query.where(self.listing.filters[name][0] == value)
        if self.cursor is not None:
            after_sort, after_key = self._position(self.cursor)
            here, there = sa.tuple_(sort, key), sa.tuple_(after_sort, after_key)
            query = query.where(here < there if self.descending else here > there)
        order = (sort.desc(), key.desc()) if self.descending else (sort.asc(), key.asc())
        return query.order_by(None).order_by(*order).limit(self.limit + 1)

    def page(self, rows: Sequence[Row], item: Callable[[Row], T]) -> Page[T]:
        """The page of the rows `select` read, each made an item by `item`; sets the `Link`
        header when another page follows."""
        more = len(rows) > self.limit
        shown = rows[: self.limit]
        cursor = None
        if more and shown:
            last = shown[-1]._mapping
            cursor = self._cursor(last[SORT_LABEL], last[KEY_LABEL])
        if cursor is not None and self.url is not None and self.response is not None:
            following = self.url.include_query_params(cursor=cursor)
            self.response.headers["Link"] = f'<{following}>; rel="next"'
        return Page[Any](items=[item(row) for row in shown], next_cursor=cursor)

    # --- the cursor ---------------------------------------------------------------------

    def _cursor(self, sort_value: Any, key_value: Any) -> str:
        document = [self.listing.name, self.sort, _plain(sort_value), _plain(key_value)]
        raw = json.dumps(document, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _position(self, cursor: str) -> tuple[Any, Any]:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            name, sort, sort_value, key_value = json.loads(raw)
            if name != self.listing.name or sort != self.sort:
                raise ValueError("another list's or another sort's cursor")
            return (
                _typed(sort_value, self.sort_expression.type),
                _typed(key_value, self.listing.key.type),
            )
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError):
            raise Unprocessable(
                "not a cursor this list gave out for this sort",
                field="cursor",
                errors=[{"field": "query.cursor", "message": "unknown cursor"}],
            ) from None


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    return value


def _typed(value: Any, sql_type: sa.types.TypeEngine) -> Any:
    """A cursor's value as the column's Python type (instants and ids travel as text)."""
    try:
        python_type = sql_type.python_type
    except NotImplementedError:
        return value
    if value is None:
        raise ValueError("a cursor has no nulls")
    if python_type is datetime:
        return datetime.fromisoformat(value)
    if python_type is date:
        return date.fromisoformat(value)
    if python_type is uuid.UUID:
        return uuid.UUID(value)
    if python_type is Decimal:
        return Decimal(value)
    if not isinstance(value, python_type):
        raise ValueError(f"{value!r} is not a {python_type.__name__}")
    return value


def query(listing: Listing) -> Callable[..., PageRequest]:
    """The dependency reading a page request of `listing` from the query string: `limit`,
    `cursor`, `sort` and each filter, declared so that the OpenAPI document lists them and a
    bad value is a 422 naming it."""
    sorts = ", ".join(listing.sort_values)
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter("request", keyword, annotation=Request),
        inspect.Parameter("response", keyword, annotation=Response),
        inspect.Parameter(
            "limit",
            keyword,
            annotation=int,
            default=Query(
                listing.default_limit,
                ge=1,
                le=listing.max_limit,
                description=f"items per page (1–{listing.max_limit})",
            ),
        ),
        inspect.Parameter(
            "cursor",
            keyword,
            annotation=str | None,
            default=Query(None, max_length=1000, description="`next_cursor` of the page before"),
        ),
        inspect.Parameter(
            "sort",
            keyword,
            annotation=Literal[listing.sort_values],  # type: ignore[valid-type]
            default=Query(
                listing.default_sort,
                description=f"one of {sorts} (`-`: descending); ties by the item's id",
            ),
        ),
    ]
    for name, (_, kind) in listing.filters.items():
        parameters.append(
            inspect.Parameter(
                name,
                keyword,
                annotation=kind | None,
                default=Query(None, description=f"only items whose {name} is this"),
            )
        )

    async def dependency(**given: Any) -> PageRequest:
        request: Request = given.pop("request")
        response: Response = given.pop("response")
        return PageRequest(
            listing,
            limit=given.pop("limit"),
            sort=given.pop("sort"),
            cursor=given.pop("cursor"),
            filters=given,
            url=request.url,
            response=response,
        )

    dependency.__signature__ = inspect.Signature(parameters, return_annotation=PageRequest)  # type: ignore[attr-defined]
    return dependency
