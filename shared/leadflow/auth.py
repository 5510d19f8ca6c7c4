"""API-key authentication for write endpoints: keys are compared as SHA-256 digests, by scope."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from leadflow.errors import Forbidden, Unauthorized
from leadflow.settings import ApiKeySpec

_bearer = HTTPBearer(auto_error=False)
_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def find_key(keys: list[ApiKeySpec], presented: str) -> ApiKeySpec | None:
    digest = hashlib.sha256(presented.encode()).hexdigest()
    match = None
    for spec in keys:  # compare against every key so timing says nothing about which matched
        if hmac.compare_digest(digest, spec.sha256 or ""):
            match = spec
    return match


def require_scope(scope: str) -> Callable[..., ApiKeySpec]:
    async def dependency(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header: Annotated[str | None, Depends(_header)],
    ) -> ApiKeySpec:
        presented = (bearer.credentials if bearer else None) or header
        if not presented:
            raise Unauthorized(
                "an API key is required (Authorization: Bearer <key> or X-API-Key)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        spec = find_key(request.app.state.runtime.settings.api_keys, presented)
        if spec is None:
            raise Unauthorized("unknown API key", headers={"WWW-Authenticate": "Bearer"})
        if not spec.allows(scope):
            raise Forbidden(f"API key '{spec.name}' lacks the scope '{scope}'")
        return spec

    return dependency
