"""Kafka plumbing shared by every service: the producer and topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
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


def digest_of(key: bytes | None, value: bytes | None) -> int:
    """A 64-bit fingerprint of a record's key and value (a signed bigint for PostgreSQL): tells
    whether the record at an offset is still the one written or read there before."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(key or b"")
    digest.update(b"\0")
    digest.update(value or b"")
    return int.from_bytes(digest.digest(), "big", signed=True)


def record_digest(record: ConsumerRecord) -> int:
    return digest_of(record.key, record.value)


@dataclass(frozen=True, slots=True)
class Look:
    """What a partition's log holds at an offset asked for: the first record found from there
    (`offset` is another offset when the asked one is gone: the log starts later or ends
    before it), or none, with the log's end as the broker reported it (`end`, if it did)."""

    offset: int | None
    digest: int | None
    end: int | None


class LogInspector:
    """Looks at partitions' logs apart from any consumer group: what record stands at an offset.
    Consumers and relays ask it whether the broker still holds the log they read or wrote, or
    lost it (an in-memory broker that restarted).

    Only fetches are used: the embedded broker's ListOffsets answer for the log's end is the
    last batch's first offset plus one, short of the end when that batch held several records;
    the high watermark a fetch reports is right."""

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id

    def _client(self) -> AIOKafkaConsumer:
        """A client of its own for each look: nothing fetched for one look (or before a broker
        restart) can reach the next."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            group_id=None,
            enable_auto_commit=False,
            # An offset the log does not hold (any more) is read from the log's start, so the
            # first record found tells what happened.
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=1 << 20,
            fetch_max_wait_ms=100,
            request_timeout_ms=10_000,
        )

    async def close(self) -> None:
        """Nothing stays open between looks."""

    async def look(
        self, offsets: Mapping[TopicPartition, int], within: float = 3.0
    ) -> dict[TopicPartition, Look]:
        """What stands at each offset. A partition that returned nothing `within` seconds is
        reported with its end when that lies at or before the offset, and left out otherwise
        (not known). The whole look, connecting included, is bounded: TimeoutError beyond."""
        if not offsets:
            return {}
        return await asyncio.wait_for(self._look(offsets, within), within + 12)

    async def _look(
        self, offsets: Mapping[TopicPartition, int], within: float
    ) -> dict[TopicPartition, Look]:
        found: dict[TopicPartition, Look] = {}
        consumer = self._client()
        try:
            await start_with_retry(consumer, self.client_id, attempts=2)
            consumer.assign(list(offsets))
            for tp, offset in offsets.items():
                consumer.seek(tp, offset)
            deadline = time.monotonic() + within
            while len(found) < len(offsets) and time.monotonic() < deadline:
                waiting = [tp for tp in offsets if tp not in found]
                batches = await consumer.getmany(*waiting, timeout_ms=200, max_records=20)
                for tp, records in batches.items():
                    if tp not in found and records:
                        first = records[0]
                        found[tp] = Look(first.offset, record_digest(first), None)
                for tp in waiting:
                    end = consumer.highwater(tp)
                    # The log ends at or before the offset asked: nothing stands there.
                    if tp not in found and end is not None and end <= offsets[tp]:
                        found[tp] = Look(None, None, end)
            # Nothing came and no fetch told the end (an empty log answers "out of range"):
            # ask for the end. Its answer falls short of the end when the last batch held
            # several records, and a busy broker can take longer than `within` to send a
            # record that is there, so only an empty log (end 0) says the record is gone; any
            # other answer leaves the partition unknown, for the next look.
            # A later record first: retention removed the one asked for when the log starts
            # after it; otherwise the log that held it is gone (an empty broker can answer a
            # fetch beyond its end with what arrived there later).
            later = [tp for tp, look in found.items() if (look.offset or 0) > offsets[tp]]
            if later:
                starts = await asyncio.wait_for(consumer.beginning_offsets(later), within)
                for tp in later:
                    if starts[tp] <= offsets[tp]:
                        found[tp] = Look(None, None, None)
            silent = [tp for tp in offsets if tp not in found]
            if silent:
                ends = await asyncio.wait_for(consumer.end_offsets(silent), within)
                for tp in silent:
                    if ends[tp] == 0:
                        found[tp] = Look(None, None, 0)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 5)
        return found
