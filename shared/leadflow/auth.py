"""API-key authorisation of every endpoint, reads and writes alike: keys are compared as SHA-256
digests, each operation names the scope it needs, and the OpenAPI document declares it.

A key is presented as `Authorization: Bearer <key>` or `X-API-Key: <key>`; HTML pages also take
HTTP Basic credentials whose password is the key (any user name), for tools and scripts. People
open the pages signed in (`require_page`): a session the service's sign-in made, with a role;
a browser with neither is sent to the sign-in page. Authorisation runs before the route reads
anything: an unknown id and a known one answer the same 401 or 403.

The scope is a security requirement of the operation (`{"bearerKey": ["leads:read"]}`, one entry
per accepted scheme): OpenAPI 3.1 lets the requirement of a non-OAuth scheme list the roles the
operation needs, so clients and the test of every route read it from the standard place."""

# No `from __future__ import annotations`: FastAPI reads the dependencies' annotations at
# runtime, and they name each closure's scope.
import hashlib
import hmac
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import (
    APIKeyCookie,
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBasic,
    HTTPBasicCredentials,
    HTTPBearer,
    SecurityScopes,
)

from leadflow import audit
from leadflow.errors import Forbidden, ProblemError, Unauthorized
from leadflow.settings import DEV_API_KEY, ApiKeySpec, Scope

REALM = "Leadflow"
_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearerKey",
    description="an API key: `Authorization: Bearer <key>`",
)
_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="headerKey", description="an API key"
)
_basic = HTTPBasic(
    auto_error=False,
    realm=REALM,
    scheme_name="basicKey",
    description="HTML pages only: any user name, an API key as the password",
)
API_CHALLENGE = {"WWW-Authenticate": "Bearer"}
# The answers of every operation that takes a key, for the OpenAPI document (routers'
# `responses`): the bodies are problems (leadflow.errors.document_problems).
KEY_RESPONSES: dict[int | str, dict] = {
    401: {"description": "no API key, or an unknown one (`WWW-Authenticate` says how to give it)"},
    403: {"description": "the key lacks the scope this operation needs (`scope` names it)"},
}
PAGE_CHALLENGE = {"WWW-Authenticate": f'Basic realm="{REALM}"'}


@dataclass(frozen=True)
class Caller:
    """The key a request was authorised with: its configuration, and the key as presented, which
    a page passes on when it reads another service for the person viewing it."""

    spec: ApiKeySpec
    key: str = field(repr=False)


def find_key(keys: list[ApiKeySpec], presented: str) -> ApiKeySpec | None:
    digest = hashlib.sha256(presented.encode()).hexdigest()
    match = None
    for spec in keys:  # compare against every key so timing says nothing about which matched
        if hmac.compare_digest(digest, spec.sha256 or ""):
            match = spec
    return match


def authorize(
    request: Request, presented: str | None, scopes: list[str], challenge: dict[str, str]
) -> Caller:
    """401 (with `challenge`) without a known key, 403 naming the scope the key lacks."""
    if not presented:
        raise Unauthorized(
            "an API key is required (Authorization: Bearer <key> or X-API-Key)", headers=challenge
        )
    # the bootstrap keys of the settings and the keys issued through the API (leadflow.keys)
    spec = request.app.state.runtime.find_key(presented)
    if spec is None:
        raise Unauthorized("unknown API key", headers=challenge)
    for scope in scopes:
        if not spec.allows(scope):
            raise Forbidden(f"API key '{spec.name}' lacks the scope '{scope}'", scope=scope)
    # who the audit log names for what this request changes: the key, or the person a page
    # acted for when the page presented the pages key (feedback's console changes routing and
    # notify for a signed-in person, who has no key of their own)
    audit.actor.set(_on_behalf_of(request, presented) or f"key:{spec.name}")
    return Caller(spec, presented)


ON_BEHALF_HEADER = "X-Leadflow-On-Behalf-Of"
_PERSON_ACTOR = re.compile(r"^user:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _on_behalf_of(request: Request, presented: str) -> str | None:
    """The person (`user:<id>`) named by `X-Leadflow-On-Behalf-Of`, taken only from the pages
    key (`LEADFLOW_PAGES_API_KEY`; the development key stands in for it in development): any
    other key naming someone is audited as itself."""
    named = request.headers.get(ON_BEHALF_HEADER)
    if not named or not _PERSON_ACTOR.fullmatch(named):
        return None
    settings = request.app.state.runtime.settings
    pages = settings.pages_api_key
    expected = pages.get_secret_value() if pages else None
    if expected is None and settings.env == "development":
        expected = DEV_API_KEY
    if expected is None or not hmac.compare_digest(expected.encode(), presented.encode()):
        return None
    return named


async def _api_caller(
    request: Request,
    scopes: SecurityScopes,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Caller:
    presented = (bearer.credentials if bearer else None) or header
    return authorize(request, presented, scopes.scopes, API_CHALLENGE)


def require_scope(scope: Scope) -> Callable[..., ApiKeySpec]:
    """A dependency of an API operation: the key, which must hold `scope`."""

    async def dependency(
        caller: Annotated[Caller, Security(_api_caller, scopes=[scope])],
    ) -> ApiKeySpec:
        return caller.spec

    return dependency


def scoped_router(scope: Scope, tag: str) -> APIRouter:
    """A router of `/v1` operations that all need `scope` (a feature's reads, or its changes):
    each declares it and its 401 and 403 answers in the OpenAPI document."""
    return APIRouter(
        prefix="/v1",
        tags=[tag],
        responses=KEY_RESPONSES,
        dependencies=[Depends(require_scope(scope))],
    )


# --- people signed in to the pages --------------------------------------------------------

_session = APIKeyCookie(
    name="leadflow_session",
    auto_error=False,
    scheme_name="signedIn",
    description="HTML pages only: the session cookie of a person signed in at `/login`",
)
SIGN_IN_PATH = "/login"


@dataclass(frozen=True)
class Person:
    """Someone signed in with a role: the scopes the role holds (as a key's), and the teams
    whose leads they see when the role limits them to their teams."""

    id: uuid.UUID
    role: str
    scopes: frozenset[str]
    teams: tuple[str, ...] = ()

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


class SignInRequired(ProblemError):
    """A browser without a session or a key: sent to the sign-in page, which brings it back."""

    status = 303
    title = "See other"

    def __init__(self, request: Request) -> None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        super().__init__(
            "sign in first",
            headers={"Location": f"{SIGN_IN_PATH}?next={quote(here, safe='')}"},
        )


def _browser(request: Request) -> bool:
    """A navigation of a browser (it asks for HTML first), not a tool or a script."""
    return "text/html" in request.headers.get("accept", "")


async def _page_key(
    scopes: SecurityScopes,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
    basic: Annotated[HTTPBasicCredentials | None, Depends(_basic)],
    cookie: Annotated[str | None, Depends(_session)],
) -> str | None:
    # the cookie is read by the session middleware; it is named here for the OpenAPI document
    return (bearer.credentials if bearer else None) or header or (basic and basic.password)


def require_page(
    scope: Scope, signed_in: Callable[..., Awaitable[Person | None]]
) -> Callable[..., Awaitable[Caller | Person]]:
    """A dependency of an HTML page: a key holding `scope` (Bearer, X-API-Key or the password of
    HTTP Basic), else the person `signed_in` finds in the session, whose role must hold it.
    Without either, a browser is redirected to the sign-in page (and brought back after it); a
    tool gets 401 with the Basic challenge it may answer with a key."""

    async def dependency(
        request: Request,
        presented: Annotated[str | None, Security(_page_key, scopes=[scope])],
        person: Annotated[Person | None, Depends(signed_in)],
    ) -> Caller | Person:
        if presented:
            return authorize(request, presented, [scope], PAGE_CHALLENGE)
        if person is not None:
            if not person.allows(scope):
                raise Forbidden(f"the role '{person.role}' lacks the scope '{scope}'", scope=scope)
            audit.actor.set(f"user:{person.id}")
            return person
        if _browser(request):
            raise SignInRequired(request)
        return authorize(request, None, [scope], PAGE_CHALLENGE)

    return dependency
