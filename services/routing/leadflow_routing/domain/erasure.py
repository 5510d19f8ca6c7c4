"""What routing keeps of an erased lead's webhook bodies: the lead in them redacted."""

from __future__ import annotations

import orjson
from leadflow.contracts.erasure import without_personal_data


def body_without_personal_data(raw: bytes) -> bytes:
    """A stored webhook body with the lead in it redacted; other bodies stay as they are."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return b"{}"
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict) and isinstance(data.get("lead"), dict):
        data["lead"] = without_personal_data(data["lead"])
    return orjson.dumps(body)
