"""The AsyncAPI document: valid AsyncAPI 3.0.0, every event type a message and every topic a
channel, each payload schema the one of its model, and the committed copy up to date."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
import yaml
from leadflow.asyncapi import DEAD_LETTER_MESSAGE, INTAKE_MESSAGE, document, to_yaml
from leadflow.consumer import Subscription
from leadflow.contracts.events import (
    ALL_TOPICS,
    PAYLOAD_TYPES,
    TOPIC_FEEDBACK,
    TOPIC_INBOUND,
    TOPIC_PRODUCERS,
    TOPIC_SCORING,
    LeadMql,
    LeadStatusChanged,
    dlq_topic,
    make_event,
)
from leadflow_tools.cli import main

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "tests" / "fixtures" / "asyncapi" / "3.0.0.json"
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
REGENERATE = ".venv/bin/leadflow asyncapi --out docs/asyncapi.yaml"


async def apply_nothing(session, received: list) -> None:
    return None


async def read_raw(record, session) -> None:
    return None


def asyncapi_validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))


def problems(doc: dict[str, Any]) -> list[str]:
    return [
        f"{list(e.absolute_path)}: {e.message[:200]}" for e in asyncapi_validator().iter_errors(doc)
    ]


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> str:
    """What `leadflow asyncapi --out` writes: the whole document, with every service's consumers."""
    out = tmp_path_factory.mktemp("asyncapi") / "asyncapi.yaml"
    assert main(["asyncapi", "--out", str(out)]) == 0
    return out.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def whole(generated: str) -> dict[str, Any]:
    return yaml.safe_load(generated)


def routing_like() -> dict[str, Any]:
    """A service's document: it publishes leadflow.routing and takes MQLs and status changes."""
    return document(
        service="routing",
        consumes=[
            Subscription("mql", takes=(LeadMql,), apply=apply_nothing),
            Subscription("feedback", takes=(LeadStatusChanged,), apply=apply_nothing),
        ],
    )


def addresses(doc: dict[str, Any]) -> set[str]:
    return {channel["address"] for channel in doc["channels"].values()}


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_the_generated_document_is_valid_asyncapi_3(whole: dict[str, Any]) -> None:
    assert whole["asyncapi"] == "3.0.0"
    assert problems(whole) == []


@pytest.mark.parametrize(
    "build",
    [lambda: document(), routing_like],
    ids=["without-consumers", "one-service"],
)
def test_every_shape_of_the_document_is_valid_asyncapi_3(build) -> None:
    assert problems(build()) == []


def test_a_broken_document_fails_validation(whole: dict[str, Any]) -> None:
    no_info = {key: value for key, value in whole.items() if key != "info"}
    assert problems(no_info) != []
    # AsyncAPI 2's "publish" is no action in 3.0.
    operations = {name: {**op, "action": "publish"} for name, op in whole["operations"].items()}
    assert problems({**whole, "operations": operations}) != []


def test_every_event_type_is_a_message_on_the_channel_of_its_topic(whole: dict[str, Any]) -> None:
    messages = whole["components"]["messages"]
    for event_type, model in PAYLOAD_TYPES.items():
        assert messages[event_type]["name"] == event_type
        assert event_type in whole["channels"][model.topic]["messages"], event_type


def test_every_topic_is_a_channel_and_so_is_its_dead_letter_topic(whole: dict[str, Any]) -> None:
    expected = set(ALL_TOPICS) | {dlq_topic(topic) for topic in ALL_TOPICS}
    assert addresses(whole) == expected
    for topic in ALL_TOPICS:
        dead = whole["channels"][dlq_topic(topic)]
        assert list(dead["messages"]) == [DEAD_LETTER_MESSAGE]
        assert dead["description"].startswith(f"Dead letters of {topic}")


def test_the_inbound_topic_carries_the_raw_lead_intake(whole: dict[str, Any]) -> None:
    assert list(whole["channels"][TOPIC_INBOUND]["messages"]) == [INTAKE_MESSAGE]
    intake = whole["components"]["messages"][INTAKE_MESSAGE]
    assert intake["contentType"] == "application/json"
    assert "POST /v1/leads" in intake["payload"]["description"]


def test_each_topic_is_sent_by_its_one_producer(whole: dict[str, Any]) -> None:
    senders = {
        resolve(whole, op["channel"]["$ref"])["address"]: op["tags"][0]["name"]
        for op in whole["operations"].values()
        if op["action"] == "send" and not op["channel"]["$ref"].endswith(".dlq")
    }
    assert senders == TOPIC_PRODUCERS


def test_the_consumers_of_every_service_are_in_the_document(whole: dict[str, Any]) -> None:
    receivers = {
        (op["tags"][0]["name"], resolve(whole, op["channel"]["$ref"])["address"])
        for op in whole["operations"].values()
        if op["action"] == "receive"
    }
    assert ("ingest", TOPIC_INBOUND) in receivers
    assert ("routing", TOPIC_SCORING) in receivers
    assert {service for service, _ in receivers} == set(TOPIC_PRODUCERS.values())


def test_every_reference_points_into_the_document(whole: dict[str, Any]) -> None:
    for ref in refs(whole):
        assert resolve(whole, ref) is not None, ref


def test_a_payload_schema_accepts_the_event_leadflow_sends(whole: dict[str, Any]) -> None:
    mql = LeadMql(
        lead_id=uuid.uuid4(),
        fit=80,
        engagement=12.5,
        intent_tier=2,
        email="ada@example.com",
        promoted_at=datetime(2026, 12, 1, 9, tzinfo=UTC),
    )
    sent = json.loads(make_event(mql, source="scoring").to_bytes())
    at = "#/components/messages/lead.mql/payload"
    payload = jsonschema.Draft202012Validator({**whole, "$ref": at})
    assert list(payload.iter_errors(sent)) == []
    assert list(payload.iter_errors({**sent, "type": "lead.routed"})) != []
    assert list(payload.iter_errors({**sent, "data": {**sent["data"], "fit": "high"}})) != []


def test_the_committed_document_is_the_generated_one(generated: str) -> None:
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.exists() else ""
    assert committed == generated, (
        f"docs/asyncapi.yaml is out of date with the event models or the subscriptions; "
        f"regenerate it with `{REGENERATE}` (from the repository root) and commit it"
    )


def test_the_document_is_the_same_every_time() -> None:
    assert to_yaml(document()) == to_yaml(document())


def test_a_service_document_holds_only_the_topics_it_publishes_and_reads() -> None:
    doc = routing_like()
    assert doc["info"]["title"] == "Leadflow routing"
    assert addresses(doc) == {
        "leadflow.routing",
        TOPIC_SCORING,
        TOPIC_FEEDBACK,
        dlq_topic(TOPIC_SCORING),
        dlq_topic(TOPIC_FEEDBACK),
    }
    received = doc["operations"]["routing.mql.receive.leadflow.scoring"]
    assert received["action"] == "receive"
    assert received["messages"] == [{"$ref": "#/channels/leadflow.scoring/messages/lead.mql"}]
    assert received["bindings"]["kafka"]["groupId"]["enum"] == ["routing.mql"]
    assert set(doc["components"]["messages"]) == {
        "lead.mql",
        "lead.scored",
        "lead.routed",
        "lead.unassigned",
        "team.directory",
        "lead.contact_attempt",
        "lead.status_changed",
        "lead.onboarding_milestone",
        "lead.churned",
        DEAD_LETTER_MESSAGE,
    }


def test_a_raw_subscription_reads_every_record_of_its_topic() -> None:
    doc = document(
        service="ingest", consumes=[Subscription("inbound", raw={TOPIC_INBOUND: read_raw})]
    )
    received = doc["operations"]["ingest.inbound.receive.leads.inbound"]
    assert received["messages"] == [{"$ref": f"#/channels/leads.inbound/messages/{INTAKE_MESSAGE}"}]


def test_a_topic_outside_the_contracts_is_refused() -> None:
    with pytest.raises(ValueError, match="leads.elsewhere"):
        document(service="ingest", consumes=[Subscription("x", raw={"leads.elsewhere": read_raw})])
    with pytest.raises(ValueError, match="leads.elsewhere"):
        document(service="ingest", publishes=["leads.elsewhere"])


async def test_the_app_serves_its_service_document_without_an_api_key() -> None:
    import httpx
    import sqlalchemy as sa
    from leadflow.service import ServiceSpec, create_app
    from leadflow.settings import Settings

    spec = ServiceSpec(name="routing", package="leadflow_routing", metadata=sa.MetaData(), port=0)
    app = create_app(spec, Settings())
    mql = Subscription("mql", takes=(LeadMql,), apply=apply_nothing)
    # The runtime the lifespan would build, reduced to what the document reads.
    app.state.runtime = SimpleNamespace(consumers=[SimpleNamespace(sub=mql)], state={})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://routing") as client:
        served = await client.get("/asyncapi.json")
        openapi = (await client.get("/openapi.json")).json()
    assert served.status_code == 200
    assert served.json() == document(service="routing", consumes=[mql])
    assert problems(served.json()) == []
    assert "/asyncapi.json" not in openapi["paths"]
