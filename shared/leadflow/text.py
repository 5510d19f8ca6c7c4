"""Values that cannot be stored or relayed (NUL, unpaired surrogates, integers beyond 64 bits,
NaN and infinities) are refused at the edge, naming their path."""

from __future__ import annotations

import math
import re
from typing import Any

from pydantic import BaseModel, model_validator
from pydantic_core import PydanticCustomError

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def printable(name: str) -> str:
    """A client's own key as text anyone can read and PostgreSQL can store (no NUL, no lone
    surrogate): characters that are not printable are written as `\\uXXXX`."""
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in name)


def _path(parts: tuple) -> str:
    return ".".join(printable(str(p)) for p in parts)


def check_storable(value: Any, path: tuple = ()) -> None:
    """Raise a validation error naming the first string (or key) PostgreSQL would refuse."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            raise PydanticCustomError(
                "unstorable_text",
                "{path} contains a NUL character or an unpaired surrogate",
                {"path": _path(path) or "value"},
            )
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise PydanticCustomError(
                "unstorable_number",
                "{path} is an integer beyond 64 bits; send it as a string",
                {"path": _path(path) or "value"},
            )
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise PydanticCustomError(
                "unstorable_number",
                "{path} is not a finite number",
                {"path": _path(path) or "value"},
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, (*path, key))
            check_storable(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_storable(item, (*path, index))


def unstorable_parameters(params: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Query or path parameters PostgreSQL would refuse, as `{field, message}` problems: a NUL
    in a filter must be a 422 naming the filter, not an error from the database."""
    return [
        {
            "field": printable(name),
            "message": "contains a NUL character or an unpaired surrogate",
        }
        for name, value in params
        if _UNSTORABLE.search(name) or (isinstance(value, str) and _UNSTORABLE.search(value))
    ]


class StorableModel(BaseModel):
    """A request body whose every value (declared fields and kept extras alike) can be stored."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        check_storable(data)
        return data
