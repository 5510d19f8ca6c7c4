"""Each service serves the AsyncAPI document of its own topics at /asyncapi.json: valid AsyncAPI
3.0.0, without an API key, and listing exactly what it publishes and what its subscriptions read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from leadflow.contracts.events import TOPIC_PRODUCERS, TOPIC_SCORING, dlq_topic
from leadflow_tools.registry import SERVICE_ORDER, service_spec
from support.harness import service_client

SCHEMA = Path(__file__).resolve().parents[1] / "fixtures" / "asyncapi" / "3.0.0.json"


def operations(doc: dict[str, Any], action: str) -> dict[str, set[str]]:
    """Topic -> the message names the service's operations of this action carry on it."""
    found: dict[str, set[str]] = {}
    for op in doc["operations"].values():
        if op["action"] == action:
            topic = doc["channels"][op["channel"]["$ref"].removeprefix("#/channels/")]["address"]
            found.setdefault(topic, set()).update(
                m["$ref"].rsplit("/", 1)[1] for m in op["messages"]
            )
    return found


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))


@pytest.mark.parametrize("name", SERVICE_ORDER)
async def test_a_service_serves_the_asyncapi_document_of_its_own_topics(
    name: str, stack, validator: jsonschema.Draft7Validator
) -> None:
    settings = await stack.isolated_settings()
    async with service_client(name, settings) as client:
        response = await client.get("/asyncapi.json")  # no API key
        assert response.status_code == 200, response.text
        doc = response.json()
        subscriptions = service_spec(name).consumes(client.app.state.runtime)
        paths = (await client.get("/openapi.json")).json()["paths"]

    assert [e.message for e in validator.iter_errors(doc)] == []
    assert doc["info"]["title"] == f"Leadflow {name}"
    assert "/asyncapi.json" not in paths
    published = {topic for topic, producer in TOPIC_PRODUCERS.items() if producer == name}
    on = {channel["address"]: set(channel["messages"]) for channel in doc["channels"].values()}
    consumed: dict[str, set[str]] = {}
    for sub in subscriptions:
        for model in sub.takes:
            consumed.setdefault(model.topic, set()).add(model.type)
        for topic in sub.raw:  # a raw handler gets every record of its topic
            consumed.setdefault(topic, set()).update(on[topic])
    assert consumed, f"{name} reads no topic"
    assert operations(doc, "receive") == consumed
    assert set(operations(doc, "send")) == published | {dlq_topic(t) for t in consumed}
    channels = {channel["address"] for channel in doc["channels"].values()}
    assert channels == published | set(consumed) | {dlq_topic(t) for t in consumed}


async def test_routing_documents_that_it_takes_mqls_from_scoring(stack) -> None:
    settings = await stack.isolated_settings()
    async with service_client("routing", settings) as client:
        doc = (await client.get("/asyncapi.json")).json()
    assert "lead.mql" in operations(doc, "receive")[TOPIC_SCORING]
    assert "lead.mql" in doc["components"]["messages"]
    assert "leadflow.routing" in operations(doc, "send")
