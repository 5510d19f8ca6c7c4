"""Kafka plumbing shared by every service: the producer and topic creation."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from leadflow.contracts.events import ALL_TOPICS, dlq_topic
from leadflow.retry import exponential_backoff
from leadflow.settings import Settings

log = logging.getLogger(__name__)
TOPIC_EXISTS = 36


@dataclass(frozen=True)
class TopicLayout:
    """How a topic Leadflow creates is laid out: partitions (the ceiling on consumers per
    group), replication factor and, on a cluster, `min.insync.replicas`."""

    partitions: int = 6
    replication: int = 1
    min_insync_replicas: int | None = None

    @classmethod
    def of(cls, settings: Settings) -> TopicLayout:
        return cls(
            settings.topic_partitions,
            settings.topic_replication_factor,
            settings.topic_min_insync_replicas,
        )

    def new_topic(self, name: str) -> NewTopic:
        configs = (
            {"min.insync.replicas": str(self.min_insync_replicas)}
            if self.min_insync_replicas
            else None
        )
        return NewTopic(
            name,
            num_partitions=self.partitions,
            replication_factor=self.replication,
            topic_configs=configs,
        )


def make_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    # No idempotent producer: the outbox + inbox pair already makes effects exactly-once.
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        linger_ms=2,
        request_timeout_ms=15_000,
    )


async def start_with_retry(client, what: str, *, attempts: int = 60) -> None:
    for attempt in range(1, attempts + 1):
        try:
            await client.start()
            return
        except KafkaConnectionError:
            if attempt == attempts:
                raise
            log.info("waiting for the broker", extra={"client": what, "attempt": attempt})
            await asyncio.sleep(exponential_backoff(attempt, base=0.1, cap=0.5))


async def ensure_topics(settings: Settings, topics: tuple[str, ...] = ALL_TOPICS) -> list[str]:
    """Create every topic and its dead-letter topic; existing ones are left as they are."""
    names = [settings.topic_prefix + t for topic in topics for t in (topic, dlq_topic(topic))]
    await create_topics(settings.kafka_bootstrap, names, TopicLayout.of(settings))
    return names


async def create_topics(
    bootstrap: str, names: list[str], layout: TopicLayout, *, attempts: int = 60
) -> None:
    """Create these topics (full names) where missing, e.g. after an in-memory broker restarted;
    existing ones are left as they are. `attempts`: tries to reach the broker, 0.5 s apart."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await start_with_retry(admin, "admin", attempts=attempts)
    try:
        response = await admin.create_topics([layout.new_topic(n) for n in names])
        for name, code, message in response.topic_errors:
            if code not in (0, TOPIC_EXISTS):
                raise RuntimeError(f"cannot create topic {name}: {message} (error {code})")
    finally:
        await admin.close()
