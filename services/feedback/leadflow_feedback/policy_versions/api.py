"""HTTP of the policy's versions: read with `config:read`, written and published with `admin`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from leadflow import paging
from leadflow.auth import scoped_router
from leadflow.errors import ProblemError, Unprocessable
from leadflow.paging import Page, PageRequest
from leadflow.service import RuntimeDep

from leadflow_feedback.policy_versions import store, use_cases
from leadflow_feedback.policy_versions.schemas import DiffOut, VersionDetail, VersionOut

reads = scoped_router("config:read", "policy")
changes = scoped_router("admin", "policy")
routers = [reads, changes]
VersionPage = Annotated[PageRequest, Depends(paging.query(store.VERSIONS))]

# A version's number, as the database keeps it (a 32-bit integer).
Number = Annotated[int, Path(ge=1, le=2_147_483_647, description="a version's number")]

# A policy is written as YAML; JSON, being YAML too, is taken as well.
POLICY_MEDIA_TYPES = ("application/yaml", "text/yaml", "application/x-yaml", "application/json")
_POLICY_BODY = {
    "requestBody": {
        "required": True,
        "description": "the whole policy, as `leadflow policy check` takes it",
        "content": {media: {"schema": {"type": "string"}} for media in POLICY_MEDIA_TYPES},
    }
}


@reads.get("/policy", response_model=VersionDetail)
async def current_policy(rt: RuntimeDep) -> VersionDetail:
    """The current policy: the version published last, its text and its document."""
    return await use_cases.current(rt)


@reads.get("/policy/versions", response_model=Page[VersionOut])
async def list_versions(rt: RuntimeDep, wanted: VersionPage) -> Page[VersionOut]:
    """The versions, oldest first unless sorted otherwise, with their state: draft, published
    (the current one) or superseded. Cursor-paginated as every list."""
    return await use_cases.versions(rt, wanted)


@reads.get("/policy/versions/{number}", response_model=VersionDetail)
async def get_version(number: Number, rt: RuntimeDep) -> VersionDetail:
    return await use_cases.version(rt, number)


@reads.get("/policy/versions/{before}/diff/{after}", response_model=DiffOut)
async def diff_versions(before: Number, after: Number, rt: RuntimeDep) -> DiffOut:
    """What changed from one version to another: every value by its path, and a unified diff
    of the two texts."""
    return await use_cases.diff(rt, before, after)


@changes.post(
    "/policy/versions",
    status_code=201,
    response_model=VersionDetail,
    openapi_extra=_POLICY_BODY,
    responses={
        415: {"description": "the body is not YAML or JSON"},
        422: {"description": "the policy is invalid: `errors` names each path and its `line`"},
    },
)
async def create_version(request: Request, rt: RuntimeDep) -> VersionDetail:
    """Keep a new version of the policy as a draft: validated as `leadflow policy check` does
    (a refused one is not kept). Its `version` must be its own: decisions record it."""
    media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media not in POLICY_MEDIA_TYPES:
        raise ProblemError(
            f"send the policy as one of {', '.join(POLICY_MEDIA_TYPES)}",
            status=415,
            title="Unsupported media type",
        )
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError:
        raise Unprocessable("the policy must be UTF-8 text") from None
    return await use_cases.create_version(rt, text)


@changes.post("/policy/versions/{number}/publish", response_model=VersionDetail)
async def publish_version(number: Number, rt: RuntimeDep) -> VersionDetail:
    """Make a version the current policy: every service applies it within seconds, without a
    restart. Publishing an older version again rolls back to it. Clocks already running keep
    the limits they were opened with."""
    return await use_cases.publish(rt, number)


@changes.post(
    "/policy/rollback",
    response_model=VersionDetail,
    responses={409: {"description": "no version was published before the current one"}},
)
async def roll_back(rt: RuntimeDep) -> VersionDetail:
    """Publish again the version that was current before the current one."""
    return await use_cases.rollback(rt)
