"""Notify's calls to CRMs' APIs when it delivers a routed lead: HubSpot's CRM API v3 with a
private app's token, Salesforce's REST API with an OAuth 2.0 client-credentials token. Each
write is made idempotent by a read before it (HubSpot) or an upsert by an external id
(Salesforce), and every answer that is not a success becomes a `CrmRefused` saying whether to
retry, wait (`Retry-After`, HubSpot's per-10-second window) or give up, and why. Tokens go
into request headers only: nothing here logs, and no error names a token.

HubSpot (CRM API v3, developers.hubspot.com/docs/api-reference): `GET /crm/v3/owners/?email=`;
`GET /crm/v3/objects/contacts/{id}` (or `{email}?idProperty=email`) with `associations=tasks`;
`POST /crm/v3/objects/contacts` (409 when the e-mail exists); `PATCH
/crm/v3/objects/contacts/{id}`; `POST /crm/v3/objects/tasks/batch/read`; `POST
/crm/v3/objects/tasks` with an association to the contact (type 204). Salesforce (REST API,
developer.salesforce.com/docs/atlas.en-us.api_rest.meta): `POST /services/oauth2/token`
(grant_type=client_credentials) on the org's My Domain; `PATCH
/services/data/vXX.X/sobjects/{Lead|Task}/{external id field}/{value}` (201 created, 200 or
204 updated)."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from leadflow import metrics
from leadflow.contracts.connectors import Connectors, HubSpotOutbound, SalesforceOutbound
from leadflow.settings import Settings
from leadflow.webhooks import retry_after
from pydantic import SecretStr

from leadflow_notify.domain.crm import (
    HUBSPOT,
    SALESFORCE,
    RollingWindow,
    RoutedLead,
    hubspot_contact_update,
    hubspot_new_contact,
    hubspot_task,
    owner_for,
    salesforce_lead,
    salesforce_task,
    token_fresh,
)

# The longest a write waits for HubSpot's window inside one try; longer, and the delivery is
# put back until then (its claim is leased for a minute).
MAX_PACE_WAIT = 15.0
RATE_LIMITED_WAIT = 10.0  # a 429 without Retry-After: HubSpot's window is 10 seconds


class CredentialsUnreadable(Exception):
    """A file said to hold a CRM credential cannot be read: notify does not start."""


@dataclass(frozen=True)
class CrmRecord:
    """The lead's record in a CRM."""

    system: str
    object_type: str
    object_id: str


@dataclass
class CrmRefused(Exception):
    """A CRM call that did not succeed, and what it means for the delivery: retried on the
    schedule (default), after `retry_after` without counting a try (`rate_limited`), or
    dead-lettered now (`permanent`); `linked` is the record found before the failure."""

    reason: str
    status: int | None = None
    retry_after: float | None = None
    permanent: bool = False
    rate_limited: bool = False
    linked: CrmRecord | None = None

    def __str__(self) -> str:
        return self.reason


def read_secret(value: SecretStr | None, path: str | None, name: str) -> SecretStr | None:
    """A credential from its setting, else from the file its `_FILE` setting names."""
    if value is not None or not path:
        return value
    try:
        secret = Path(path).read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsUnreadable(f"the file of {name} cannot be read: {exc}") from None
    return SecretStr(secret) if secret else None


def hubspot_token(settings: Settings) -> SecretStr | None:
    return read_secret(
        settings.hubspot_private_app_token,
        settings.hubspot_private_app_token_file,
        "LEADFLOW_HUBSPOT_PRIVATE_APP_TOKEN",
    )


def salesforce_secret(settings: Settings) -> SecretStr | None:
    return read_secret(
        settings.salesforce_client_secret,
        settings.salesforce_client_secret_file,
        "LEADFLOW_SALESFORCE_CLIENT_SECRET",
    )


def _read_again(read: Callable[[], Any]) -> Any:
    """A credential read again after a 401 (a rotated secret file); unreadable now: give up."""
    try:
        return read()
    except CredentialsUnreadable as exc:
        raise CrmRefused(str(exc), permanent=True) from None


def _counted(system: str, response: httpx.Response | None) -> None:
    if response is None:
        outcome = "unreachable"
    elif response.is_success:
        outcome = "ok"
    elif response.status_code == 429:
        outcome = "rate_limited"
    elif response.status_code == 401:
        outcome = "unauthorized"
    elif response.status_code < 500:
        outcome = "refused"
    else:
        outcome = "failed"
    metrics.crm_calls.labels(system, outcome).inc()


def _seconds(value: str | None) -> float | None:
    """A header's number (never below 0); None when absent, not a number or not finite."""
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return max(number, 0.0) if number is not None and math.isfinite(number) else None


def _said(response: httpx.Response) -> str:
    """What the CRM's error body says (HubSpot: category and message; Salesforce: a list of
    errorCode and message), shortened; never the request."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, list) and body and isinstance(body[0], dict):
        body = body[0]
    if not isinstance(body, dict):
        return ""
    code = body.get("category") or body.get("errorCode") or body.get("error") or ""
    message = body.get("message") or body.get("error_description") or ""
    return f"{code}: {message}"[:300].strip(": ")


def _failure(system: str, what: str, response: httpx.Response) -> CrmRefused:
    """A non-success answer other than 401 and 429: a 5xx (or 408) is retried, any other 4xx
    would fail the same way again and is dead-lettered."""
    status = response.status_code
    transient = status >= 500 or status == 408
    return CrmRefused(
        f"{system} answered {status} to {what}: {_said(response)}",
        status=status,
        permanent=not transient,
    )


# --- HubSpot --------------------------------------------------------------------------------


class HubSpotWriter:
    """One HubSpot account (the private app's): its token and its per-10-second window."""

    def __init__(self, config: HubSpotOutbound, api_url: str, token: Callable[[], Any]) -> None:
        self.config = config
        self.api_url = api_url.rstrip("/")
        self._read_token = token
        self._token: SecretStr | None = token()
        self.window = RollingWindow(config.requests_per_10s)
        self._owners: dict[str, str] = {}  # rep e-mail -> owner id, found through the API

    @property
    def token_present(self) -> bool:
        return self._token is not None

    async def _pace(self) -> None:
        while True:
            wait = self.window.wait(time.monotonic())
            if wait <= 0:
                self.window.take(time.monotonic())
                return
            if wait > MAX_PACE_WAIT:
                raise CrmRefused(
                    f"HubSpot's per-10-second window is full for {wait:.0f} s",
                    retry_after=wait,
                    rate_limited=True,
                )
            await asyncio.sleep(wait)

    def _observe(self, response: httpx.Response) -> None:
        headers = response.headers
        limit = headers.get("x-hubspot-ratelimit-max")
        remaining = headers.get("x-hubspot-ratelimit-remaining")
        interval = _seconds(headers.get("x-hubspot-ratelimit-interval-milliseconds"))
        self.window.observe(
            time.monotonic(),
            limit=int(limit) if limit and limit.isdigit() else None,
            remaining=int(remaining) if remaining and remaining.lstrip("-").isdigit() else None,
            interval=interval / 1000 if interval else None,
        )

    async def call(
        self, client: httpx.AsyncClient, method: str, path: str, what: str, **kwargs: Any
    ) -> httpx.Response:
        """One call, paced; a 401 reads the token again (a rotated secret file) and tries once
        more, then gives up; a 429 waits as HubSpot asks."""
        for fresh_token in (False, True):
            if self._token is None:
                raise CrmRefused(
                    "no HubSpot private app token (LEADFLOW_HUBSPOT_PRIVATE_APP_TOKEN or its "
                    "_FILE)",
                    permanent=True,
                )
            await self._pace()
            headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
            try:
                response = await client.request(
                    method, self.api_url + path, headers=headers, **kwargs
                )
            except httpx.HTTPError as exc:
                _counted(HUBSPOT, None)
                raise CrmRefused(f"HubSpot unreachable ({what}): {type(exc).__name__}") from None
            _counted(HUBSPOT, response)
            self._observe(response)
            if response.status_code == 401:
                if not fresh_token:
                    self._token = _read_again(self._read_token)
                    continue
                raise CrmRefused(
                    f"HubSpot refused the private app token, read again, to {what} "
                    f"(401 {_said(response)})",
                    status=401,
                    permanent=True,
                )
            if response.status_code == 429:
                wait = retry_after(response.headers.get("retry-after")) or RATE_LIMITED_WAIT
                self.window.refused(time.monotonic(), wait)
                raise CrmRefused(
                    f"HubSpot rate limit ({what}): {_said(response)}",
                    status=429,
                    retry_after=wait,
                    rate_limited=True,
                )
            return response
        raise AssertionError("unreachable")

    async def owner_of(self, client: httpx.AsyncClient, lead: RoutedLead) -> str:
        owner = owner_for(self.config.owners, lead.rep_id, lead.rep_email)
        email = (lead.rep_email or "").lower()
        if owner is None and email and self.config.owners_by_email:
            owner = self._owners.get(email)
            if owner is None:
                response = await self.call(
                    client, "GET", "/crm/v3/owners/", "find the rep's owner",
                    params={"email": email, "limit": 1},
                )  # fmt: skip
                if not response.is_success:
                    raise _failure(HUBSPOT, "find the rep's owner", response)
                results = response.json().get("results") or []
                if results:
                    owner = self._owners[email] = str(results[0]["id"])
        if owner is None:
            raise CrmRefused(
                f"no HubSpot owner for rep {lead.rep_id} (connectors.hubspot.outbound.owners, "
                "or a HubSpot user with the rep's e-mail)",
                permanent=True,
            )
        return owner

    async def _contact(
        self, client: httpx.AsyncClient, key: str, by_email: bool
    ) -> tuple[str, list[str]] | None:
        """The contact's id and its tasks' ids, or None when HubSpot has no such contact."""
        params = {"associations": "tasks", "properties": "email"}
        if by_email:
            params["idProperty"] = "email"
        path = f"/crm/v3/objects/contacts/{quote(key, safe='')}"
        response = await self.call(client, "GET", path, "read the contact", params=params)
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise _failure(HUBSPOT, "read the contact", response)
        found = response.json()
        tasks = ((found.get("associations") or {}).get("tasks") or {}).get("results") or []
        return str(found["id"]), [str(t["id"]) for t in tasks]

    async def _find_or_create_contact(
        self, client: httpx.AsyncClient, lead: RoutedLead, owner: str
    ) -> tuple[str, list[str]]:
        found = None
        if lead.hubspot_contact_id:
            found = await self._contact(client, lead.hubspot_contact_id, by_email=False)
        if found is None and lead.email:
            found = await self._contact(client, lead.email, by_email=True)
        if found is not None:
            return found
        if not lead.email or not self.config.create_contacts:
            raise CrmRefused(
                "HubSpot has no contact for the lead and Leadflow may not create one "
                "(connectors.hubspot.outbound.create_contacts, or the lead has no e-mail)",
                permanent=True,
            )
        body = {"properties": hubspot_new_contact(self.config, lead, owner)}
        response = await self.call(
            client, "POST", "/crm/v3/objects/contacts", "create the contact", json=body
        )
        if response.status_code == 409:  # made meanwhile (an earlier try whose answer was lost)
            existing = re.search(r"Existing ID:\s*(\d+)", response.text)
            if existing:
                return existing.group(1), []
            found = await self._contact(client, lead.email, by_email=True)
            if found is not None:
                return found
        if not response.is_success:
            raise _failure(HUBSPOT, "create the contact", response)
        return str(response.json()["id"]), []

    async def _has_task(self, client: httpx.AsyncClient, task_ids: list[str], marker: str) -> bool:
        """Whether one of the contact's tasks is this assignment's (its marker in the body)."""
        if not task_ids:
            return False
        body = {
            "inputs": [{"id": task_id} for task_id in task_ids[-100:]],
            "properties": ["hs_task_body"],
            "propertiesWithHistory": [],
        }
        response = await self.call(
            client, "POST", "/crm/v3/objects/tasks/batch/read", "read the contact's tasks",
            json=body,
        )  # fmt: skip
        if not response.is_success:
            raise _failure(HUBSPOT, "read the contact's tasks", response)
        return any(
            marker in ((task.get("properties") or {}).get("hs_task_body") or "")
            for task in response.json().get("results") or []
        )

    async def write(self, client: httpx.AsyncClient, lead: RoutedLead) -> CrmRecord:
        """Owner and lead status on the contact, and the rep's task, once."""
        owner = await self.owner_of(client, lead)
        contact_id, task_ids = await self._find_or_create_contact(client, lead, owner)
        record = CrmRecord(HUBSPOT, "contacts", contact_id)
        try:
            properties = {"properties": hubspot_contact_update(self.config, owner)}
            path = f"/crm/v3/objects/contacts/{contact_id}"
            response = await self.call(
                client, "PATCH", path, "set the contact's owner", json=properties
            )
            if not response.is_success:
                raise _failure(HUBSPOT, "set the contact's owner", response)
            if not await self._has_task(client, task_ids, lead.marker):
                task = hubspot_task(self.config, lead, owner, contact_id)
                response = await self.call(
                    client, "POST", "/crm/v3/objects/tasks", "create the task", json=task
                )
                if not response.is_success:
                    raise _failure(HUBSPOT, "create the task", response)
        except CrmRefused as refused:
            refused.linked = record
            raise
        return record


# --- Salesforce -----------------------------------------------------------------------------


@dataclass
class _Token:
    access: SecretStr
    instance_url: str
    taken_at: float = field(default_factory=time.monotonic)


class SalesforceWriter:
    """One Salesforce org through a connected (or external client) app's client credentials;
    the token is kept and taken again before the org's session timeout ends it."""

    def __init__(
        self, config: SalesforceOutbound, client_id: str | None, secret: Callable[[], Any]
    ) -> None:
        self.config = config
        self.client_id = client_id
        self._read_secret = secret
        self._secret: SecretStr | None = secret()
        self._token: _Token | None = None
        self._lock = asyncio.Lock()

    @property
    def secret_present(self) -> bool:
        return self._secret is not None

    @property
    def credentials_present(self) -> bool:
        return bool(self.client_id) and self._secret is not None

    async def _authorize(self, client: httpx.AsyncClient, stale: _Token | None) -> _Token:
        """The current token; a new one when there is none, it is near its end, or `stale`
        (the one a 401 refused) is still the current one. One request at a time."""
        async with self._lock:
            token = self._token
            now = time.monotonic()
            lifetime = self.config.token_lifetime_seconds
            if token and token is not stale and token_fresh(token.taken_at, lifetime, now):
                return token
            if stale is not None:  # a refused token: the secret may have been rotated
                self._secret = _read_again(self._read_secret)
            if not self.credentials_present:
                raise CrmRefused(
                    "no Salesforce client credentials (LEADFLOW_SALESFORCE_CLIENT_ID and "
                    "LEADFLOW_SALESFORCE_CLIENT_SECRET or its _FILE)",
                    permanent=True,
                )
            assert self._secret is not None
            form = {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self._secret.get_secret_value(),
            }
            url = self.config.login_url.rstrip("/") + "/services/oauth2/token"
            try:
                response = await client.post(url, data=form)
            except httpx.HTTPError as exc:
                _counted(SALESFORCE, None)
                raise CrmRefused(f"Salesforce unreachable (token): {type(exc).__name__}") from None
            _counted(SALESFORCE, response)
            if response.status_code in (400, 401, 403):
                raise CrmRefused(
                    f"Salesforce refused the client credentials ({response.status_code} "
                    f"{_said(response)})",
                    status=response.status_code,
                    permanent=True,
                )
            if not response.is_success:
                raise _failure(SALESFORCE, "issue a token", response)
            answer = response.json()
            self._token = _Token(SecretStr(answer["access_token"]), answer["instance_url"])
            return self._token

    async def call(
        self, client: httpx.AsyncClient, method: str, path: str, what: str, **kwargs: Any
    ) -> httpx.Response:
        """One REST call; a 401 takes a new token and tries once more, then gives up."""
        stale: _Token | None = None
        for _ in range(2):
            token = await self._authorize(client, stale)
            url = f"{token.instance_url.rstrip('/')}/services/data/v{self.config.api_version}{path}"
            headers = {"Authorization": f"Bearer {token.access.get_secret_value()}"}
            try:
                response = await client.request(method, url, headers=headers, **kwargs)
            except httpx.HTTPError as exc:
                _counted(SALESFORCE, None)
                raise CrmRefused(f"Salesforce unreachable ({what}): {type(exc).__name__}") from None
            _counted(SALESFORCE, response)
            if response.status_code == 401:
                if stale is None:
                    stale = token
                    continue
                raise CrmRefused(
                    f"Salesforce refused a new access token to {what} (401 {_said(response)})",
                    status=401,
                    permanent=True,
                )
            limited = response.status_code == 429 or (
                response.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in response.text
            )
            if limited:
                wait = retry_after(response.headers.get("retry-after")) or 60.0
                raise CrmRefused(
                    f"Salesforce limit ({what}): {_said(response)}",
                    status=response.status_code,
                    retry_after=wait,
                    rate_limited=True,
                )
            return response
        raise AssertionError("unreachable")

    async def _upsert(
        self, client: httpx.AsyncClient, sobject: str, field_name: str, key: str, body: dict
    ) -> str | None:
        """Upsert by external id: the record's id (None when an old API version answers 204)."""
        path = f"/sobjects/{sobject}/{field_name}/{quote(key, safe='')}"
        what = f"upsert the {sobject}"
        response = await self.call(client, "PATCH", path, what, json=body)
        if not response.is_success:
            raise _failure(SALESFORCE, what, response)
        if response.status_code == 204 or not response.content:
            return None
        return str(response.json()["id"])

    async def write(self, client: httpx.AsyncClient, lead: RoutedLead) -> CrmRecord:
        """The Lead (owner, status) and the rep's Task, both upserted: written once however
        often this runs."""
        config = self.config
        owner = owner_for(config.owners, lead.rep_id, lead.rep_email)
        if owner is None:
            raise CrmRefused(
                f"no Salesforce user for rep {lead.rep_id} (connectors.salesforce.outbound.owners)",
                permanent=True,
            )
        body = salesforce_lead(config, lead, owner)
        lead_field = config.lead_external_id_field
        record_id = await self._upsert(client, "Lead", lead_field, lead.lead_id, body)
        if record_id is None:
            path = f"/sobjects/Lead/{lead_field}/{lead.lead_id}"
            response = await self.call(
                client, "GET", path, "read the Lead", params={"fields": "Id"}
            )
            if not response.is_success:
                raise _failure(SALESFORCE, "read the Lead", response)
            record_id = str(response.json()["Id"])
        record = CrmRecord(SALESFORCE, "Lead", record_id)
        try:
            task = salesforce_task(config, lead, owner, record_id)
            field_name = config.task_external_id_field
            await self._upsert(client, "Task", field_name, lead.assignment_id, task)
        except CrmRefused as refused:
            refused.linked = record
            raise
        return record


# --- the installation's connectors ------------------------------------------------------------


@dataclass
class CrmOut:
    """The connectors of this installation and a writer for each CRM written to."""

    connectors: Connectors
    hubspot: HubSpotWriter | None
    salesforce: SalesforceWriter | None

    @property
    def systems(self) -> tuple[str, ...]:
        return tuple(
            name
            for name, writer in ((HUBSPOT, self.hubspot), (SALESFORCE, self.salesforce))
            if writer is not None
        )

    @classmethod
    def build(cls, connectors: Connectors, settings: Settings) -> CrmOut:
        """Writers for the enabled connectors. Raises CredentialsUnreadable."""
        hubspot = salesforce = None
        if connectors.hubspot.outbound.enabled:
            hubspot = HubSpotWriter(
                connectors.hubspot.outbound,
                settings.hubspot_api_url,
                lambda: hubspot_token(settings),
            )
        if connectors.salesforce.outbound.enabled:
            salesforce = SalesforceWriter(
                connectors.salesforce.outbound,
                settings.salesforce_client_id,
                lambda: salesforce_secret(settings),
            )
        return cls(connectors, hubspot, salesforce)

    async def write(self, client: httpx.AsyncClient, system: str, lead: RoutedLead) -> CrmRecord:
        writer = self.hubspot if system == HUBSPOT else self.salesforce
        if writer is None:
            raise CrmRefused(
                f"the {system} connector is not enabled (connectors.{system}.outbound.enabled)",
                permanent=True,
            )
        return await writer.write(client, lead)
