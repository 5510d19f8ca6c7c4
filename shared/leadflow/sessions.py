"""People's sessions on the HTML pages: a signed cookie, a CSRF token tied to it, the headers
every page carries (Content-Security-Policy), and the only places a sign-in may send a browser.

The cookie is Starlette's `SessionMiddleware` (its contents signed with itsdangerous, with a
timestamp): HttpOnly, `SameSite=Lax`, `Secure` in production, and refused once older than
`LEADFLOW_SESSION_MAX_AGE` since the last page. A cookie whose signature does not hold or that
expired is read as no session at all, so the person is asked to sign in again; it is never an
error. What the cookie carries is readable by its holder (signed, not encrypted): an id, the
sign-in time and the CSRF token, never a password or personal data."""

from __future__ import annotations

import hmac
import logging
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadflow.errors import Forbidden
from leadflow.settings import Settings, weak_secret

log = logging.getLogger(__name__)

COOKIE = "leadflow_session"
CSRF_FIELD = "csrf_token"
# The pages need their own stylesheet and forms posting back to themselves, nothing else: no
# script, no inline style, no frame, no other origin. A page may set a policy of its own (the
# console's allows its one script file from this site: `CONSOLE_CONTENT_SECURITY_POLICY`).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
CONSOLE_CONTENT_SECURITY_POLICY = (
    CONTENT_SECURITY_POLICY + "; script-src 'self'; connect-src 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SessionSecretError(ValueError):
    """The session secret cannot be used (unreadable file, or weak in production)."""


def session_secret(settings: Settings) -> str:
    """The secret signing the cookie: the setting, or the file it names; outside production a
    random one per process when none is set (sessions then end when the process does)."""
    if settings.session_secret_file:
        try:
            secret = Path(settings.session_secret_file).read_text().strip()
        except OSError as exc:
            raise SessionSecretError(
                f"session_secret_file {settings.session_secret_file} cannot be read: {exc}"
            ) from None
    elif settings.session_secret is not None:
        secret = settings.session_secret.get_secret_value()
    elif settings.env == "production":
        raise SessionSecretError("session_secret is required in production")
    else:
        log.warning(
            "LEADFLOW_SESSION_SECRET is not set: sessions are signed with a random secret of this "
            "process and end when it stops"
        )
        return secrets.token_urlsafe(48)
    if settings.env == "production" and weak_secret(secret):
        raise SessionSecretError("session_secret is weak: at least 32 varied characters")
    return secret


class PageHeaders:
    """Adds `PAGE_HEADERS` to every HTML answer (plain ASGI, like the app factory's others)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if headers.get("content-type", "").startswith("text/html"):
                    own_policy = headers.get("content-security-policy")
                    for name, value in PAGE_HEADERS.items():
                        headers[name] = value
                    if own_policy:  # a page that needs more (the console's script) says so
                        headers["content-security-policy"] = own_policy
            await send(message)

        await self.app(scope, receive, sending)


def install(app: FastAPI, settings: Settings) -> None:
    """Sessions and page headers on an app serving pages people sign in to."""
    app.add_middleware(PageHeaders)
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(settings),
        session_cookie=COOKIE,
        max_age=settings.session_max_age,
        same_site="lax",
        https_only=settings.env == "production",
    )


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made when the session has none yet: every form carries it."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def check_csrf(request: Request, presented: str | None) -> None:
    """403 unless the form carried its session's token (a cross-site form carries none, and the
    `SameSite=Lax` cookie is not even sent with it)."""
    expected = request.session.get("csrf")
    if not (
        isinstance(expected, str)
        and presented
        and hmac.compare_digest(expected.encode(), presented.encode())
    ):
        raise Forbidden(
            "the form's CSRF token is missing or not this session's: open the page again",
            field=CSRF_FIELD,
        )


def local_path(candidate: str | None, default: str = "/review") -> str:
    """Where a sign-in may send the browser next: a path on this site (`/...`), never another
    site (`//host`, `/\\host`, `https://...`) nor anything with control characters."""
    if not candidate or not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
        return default
    if any(ord(c) < 0x20 or c == "\\" for c in candidate):
        return default
    parts = urlsplit(candidate)
    if parts.scheme or parts.netloc:
        return default
    return candidate
