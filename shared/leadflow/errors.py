"""Typed errors with their HTTP meaning, rendered once as RFC 9457 application/problem+json."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from leadflow.db import TRANSIENT_TYPES, is_transient
from leadflow.text import printable, unstorable_parameters

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"


class ProblemError(Exception):
    status = 400
    title = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status or self.status
        self.title = title or self.title
        self.errors = errors
        self.headers = headers
        self.extra = extra


class NotFound(ProblemError):
    status = 404
    title = "Not found"


class Conflict(ProblemError):
    status = 409
    title = "Conflict"


class Unprocessable(ProblemError):
    status = 422
    title = "Invalid request"


class LeadGone(ProblemError):
    """The lead was erased (`lead.erased`): nothing more is done with it."""

    status = 410
    title = "Gone"

    def __init__(self, lead_id: object, **extra: Any) -> None:
        super().__init__(f"lead {lead_id} was erased; its personal data is gone", **extra)


class Unauthorized(ProblemError):
    status = 401
    title = "Unauthorized"


class Forbidden(ProblemError):
    status = 403
    title = "Forbidden"


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://leadflow.dev/problems/{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def field_path(loc: tuple | list) -> str:
    parts = [printable(str(p)) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def validation_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic errors as `{field, message}`; a `path` in the error's context extends its field."""
    out = []
    for e in errors:
        loc = list(e.get("loc", ()))
        if e.get("type") == "json_invalid":
            loc = ["body"]  # the decoder's character offset is not a field
        inner = (e.get("ctx") or {}).get("path")
        if inner and inner != "value":
            loc.extend(str(inner).split("."))
        out.append({"field": field_path(loc), "message": printable(e.get("msg", "invalid"))})
    return out


async def storable_parameters(request: Request) -> None:
    """A dependency of every route (the app factory adds it): path and query parameters that
    could not be stored or compared in PostgreSQL are refused with 422 naming them."""
    errors = unstorable_parameters(
        [*request.path_params.items(), *request.query_params.multi_items()]
    )
    if errors:
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        raise Unprocessable(f"invalid field(s): {fields}", errors=errors)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            instance=request.url.path,
            errors=exc.errors,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors()))
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        return problem_response(
            422,
            "Invalid request",
            f"invalid field(s): {fields}",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}
        return problem_response(
            exc.status_code,
            titles.get(exc.status_code, "HTTP error"),
            str(exc.detail),
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    # Registered per class (not only for Exception) so the answer is final: Starlette re-raises
    # what reaches the catch-all handler after answering, which a test client sees as a crash.
    for transient in TRANSIENT_TYPES:
        app.add_exception_handler(transient, _unexpected)

    @app.exception_handler(Exception)
    async def _catch_all(request: Request, exc: Exception) -> JSONResponse:
        return await _unexpected(request, exc)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    if is_transient(exc):
        log.warning("dependency unavailable", extra={"error": repr(exc)[:300]})
        return problem_response(
            503,
            "Service unavailable",
            "a dependency (database or broker) is unreachable; retry",
            instance=request.url.path,
            headers={"Retry-After": "5"},
        )
    log.exception("unhandled error", extra={"path": request.url.path})
    return problem_response(
        500, "Internal error", "unexpected error; it has been logged", instance=request.url.path
    )


PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `errors` names each refused field.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}


def document_problems(app: FastAPI) -> None:
    """The OpenAPI document tells what the handlers above really answer: every error of an
    operation (FastAPI's 422, and the ones a route declares) is `application/problem+json`
    with the Problem schema."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        for schemas_name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(schemas_name, None)
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                for status, response in operation.get("responses", {}).items():
                    if status[:1] in ("4", "5"):
                        response["content"] = {
                            PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}
                        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
