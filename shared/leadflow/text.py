"""Text that PostgreSQL cannot store (NUL, unpaired surrogates) is refused at the edge, by path."""

from __future__ import annotations

import re
from typing import Any

from pydantic_core import PydanticCustomError

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _path(parts: tuple) -> str:
    return ".".join(str(p) for p in parts)


def check_storable(value: Any, path: tuple = ()) -> None:  # noqa: ANN401 - any decoded JSON
    """Raise a validation error naming the first string (or key) PostgreSQL would refuse."""
    if isinstance(value, str):
        if _UNSTORABLE.search(value):
            raise PydanticCustomError(
                "unstorable_text",
                "{path} contains a NUL character or an unpaired surrogate",
                {"path": _path(path) or "value"},
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, (*path, key))
            check_storable(item, (*path, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_storable(item, (*path, index))
