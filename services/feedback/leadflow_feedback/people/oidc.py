"""Sign-in through the company's OpenID Connect identity provider, with Authlib's Starlette
client: the authorization code flow with PKCE (S256), a state and a nonce kept in the session
cookie between the two legs, the ID token's signature, issuer, audience, expiry and nonce checked
by Authlib against the provider's published keys (its discovery document)."""

from __future__ import annotations

import uuid
from pathlib import Path

from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from fastapi import Request
from fastapi.responses import Response
from leadflow.errors import NotFound, ProblemError
from leadflow.service import Runtime
from leadflow.sessions import local_path
from leadflow.settings import Settings

from leadflow_feedback.people import use_cases

CALLBACK_PATH = "/login/oidc/callback"
_clients: dict[tuple, StarletteOAuth2App] = {}


class IdentityProviderRefused(ProblemError):
    status = 400
    title = "Sign-in failed"


def configured(settings: Settings) -> bool:
    return bool(settings.oidc_discovery_url and settings.oidc_client_id)


def _discovery(url: str) -> str:
    """The discovery document's URL; an issuer URL gets the well-known path."""
    if "/.well-known/" in url:
        return url
    return url.rstrip("/") + "/.well-known/openid-configuration"


def _secret(settings: Settings) -> str | None:
    if settings.oidc_client_secret_file:
        return Path(settings.oidc_client_secret_file).read_text().strip()
    return settings.oidc_client_secret.get_secret_value() if settings.oidc_client_secret else None


def client(settings: Settings) -> StarletteOAuth2App:
    """The provider's client, one per configuration (it caches the discovery document)."""
    key = (settings.oidc_discovery_url, settings.oidc_client_id, settings.oidc_scopes)
    if key not in _clients:
        registry = OAuth()
        registry.register(
            name="company",
            client_id=settings.oidc_client_id,
            client_secret=_secret(settings),
            server_metadata_url=_discovery(settings.oidc_discovery_url or ""),
            client_kwargs={"scope": settings.oidc_scopes, "code_challenge_method": "S256"},
        )
        _clients[key] = registry.create_client("company")
    return _clients[key]


async def start(rt: Runtime, request: Request, next_: str) -> Response:
    if not configured(rt.settings):
        raise NotFound("sign-in with an identity provider is not configured")
    request.session["oidc_next"] = next_
    redirect_uri = rt.settings.public_url.rstrip("/") + CALLBACK_PATH
    return await client(rt.settings).authorize_redirect(request, redirect_uri)


async def finish(rt: Runtime, request: Request) -> tuple[uuid.UUID, str]:
    """The person the provider's answer names, and where they were going."""
    if not configured(rt.settings):
        raise NotFound("sign-in with an identity provider is not configured")
    provider = client(rt.settings)
    try:
        token = await provider.authorize_access_token(request)
    except OAuthError as exc:
        raise IdentityProviderRefused(
            f"the identity provider's answer was refused: {exc.error}"
        ) from None
    claims = dict(token.get("userinfo") or {})
    if not claims.get("sub"):
        raise IdentityProviderRefused("the identity provider sent no ID token")
    metadata = await provider.load_server_metadata()
    user_id = await use_cases.person_from_identity(rt, str(metadata["issuer"]), claims)
    return user_id, local_path(request.session.pop("oidc_next", None))
