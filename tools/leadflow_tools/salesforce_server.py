"""A local server implementing Salesforce's documented contract of the calls Leadflow makes to
an org: the OAuth 2.0 client-credentials token and the REST API's upsert of a Lead and a Task by
an external id field. It is not Salesforce: Salesforce cannot be reached from the tests, which
run against this server; it answers as Salesforce documents, and records every request it
receives.

The contract, from Salesforce's Help ("OAuth 2.0 Client Credentials Flow for Server-to-Server
Integration") and its REST API Developer Guide ("sObject Rows by External ID", "Insert or Update
(Upsert) a Record Using an External ID", "Status Codes and Error Responses"):

- `POST /services/oauth2/token`, form-encoded `grant_type=client_credentials`, `client_id`,
  `client_secret`: 200 `{access_token, signature, scope, instance_url, id, token_type: "Bearer",
  issued_at}` (no expiry: the org's session timeout ends the token); a wrong client 400
  `{"error": "invalid_client", "error_description": …}`, another grant 400
  `unsupported_grant_type`;
- `PATCH /services/data/vXX.X/sobjects/{Lead|Task}/{externalIdField}/{value}` with
  `Authorization: Bearer <access token>` and a JSON body of fields: 201 `{id, success: true,
  errors: [], created: true}` when no record has the value, 200 `{…, created: false}` when one
  has (API 46.0 and later; 204 without a body before); a field not declared an external id 404
  `NOT_FOUND`; a new Lead without `LastName` or `Company` 400 `REQUIRED_FIELD_MISSING`; a Task
  whose `WhoId` is no Lead 400 `FIELD_INTEGRITY_EXCEPTION`; an `OwnerId` that is no user of the
  org 400 `INVALID_CROSS_REFERENCE_KEY`;
- `GET /services/data/vXX.X/sobjects/Lead/{externalIdField}/{value}?fields=Id`: 200 the record
  (`attributes`, `Id`), 404 `NOT_FOUND`;
- a token that is unknown, expired or revoked: 401 `[{"message": "Session expired or invalid",
  "errorCode": "INVALID_SESSION_ID"}]`; errors are a list of `{message, errorCode, fields}`.

`leads` and `tasks` hold the org's records by external id value; `users` its user ids (empty:
any `OwnerId` is taken); `expire_tokens()` ends every token issued so far; `refuse_tokens =
True` makes the REST API refuse every token, new ones too; `down = True` makes every request a
503. `requests` records each request's method, path, headers, body and (monotonic) time.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
from typing import Any
from urllib.parse import parse_qs

from leadflow_tools.receiver import LocalServer, read_body

EXTERNAL_ID_FIELDS = {"Lead": "Leadflow_Lead_Id__c", "Task": "Leadflow_Task_Id__c"}
PREFIXES = {"Lead": "00Q", "Task": "00T"}
REQUIRED = {"Lead": ("LastName", "Company"), "Task": ()}
ROW = re.compile(r"^/services/data/v(\d+\.\d)/sobjects/(\w+)/(\w+)/([^/]+)$")


def _errors(code: str, message: str, fields: list[str] | None = None) -> list[dict]:
    return [{"message": message, "errorCode": code, "fields": fields or []}]


class SalesforceServer(LocalServer):
    """One Salesforce org: its connected app's client credentials, its Leads and Tasks."""

    def __init__(self, client_id: str, client_secret: str) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.leads: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.users: set[str] = set()
        self.down = False
        self.refuse_tokens = False
        self.requests: list[dict[str, Any]] = []
        self._tokens: set[str] = set()
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def expire_tokens(self) -> None:
        self._tokens.clear()

    def token_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/services/oauth2/token"]

    def _token(self, form: dict[str, str]) -> tuple[int, Any]:
        if form.get("grant_type") != "client_credentials":
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": "grant type not supported",
            }
        if (
            form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return 400, {
                "error": "invalid_client",
                "error_description": "invalid client credentials",
            }
        token = f"00D000000000001!{secrets.token_urlsafe(24)}"
        self._tokens.add(token)
        return 200, {
            "access_token": token, "signature": secrets.token_urlsafe(16), "scope": "api",
            "instance_url": self.url, "id": f"{self.url}/id/00D000000000001/005000000000001",
            "token_type": "Bearer", "issued_at": str(int(time.time() * 1000)),
        }  # fmt: skip

    def _new_id(self, sobject: str) -> str:
        return f"{PREFIXES[sobject]}{next(self._ids):012d}AAA"

    def _upsert(self, version: str, sobject: str, field: str, value: str, body: Any):
        records = self.leads if sobject == "Lead" else self.tasks
        if not isinstance(body, dict):
            return 400, _errors("JSON_PARSER_ERROR", "the body must be a JSON object")
        owner = body.get("OwnerId")
        if owner is not None and self.users and owner not in self.users:
            return 400, _errors(
                "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["OwnerId"]
            )
        if sobject == "Task" and body.get("WhoId") is not None:
            if body["WhoId"] not in {r["Id"] for r in self.leads.values()}:
                return 400, _errors(
                    "FIELD_INTEGRITY_EXCEPTION", "Name ID: id value of incorrect type", ["WhoId"]
                )
        existing = records.get(value)
        if existing is None:
            missing = [name for name in REQUIRED[sobject] if not body.get(name)]
            if missing:
                return 400, _errors(
                    "REQUIRED_FIELD_MISSING", f"Required fields are missing: {missing}", missing
                )
            records[value] = {**body, field: value, "Id": self._new_id(sobject)}
            return 201, {"id": records[value]["Id"], "success": True, "errors": [], "created": True}
        existing.update(body)
        if float(version) < 46.0:
            return 204, None
        return 200, {"id": existing["Id"], "success": True, "errors": [], "created": False}

    def _rest(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        row = ROW.match(path)
        if row is None or method not in ("PATCH", "GET"):
            return 404, _errors("NOT_FOUND", "The requested resource does not exist")
        version, sobject, field, value = row.groups()
        if sobject not in EXTERNAL_ID_FIELDS:
            return 404, _errors("NOT_FOUND", f"The requested resource does not exist: {sobject}")
        if field != EXTERNAL_ID_FIELDS[sobject]:
            return 404, _errors(
                "NOT_FOUND",
                f"Provided external ID field does not exist or is not accessible: {field}",
            )
        if method == "PATCH":
            return self._upsert(version, sobject, field, value, body)
        record = (self.leads if sobject == "Lead" else self.tasks).get(value)
        if record is None:
            return 404, _errors("NOT_FOUND", "The requested resource does not exist")
        fields = [f for f in (query.get("fields") or "Id").split(",") if f]
        found = {f: record.get(f) for f in fields}
        return 200, {
            "attributes": {
                "type": sobject,
                "url": f"/services/data/v{version}/sobjects/{sobject}/{record['Id']}",
            },
            **found,
        }

    async def app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        raw = await read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        method, path = scope["method"], scope["path"]
        form = {k: v[-1] for k, v in parse_qs(raw.decode()).items()} if raw else {}
        try:
            body = json.loads(raw) if raw and "json" in headers.get("content-type", "") else None
        except ValueError:
            body = None
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
        self.requests.append({"method": method, "path": path, "headers": headers,
                              "json": body, "form": form, "at": time.monotonic()})  # fmt: skip
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if self.down:
            status, answer = 503, _errors("SERVER_UNAVAILABLE", "Salesforce is unavailable")
        elif (method, path) == ("POST", "/services/oauth2/token"):
            status, answer = self._token(form)
        elif self.refuse_tokens or token not in self._tokens:
            status, answer = 401, _errors("INVALID_SESSION_ID", "Session expired or invalid")
        else:
            status, answer = self._rest(method, path, query, body)
        content = b"" if answer is None else json.dumps(answer).encode()
        await send({
            "type": "http.response.start", "status": status,
            "headers": [(b"content-type", b"application/json;charset=UTF-8")],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": content})
