"""The kernel's outbox, relay and consumer runner over the real PostgreSQL and broker."""

import asyncio
import uuid

import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient
from leadflow.clock import Clock
from leadflow.consumer import Reject
from leadflow.contracts.erasure import forget_events
from leadflow.contracts.events import TOPIC_FEEDBACK, CloudEvent, LeadContactAttempt, dlq_topic
from leadflow.db import kernel_tables
from leadflow.kafka import TopicLayout, ensure_topics
from leadflow.outbox import Outbox
from leadflow_feedback.models import metadata
from support.harness import (
    MessagingHarness,
    each,
    eventually,
    read_topic,
    sample_attempt,
    sample_attempt_event,
)

OUTBOX, INBOX = kernel_tables(metadata)


class Harness(MessagingHarness):
    """Feedback's outbox and inbox; the probe consumer keeps every event it handles."""

    def __init__(self, settings) -> None:
        super().__init__(settings, OUTBOX, INBOX)
        self.seen: list[CloudEvent] = []

    async def consume_attempts(self, handler) -> None:
        await self.consume((LeadContactAttempt,), each(handler))


async def test_events_written_in_a_transaction_are_relayed_and_handled_once(settings):
    async with Harness(settings) as h:
        outbox = Outbox(OUTBOX, source="test", clock=Clock())
        h.relay()

        async def handler(event, session):
            h.seen.append(event)

        await h.consume_attempts(handler)
        async with h.db.unit_of_work() as session:
            sent = [await outbox.emit(session, sample_attempt()) for _ in range(20)]
        await eventually(lambda: len(h.seen) >= 20, timeout=60)
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
                await outbox.emit(session, sample_attempt())
                raise RuntimeError("handler failed after writing")
        except RuntimeError:
            pass
        async with h.db.unit_of_work() as session:
            rows = await session.scalar(sa.select(sa.func.count()).select_from(OUTBOX))
        assert rows == 0


async def test_a_redelivered_event_is_handled_once(settings):
    async with Harness(settings) as h:
        event, marker = sample_attempt_event(), sample_attempt_event()
        # a relay that crashed before marking rows sent publishes again
        await h.send(TOPIC_FEEDBACK, [event.to_bytes()] * 3 + [marker.to_bytes()], key=b"k")

        async def handler(ev, session):
            h.seen.append(ev)

        await h.consume_attempts(handler)
        await eventually(lambda: any(e.id == marker.id for e in h.seen), timeout=60)
        assert [e.id for e in h.seen] == [event.id, marker.id]


async def test_a_poison_message_goes_to_the_dead_letter_topic_and_the_partition_moves_on(settings):
    async with Harness(settings) as h:
        bad, good = sample_attempt_event(), sample_attempt_event()
        await h.send(TOPIC_FEEDBACK, [b"{not json", bad.to_bytes(), good.to_bytes()], key=b"same")

        async def handler(ev, session):
            if ev.id == bad.id:
                raise Reject("refused by the handler")
            h.seen.append(ev)

        await h.consume_attempts(handler)
        await eventually(lambda: any(e.id == good.id for e in h.seen), timeout=60)
        dead = await read_topic(settings, h.topic(dlq_topic(TOPIC_FEEDBACK)), 2)
        errors = sorted(dict(m.headers)["leadflow-error"].decode() for m in dead)
        assert errors[0].startswith("not a CloudEvent")
        assert errors[1] == "refused by the handler"


async def test_a_failing_handler_is_retried_and_its_partial_writes_are_rolled_back(settings):
    async with Harness(settings) as h:
        outbox = Outbox(OUTBOX, source="test", clock=Clock())
        await h.send(TOPIC_FEEDBACK, [sample_attempt_event().to_bytes()], key=b"k")
        calls = 0

        async def handler(ev, session):
            nonlocal calls
            calls += 1
            await outbox.emit(session, sample_attempt())  # written, then rolled back on failure
            if calls < 3:
                raise RuntimeError("flaky dependency")
            h.seen.append(ev)

        await h.consume_attempts(handler)
        await eventually(lambda: h.seen, timeout=60)
        async with h.db.unit_of_work() as session:
            written = await session.scalar(sa.select(sa.func.count()).select_from(OUTBOX))
        assert calls == 3
        assert written == 1


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
        relay.topics = TopicLayout(partitions=2)
        async with h.db.unit_of_work() as session:
            sent = await outbox.emit(session, sample_attempt())

        async def published():
            async with h.db.unit_of_work() as session:
                return await session.scalar(
                    sa.select(OUTBOX.c.published_at.is_not(None)).where(
                        OUTBOX.c.event_id == sent.id
                    )
                )

        # Reading first would let the broker create the topic on the reader's metadata request.
        await eventually(published, timeout=60)
        got = await read_topic(lost, topic, 1)
    assert [CloudEvent.from_bytes(m.value).id for m in got] == [sent.id]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    assert len(described["partitions"]) == 2  # created by the relay, as configured


async def test_topics_are_created_with_the_configured_layout(settings):
    prefix = f"layout{uuid.uuid4().hex[:8]}."
    names = await ensure_topics(
        settings.model_copy(
            update={
                "topic_prefix": prefix,
                "topic_partitions": 3,
                "topic_replication_factor": 1,
                "topic_min_insync_replicas": 1,
            }
        ),
        (TOPIC_FEEDBACK,),
    )
    assert names == [prefix + TOPIC_FEEDBACK, prefix + dlq_topic(TOPIC_FEEDBACK)]
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    assert [len(d["partitions"]) for d in described] == [3, 3]
    assert {len(p["replicas"]) for d in described for p in d["partitions"]} == {1}
    # What a cluster is asked for (the embedded broker keeps one copy whatever it is asked).
    cluster = TopicLayout.of(
        settings.model_copy(update={"topic_replication_factor": 3, "topic_min_insync_replicas": 2})
    ).new_topic("t")
    assert (cluster.replication_factor, cluster.topic_configs) == (3, {"min.insync.replicas": "2"})
    assert TopicLayout().new_topic("t").topic_configs == {}


class HeldBroker:
    """A producer that takes every send and acknowledges none until released."""

    def __init__(self) -> None:
        self.sending = asyncio.Event()
        self.release = asyncio.Event()

    async def send(self, topic: str, value: bytes, key: bytes | None = None):
        self.sending.set()
        acked = asyncio.get_running_loop().create_future()

        async def acknowledge() -> None:
            await self.release.wait()
            acked.set_result(None)

        self._ack = asyncio.create_task(acknowledge())
        return acked


async def test_an_erasure_waits_for_a_relay_pass_sending_the_leads_events(settings):
    lead_id = uuid.uuid4()
    broker = HeldBroker()
    async with Harness(settings) as h:
        outbox = Outbox(OUTBOX, source="test", clock=Clock())
        async with h.db.unit_of_work() as session:
            await outbox.emit(session, sample_attempt(lead_id))
        relay = h.relay("erasure-race", producer=broker, start=False)
        passing = asyncio.create_task(relay.publish_batch())
        await asyncio.wait_for(broker.sending.wait(), timeout=30)  # the old payload is on its way

        async def forget() -> None:
            async with h.db.unit_of_work() as session:
                await forget_events(session, OUTBOX, [lead_id])

        forgetting = asyncio.create_task(forget())

        async def erasure_blocked_on_the_rows() -> bool:
            async with h.db.unit_of_work() as session:
                return await session.scalar(
                    sa.text(
                        "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = "
                        "current_database() AND wait_event_type = 'Lock' AND query ILIKE "
                        "'%FOR UPDATE%' AND query ILIKE '%outbox%'"
                    )
                )

        await eventually(erasure_blocked_on_the_rows, timeout=30, interval=0.05)
        # Scrubbing now would be undone in effect: the pass sends what it read, then marks the
        # row published, and the row would keep a payload Kafka never saw.
        assert not forgetting.done(), "the erasure did not wait for the relay's pass"
        broker.release.set()
        assert await passing == 1
        await asyncio.wait_for(forgetting, timeout=30)
        async with h.db.unit_of_work() as session:
            left = await session.scalar(
                sa.select(sa.func.count()).where(OUTBOX.c.key == str(lead_id))
            )
        assert left == 0  # published, then forgotten
