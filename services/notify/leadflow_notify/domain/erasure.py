"""What notify keeps of an erased lead: its context and stored message bodies without personal data."""

from __future__ import annotations

from typing import Any

import orjson
from leadflow.contracts.erasure import without_personal_data


def context_without_personal_data(context: dict[str, Any]) -> dict[str, Any]:
    redacted = dict(context)
    if isinstance(redacted.get("lead"), dict):
        redacted["lead"] = without_personal_data(redacted["lead"])
    redacted.pop("external_id", None)
    redacted["erased"] = True
    return redacted


def body_without_personal_data(raw: bytes) -> bytes:
    """A stored message body with the lead in it redacted: the `lead` object and the event's
    own lead fields (a lead.created carries the person's name and e-mail)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return b"{}"
    data = body.get("data") if isinstance(body, dict) else None
    if isinstance(data, dict):
        lead = data.get("lead")
        data = without_personal_data(data)
        data.pop("erased", None)
        if isinstance(lead, dict):
            data["lead"] = without_personal_data(lead)
        body["data"] = data
    return orjson.dumps(body)
