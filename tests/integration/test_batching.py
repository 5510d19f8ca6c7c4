"""A whole poll batch is handled in one unit of work; a bad event in it still goes to the
dead-letter topic alone and its neighbours take effect exactly once (real PostgreSQL and broker)."""

import asyncio
import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from leadflow.clock import Clock
from leadflow.consumer import ConsumerRunner, Reject, Subscription
from leadflow.db import Database, kernel_tables
from leadflow.events import TOPIC_FEEDBACK, CloudEvent, LeadContactAttempt, dlq_topic
from leadflow.kafka import make_producer
from leadflow.outbox import Outbox
from leadflow.testing import eventually
from leadflow_feedback.models import metadata

OUTBOX, INBOX = kernel_tables(metadata)


def event() -> CloudEvent:
    data = LeadContactAttempt(
        lead_id=uuid.uuid4(),
        attempt_id=uuid.uuid4(),
        channel="call",
        occurred_at=datetime.now(UTC),
    )
    return CloudEvent(
        source="test",
        type="lead.contact_attempt",
        time=datetime.now(UTC),
        subject=str(data.lead_id),
        data=data.model_dump(mode="json"),
    )


async def publish(producer, topic: str, values: list[bytes]) -> None:
    """All on one key (one partition), so that a single poll returns them as one batch."""
    futures = [await producer.send(topic, value, key=b"one-lead") for value in values]
    await asyncio.gather(*futures)


async def read_dead_letters(settings, at_least: int, idle: float = 3.0) -> list:
    consumer = AIOKafkaConsumer(
        settings.topic_prefix + dlq_topic(TOPIC_FEEDBACK),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"reader-{uuid.uuid4()}",
    )
    await consumer.start()
    got: list = []
    try:

        async def enough():
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend(records)
            return len(got) >= at_least

        await eventually(enough, timeout=60)
        # anything more than expected would arrive now
        extra = await consumer.getmany(timeout_ms=int(idle * 1000))
        for records in extra.values():
            got.extend(records)
    finally:
        await consumer.stop()
    return got


class Run:
    """One consumer runner over the feedback topic whose handler writes one outbox row per
    event it handles, so that effects can be counted in the database."""

    def __init__(self, settings, handler_check=None):
        self.settings = settings
        self.db = Database(settings.database_url)
        self.producer = make_producer(settings, "test")
        self.outbox = Outbox(OUTBOX, source="test", clock=Clock())
        self.calls: list[uuid.UUID] = []
        self.check = handler_check
        self.runner: ConsumerRunner | None = None
        self.task: asyncio.Task | None = None

    async def handler(self, ev, session):
        self.calls.append(ev.id)
        if self.check is not None:
            self.check(ev)
        await self.outbox.emit(session, LeadContactAttempt.model_validate(ev.data))

    async def __aenter__(self):
        await self.producer.start()
        return self

    async def start(self):
        self.runner = ConsumerRunner(
            Subscription(
                "probe", (TOPIC_FEEDBACK,), handlers={"lead.contact_attempt": self.handler}
            ),
            self.db,
            INBOX,
            self.producer,
            service="test",
            bootstrap=self.settings.kafka_bootstrap,
            topic_prefix=self.settings.topic_prefix,
            max_attempts=2,
            base_backoff=0.01,
        )
        await self.runner.start()
        self.task = asyncio.create_task(self.runner.run())

    async def __aexit__(self, *exc):
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.runner is not None:
            await self.runner.stop()
        await self.producer.stop()
        await self.db.dispose()

    async def counts(self) -> tuple[int, int]:
        async with self.db.unit_of_work() as session:
            inbox = await session.scalar(
                sa.select(sa.func.count()).select_from(INBOX).where(INBOX.c.consumer == "probe")
            )
            outbox = await session.scalar(sa.select(sa.func.count()).select_from(OUTBOX))
        return inbox, outbox


async def test_an_undecodable_message_mid_batch_is_dead_lettered_alone(settings):
    before = [event() for _ in range(10)]
    after = [event() for _ in range(10)]
    async with Run(settings) as run:
        topic = settings.topic_prefix + TOPIC_FEEDBACK
        await publish(
            run.producer,
            topic,
            [e.to_bytes() for e in before]
            + [b"{not a cloud event"]
            + [e.to_bytes() for e in after],
        )
        await run.start()

        async def all_done():
            return (await run.counts())[0] >= 20 and run.runner.processed >= 20

        await eventually(all_done, timeout=60)
        dead = await read_dead_letters(settings, 1)
        inbox, outbox = await run.counts()
    assert [m.value for m in dead] == [b"{not a cloud event"]
    assert dict(dead[0].headers)["leadflow-error"].decode().startswith("not a CloudEvent")
    # Decoding comes before any handler runs: the neighbours were each handled exactly once.
    assert sorted(run.calls) == sorted(e.id for e in before + after)
    assert (inbox, outbox) == (20, 20)


async def test_a_rejected_event_mid_batch_is_dead_lettered_and_its_neighbours_take_effect_once(
    settings,
):
    events = [event() for _ in range(21)]
    bad = events[10]

    def refuse(ev):
        if ev.id == bad.id:
            raise Reject("refused by the handler")

    async with Run(settings, refuse) as run:
        await publish(
            run.producer, settings.topic_prefix + TOPIC_FEEDBACK, [e.to_bytes() for e in events]
        )
        await run.start()
        dead = await read_dead_letters(settings, 1)

        async def settled():
            return (await run.counts())[0] >= 20

        await eventually(settled, timeout=60)
        inbox, outbox = await run.counts()
        async with run.db.unit_of_work() as session:
            handled = set(
                await session.scalars(
                    sa.select(INBOX.c.event_id).where(INBOX.c.consumer == "probe")
                )
            )
    assert len(dead) == 1
    assert dict(dead[0].headers)["leadflow-error"] == b"refused by the handler"
    assert CloudEvent.from_bytes(dead[0].value).id == bad.id
    # The batch attempt was rolled back and replayed event by event: every neighbour's
    # effects exist once, and the refused event left none.
    assert handled == {e.id for e in events if e is not bad}
    assert (inbox, outbox) == (20, 20)


async def test_copies_of_one_event_in_a_batch_and_across_batches_are_handled_once(settings):
    first, second = event(), event()
    async with Run(settings) as run:
        topic = settings.topic_prefix + TOPIC_FEEDBACK
        await publish(
            run.producer,
            topic,
            [first.to_bytes(), first.to_bytes(), second.to_bytes(), first.to_bytes()],
        )
        await run.start()
        await eventually(lambda: _ready(run.runner.processed >= 4), timeout=60)
        await publish(run.producer, topic, [second.to_bytes(), first.to_bytes()])
        await eventually(lambda: _ready(run.runner.processed >= 6), timeout=60)
        inbox, outbox = await run.counts()
    assert sorted(run.calls) == sorted([first.id, second.id])
    assert (inbox, outbox) == (2, 2)


async def _ready(value):
    return value
