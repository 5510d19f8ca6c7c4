"""A local server implementing HubSpot's documented contract of the CRM API calls Leadflow
makes (CRM API v3): ingest's `POST /crm/v3/objects/contacts/batch/read` and engagement reads,
and notify's writes of a routed lead (owners; a contact read by id or e-mail with its tasks,
created, updated; tasks read in a batch and created with an association). It is not HubSpot:
HubSpot cannot be reached from the tests nor from `leadflow crm-demo`, which both run against
this server; it answers as HubSpot documents, and records every request it receives.

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

Notify's writes, from HubSpot's CRM v3 references (developers.hubspot.com/docs/api-reference:
objects/contacts, objects/tasks, associations, owners) and its API-usage guide:

- `GET /crm/v3/owners/?email=&limit=`: 200 `{"results": [{id, email, firstName, lastName,
  userId, archived, createdAt, updatedAt}]}`, empty when no owner has the e-mail;
- `GET /crm/v3/objects/contacts/{contactId}` (`idProperty=email`: the path is an e-mail;
  `properties`, `associations=tasks`): 200 `SimplePublicObjectWithAssociations` (`id`,
  `properties`, `associations.tasks.results` of `{id, type}`), 404 `OBJECT_NOT_FOUND`;
- `POST /crm/v3/objects/contacts` `{"properties": {…}}`: 201 the object; 409 `CONFLICT`
  ("Contact already exists. Existing ID: <id>") when a contact has the e-mail;
- `PATCH /crm/v3/objects/contacts/{contactId}` `{"properties": {…}}`: 200 the object, 404;
- `POST /crm/v3/objects/tasks/batch/read`: as the contacts' batch read, of tasks;
- `POST /crm/v3/objects/tasks` `{"properties": {hs_timestamp (required), hs_task_subject, …},
  "associations": [{"to": {"id"}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
  "associationTypeId": 204}]}]}`: 201 the task, associated with the contact; 400
  `VALIDATION_ERROR` without `hs_timestamp` or with an association to no contact;
- with `ten_second_limit` set, every answer carries `X-HubSpot-RateLimit-Max`, `-Remaining`
  and `-Interval-Milliseconds` of the account's rolling 10 seconds, and a call beyond the limit
  is a 429 (`policyName` TEN_SECONDLY_ROLLING).

`contacts` holds the account's contacts (id -> properties, updatedAt), `tasks` its tasks (id ->
properties, contact), `owners` its users (e-mail -> owner id); `answers` scripts what the next
requests get instead of the documented answer: `("rate_limited", seconds)`, `("error", None)`
(500), `("hang", None)` (no answer until the server stops), `("lost", "POST /crm/v3/objects/
tasks")` (that call, when it comes, is made and then answered 502, as when the answer is lost on
the way); `down = True` makes every request a 503. `requests` records each request's method,
path, headers, JSON body and (monotonic) time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from leadflow_tools.receiver import LocalServer, read_body

BATCH_READ = "/crm/v3/objects/contacts/batch/read"
ENGAGEMENT_KINDS = {"calls": "call", "emails": "email", "meetings": "meeting"}
MAX_INPUTS = 100
CONTACTS = "/crm/v3/objects/contacts"
TASKS = "/crm/v3/objects/tasks"
TASK_TO_CONTACT = 204


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
        self.tasks: dict[str, dict[str, Any]] = {}
        self.owners: dict[str, str] = {}
        self.ten_second_limit: int | None = None
        self._window: deque[float] = deque()
        self._ids = itertools.count(9_000_001)

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
            {"method": scope["method"], "path": scope["path"], "headers": headers, "json": body,
             "at": time.monotonic()}
        )  # fmt: skip
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
        elif (route := self._route(scope["method"], scope["path"])) is None:
            status, answer = 404, _error("OBJECT_NOT_FOUND", "not an endpoint of this server")
        elif headers.get("authorization") != f"Bearer {self.token}":
            refusal = "Authentication credentials not found. Use a private app access token."
            status, answer = 401, _error("INVALID_AUTHENTICATION", refusal)
        elif self.down:
            status, answer = 503, _error("SERVICE_UNAVAILABLE", "HubSpot is unavailable")
        elif not self._in_window(extra):
            status, answer = 429, {
                "status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT", "correlationId": str(uuid.uuid4()),
                "policyName": "TEN_SECONDLY_ROLLING",
            }  # fmt: skip
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
            query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
            status, answer = route(body, query)
            if (
                self.answers
                and self.answers[0][0] == "lost"
                and (self.answers[0][1] in (None, f"{scope['method']} {scope['path']}"))
            ):
                self.answers.pop(0)
                status, answer = 502, _error("BAD_GATEWAY", "the answer was lost")
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

    # --- notify's writes of a routed lead ---------------------------------------------------

    def _route(self, method: str, path: str):
        """The handler of `method path` (each takes the JSON body and the query), or None."""
        if (method, path) == ("POST", BATCH_READ):
            return lambda body, query: self._batch_read(body)
        if method == "GET" and path.rstrip("/") == "/crm/v3/owners":
            return self._owners
        if (method, path) == ("POST", CONTACTS):
            return self._create_contact
        if (method, path) == ("POST", TASKS + "/batch/read"):
            return self._read_tasks
        if (method, path) == ("POST", TASKS):
            return self._create_task
        found = re.fullmatch(CONTACTS + r"/([^/]+)", path)
        if found and method in ("GET", "PATCH") and found.group(1) != "batch":
            key = found.group(1)
            if method == "GET":
                return lambda body, query: self._read_contact(key, query)
            return lambda body, query: self._update_contact(key, body)
        return None

    def _in_window(self, extra: list[tuple[bytes, bytes]]) -> bool:
        """Count the call in the account's rolling 10 seconds (when `ten_second_limit` is
        set); False when it is over the limit. Every answer says how much is left."""
        limit = self.ten_second_limit
        if limit is None:
            return True
        now = time.monotonic()
        while self._window and self._window[0] <= now - 10:
            self._window.popleft()
        allowed = len(self._window) < limit
        if allowed:
            self._window.append(now)
        extra += [
            (b"x-hubspot-ratelimit-max", str(limit).encode()),
            (b"x-hubspot-ratelimit-remaining", str(max(limit - len(self._window), 0)).encode()),
            (b"x-hubspot-ratelimit-interval-milliseconds", b"10000"),
        ]
        return allowed

    @staticmethod
    def _now() -> str:
        return datetime.now(UTC).isoformat().replace("+00:00", "Z")

    def _object(self, object_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        now = self._now()
        return {"id": object_id, "properties": {**properties, "hs_object_id": object_id},
                "createdAt": now, "updatedAt": now, "archived": False}  # fmt: skip

    def _owners(self, body: Any, query: dict[str, str]) -> tuple[int, dict]:
        email = (query.get("email") or "").lower()
        found = [(e, i) for e, i in self.owners.items() if not email or e == email]
        results = [
            {"id": owner_id, "email": e, "firstName": "", "lastName": "", "userId": int(owner_id),
             "archived": False, "createdAt": self._now(), "updatedAt": self._now()}
            for e, owner_id in found[: int(query.get("limit") or 100)]
        ]  # fmt: skip
        return 200, {"results": results}

    def _contact_id(self, key: str, by_email: bool) -> str | None:
        if not by_email:
            return key if key in self.contacts else None
        return next(
            (cid for cid, c in self.contacts.items()
             if (c["properties"].get("email") or "").lower() == key.lower()),
            None,
        )  # fmt: skip

    def _read_contact(self, key: str, query: dict[str, str]) -> tuple[int, dict]:
        contact_id = self._contact_id(key, query.get("idProperty") == "email")
        if contact_id is None:
            return 404, _error("OBJECT_NOT_FOUND", "resource not found")
        contact = self.contacts[contact_id]
        wanted = [n for n in (query.get("properties") or "").split(",") if n]
        answer = self._object(contact_id, {n: contact["properties"].get(n) for n in wanted})
        if "tasks" in (query.get("associations") or "").split(","):
            tasks = [
                {"id": task_id, "type": "contact_to_task"}
                for task_id, task in self.tasks.items()
                if task["contact_id"] == contact_id
            ]
            if tasks:  # HubSpot leaves out an association type with nothing in it
                answer["associations"] = {"tasks": {"results": tasks}}
        return 200, answer

    def _create_contact(self, body: Any, query: dict[str, str]) -> tuple[int, dict]:
        properties = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(properties, dict):
            return 400, _error("VALIDATION_ERROR", "properties is required")
        existing = self._contact_id(properties.get("email") or "", by_email=True)
        if properties.get("email") and existing is not None:
            return 409, _error("CONFLICT", f"Contact already exists. Existing ID: {existing}")
        contact_id = str(next(self._ids))
        self.contacts[contact_id] = {"properties": dict(properties),
                                     "updatedAt": datetime.now(UTC)}  # fmt: skip
        return 201, self._object(contact_id, properties)

    def _update_contact(self, key: str, body: Any) -> tuple[int, dict]:
        properties = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(properties, dict):
            return 400, _error("VALIDATION_ERROR", "properties is required")
        if key not in self.contacts:
            return 404, _error("OBJECT_NOT_FOUND", "resource not found")
        contact = self.contacts[key]
        contact["properties"].update(properties)
        contact["updatedAt"] = datetime.now(UTC)
        return 200, self._object(key, contact["properties"])

    def _read_tasks(self, body: Any, query: dict[str, str]) -> tuple[int, dict]:
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            return 400, _error("VALIDATION_ERROR", "inputs is required")
        wanted = body.get("properties") or []
        results = [
            self._object(i["id"], {n: self.tasks[i["id"]]["properties"].get(n) for n in wanted})
            for i in body["inputs"]
            if i.get("id") in self.tasks
        ]
        return 200, {"status": "COMPLETE", "results": results, "startedAt": self._now(),
                     "completedAt": self._now()}  # fmt: skip

    def _create_task(self, body: Any, query: dict[str, str]) -> tuple[int, dict]:
        properties = body.get("properties") if isinstance(body, dict) else None
        if not isinstance(properties, dict) or not properties.get("hs_timestamp"):
            return 400, _error("VALIDATION_ERROR", "Property values were not valid: hs_timestamp")
        contact_id = None
        for association in body.get("associations") or []:
            target = str((association.get("to") or {}).get("id"))
            types = association.get("types") or []
            if target not in self.contacts or not any(
                t.get("associationTypeId") == TASK_TO_CONTACT for t in types
            ):
                return 400, _error("VALIDATION_ERROR", f"invalid association to {target}")
            contact_id = target
        task_id = str(next(self._ids))
        self.tasks[task_id] = {"properties": dict(properties), "contact_id": contact_id}
        return 201, self._object(task_id, properties)

    def contact_tasks(self, contact_id: str) -> list[dict[str, Any]]:
        """The properties of each task associated with the contact."""
        return [t["properties"] for t in self.tasks.values() if t["contact_id"] == contact_id]
