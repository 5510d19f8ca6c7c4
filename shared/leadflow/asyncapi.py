"""The AsyncAPI 3.0 document of Leadflow's topics and events, generated from the event models and
the services' subscriptions, so the published contract cannot drift from the code."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import yaml

from leadflow.consumer import Subscription
from leadflow.contracts.events import (
    ALL_TOPICS,
    PAYLOAD_TYPES,
    TOPIC_DESCRIPTIONS,
    TOPIC_INBOUND,
    TOPIC_PRODUCERS,
    CloudEvent,
    Payload,
    dlq_topic,
)
from leadflow.settings import Settings

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
SCHEMAS = "#/components/schemas/"
# The raw lead a marketing platform publishes on leads.inbound; not a CloudEvent.
INTAKE_MESSAGE = "lead.intake"
DEAD_LETTER_MESSAGE = "dead_letter"
CLOUDEVENTS = "application/cloudevents+json"


@dataclass
class _Consumer:
    """One subscription of one service, as the document sees it: what it reads from each topic."""

    service: str
    name: str
    reads: dict[str, list[str]] = field(default_factory=dict)  # topic -> message names


def document(
    consumers: Mapping[str, Sequence[Subscription]] | None = None,
    *,
    service: str | None = None,
    publishes: Iterable[str] | None = None,
    consumes: Sequence[Subscription] = (),
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document as plain JSON data.

    Without `service`: all of Leadflow, every topic (and its dead-letter topic) and every event
    type, the `send` of each topic's producer, and the `receive` (and dead-lettering) of each
    subscription in `consumers` (service name -> its subscriptions).
    With `service`: that service alone, the topics it `publishes` (by default those it
    produces, TOPIC_PRODUCERS) and the subscriptions it `consumes`."""
    if service is None:
        consumers = consumers or {}
        readers = [_consumer(name, sub) for name in sorted(consumers) for sub in consumers[name]]
        sent = dict(TOPIC_PRODUCERS)
        topics = set(ALL_TOPICS)
        dead_letters = topics  # every topic is created with its dead-letter topic
    else:
        if consumers:
            raise ValueError("a service's document takes its own subscriptions as `consumes`")
        readers = [_consumer(service, sub) for sub in consumes]
        if publishes is None:
            publishes = [t for t, producer in TOPIC_PRODUCERS.items() if producer == service]
        sent = dict.fromkeys(publishes, service)
        dead_letters = {topic for reader in readers for topic in reader.reads}
        topics = set(sent) | dead_letters
    unknown = sorted(set(sent) - set(ALL_TOPICS))
    if unknown:
        raise ValueError(f"not Leadflow topics (leadflow.contracts.events): {unknown}")

    messages = {name: message for name, message in _messages().items() if _used(name, topics)}
    channels = {topic: _channel(topic) for topic in sorted(topics)}
    for topic in sorted(dead_letters):
        channels[dlq_topic(topic)] = _dead_letter_channel(topic)
    if dead_letters:
        messages[DEAD_LETTER_MESSAGE] = _dead_letter_message()
    operations: dict[str, Any] = {}
    for topic in sorted(sent):
        operations[f"{sent[topic]}.send.{topic}"] = _operation(
            "send",
            topic,
            sorted(_channel_messages(topic)),
            service=sent[topic],
            summary=f"{sent[topic]} publishes {topic} (from its outbox, after its commit).",
        )
    for reader in sorted(readers, key=lambda r: (r.service, r.name)):
        group = f"{reader.service}.{reader.name}"
        for topic, names in sorted(reader.reads.items()):
            operations[f"{group}.receive.{topic}"] = _operation(
                "receive",
                topic,
                names,
                service=reader.service,
                summary=f"{reader.service} ({reader.name}) reads {topic}.",
                group=group,
            )
            operations[f"{group}.dead-letter.{topic}"] = _operation(
                "send",
                dlq_topic(topic),
                [DEAD_LETTER_MESSAGE],
                service=reader.service,
                summary=f"{reader.service} ({reader.name}) dead-letters what it cannot process.",
            )
    schemas = _schemas(messages)
    channels = dict(sorted(channels.items()))
    operations = dict(sorted(operations.items()))
    title = "Leadflow" if service is None else f"Leadflow {service}"
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": title,
            "version": _version(),
            "description": (
                "The topics and events of Leadflow. Every topic except leads.inbound carries "
                "CloudEvents 1.0 in structured mode (the JSON envelope is the Kafka record "
                "value; no record headers), keyed by lead id; each topic has exactly one "
                "producing service. A record a consumer cannot process goes to `<topic>.dlq`."
            ),
        },
        "defaultContentType": CLOUDEVENTS,
        "servers": {"kafka": _server()},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def to_yaml(doc: dict[str, Any]) -> str:
    header = "# Generated from the event models and the subscriptions by `leadflow asyncapi`.\n"
    return header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


class _Dumper(yaml.SafeDumper):
    """Writes a shared sub-document out in full each time instead of as a YAML alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _version() -> str:
    try:
        return version("leadflow")
    except PackageNotFoundError:  # run from a source tree without the kernel installed
        return "0.0.0"


def _server() -> dict[str, Any]:
    default = Settings.model_fields["kafka_bootstrap"].default
    return {
        "host": "{bootstrap}",
        "protocol": "kafka",
        "description": (
            "The Kafka bootstrap servers are a setting, LEADFLOW_KAFKA_BOOTSTRAP. Topic names "
            "get LEADFLOW_TOPIC_PREFIX in front when it is set, and consumer groups too."
        ),
        "variables": {
            "bootstrap": {
                "default": default,
                "description": "LEADFLOW_KAFKA_BOOTSTRAP (the default is the embedded broker).",
            }
        },
    }


def _consumer(service: str, sub: Subscription) -> _Consumer:
    """What a subscription reads: the event types it takes, by topic, and its raw topics."""
    reads: dict[str, set[str]] = {}
    for model in sub.takes:
        reads.setdefault(model.topic, set()).add(model.type)
    for topic in sub.raw:
        if topic not in ALL_TOPICS:
            raise ValueError(f"subscription {sub.name} reads {topic!r}, not a Leadflow topic")
        # A raw handler gets every record of the topic.
        reads.setdefault(topic, set()).update(_channel_messages(topic))
    return _Consumer(service, sub.name, {t: sorted(names) for t, names in reads.items()})


def _channel_messages(topic: str) -> list[str]:
    if topic == TOPIC_INBOUND:
        return [INTAKE_MESSAGE]
    return sorted(name for name, model in PAYLOAD_TYPES.items() if model.topic == topic)


def _used(message: str, topics: set[str]) -> bool:
    return any(message in _channel_messages(topic) for topic in topics)


def _channel(topic: str) -> dict[str, Any]:
    producer = TOPIC_PRODUCERS.get(topic)
    published_by = f"Published by {producer}." if producer else "Published outside Leadflow."
    return {
        "address": topic,
        "title": topic,
        "description": f"{TOPIC_DESCRIPTIONS[topic]} {published_by} Keyed by lead id.",
        "messages": {
            name: {"$ref": f"#/components/messages/{name}"} for name in _channel_messages(topic)
        },
        "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING}},
    }


def _dead_letter_channel(topic: str) -> dict[str, Any]:
    return {
        "address": dlq_topic(topic),
        "title": dlq_topic(topic),
        "description": (
            f"Dead letters of {topic}: each record a consumer could not process (a payload "
            "that does not fit its model, a rejected event, or one that failed every retry), "
            "as it arrived, with the error in its headers."
        ),
        "messages": {DEAD_LETTER_MESSAGE: {"$ref": f"#/components/messages/{DEAD_LETTER_MESSAGE}"}},
        "bindings": {"kafka": {"bindingVersion": KAFKA_BINDING}},
    }


def _operation(
    action: str,
    topic: str,
    messages: list[str],
    *,
    service: str,
    summary: str,
    group: str | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{topic}"},
        "summary": summary,
        "tags": [{"name": service}],
        "messages": [{"$ref": f"#/channels/{topic}/messages/{name}"} for name in messages],
    }
    if group is not None:
        operation["bindings"] = {
            "kafka": {
                "groupId": {"type": "string", "enum": [group]},
                "bindingVersion": KAFKA_BINDING,
            }
        }
    return operation


def _key_binding() -> dict[str, Any]:
    return {
        "kafka": {
            "key": {"type": "string", "format": "uuid", "description": "The lead id."},
            "bindingVersion": KAFKA_BINDING,
        }
    }


def _messages() -> dict[str, dict[str, Any]]:
    """Every message that travels on a Leadflow topic, by name (the event type for events)."""
    messages = {name: _event_message(PAYLOAD_TYPES[name]) for name in sorted(PAYLOAD_TYPES)}
    messages[INTAKE_MESSAGE] = {
        "name": INTAKE_MESSAGE,
        "title": "Lead intake",
        "summary": "A lead as a marketing platform sends it: plain JSON, no CloudEvent.",
        "contentType": "application/json",
        "payload": {
            "type": "object",
            "description": (
                "The request body of ingest's POST /v1/leads (the LeadIn schema of ingest's "
                "OpenAPI document at /openapi.json). A record that does not fit it is "
                "dead-lettered."
            ),
        },
        "bindings": {
            "kafka": {
                "key": {
                    "type": "string",
                    "description": "The sending platform; ingest records the lead as written "
                    "by `kafka:<key>` (`kafka` without a key).",
                },
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }
    return messages


def _event_message(model: type[Payload]) -> dict[str, Any]:
    summary = (model.__doc__ or model.type).strip().splitlines()[0]
    producer = TOPIC_PRODUCERS[model.topic]
    return {
        "name": model.type,
        "title": model.type,
        "summary": summary,
        "contentType": CLOUDEVENTS,
        "payload": {
            "allOf": [
                {"$ref": f"{SCHEMAS}{CloudEvent.__name__}"},
                {
                    "type": "object",
                    "required": ["type", "data"],
                    "properties": {
                        "type": {"const": model.type},
                        "source": {"const": producer},
                        "subject": {
                            "type": "string",
                            "format": "uuid",
                            "description": "The lead id.",
                        },
                        "dataschema": {"const": f"leadflow:{model.type}/v{model.schema_version}"},
                        "data": {"$ref": f"{SCHEMAS}{model.__name__}"},
                    },
                },
            ]
        },
        "bindings": _key_binding(),
    }


def _dead_letter_message() -> dict[str, Any]:
    def header(description: str) -> dict[str, Any]:
        return {"type": "string", "description": description}

    return {
        "name": DEAD_LETTER_MESSAGE,
        "title": "Dead-lettered record",
        "summary": "A record no consumer could process, byte for byte, with why.",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": ["leadflow-error", "leadflow-consumer", "leadflow-origin"],
            "properties": {
                "leadflow-error": header("Why it was dead-lettered (at most 4,000 characters)."),
                "leadflow-consumer": header("The consumer group that gave up on it."),
                "leadflow-origin": header("Where it came from: <topic>/<partition>/<offset>."),
            },
        },
        "payload": {
            "description": (
                "The original record's value as it arrived (usually one of the topic's "
                "messages, possibly malformed); the original key is kept."
            )
        },
    }


def _schemas(messages: Mapping[str, Any]) -> dict[str, Any]:
    """components/schemas: the envelope and the payload model of every event message, with the
    models they nest (pydantic's $defs), their references pointing into components."""
    found: dict[str, Any] = {}
    models: list[type[Any]] = [CloudEvent]
    models += [PAYLOAD_TYPES[name] for name in messages if name in PAYLOAD_TYPES]
    for model in models:
        schema = model.model_json_schema(ref_template=SCHEMAS + "{model}")
        for name, nested in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if found.setdefault(name, nested) != nested:
                raise ValueError(f"two different schemas are named {name}")
    return dict(sorted(found.items()))
