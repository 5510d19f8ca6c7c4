"""A whole poll batch is handled in one unit of work; a bad event in it still goes to the
dead-letter topic alone and its neighbours take effect exactly once (real PostgreSQL and broker)."""

import uuid

import orjson
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from leadflow.clock import Clock
from leadflow.consumer import Reject
from leadflow.contracts.events import TOPIC_FEEDBACK, CloudEvent, LeadContactAttempt, dlq_topic
from leadflow.db import kernel_tables
from leadflow.outbox import Outbox
from leadflow_feedback.models import metadata
from prometheus_client import REGISTRY
from support.harness import MessagingHarness, each, eventually, read_topic, sample_attempt_event

OUTBOX, INBOX = kernel_tables(metadata)


async def read_dead_letters(settings, at_least: int, idle: float = 3.0) -> list:
    # anything more than expected would arrive in `idle` seconds
    return await read_topic(
        settings, settings.topic_prefix + dlq_topic(TOPIC_FEEDBACK), at_least, idle=idle
    )


class Run(MessagingHarness):
    """One consumer runner over the feedback topic whose handler writes one outbox row per
    event it handles, so that effects can be counted in the database."""

    def __init__(self, settings, handler_check=None):
        super().__init__(settings, OUTBOX, INBOX)
        self.outbox = Outbox(OUTBOX, source="test", clock=Clock())
        self.calls: list[uuid.UUID] = []
        self.check = handler_check
        self.runner = None

    async def handler(self, ev, session):
        self.calls.append(ev.id)
        if self.check is not None:
            self.check(ev)
        await self.outbox.emit(session, LeadContactAttempt.model_validate(ev.data))

    async def start(self):
        self.runner = await self.consume((LeadContactAttempt,), each(self.handler), max_attempts=2)

    async def counts(self) -> tuple[int, int]:
        async with self.db.unit_of_work() as session:
            inbox = await session.scalar(
                sa.select(sa.func.count()).select_from(INBOX).where(INBOX.c.consumer == "probe")
            )
            outbox = await session.scalar(sa.select(sa.func.count()).select_from(OUTBOX))
        return inbox, outbox


async def test_an_undecodable_message_mid_batch_is_dead_lettered_alone(settings):
    before = [sample_attempt_event() for _ in range(10)]
    after = [sample_attempt_event() for _ in range(10)]
    async with Run(settings) as run:
        await run.send(
            TOPIC_FEEDBACK,
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
    events = [sample_attempt_event() for _ in range(21)]
    bad = events[10]

    def refuse(ev):
        if ev.id == bad.id:
            raise Reject("refused by the handler")

    async with Run(settings, refuse) as run:
        await run.send(TOPIC_FEEDBACK, [e.to_bytes() for e in events])
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
    first, second = sample_attempt_event(), sample_attempt_event()
    async with Run(settings) as run:
        await run.send(
            TOPIC_FEEDBACK,
            [first.to_bytes(), first.to_bytes(), second.to_bytes(), first.to_bytes()],
        )
        await run.start()
        await eventually(lambda: run.runner.processed >= 4, timeout=60)
        await run.send(TOPIC_FEEDBACK, [second.to_bytes(), first.to_bytes()])
        await eventually(lambda: run.runner.processed >= 6, timeout=60)
        inbox, outbox = await run.counts()
    assert sorted(run.calls) == sorted([first.id, second.id])
    assert (inbox, outbox) == (2, 2)


async def test_an_event_of_a_type_not_taken_is_passed_over_and_one_without_a_type_is_dead_lettered(
    settings,
):
    """A subscription reads every event of its topics but validates only the envelopes of the
    types it takes: another type's event is skipped as it is (the subscription that takes it
    judges it), a record with no event type is no CloudEvent for anyone."""
    first, last = sample_attempt_event(), sample_attempt_event()
    not_taken = orjson.dumps({"type": "lead.status_changed", "time": "not a time"})
    no_type = orjson.dumps({"specversion": "1.0", "id": str(uuid.uuid4())})
    skipped_before = consumed_count("lead.status_changed", "skipped")
    async with Run(settings) as run:
        await run.send(TOPIC_FEEDBACK, [first.to_bytes(), not_taken, no_type, last.to_bytes()])
        await run.start()
        dead = await read_dead_letters(settings, 1)
        # the three others in one unit of work (or one by one after the dead letter's failure)
        await eventually(lambda: run.runner.processed >= 3, timeout=60)
    assert [m.value for m in dead] == [no_type]
    assert dict(dead[0].headers)["leadflow-error"].decode().startswith("not a CloudEvent")
    assert sorted(run.calls) == sorted([first.id, last.id])
    assert consumed_count("lead.status_changed", "skipped") == skipped_before + 1


async def test_the_brokers_committed_offsets_catch_up_while_idle_when_positions_are_kept(settings):
    """With the positions kept in the database, the broker's committed offsets are committed at
    most once a second, not after every batch; an idle member commits what it read."""
    events = [sample_attempt_event() for _ in range(30)]
    async with MessagingHarness(settings, OUTBOX, INBOX) as h:
        seen: list[uuid.UUID] = []

        async def handler(ev, session):
            seen.append(ev.id)

        await h.send(TOPIC_FEEDBACK, [e.to_bytes() for e in events[:10]])
        runner = await h.consume((LeadContactAttempt,), each(handler), recover=True)
        await eventually(lambda: len(seen) >= 10, timeout=60)
        await h.send(TOPIC_FEEDBACK, [e.to_bytes() for e in events[10:]])
        await eventually(lambda: len(seen) >= 30, timeout=60)
        # a client of the group that only reads what it committed (it joins nothing)
        reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=runner.group)
        await reader.start()
        try:
            assigned = list(runner.consumer.assignment())

            async def caught_up() -> bool:
                committed = [await reader.committed(tp) for tp in assigned]
                return sum(c for c in committed if c) == len(events)

            await eventually(caught_up, timeout=30)
        finally:
            await reader.stop()
    assert sorted(seen) == sorted(e.id for e in events)


def consumed_count(event_type: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "leadflow_events_consumed_total",
        {"service": "test", "consumer": "probe", "type": event_type, "outcome": outcome},
    )
    return value or 0.0
