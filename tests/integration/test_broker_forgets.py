"""A broker that loses its log (the embedded broker killed and started again, empty): relays
publish their replay window again, consumers notice that the log under their stored position is
not the one they read and read it again from the start, and every event is handled once.

Each test runs its own embedded broker, so that it can kill it."""

import asyncio

import pytest
import sqlalchemy as sa
from leadflow import metrics
from leadflow.clock import Clock
from leadflow.contracts.events import LeadContactAttempt
from leadflow.db import kernel_tables, position_tables
from leadflow.kafka import ensure_topics, make_producer
from leadflow.outbox import Outbox
from leadflow_feedback.models import metadata
from leadflow_tools.devstack import EmbeddedBroker, free_port
from support.harness import MessagingHarness, each, eventually, sample_attempt

OUTBOX, INBOX = kernel_tables(metadata)
CONSUMER_POSITIONS, RELAY_POSITIONS = position_tables(metadata)

pytestmark = pytest.mark.timeout(240)


def resets(service: str, detector: str) -> float:
    return metrics.broker_resets.labels(service, detector)._value.get()


class Probe(MessagingHarness):
    """Feedback's outbox and inbox; the probe consumer counts every event it handles."""

    def __init__(self, settings) -> None:
        super().__init__(settings, OUTBOX, INBOX)
        self.handled: list = []
        self.outbox = Outbox(OUTBOX, source="test", clock=Clock())

    async def start_consumer(self) -> None:
        async def handler(event, session) -> None:
            self.handled.append(event.id)

        await self.consume((LeadContactAttempt,), each(handler), recover=True)

    async def emit(self, n: int) -> list:
        async with self.db.unit_of_work() as session:
            return [(await self.outbox.emit(session, sample_attempt())).id for _ in range(n)]

    async def anchored(self) -> bool:
        """Every partition the probe read has an anchor (a record checked to be in the log)."""
        async with self.db.unit_of_work() as session:
            rows = (await session.execute(sa.select(CONSUMER_POSITIONS))).all()
        return bool(rows) and all(r.anchor_offset is not None for r in rows)


@pytest.fixture
async def broker(tmp_path):
    broker = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    await asyncio.to_thread(broker.start)
    yield broker
    await asyncio.to_thread(broker.stop)


async def restart_empty(broker: EmbeddedBroker) -> None:
    """SIGKILL, then the same port again with nothing in memory."""
    broker.proc.kill()
    await asyncio.to_thread(broker.proc.wait)
    await asyncio.to_thread(broker.start)


async def test_a_consumer_reads_a_replaced_log_from_its_start_and_handles_each_event_once(
    stack, broker
):
    settings = (await stack.isolated_settings()).model_copy(
        update={"kafka_bootstrap": broker.bootstrap}
    )
    await ensure_topics(settings)
    relay_resets, consumer_resets = resets("test", "relay"), resets("test", "consumer")
    async with Probe(settings) as h:
        h.relay(recover=True)
        await h.start_consumer()
        before = await h.emit(40)
        await eventually(lambda: len(h.handled) >= 40, timeout=60)
        await eventually(h.anchored, timeout=30)

        await restart_empty(broker)
        # Written while the broker is empty: the relay finds its offsets start again below
        # where it wrote, and publishes the window (these 20 included) again.
        after = await h.emit(20)
        await eventually(lambda: set(h.handled) >= set(before + after) or None, timeout=120)
        assert sorted(h.handled) == sorted(before + after), "an event handled twice or lost"
        assert resets("test", "relay") > relay_resets
        # The consumer's anchor is not in the new log: it reads the partitions again.
        await eventually(lambda: resets("test", "consumer") > consumer_resets, timeout=90)
        assert sorted(h.handled) == sorted(before + after)

        async with h.db.unit_of_work() as session:
            unpublished = await session.scalar(
                sa.select(sa.func.count())
                .select_from(OUTBOX)
                .where(OUTBOX.c.published_at.is_(None))
            )
        assert unpublished == 0


async def test_events_published_but_not_consumed_when_the_broker_died_are_published_again(
    stack, broker
):
    """Nothing new is written after the restart: the idle relay finds its partitions shorter
    than what it wrote and publishes the window again; the consumer, started only now, gets
    every event."""
    settings = (await stack.isolated_settings()).model_copy(
        update={"kafka_bootstrap": broker.bootstrap}
    )
    await ensure_topics(settings)
    async with Probe(settings) as h:
        h.relay(recover=True)
        sent = await h.emit(25)

        async def all_published() -> bool:
            async with h.db.unit_of_work() as session:
                waiting = await session.scalar(
                    sa.select(sa.func.count())
                    .select_from(OUTBOX)
                    .where(OUTBOX.c.published_at.is_(None))
                )
                saved = await session.scalar(
                    sa.select(sa.func.count()).select_from(RELAY_POSITIONS)
                )
            return waiting == 0 and saved > 0

        await eventually(all_published, timeout=60)
        await restart_empty(broker)
        await ensure_topics(settings)  # as `leadflow run` does when it starts a broker
        await h.start_consumer()
        await eventually(lambda: set(h.handled) >= set(sent) or None, timeout=120)
        assert sorted(h.handled) == sorted(sent)


async def test_duplicates_in_the_lost_log_do_not_make_a_resumed_consumer_skip_new_events(
    stack, broker
):
    """The log read before held duplicates after its anchor (a relay's pass that failed half
    way and was sent again); the broker loses it and the replay fills the new log without
    them, so every record after the anchor stands at a lower offset than before. A consumer
    assigned the partitions then checks the last record read, not only the anchor, and reads
    them again: the events written after the restart, which land below the stored positions,
    are each handled once."""
    settings = (await stack.isolated_settings()).model_copy(
        update={"kafka_bootstrap": broker.bootstrap}
    )
    await ensure_topics(settings)
    relay_resets = resets("test", "relay")
    async with Probe(settings) as h:
        h.relay(recover=True)
        await h.start_consumer()
        [runner], consuming = h.runners, h.tasks[-1]
        before = await h.emit(40)
        await eventually(lambda: len(h.handled) >= 40, timeout=60)
        await eventually(h.anchored, timeout=30)
        runner.positions.verify_interval = 3600  # the anchors stay where they are now

        # Each of the 40 records once more, as a relay re-sending a batch would: the inbox
        # drops them, the stored positions move past them.
        async with h.db.unit_of_work() as session:
            rows = (
                await session.execute(sa.select(OUTBOX.c.topic, OUTBOX.c.key, OUTBOX.c.payload))
            ).all()
        producer = make_producer(settings, "test-duplicates")
        await producer.start()
        try:
            for row in rows:
                await producer.send_and_wait(
                    settings.topic_prefix + row.topic, row.payload, key=row.key.encode()
                )
        finally:
            await producer.stop()
        more = await h.emit(10)
        await eventually(lambda: set(h.handled) >= set(before + more) or None, timeout=60)
        consuming.cancel()
        await runner.stop()

        await restart_empty(broker)

        async def replayed() -> bool:
            async with h.db.unit_of_work() as session:
                waiting = await session.scalar(
                    sa.select(sa.func.count())
                    .select_from(OUTBOX)
                    .where(OUTBOX.c.published_at.is_(None))
                )
            return waiting == 0 and resets("test", "relay") > relay_resets

        await eventually(replayed, timeout=90)  # the window, in order, without the duplicates
        after = await h.emit(30)  # behind it: below the stored positions
        await eventually(replayed, timeout=60)
        await h.start_consumer()  # a new member, resuming from the stored positions
        everything = before + more + after
        await eventually(lambda: set(h.handled) >= set(everything) or None, timeout=120)
        assert sorted(h.handled) == sorted(everything), "an event handled twice or lost"
