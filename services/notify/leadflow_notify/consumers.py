"""Notify's subscriptions: every event type of every Leadflow topic, one consumer group per
topic (named for its producer), so that a backlog of one producer's events (a burst of
intake) never holds back another's (a lead.routed waiting to be delivered, an SLA breach to
be told)."""

from __future__ import annotations

from leadflow.consumer import Received, Subscription
from leadflow.contracts.events import (
    PAYLOAD_TYPES,
    TOPIC_INGEST,
    TOPIC_PRODUCERS,
    TOPIC_ROUTING,
    TOPIC_SCORING,
    TOPIC_SLA,
)
from leadflow.service import Runtime
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow_notify import use_cases

# Read with the short fetch wait: a notification of a routed lead or of its clock carries what
# these topics told of the lead. The others (feedback, access, policy) can wait half a second.
LEAD_TOPICS = frozenset({TOPIC_INGEST, TOPIC_SCORING, TOPIC_ROUTING, TOPIC_SLA})


def subscriptions(rt: Runtime) -> list[Subscription]:
    async def take_events(session: AsyncSession, received: list[Received]) -> None:
        await use_cases.take_events(rt, session, received)

    return [
        Subscription(
            name,
            takes=tuple(m for m in PAYLOAD_TYPES.values() if m.topic == topic),
            apply=take_events,
            # a lead's context, its assignment and its clocks: what a notification says
            urgent=topic in LEAD_TOPICS,
        )
        for topic, name in subscription_names().items()
    ]


def subscription_names() -> dict[str, str]:
    """Topic → subscription (and consumer group) name: the producer's name for its first
    topic, the producer's and the topic's for any other (feedback's leadflow.access and
    leadflow.policy), so that no two topics share a group."""
    names: dict[str, str] = {}
    for topic, producer in TOPIC_PRODUCERS.items():
        taken = producer in names.values()
        names[topic] = f"{producer}-{topic.rsplit('.', 1)[-1]}" if taken else producer
    return names
