"""Standard Webhooks signing and verification, and the guard against private webhook targets."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from urllib.parse import urlsplit


class WebhookVerificationError(Exception):
    pass


class UnsafeTarget(ValueError):
    pass


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    """The key bytes of a `whsec_<base64>` secret; padding may be left off, as the reference
    libraries allow. Raises ValueError when the rest is not base64."""
    raw = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the secret after `whsec_` must be base64") from exc


def check_secret(secret: str) -> str:
    """The secret unchanged if it can sign; ValueError otherwise (for request validation)."""
    if len(_key(secret)) < 16:
        raise ValueError("the secret must hold at least 16 bytes of key")
    return secret


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with the secret's key bytes."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return (
        "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()
    )


def signature_headers(
    secrets_: list[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """Headers for one delivery; several secrets (during rotation) give several signatures."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(sign(s, msg_id, ts, body) for s in secrets_),
        "content-type": "application/json",
    }


def verify(
    secret: str,
    headers: dict[str, str],
    body: bytes,
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> None:
    """Raise WebhookVerificationError unless one signature matches and the timestamp is fresh."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lowered["webhook-id"]
        ts = int(lowered["webhook-timestamp"])
        signatures = lowered["webhook-signature"].split()
    except (KeyError, ValueError) as exc:
        raise WebhookVerificationError("missing or malformed webhook headers") from exc
    if abs((now if now is not None else time.time()) - ts) > tolerance:
        raise WebhookVerificationError("timestamp outside the tolerance")
    expected = sign(secret, msg_id, ts, body)
    if not any(hmac.compare_digest(expected.encode(), s.encode()) for s in signatures):
        raise WebhookVerificationError("no matching signature")


def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse non-HTTP(S) URLs and hosts that resolve to private, loopback or link-local addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeTarget("url: must be an absolute http(s) URL")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UnsafeTarget(f"url: host {parts.hostname!r} does not resolve") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise UnsafeTarget(f"url: {parts.hostname} resolves to non-public address {address}")
