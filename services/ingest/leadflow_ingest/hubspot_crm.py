"""The HubSpot CRM API calls ingest makes, with a private app's access token (CRM API v3): read
contacts' properties by id, in batches (`POST /crm/v3/objects/contacts/batch/read`), and read one
call, e-mail or meeting with its associated contacts
(`GET /crm/v3/objects/{calls|emails|meetings}/{id}?properties=…&associations=contacts`: a
`SimplePublicObjectWithAssociations`, its contacts under `associations.contacts.results[].id`;
404 when HubSpot has no such object).

The shapes are HubSpot's published OpenAPI document of the v3 Contacts API
(HubSpot/HubSpot-public-api-spec-collection, PublicApiSpecs/CRM/Contacts/Rollouts/424/v3):
the body `BatchReadInputSimplePublicObjectId` (`inputs` of `{"id"}`, `properties`,
`propertiesWithHistory`, all required); 200 `BatchResponseSimplePublicObject` or 207
`...WithErrors` (`results` of `SimplePublicObject`: `id`, `properties`, `updatedAt`, ...; ids it
could not find among `errors`); any other answer HubSpot's `Error` body (`category`, `message`,
`correlationId`). At most 100 inputs a call. A 429 says how long to wait in `Retry-After`.

Reads run within a time budget, since they happen while HubSpot waits for the answer to its
webhook: a read that cannot finish in it raises `HubSpotUnavailable` (503), and HubSpot sends the
batch again later."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import httpx
from leadflow.errors import ProblemError
from leadflow.retry import exponential_backoff
from pydantic import SecretStr

log = logging.getLogger(__name__)

BATCH_READ = "/crm/v3/objects/contacts/batch/read"
BATCH_LIMIT = 100  # inputs per batch read (HubSpot's limit)
# Seconds all reads of one webhook batch may take: HubSpot waits only a few seconds for the
# answer to a webhook before it counts the delivery as failed and sends it again.
READ_BUDGET = 3.0
RATE_LIMITED_WAIT = 1.0  # a 429 without Retry-After: HubSpot's limits are per second


class HubSpotTokenUnreadable(Exception):
    """The file said to hold the private app's token cannot be read: ingest does not start."""


class HubSpotUnavailable(ProblemError):
    """HubSpot's API could not be read now; the webhook answers 503 and HubSpot retries it."""

    status = 503
    title = "HubSpot unavailable"


@dataclass(frozen=True)
class EngagementRead:
    """A call, e-mail or meeting as HubSpot holds it: its properties and associated contacts."""

    object_id: int
    properties: dict[str, str | None]
    contact_ids: list[int]
    created_at: int


@dataclass(frozen=True)
class ContactRead:
    """A contact's properties as HubSpot holds them, as of `updated_at` (epoch ms)."""

    object_id: int
    properties: dict[str, str | None]
    updated_at: int


def _epoch_ms(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return max(float(value), 0.0)
    except ValueError:
        return RATE_LIMITED_WAIT


def _error(response: httpx.Response) -> str:
    """HubSpot's error body, as much of it as there is (every field is optional)."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code}: {response.text[:200]}"
    if not isinstance(body, dict):
        return f"{response.status_code}"
    category = body.get("category") or body.get("errorType") or "?"
    return (
        f"{response.status_code} {category}: {str(body.get('message', ''))[:300]}"
        f" (correlationId {body.get('correlationId', '?')})"
    )


class HubSpotCrm:
    """Reads contacts from one HubSpot account (the one whose private app issued the token)."""

    def __init__(
        self,
        base_url: str,
        token: SecretStr,
        *,
        budget: float = READ_BUDGET,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.budget = budget
        self._transport = transport

    async def read_contacts(
        self, ids: Sequence[int], properties: Sequence[str]
    ) -> dict[int, ContactRead]:
        """The contacts HubSpot has among `ids` (archived or unknown ones are absent), each
        with every property asked for (None where it holds no value)."""
        deadline = time.monotonic() + self.budget
        found: dict[int, ContactRead] = {}
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=headers, transport=self._transport
        ) as client:
            for start in range(0, len(ids), BATCH_LIMIT):
                chunk = ids[start : start + BATCH_LIMIT]
                body = {
                    "inputs": [{"id": str(i)} for i in chunk],
                    "properties": list(properties),
                    "propertiesWithHistory": [],
                }
                answer = await self._send(client, "POST", BATCH_READ, deadline, json=body)
                for result in answer.get("results", []):
                    values = result.get("properties") or {}
                    contact = ContactRead(
                        object_id=int(result["id"]),
                        properties={name: values.get(name) for name in properties},
                        updated_at=_epoch_ms(result["updatedAt"]),
                    )
                    found[contact.object_id] = contact
                if answer.get("errors"):
                    log.info(
                        "HubSpot did not find some contacts",
                        extra={"errors": [e.get("category") for e in answer["errors"]][:10]},
                    )
        return found

    def deadline(self) -> float:
        """When reads starting now must be done (monotonic seconds)."""
        return time.monotonic() + self.budget

    async def read_engagement(
        self,
        kind: str,
        engagement_id: int,
        properties: Sequence[str],
        *,
        deadline: float | None = None,
    ) -> EngagementRead | None:
        """One call, e-mail or meeting (`kind`: calls, emails, meetings) with the properties
        asked for and its associated contacts; None when HubSpot has no such object. Reads of
        one webhook batch share one `deadline`."""
        deadline = deadline if deadline is not None else self.deadline()
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"}
        params = {"properties": ",".join(properties), "associations": "contacts"}
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=headers, transport=self._transport
        ) as client:
            answer = await self._send(
                client, "GET", f"/crm/v3/objects/{kind}/{engagement_id}", deadline, params=params
            )
        if answer is None:
            return None
        values = answer.get("properties") or {}
        contacts = ((answer.get("associations") or {}).get("contacts") or {}).get("results") or []
        return EngagementRead(
            object_id=int(answer["id"]),
            properties={name: values.get(name) for name in properties},
            contact_ids=[int(c["id"]) for c in contacts if str(c.get("id", "")).isdigit()],
            created_at=_epoch_ms(answer["createdAt"]),
        )

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        deadline: float,
        *,
        json: dict | None = None,
        params: dict | None = None,
    ) -> dict | None:
        """HubSpot's answer to one call (None for a 404 of a GET: no such object), retried
        within the deadline as HubSpot's limits and failures ask."""
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                response = await client.request(
                    method, path, json=json, params=params, timeout=max(remaining, 0.1)
                )
            except httpx.HTTPError as exc:
                problem, wait = f"unreachable ({type(exc).__name__})", exponential_backoff(attempt)
            else:
                if response.status_code in (200, 207):
                    return response.json()
                if response.status_code == 404 and method == "GET":
                    return None
                problem = _error(response)
                if response.status_code == 429:
                    wait = _retry_after(response)
                elif response.status_code >= 500:
                    wait = exponential_backoff(attempt)
                else:
                    # a revoked token, a missing scope: no retry mends it, the operator does
                    log.error("HubSpot refused to read contacts", extra={"error": problem})
                    raise HubSpotUnavailable(
                        f"HubSpot refused to read contacts: {problem}",
                        headers={"Retry-After": "60"},
                    )
            if time.monotonic() + wait > deadline:
                log.warning("HubSpot could not be read in time", extra={"error": problem})
                raise HubSpotUnavailable(
                    f"HubSpot could not be read in time: {problem}",
                    headers={"Retry-After": str(max(math.ceil(wait), 1))},
                )
            log.info("reading HubSpot again", extra={"error": problem, "wait": wait})
            await asyncio.sleep(wait)
