"""The kernel's outbox, relay and consumer runner over the real PostgreSQL and broker."""

import asyncio
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from leadflow.clock import Clock
from leadflow.consumer import ConsumerRunner, Reject, Subscription
from leadflow.db import Database, kernel_tables
from leadflow.events import TOPIC_FEEDBACK, CloudEvent, LeadContactAttempt, dlq_topic
from leadflow.kafka import make_producer
from leadflow.outbox import OUTBOX_TAG, Outbox, OutboxRelay
from leadflow.testing import eventually
from leadflow_feedback.models import metadata

OUTBOX, INBOX = kernel_tables(metadata)


def attempt(lead_id=None):
    return LeadContactAttempt(
        lead_id=lead_id or uuid.uuid4(),
        attempt_id=uuid.uuid4(),
        channel="call",
        occurred_at=datetime.now(UTC),
    )


class Harness:
    def __init__(self, settings):
        self.settings = settings
        self.db = Database(settings.database_url)
        self.producer = make_producer(settings, "test")
        self.seen: list[CloudEvent] = []
        self.tasks: list[asyncio.Task] = []

    async def __aenter__(self):
        await self.producer.start()
        return self

    async def __aexit__(self, *exc):
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.producer.stop()
        await self.db.dispose()

    def relay(self) -> OutboxRelay:
        relay = OutboxRelay(
            self.db,
            OUTBOX,
            self.producer,
            bootstrap=self.settings.kafka_bootstrap,
            service="test",
            topic_prefix=self.settings.topic_prefix,
        )
        self.db.on_commit(OUTBOX_TAG, relay.wake)
        self.tasks.append(asyncio.create_task(relay.run()))
        return relay

    async def consume(self, handler, name="probe") -> ConsumerRunner:
        runner = ConsumerRunner(
            Subscription(name, (TOPIC_FEEDBACK,), handlers={"lead.contact_attempt": handler}),
            self.db,
            INBOX,
            self.producer,
            service="test",
            bootstrap=self.settings.kafka_bootstrap,
            topic_prefix=self.settings.topic_prefix,
            max_attempts=3,
            base_backoff=0.01,
        )
        await runner.start()
        self.tasks.append(asyncio.create_task(runner.run()))
        self.tasks.append(asyncio.create_task(_stop_later(runner)))
        return runner


async def _stop_later(runner):
    try:
        await asyncio.Event().wait()
    finally:
        await runner.stop()


async def test_events_written_in_a_transaction_are_relayed_and_handled_once(settings):
    async with Harness(settings) as h:
        outbox = Outbox(OUTBOX, source="test", clock=Clock())
        h.relay()

        async def handler(event, session):
            h.seen.append(event)

        await h.consume(handler)
        async with h.db.unit_of_work() as session:
            sent = [await outbox.emit(session, attempt()) for _ in range(20)]
        await eventually(lambda: _ready(len(h.seen) >= 20), timeout=60)
        assert sorted(str(e.id) for e in h.seen) == sorted(str(e.id) for e in sent)
        async with h.db.unit_of_work() as session:
            unpublished = await session.scalar(
                sa.select(sa.func.count())
                .select_from(OUTBOX)
                .where(OUTBOX.c.published_at.is_(None))
            )
        assert unpublished == 0


async def test_a_rolled_back_transaction_publishes_nothing(settings):
    async with Harness(settings) as h:
        outbox = Outbox(OUTBOX, source="test", clock=Clock())
        try:
            async with h.db.unit_of_work() as session:
                await outbox.emit(session, attempt())
                raise RuntimeError("handler failed after writing")
        except RuntimeError:
            pass
        async with h.db.unit_of_work() as session:
            rows = await session.scalar(sa.select(sa.func.count()).select_from(OUTBOX))
        assert rows == 0


async def test_a_redelivered_event_is_handled_once(settings):
    async with Harness(settings) as h:
        event = CloudEvent(
            source="test",
            type="lead.contact_attempt",
            time=datetime.now(UTC),
            subject="x",
            data=attempt().model_dump(mode="json"),
        )
        topic = settings.topic_prefix + TOPIC_FEEDBACK
        for _ in range(3):  # a relay that crashed before marking rows sent publishes again
            await h.producer.send_and_wait(topic, event.to_bytes(), key=b"k")
        marker = CloudEvent(
            source="test",
            type="lead.contact_attempt",
            time=datetime.now(UTC),
            subject="x",
            data=attempt().model_dump(mode="json"),
        )
        await h.producer.send_and_wait(topic, marker.to_bytes(), key=b"k")

        async def handler(ev, session):
            h.seen.append(ev)

        await h.consume(handler)
        await eventually(lambda: _ready(any(e.id == marker.id for e in h.seen)), timeout=60)
        assert [e.id for e in h.seen] == [event.id, marker.id]


async def test_a_poison_message_goes_to_the_dead_letter_topic_and_the_partition_moves_on(settings):
    async with Harness(settings) as h:
        topic = settings.topic_prefix + TOPIC_FEEDBACK
        await h.producer.send_and_wait(topic, b"{not json", key=b"same")
        bad = CloudEvent(
            source="test",
            type="lead.contact_attempt",
            time=datetime.now(UTC),
            subject="x",
            data=attempt().model_dump(mode="json"),
        )
        await h.producer.send_and_wait(topic, bad.to_bytes(), key=b"same")
        good = CloudEvent(
            source="test",
            type="lead.contact_attempt",
            time=datetime.now(UTC),
            subject="x",
            data=attempt().model_dump(mode="json"),
        )
        await h.producer.send_and_wait(topic, good.to_bytes(), key=b"same")

        async def handler(ev, session):
            if ev.id == bad.id:
                raise Reject("refused by the handler")
            h.seen.append(ev)

        await h.consume(handler)
        await eventually(lambda: _ready(any(e.id == good.id for e in h.seen)), timeout=60)
        dead = await _read_all(settings, settings.topic_prefix + dlq_topic(TOPIC_FEEDBACK), 2)
        errors = sorted(dict(m.headers)["leadflow-error"].decode() for m in dead)
        assert errors[0].startswith("not a CloudEvent")
        assert errors[1] == "refused by the handler"


async def test_a_failing_handler_is_retried_and_its_partial_writes_are_rolled_back(settings):
    async with Harness(settings) as h:
        outbox = Outbox(OUTBOX, source="test", clock=Clock())
        topic = settings.topic_prefix + TOPIC_FEEDBACK
        event = CloudEvent(
            source="test",
            type="lead.contact_attempt",
            time=datetime.now(UTC),
            subject="x",
            data=attempt().model_dump(mode="json"),
        )
        await h.producer.send_and_wait(topic, event.to_bytes(), key=b"k")
        calls = 0

        async def handler(ev, session):
            nonlocal calls
            calls += 1
            await outbox.emit(session, attempt())  # written, then rolled back on failure
            if calls < 3:
                raise RuntimeError("flaky dependency")
            h.seen.append(ev)

        await h.consume(handler)
        await eventually(lambda: _ready(h.seen), timeout=60)
        async with h.db.unit_of_work() as session:
            written = await session.scalar(sa.select(sa.func.count()).select_from(OUTBOX))
        assert calls == 3
        assert written == 1


async def _ready(value):
    return value


async def _read_all(settings, topic, n):
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"reader-{uuid.uuid4()}",
    )
    await consumer.start()
    got = []
    try:

        async def enough():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend(records)
            return len(got) >= n

        await eventually(enough, timeout=60)
    finally:
        await consumer.stop()
    return got


async def test_the_relay_creates_again_a_topic_the_broker_lost(settings):
    # An in-memory broker that restarted knows no topics: the relay creates what it publishes to.
    lost = settings.model_copy(update={"topic_prefix": f"lost{uuid.uuid4().hex[:8]}."})
    topic = lost.topic_prefix + TOPIC_FEEDBACK
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        assert topic not in await admin.list_topics()
    finally:
        await admin.close()
    async with Harness(lost) as h:
        outbox = Outbox(OUTBOX, source="test", clock=Clock())
        relay = h.relay()
        relay.topic_partitions = 2
        async with h.db.unit_of_work() as session:
            sent = await outbox.emit(session, attempt())

        async def published():
            async with h.db.unit_of_work() as session:
                return await session.scalar(
                    sa.select(OUTBOX.c.published_at.is_not(None)).where(
                        OUTBOX.c.event_id == sent.id
                    )
                )

        # Reading first would let the broker create the topic on the reader's metadata request.
        await eventually(published, timeout=60)
        got = await _read_all(lost, topic, 1)
    assert [CloudEvent.from_bytes(m.value).id for m in got] == [sent.id]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    assert len(described["partitions"]) == 2  # created by the relay, as configured
