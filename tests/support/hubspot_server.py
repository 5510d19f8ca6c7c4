"""A local server implementing HubSpot's documented contract of the one CRM API call Leadflow
makes: `POST /crm/v3/objects/contacts/batch/read` (CRM API v3). HubSpot cannot be reached from
the tests; this answers as HubSpot documents, and records every request it receives.

The contract, from HubSpot's published OpenAPI document of the v3 Contacts API
(github.com/HubSpot/HubSpot-public-api-spec-collection, PublicApiSpecs/CRM/Contacts/Rollouts/424/
v3/contacts.json) and its error-handling and API-usage guides (developers.hubspot.com/docs/
api-reference/latest/error-handling, developers.hubspot.com/docs/api/usage-details):

- authentication: `Authorization: Bearer <private app access token>`; without the right token
  401 with the `Error` body, category `INVALID_AUTHENTICATION`;
- the body `BatchReadInputSimplePublicObjectId`: `inputs` (a list of `{"id": "<string>"}`),
  `properties` and `propertiesWithHistory` (lists of strings), all three required, `idProperty`
  optional; at most 100 inputs. Anything else is 400 with category `VALIDATION_ERROR`;
- 200 with `BatchResponseSimplePublicObject` (`status` COMPLETE, `results`, `startedAt`,
  `completedAt`) when every id is found; 207 with `...WithErrors` (also `numErrors`, `errors`: a
  `StandardError` of category `OBJECT_NOT_FOUND` naming the ids in `context.ids`) when some are
  not; each result a `SimplePublicObject` (`id`, `properties`: the requested properties that
  exist, values as strings or null, plus `hs_object_id`, `createdate`, `lastmodifieddate`;
  `createdAt`, `updatedAt`, `archived`);
- too many requests: 429 with `Retry-After` and the rate-limit body (`status` error,
  `errorType` RATE_LIMIT, `policyName` SECONDLY, `correlationId`).

Calls, e-mails and meetings (CRM API v3 object endpoints, HubSpot's "Calls", "Email" and
"Meetings" references): `GET /crm/v3/objects/{calls|emails|meetings}/{id}` with the query
parameters `properties` (comma-separated) and `associations` (`contacts`) answers 200 with a
`SimplePublicObjectWithAssociations` (`id`, `properties`: those asked for, plus `hs_object_id`,
`hs_createdate`, `hs_lastmodifieddate`; `createdAt`, `updatedAt`, `archived`; `associations.
contacts.results` of `{"id", "type"}`, e.g. `call_to_contact`), or 404 with category
`OBJECT_NOT_FOUND`. `add_engagement` holds them.

`contacts` holds the account's contacts (id -> properties, updatedAt); `answers` scripts what
the next requests get instead of the documented answer: `("rate_limited", seconds)`,
`("error", None)` (500), `("hang", None)` (no answer until the server stops); `down = True` makes
every request a 503. `requests` records each request's headers and JSON body.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from leadflow_tools.receiver import LocalServer, read_body

BATCH_READ = "/crm/v3/objects/contacts/batch/read"
ENGAGEMENT_KINDS = {"calls": "call", "emails": "email", "meetings": "meeting"}
MAX_INPUTS = 100


def _error(category: str, message: str, **fields: Any) -> dict:
    return {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
        **fields,
    }


class HubSpotApiServer(LocalServer):
    """One HubSpot account's CRM API, in-process (uvicorn on a free port)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.contacts: dict[str, dict[str, Any]] = {}
        self.answers: list[tuple[str, float | None]] = []
        self.down = False
        self.requests: list[dict[str, Any]] = []
        self.engagements: dict[tuple[str, str], dict[str, Any]] = {}
        self._release = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_contact(self, contact_id: int, properties: dict[str, str], updated_at: datetime):
        self.contacts[str(contact_id)] = {"properties": properties, "updatedAt": updated_at}

    def add_engagement(
        self,
        kind: str,
        engagement_id: int,
        properties: dict[str, str],
        contact_ids: list[int],
        created_at: datetime,
    ) -> None:
        """A call, e-mail or meeting (`kind`: calls, emails, meetings) logged on contacts."""
        self.engagements[(kind, str(engagement_id))] = {
            "properties": properties, "contacts": contact_ids, "createdAt": created_at,
        }  # fmt: skip

    def _engagement(self, kind: str, engagement_id: str, query: str) -> tuple[int, dict]:
        from urllib.parse import parse_qs

        found = self.engagements.get((kind, engagement_id))
        if found is None:
            return 404, _error("OBJECT_NOT_FOUND", f"Object not found. objectId are usually "
                               f"numeric. {engagement_id}")  # fmt: skip
        params = parse_qs(query)
        asked = [n for value in params.get("properties", []) for n in value.split(",") if n]
        created = found["createdAt"].isoformat().replace("+00:00", "Z")
        props = {n: found["properties"].get(n) for n in asked if n in found["properties"]}
        props |= {"hs_object_id": engagement_id, "hs_createdate": created,
                  "hs_lastmodifieddate": created}  # fmt: skip
        answer: dict[str, Any] = {"id": engagement_id, "properties": props, "createdAt": created,
                                  "updatedAt": created, "archived": False}  # fmt: skip
        if "contacts" in ",".join(params.get("associations", [])).split(","):
            kind_name = ENGAGEMENT_KINDS[kind]
            answer["associations"] = {"contacts": {"results": [
                {"id": str(c), "type": f"{kind_name}_to_contact"} for c in found["contacts"]
            ]}}  # fmt: skip
        return 200, answer

    def _batch_read(self, body: Any) -> tuple[int, dict]:
        problems = []
        if not isinstance(body, dict):
            return 400, _error("VALIDATION_ERROR", "Invalid input JSON: expected an object")
        for required in ("inputs", "properties", "propertiesWithHistory"):
            if not isinstance(body.get(required), list):
                problems.append({"message": f"{required} is required and must be a list",
                                 "in": required})  # fmt: skip
        inputs = body.get("inputs") or []
        if isinstance(inputs, list):
            if len(inputs) > MAX_INPUTS:
                problems.append({"message": f"at most {MAX_INPUTS} inputs", "in": "inputs"})
            for index, item in enumerate(inputs):
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    problems.append({"message": "id must be a string", "in": f"inputs[{index}]"})
        if problems:
            return 400, _error("VALIDATION_ERROR", "Invalid input", errors=problems)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        results, missing = [], []
        for item in inputs:
            found = self.contacts.get(item["id"])
            if found is None:
                missing.append(item["id"])
                continue
            updated = found["updatedAt"].isoformat().replace("+00:00", "Z")
            props = {n: found["properties"].get(n) for n in body["properties"]}
            props |= {"hs_object_id": item["id"], "lastmodifieddate": updated}
            results.append({"id": item["id"], "properties": props, "createdAt": updated,
                            "updatedAt": updated, "archived": False})  # fmt: skip
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results,
                                  "startedAt": now, "completedAt": now}  # fmt: skip
        if not missing:
            return 200, answer
        answer["numErrors"] = 1
        answer["errors"] = [{
            "status": "error", "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some CONTACT objects, they may be deleted or not exist.",
            "context": {"ids": missing}, "errors": [], "links": {},
        }]  # fmt: skip
        return 207, answer

    async def app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(
            {"method": scope["method"], "path": scope["path"], "headers": headers, "json": body}
        )
        extra: list[tuple[bytes, bytes]] = []
        parts = scope["path"].strip("/").split("/")
        engagement = (
            scope["method"] == "GET" and len(parts) == 5 and parts[:3] == ["crm", "v3", "objects"]
            and parts[3] in ENGAGEMENT_KINDS
        )  # fmt: skip
        if engagement and headers.get("authorization") == f"Bearer {self.token}" and not self.down:
            status, answer = self._engagement(
                parts[3], parts[4], scope.get("query_string", b"").decode()
            )
        elif engagement:
            status, answer = 401, _error("INVALID_AUTHENTICATION", "Authentication credentials "
                                         "not found. Use a private app access token.")  # fmt: skip
            if self.down:
                status, answer = 503, _error("SERVICE_UNAVAILABLE", "HubSpot is unavailable")
        elif scope["path"] != BATCH_READ or scope["method"] != "POST":
            status, answer = 404, _error("OBJECT_NOT_FOUND", "not an endpoint of this server")
        elif headers.get("authorization") != f"Bearer {self.token}":
            refusal = "Authentication credentials not found. Use a private app access token."
            status, answer = 401, _error("INVALID_AUTHENTICATION", refusal)
        elif self.down:
            status, answer = 503, _error("SERVICE_UNAVAILABLE", "HubSpot is unavailable")
        elif self.answers and self.answers[0][0] == "hang":
            await self._release.wait()
            status, answer = 503, _error("SERVICE_UNAVAILABLE", "stopping")
        elif self.answers and self.answers[0][0] == "rate_limited":
            _, seconds = self.answers.pop(0)
            status, answer = 429, {
                "status": "error", "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()),
                "policyName": "SECONDLY",
            }  # fmt: skip
            extra.append((b"retry-after", str(seconds).encode()))
        elif self.answers and self.answers[0][0] == "error":
            self.answers.pop(0)
            status, answer = 500, _error("INTERNAL_ERROR", "internal error")
        else:
            status, answer = self._batch_read(body)
        await send({
            "type": "http.response.start", "status": status,
            "headers": [(b"content-type", b"application/json;charset=utf-8"), *extra],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

    def engagement_reads(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "GET" and "/objects/" in r["path"]]

    def batch_reads(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == BATCH_READ]

    def stopping(self) -> None:
        self._release.set()
