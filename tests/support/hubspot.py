"""HubSpot in integration tests: settings of a stack that talks to the local HubSpot server with
a connectors document, and webhook requests signed as HubSpot signs them (v3)."""

from __future__ import annotations

import time

import orjson
from leadflow_ingest.domain.hubspot import signature_v3

WEBHOOK_URI = "http://ingest/v1/sources/hubspot/webhook"


async def settings_with_connectors(stack, hubspot, folder, document: str, *, secret, token):
    """Isolated settings reading `document` as the connectors file (written in `folder`), with
    the HubSpot app's client secret and private-app token, and `hubspot` as its API."""
    path = folder / "connectors.yaml"
    path.write_text(document, encoding="utf-8")
    return await stack.isolated_settings(
        hubspot_client_secret=secret,
        hubspot_private_app_token=token,
        hubspot_api_url=hubspot.url,
        connectors_file=str(path),
    )


def signed_webhook(events: list[dict], secret: str) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a webhook batch HubSpot signs with the app's client secret."""
    body, ts = orjson.dumps(events), str(int(time.time() * 1000))
    return body, {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": ts,
        "X-HubSpot-Signature-v3": signature_v3(secret, "POST", WEBHOOK_URI, body, ts),
    }
