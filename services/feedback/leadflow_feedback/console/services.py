"""The console's calls to routing, notify and ingest over their HTTP APIs: with the key a tool
presented, or for a signed-in person with feedback's pages key, naming the person
(`X-Leadflow-On-Behalf-Of`) so the service audits the change as theirs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx
from leadflow.auth import ON_BEHALF_HEADER, Caller, Person
from leadflow.service import Runtime
from leadflow.settings import DEV_API_KEY

log = logging.getLogger(__name__)
TIMEOUT = 5.0


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def items(self) -> list[dict[str, Any]]:
        """A list's items, whether the list is paged (`items`) or a plain array."""
        if isinstance(self.body, dict):
            return list(self.body.get("items") or [])
        return list(self.body) if isinstance(self.body, list) else []

    @property
    def problem(self) -> str:
        """What the service said was wrong, for the page (a problem's detail and its fields)."""
        if self.ok:
            return ""
        body = self.body if isinstance(self.body, dict) else {}
        detail = body.get("detail") or body.get("title") or f"HTTP {self.status}"
        if isinstance(detail, list):  # FastAPI's validation errors
            detail = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', [])[1:])}: {e.get('msg')}" for e in detail
            )
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            detail += " — " + "; ".join(
                f"{e.get('field') or '.'.join(str(p) for p in e.get('loc', [])[1:])}: "
                f"{e.get('message') or e.get('msg')}"
                for e in errors
                if isinstance(e, dict)
            )
        return str(detail)


@dataclass(frozen=True)
class Services:
    """Routing, notify and ingest as the console's viewer reaches them."""

    rt: Runtime
    key: str | None
    on_behalf_of: str | None = None

    @classmethod
    def of(cls, rt: Runtime, viewer: Caller | Person) -> Services:
        if isinstance(viewer, Caller):
            return cls(rt, viewer.key)
        key = rt.settings.pages_api_key
        if key is None:
            secret = DEV_API_KEY if rt.settings.env == "development" else None
        else:
            secret = key.get_secret_value()
        return cls(rt, secret, f"user:{viewer.id}")

    def _base(self, service: str) -> str:
        settings = self.rt.settings
        urls = {
            "routing": settings.routing_url,
            "notify": settings.notify_url,
            "ingest": settings.ingest_url,
        }
        return urls[service].rstrip("/")

    async def call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Answer:
        if self.key is None:
            return Answer(503, {"detail": "LEADFLOW_PAGES_API_KEY is not set"})
        headers = {"X-API-Key": self.key}
        if self.on_behalf_of:
            headers[ON_BEHALF_HEADER] = self.on_behalf_of
        url = self._base(service) + path
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT) as client:
                response = await client.request(
                    method, url, json=json, params=params, headers=headers
                )
        except httpx.HTTPError as exc:
            log.warning("console call failed", extra={"url": url, "error": type(exc).__name__})
            return Answer(502, {"detail": f"{service} did not answer: {type(exc).__name__}"})
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = {"detail": response.text[:300]}
        return Answer(response.status_code, body)

    async def get(self, service: str, path: str, **params: Any) -> Answer:
        wanted = {k: v for k, v in params.items() if v is not None}
        return await self.call("GET", service, path, params=wanted or None)

    async def everything(self, service: str, path: str, **params: Any) -> Answer:
        """Every item of a paged list (the console's tables are whole, so their CSV is)."""
        items: list[dict[str, Any]] = []
        cursor = None
        for _ in range(20):
            answer = await self.get(service, path, limit=500, cursor=cursor, **params)
            if not answer.ok:
                return answer
            items.extend(answer.items)
            cursor = answer.body.get("next_cursor") if isinstance(answer.body, dict) else None
            if not cursor:
                break
        return Answer(200, {"items": items})
