"""Local receivers implementing the vendors' documented contracts of Slack incoming webhooks and
Microsoft Teams workflow webhooks, for exactly the calls Leadflow makes (one JSON POST per
message). Slack and Teams cannot be reached from the tests; these answer as the vendors document.

Slack incoming webhooks (https://api.slack.com/messaging/webhooks, "Handling errors") and Block
Kit (https://api.slack.com/reference/block-kit/blocks, .../block-elements,
.../composition-objects): a good POST gets 200 with the body `ok`; a body that is not a JSON
object, or whose blocks break their documented shape, gets 400 `invalid_payload`; a message with
neither `text` nor `blocks` gets 400 `no_text`; a removed webhook 404 `no_service`; too many
messages 429 with `Retry-After` (https://api.slack.com/apis/rate-limits). Checked: at most 50
blocks, each of a known type with its required fields; a header's plain_text at most 150
characters; a section's text at most 3,000, its fields at most 10 of 2,000; a context's elements
1 to 10; a button's text plain_text of at most 75 and its url at most 3,000 characters.

Teams workflow webhooks, a workflow started by the "When a Teams webhook request is received"
trigger (https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook,
https://learn.microsoft.com/en-us/connectors/teams/): the trigger answers 202 Accepted and posts
the card later; a message over 28 KB is refused (413 here); throttling is a 429. Leadflow sends Adaptive
Cards only, so this receiver takes only those and answers 400 to anything else. Checked: `type`
`message`, a non-empty `attachments` list whose first item has `contentType`
`application/vnd.microsoft.card.adaptive` and `content` an `AdaptiveCard` with a `version` and a
`body` list of typed elements; `actions`, when present, typed `Action.*` (an `Action.OpenUrl`
with a url); `msteams.entities` mentions with `text` and `mentioned.id`/`name`, each mention's
text present in the card's text
(https://learn.microsoft.com/en-us/microsoftteams/platform/task-modules-and-cards/cards/cards-format).

Each receiver records what it accepted; `answer` makes it misbehave as the services can:
`"rate_limited"` (429 with `Retry-After: retry_after`), `"error"` (500), `"no_service"` (404,
Slack) or `"hang"` (no answer until the receiver stops).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, ClassVar

from leadflow_tools.receiver import LocalServer, read_body

SLACK_BLOCK_TYPES = {
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "rich_text",
    "section",
    "video",
}
SLACK_TEXT_TYPES = {"plain_text", "mrkdwn"}
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"
TEAMS_MAX_BYTES = 28 * 1024


def _text_object(value: Any, where: str, limit: int, plain_only: bool = False) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: must be a text object"]
    kind = value.get("type")
    allowed = {"plain_text"} if plain_only else SLACK_TEXT_TYPES
    if kind not in allowed:
        return [f"{where}.type: must be one of {sorted(allowed)}"]
    text = value.get("text")
    if not isinstance(text, str) or not text:
        return [f"{where}.text: must be a non-empty string"]
    if len(text) > limit:
        return [f"{where}.text: {len(text)} characters, at most {limit}"]
    return []


def _slack_element(element: Any, where: str) -> list[str]:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        return [f"{where}: must be an element with a type"]
    if element["type"] != "button":
        return []
    problems = _text_object(element.get("text"), f"{where}.text", 75, plain_only=True)
    url = element.get("url")
    if url is not None and (not isinstance(url, str) or len(url) > 3000):
        problems.append(f"{where}.url: a string of at most 3000 characters")
    action_id = element.get("action_id")
    if action_id is not None and (not isinstance(action_id, str) or len(action_id) > 255):
        problems.append(f"{where}.action_id: a string of at most 255 characters")
    return problems


def slack_payload_problems(payload: Any) -> list[str]:
    """What makes `payload` break the documented shape of an incoming-webhook message."""
    if not isinstance(payload, dict):
        return ["the payload must be a JSON object"]
    problems: list[str] = []
    if "text" in payload and not isinstance(payload["text"], str):
        problems.append("text: must be a string")
    blocks = payload.get("blocks")
    if blocks is None:
        return problems
    if not isinstance(blocks, list):
        return [*problems, "blocks: must be a list"]
    if len(blocks) > 50:
        problems.append(f"blocks: {len(blocks)} blocks, at most 50")
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict) or block.get("type") not in SLACK_BLOCK_TYPES:
            problems.append(f"{where}.type: not a known block type")
            continue
        block_id = block.get("block_id")
        if block_id is not None and (not isinstance(block_id, str) or len(block_id) > 255):
            problems.append(f"{where}.block_id: a string of at most 255 characters")
        match block["type"]:
            case "header":
                problems += _text_object(block.get("text"), f"{where}.text", 150, plain_only=True)
            case "section":
                if "text" not in block and "fields" not in block:
                    problems.append(f"{where}: a section needs text or fields")
                if "text" in block:
                    problems += _text_object(block["text"], f"{where}.text", 3000)
                fields = block.get("fields")
                if fields is not None:
                    if not isinstance(fields, list) or len(fields) > 10:
                        problems.append(f"{where}.fields: a list of at most 10")
                    else:
                        for j, field in enumerate(fields):
                            problems += _text_object(field, f"{where}.fields[{j}]", 2000)
                if "accessory" in block:
                    problems += _slack_element(block["accessory"], f"{where}.accessory")
            case "context":
                elements = block.get("elements")
                if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                    problems.append(f"{where}.elements: a list of 1 to 10")
                    continue
                for j, element in enumerate(elements):
                    if isinstance(element, dict) and element.get("type") == "image":
                        continue
                    problems += _text_object(element, f"{where}.elements[{j}]", 3000)
            case "actions":
                elements = block.get("elements")
                if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
                    problems.append(f"{where}.elements: a list of 1 to 25")
                    continue
                for j, element in enumerate(elements):
                    problems += _slack_element(element, f"{where}.elements[{j}]")
    return problems


def _card_texts(value: Any) -> list[str]:
    """Every string a card shows (TextBlock texts, fact values, titles), for mention checks."""
    if isinstance(value, dict):
        found = [
            v for k, v in value.items() if k in ("text", "value", "title") and isinstance(v, str)
        ]
        for v in value.values():
            if isinstance(v, dict | list):
                found += _card_texts(v)
        return found
    if isinstance(value, list):
        return [text for item in value for text in _card_texts(item)]
    return []


def teams_payload_problems(payload: Any) -> list[str]:
    """What makes `payload` something a Teams workflow webhook does not post: not a message
    carrying an Adaptive Card."""
    if not isinstance(payload, dict):
        return ["the payload must be a JSON object"]
    if payload.get("type") != "message":
        return ["type: must be `message`"]
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or not attachments:
        return ["attachments: must be a non-empty list"]
    attachment = attachments[0]
    if not isinstance(attachment, dict) or attachment.get("contentType") != ADAPTIVE_CARD:
        return [f"attachments[0].contentType: must be {ADAPTIVE_CARD}"]
    card = attachment.get("content")
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        return ["attachments[0].content.type: must be AdaptiveCard"]
    problems: list[str] = []
    if not isinstance(card.get("version"), str):
        problems.append("content.version: must be a string such as 1.4")
    body = card.get("body")
    if not isinstance(body, list):
        problems.append("content.body: must be a list")
    else:
        for i, element in enumerate(body):
            if not isinstance(element, dict) or not isinstance(element.get("type"), str):
                problems.append(f"content.body[{i}]: must be an element with a type")
    actions = card.get("actions", [])
    if not isinstance(actions, list):
        problems.append("content.actions: must be a list")
    else:
        for i, action in enumerate(actions):
            kind = action.get("type") if isinstance(action, dict) else None
            if not isinstance(kind, str) or not kind.startswith("Action."):
                problems.append(f"content.actions[{i}].type: must be an Action")
            elif kind == "Action.OpenUrl" and not isinstance(action.get("url"), str):
                problems.append(f"content.actions[{i}].url: an Action.OpenUrl needs a url")
    entities = (card.get("msteams") or {}).get("entities", [])
    shown = " ".join(_card_texts(body or []))
    for i, entity in enumerate(entities if isinstance(entities, list) else []):
        mentioned = entity.get("mentioned") if isinstance(entity, dict) else None
        if (
            entity.get("type") != "mention"
            or not isinstance(entity.get("text"), str)
            or not isinstance(mentioned, dict)
            or not mentioned.get("id")
            or not mentioned.get("name")
        ):
            problems.append(f"content.msteams.entities[{i}]: a mention needs text and mentioned")
        elif entity["text"] not in shown:
            problems.append(f"content.msteams.entities[{i}].text: not in the card's text")
    return problems


class ChatReceiver(LocalServer):
    """One local webhook endpoint, in-process (uvicorn on a free port), or mounted directly as
    an ASGI app (`app`) for tests that need no socket."""

    path: ClassVar[str] = "/"

    def __init__(self) -> None:
        super().__init__()
        self.answer = "ok"
        self.retry_after = 30
        self.accepted: list[dict] = []
        self.refused: list[tuple[int, str]] = []
        self._release = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def judge(self, body: bytes) -> tuple[int, str, dict | None]:
        """The vendor's answer to a well-behaved endpoint: status, body, the accepted payload."""
        raise NotImplementedError

    async def app(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        headers: list[tuple[bytes, bytes]] = [(b"content-type", b"text/plain; charset=utf-8")]
        if scope["method"] != "POST":
            status, text, payload = 405, "invalid_method", None
        elif self.answer == "hang":
            await self._release.wait()
            status, text, payload = 503, "", None
        elif self.answer == "rate_limited":
            status, text, payload = 429, "rate_limited", None
            headers.append((b"retry-after", str(self.retry_after).encode()))
        elif self.answer == "error":
            status, text, payload = 500, "internal_error", None
        elif self.answer == "no_service":
            status, text, payload = 404, "no_service", None
        else:
            status, text, payload = self.judge(body)
        if payload is not None:
            self.accepted.append(payload)
        else:
            self.refused.append((status, text))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": text.encode()})

    def stopping(self) -> None:
        self._release.set()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


class SlackWebhookReceiver(ChatReceiver):
    """A Slack incoming webhook, as Slack documents it."""

    path = "/services/T0LEADFLOW/B0LEADFLOW/localreceiver"

    def judge(self, body: bytes) -> tuple[int, str, dict | None]:
        payload = _json(body)
        if not isinstance(payload, dict):
            return 400, "invalid_payload", None
        if not payload.get("text") and not payload.get("blocks"):
            return 400, "no_text", None
        if slack_payload_problems(payload):
            return 400, "invalid_payload", None
        return 200, "ok", payload


class TeamsWorkflowReceiver(ChatReceiver):
    """A Teams workflow webhook trigger, as Microsoft documents it."""

    path = "/workflows/leadflow/triggers/manual/paths/invoke"

    def judge(self, body: bytes) -> tuple[int, str, dict | None]:
        payload = _json(body)
        if len(body) > TEAMS_MAX_BYTES:
            return 413, "the message is larger than 28 KB", None
        if teams_payload_problems(payload):
            return 400, "the request is not a message with an Adaptive Card attachment", None
        return 202, "", payload
