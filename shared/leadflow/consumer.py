"""The one consume loop: batch poll, inbox dedupe, one transaction per batch, commit, retry, dead-letter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
import sqlalchemy as sa
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow import faults, metrics
from leadflow.contracts.events import CloudEvent, Payload, dlq_topic
from leadflow.db import Database, ManyRows, is_transient
from leadflow.kafka import TopicLayout, create_topics
from leadflow.loops import Stop
from leadflow.positions import Positions
from leadflow.retry import exponential_backoff

log = logging.getLogger(__name__)

LAG_INTERVAL = 5.0  # real seconds between refreshes of the consumer-lag gauge
COMMIT_TIMEOUT = 5.0  # real seconds an offset commit may take before the loop goes on
# With positions kept in the database (the truth), the broker's committed offsets are a
# convenience for tools that read them: committed at most this often, not after every batch.
COMMIT_INTERVAL = 1.0
METADATA_MAX_AGE_MS = 10_000  # the topics' metadata is asked for again this often
SIZES_INTERVAL = 5.0  # real seconds between comparisons of topic sizes with the assignment's

P = TypeVar("P", bound=Payload)


class Reject(Exception):
    """A handler's verdict that an event can never be processed: dead-letter it, don't retry."""


@dataclass(frozen=True, slots=True)
class Received(Generic[P]):
    """One event a subscription takes: its envelope (id, time, subject, policy version) and its
    payload, already validated by the model of its type."""

    event: CloudEvent
    payload: P


Apply = Callable[[AsyncSession, list[Received[Any]]], Awaitable[None]]
RawHandler = Callable[[ConsumerRecord, AsyncSession], Awaitable[None]]


@dataclass(frozen=True)
class Subscription:
    """One consumer group: the event types it takes (as payload models; their topics are what it
    reads) and the one function that applies them.

    Per unit of work `apply` runs once, in the transaction of the inbox rows, with the events
    the inbox claimed (in arrival order, each once; never another type, a duplicate or a raw
    record), each payload validated by its model, so a service decides over the whole batch
    with set-based reads and writes. It does not run when the batch held nothing to apply. A
    payload that does not fit its model, a `Reject` raised by `apply` or its pydantic
    `ValidationError` dead-letters the event; any other failure fails the batch, which is rolled
    back and retried event by event (then `apply` runs with one event at a time).

    `raw` takes topics that carry no CloudEvents (marketing platforms publishing plain lead
    JSON): topic -> handler of each record.

    `urgent` marks a subscription on a lead's way to its rep, its first-response clock and
    its notification: it reads with the short fetch wait (`consumer_fetch_wait_ms`); any other
    with the relaxed one (`consumer_relaxed_fetch_wait_ms`), at a tenth of the idle cost."""

    name: str
    takes: tuple[type[Payload], ...] = ()
    apply: Apply | None = None
    raw: Mapping[str, RawHandler] = field(default_factory=dict)
    urgent: bool = False

    def __post_init__(self) -> None:
        if self.takes and self.apply is None:
            raise ValueError(f"subscription {self.name}: event types without an apply function")

    @property
    def models(self) -> dict[str, type[Payload]]:
        """Event type -> payload model."""
        return {model.type: model for model in self.takes}

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(sorted({model.topic for model in self.takes} | set(self.raw)))


class _Poison(Exception):
    def __init__(self, record: ConsumerRecord, error: str) -> None:
        super().__init__(error)
        self.record = record
        self.error = error


class _Membership(ConsumerRebalanceListener):
    """Remembers the last completed group assignment: `partitions` is None until the member
    joined its group, then how many partitions it got (0 when the group has more members than
    partitions). A rebalance in progress keeps the last count. With `positions`, assigned
    partitions resume where the database says."""

    def __init__(self, runner: ConsumerRunner | None = None) -> None:
        self.partitions: int | None = None
        self.runner = runner
        # Partitions per subscribed topic the last assignment is taken to be for, and as the
        # member saw them when its partitions were last revoked (a join began).
        self.sizes: dict[str, int] | None = None
        self.sizes_before: dict[str, int] | None = None

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if self.runner is not None:
            self.sizes_before = self.runner.topic_sizes()
            if self.runner.positions is not None:
                self.runner.positions.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if self.runner is not None:
            await self.runner.resume(assigned)
            now, before = self.runner.topic_sizes(), self.sizes_before
            # Sizes that changed while the group joined (every topic known before): the
            # assignment may have been made with the old ones; the periodic check joins again.
            changed = before is not None and all(before.values()) and before != now
            self.sizes = before if changed else now
        self.partitions = len(assigned)


class ConsumerRunner:
    """Runs one subscription for one service.

    Offsets are committed only after the batch's database transaction committed; a crash
    in between redelivers the batch and the inbox table `(consumer, event_id)` makes the
    replay harmless. A failing batch is retried event by event: transient failures
    (database or broker away) are retried with backoff for as long as it takes; any other
    failure is retried `max_attempts` times and then sent to `<topic>.dlq` with the error,
    so one poison message never stalls its partition.
    """

    def __init__(
        self,
        subscription: Subscription,
        db: Database,
        inbox: sa.Table,
        producer: AIOKafkaProducer,
        *,
        service: str,
        bootstrap: str,
        topic_prefix: str = "",
        batch_size: int = 500,
        max_attempts: int = 5,
        base_backoff: float = 0.2,
        lag_interval: float = LAG_INTERVAL,
        topics: TopicLayout | None = None,
        stop: Stop | None = None,
        fetch_wait_ms: int = 50,
        session_timeout_ms: int = 10_000,
        recover_lost_logs: bool = False,
    ) -> None:
        self.topics = topics or TopicLayout()  # of a dead-letter topic created on demand
        self.fetch_wait_ms = fetch_wait_ms
        self.session_timeout_ms = session_timeout_ms
        self.stop_signal = stop if stop is not None else Stop()
        self.sub = subscription
        self._models = subscription.models
        self.db = db
        self.inbox = inbox
        self._inbox_rows = ManyRows(inbox, ["consumer", "event_id"])
        self._claim_rows = (
            self._inbox_rows.insert().on_conflict_do_nothing().returning(inbox.c.event_id)
        )
        self.producer = producer
        self.service = service
        self.bootstrap = bootstrap
        self.prefix = topic_prefix
        self.group = f"{topic_prefix}{service}.{subscription.name}"
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.base_backoff = base_backoff
        self.consumer: AIOKafkaConsumer | None = None
        self._membership = _Membership()
        # Partition positions kept with the state, checked against the broker's log (when
        # asked for, and the schema has the table).
        self.recover_lost_logs = recover_lost_logs
        self.positions = (
            Positions.of(
                inbox, db, consumer=subscription.name, service=service, bootstrap=bootstrap
            )
            if recover_lost_logs
            else None
        )
        self.running = False  # the consume loop is alive (not crashed, not stopped)
        self._uncommitted: dict[TopicPartition, int] = {}  # offsets read, not yet committed
        self._committed_at = float("-inf")
        self.processed = 0
        self.lag_interval = lag_interval
        self._lag_measured_at = float("-inf")
        self._sizes_checked_at = float("-inf")
        # The first dead letter of this process must be visible to increase(): the series
        # exists from the start at 0.
        metrics.events_consumed.labels(service, subscription.name, "unknown", "dead_lettered")

    @property
    def assigned(self) -> bool:
        return bool(self.consumer and self.consumer.assignment())

    @property
    def partitions(self) -> int | None:
        """Partitions of the last completed assignment; None while the member has not joined
        its group (or its consumer is closed)."""
        return self._membership.partitions if self.consumer is not None else None

    @property
    def joined(self) -> bool:
        """The consume loop runs and its member completed a group join, possibly with no
        partition (more members than partitions): a healthy, idle replica."""
        return self.running and self.partitions is not None

    def _logical(self, topic: str) -> str:
        return topic[len(self.prefix) :] if self.prefix and topic.startswith(self.prefix) else topic

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            client_id=f"{self.service}-{self.sub.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch_size,
            # How long the broker may hold a fetch that finds nothing new. Kafka answers as
            # soon as records arrive; the embedded broker answers later (at aiokafka's default
            # of 500 ms each hop of the pipeline took 120 ms at the median, 240 ms at most).
            fetch_max_wait_ms=self.fetch_wait_ms,
            # A member killed without leaving the group holds its partitions this long.
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.session_timeout_ms // 5,
            max_poll_interval_ms=300_000,
            # How soon a topic that came back with another number of partitions is seen (a
            # broker that lost its log may create a topic anew when a client first asks for
            # it); a partition nobody is assigned waits this long at most.
            metadata_max_age_ms=METADATA_MAX_AGE_MS if self.recover_lost_logs else 300_000,
        )
        self._membership = _Membership(self)
        consumer.subscribe([self.prefix + t for t in self.sub.topics], listener=self._membership)
        self.consumer = consumer
        try:
            await consumer.start()
        except BaseException:  # cancelled or failed mid-join: close it, the next run starts anew
            self.consumer = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(consumer.stop()), 5)
            raise

    async def stop(self, grace: float = 10.0) -> None:
        """Leave the group; a member stuck mid-join is abandoned after `grace` seconds (the broker
        expires it after the session timeout)."""
        with contextlib.suppress(Exception):  # what the last batches read, if it can be told
            await asyncio.wait_for(self._commit(now=True), grace)
        consumer, self.consumer = self.consumer, None
        if self.positions is not None:
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(self.positions.close(), grace)
        if consumer is None:
            return
        try:
            await asyncio.wait_for(consumer.stop(), grace)
        except (TimeoutError, KafkaError) as exc:
            log.warning("consumer did not stop cleanly", extra={"error": repr(exc)})

    async def run(self) -> None:
        """Join the group and consume until cancelled."""
        if self.consumer is None:
            await self.stop_signal.unless_stopped(self.start())  # joining can take seconds
            if self.stop_signal or self.consumer is None:
                return
        self.running = True
        try:
            await self._consume()
        except BaseException:
            # A crash (a cancelled wait included) may leave the Kafka client's member in any
            # state: the next run joins with a new one, from the positions in the database.
            task = asyncio.current_task()
            if not self.stop_signal and task is not None and not task.cancelling():
                await self.stop(grace=5.0)
                if self.positions is not None:
                    self.positions.forget()
            raise
        finally:
            self.running = False

    async def resume(self, assigned: set[TopicPartition]) -> None:
        """Seek newly assigned partitions to the positions stored with the state. The database
        being away holds the join (nothing could be processed meanwhile) for a while, then
        the partitions start from the broker's committed offsets."""
        if self.positions is None or self.consumer is None or not assigned:
            return
        for attempt in range(1, 31):
            try:
                await self.positions.resume(self.consumer, assigned)
                return
            except Exception as exc:
                if not is_transient(exc) or attempt == 30 or self.stop_signal:
                    log.error(
                        "stored positions not read; partitions start from the broker's offsets",
                        extra={"consumer": self.group, "error": repr(exc)},
                    )
                    return
                await self.stop_signal.pause(exponential_backoff(attempt, self.base_backoff))

    def topic_sizes(self) -> dict[str, int]:
        """Partitions of each subscribed topic, as the consumer's metadata has them."""
        if self.consumer is None:
            return {}
        return {
            topic: len(self.consumer.partitions_for_topic(self.prefix + topic) or ())
            for topic in self.sub.topics
        }

    def _rejoin_if_topics_changed(self) -> None:
        """A topic whose number of partitions changed after the group's assignment (a broker
        that lost its log created it anew) gets a new assignment: the client notices such a
        change itself only when it learns of it before assigning, so a partition could stay
        with no member."""
        now = time.monotonic()
        if now - self._sizes_checked_at < SIZES_INTERVAL or self.consumer is None:
            return
        self._sizes_checked_at = now
        assigned_with = self._membership.sizes
        if assigned_with is None or self.topic_sizes() == assigned_with:
            return
        log.info(
            "a topic's partitions changed since the assignment; joining the group again",
            extra={"consumer": self.group, "assigned_with": assigned_with},
        )
        self._membership.sizes = None
        self.consumer.subscribe(
            [self.prefix + t for t in self.sub.topics], listener=self._membership
        )

    async def _consume(self) -> None:
        while not self.stop_signal:
            if self.recover_lost_logs:
                self._rejoin_if_topics_changed()
            if self.positions is not None:
                await self.positions.verify(self.consumer)
            batches = await self.consumer.getmany(timeout_ms=500, max_records=self.batch_size)
            await self._measure_lag(batches)
            records = [r for recs in batches.values() for r in recs]
            if not records:
                await self._commit()
                continue
            if not await self._process(records):
                return  # stopping mid-batch: uncommitted offsets are read again after restart
            faults.reached("consumer.db_committed")
            self._uncommitted.update(
                {tp: recs[-1].offset + 1 for tp, recs in batches.items() if recs}
            )
            await self._commit()

    async def _commit(self, *, now: bool = False) -> None:
        """Commit the offsets read to the broker: after every batch when the broker's offsets
        are the truth; at most every COMMIT_INTERVAL seconds when the positions kept in the
        database are (a member that takes a partition over seeks to those)."""
        if not self._uncommitted or self.consumer is None:
            return
        if (
            not now
            and self.positions is not None
            and time.monotonic() - self._committed_at < COMMIT_INTERVAL
        ):
            return
        offsets, self._uncommitted = self._uncommitted, {}
        self._committed_at = time.monotonic()
        assigned = self.consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            # aiokafka retries a commit it deems retriable without end (a broker that came
            # back without the topic answers UnknownTopicOrPartition forever), which would
            # hold the loop; bounded, the next batch's commit covers these offsets.
            await asyncio.wait_for(self.consumer.commit(offsets), COMMIT_TIMEOUT)
        except (CommitFailedError, KafkaError, TimeoutError) as exc:
            # The partitions moved to another member during the batch, or the broker did
            # not take the commit in time; the events may be read again and the inbox
            # turns them into no-ops.
            log.warning("offset commit failed", extra={"error": repr(exc)})

    async def _passed(self, records: list[ConsumerRecord]) -> None:
        """Store that these records are done with outside a batch (a dead letter): retried
        while the database is away, since the record is otherwise dead-lettered again."""
        if self.positions is None:
            return
        attempt = 0
        while not self.stop_signal:
            attempt += 1
            try:
                async with self.db.unit_of_work() as session:
                    await self.positions.record(session, records)
                self.positions.advance(records)
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                await self.stop_signal.pause(exponential_backoff(attempt, self.base_backoff))

    async def _measure_lag(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Refresh the lag gauge (at most every `lag_interval` s): per subscribed topic, the events
        not yet processed on the partitions assigned here. The batch just fetched counts as
        waiting, so a consumer stuck on a batch reports at least that batch.

        Highwater marks arrive with fetch responses; a partition not fetched yet is left out, and
        a topic with no measurable partition keeps its last value."""
        now = time.monotonic()
        if now - self._lag_measured_at < self.lag_interval or self.consumer is None:
            return
        self._lag_measured_at = now
        consumer = self.consumer
        assignment = list(consumer.assignment())
        lag: dict[str, int] = {}
        for tp in assignment:
            topic = self._logical(tp.topic)
            try:
                highwater = consumer.highwater(tp)
                # Local once the partition has a fetch position; never wait for one here.
                position = (
                    None
                    if highwater is None
                    else await asyncio.wait_for(consumer.position(tp), 0.05)
                )
            except (AssertionError, IllegalStateError, KafkaError, TimeoutError):
                position = None  # moved away by a rebalance, or no position yet
            if position is None:
                continue
            waiting = max(highwater - position, 0) + len(batches.get(tp, ()))
            lag[topic] = lag.get(topic, 0) + waiting
        assigned = {self._logical(tp.topic) for tp in assignment}
        for topic in self.sub.topics:
            if topic in lag:
                metrics.consumer_lag.labels(self.service, self.sub.name, topic).set(lag[topic])
            elif topic not in assigned:  # no partition of it here: nothing waits for this member
                metrics.consumer_lag.labels(self.service, self.sub.name, topic).set(0)

    async def _process(self, records: list[ConsumerRecord]) -> bool:
        """Handle a batch; False when shutdown interrupted it before every record was done."""
        try:
            await self._in_transaction(records)
            return True
        except _Poison:
            pass
        except Exception as exc:
            metrics.consumer_retries.labels(self.service, self.sub.name).inc()
            log.warning(
                "batch failed; retrying event by event",
                extra={"consumer": self.group, "error": repr(exc), "size": len(records)},
            )
        for record in records:
            if not await self._process_one(record):
                return False
        return True

    async def _process_one(self, record: ConsumerRecord) -> bool:
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._in_transaction([record])
                return True
            except _Poison as poison:
                return await self._dead_letter(record, poison.error)
            except Exception as exc:
                metrics.consumer_retries.labels(self.service, self.sub.name).inc()
                transient = is_transient(exc)
                if not transient and attempt >= self.max_attempts:
                    error = "".join(traceback.format_exception_only(exc)).strip()
                    return await self._dead_letter(record, error)
                delay = exponential_backoff(attempt, self.base_backoff)
                log.warning(
                    "event failed; will retry",
                    extra={
                        "consumer": self.group,
                        "attempt": attempt,
                        "transient": transient,
                        "error": repr(exc)[:500],
                        "topic": record.topic,
                        "offset": record.offset,
                    },
                )
                await self.stop_signal.pause(delay)
                if self.stop_signal:
                    return False

    async def _in_transaction(self, records: list[ConsumerRecord]) -> None:
        """Handle `records` in one unit of work; raises _Poison for an undecodable record.

        Every record is decoded before anything is written, and the inbox rows of the whole
        batch are claimed with one statement (`_claim`): each event the subscription takes is
        validated and applied once, even when the batch holds it twice; then `apply` runs
        once with all of them."""
        decoded = [self._decode(record) for record in records]
        outcomes: Counter[tuple[str, str]] = Counter()
        async with self.db.unit_of_work() as session:
            claimed = await self._claim(
                session, [event.id for event, model in decoded if isinstance(event, CloudEvent)]
            )
            received: list[Received[Any]] = []
            for record, (event, model) in zip(records, decoded, strict=True):
                outcomes[await self._take(record, event, model, claimed, received, session)] += 1
            if received:
                await self._apply(records, received, session)
            if self.positions is not None:
                await self.positions.record(session, records)
        if self.positions is not None:
            self.positions.advance(records)
        self.processed += len(records)
        for (event_type, outcome), count in outcomes.items():
            metrics.events_consumed.labels(self.service, self.sub.name, event_type, outcome).inc(
                count
            )

    def _decode(
        self, record: ConsumerRecord
    ) -> tuple[CloudEvent | str | None, type[Payload] | None]:
        """(event, its payload model) for an event the subscription takes; (its type, None) for
        one it does not, whose envelope is not validated: most events on a topic are for other
        subscriptions, and validating each cost more than reading it; (None, None) for a raw
        topic's record."""
        if self.sub.raw.get(self._logical(record.topic)) is not None:
            return None, None
        try:
            envelope = orjson.loads(record.value or b"")
            kind = envelope.get("type") if isinstance(envelope, dict) else None
            if not isinstance(kind, str):
                raise ValueError("no event type (`type`)")
            model = self._models.get(kind)
            if model is None:
                return kind, None
            return CloudEvent.model_validate(envelope), model
        except (ValidationError, ValueError) as exc:
            raise _Poison(record, f"not a CloudEvent: {exc}") from exc

    async def _claim(self, session: AsyncSession, event_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Insert the inbox rows of these events; returns the ids not handled before."""
        if not event_ids:
            return set()
        # One statement over arrays, whatever the batch's size: a multi-row VALUES insert is
        # another statement text, parsed and planned anew, for every size of batch.
        rows = [{"consumer": self.sub.name, "event_id": event_id} for event_id in event_ids]
        return set(await session.scalars(self._claim_rows, self._inbox_rows.params(rows)))

    async def _apply(
        self, records: list[ConsumerRecord], received: list[Received[Any]], session: AsyncSession
    ) -> None:
        try:
            await self.sub.apply(session, received)
        except Reject as exc:
            if len(records) > 1:
                raise
            raise _Poison(records[0], str(exc)) from exc
        except ValidationError as exc:
            if len(records) > 1:
                raise
            raise _Poison(
                records[0], f"payload of {received[0].event.type} invalid: {exc}"
            ) from exc

    async def _take(
        self,
        record: ConsumerRecord,
        event: CloudEvent | str | None,
        model: type[Payload] | None,
        claimed: set[uuid.UUID],
        received: list[Received[Any]],
        session: AsyncSession,
    ) -> tuple[str, str]:
        """Sort one record: a raw record is handled at once; an event the subscription takes and
        the inbox claimed is validated and queued for `apply`."""
        if event is None:
            raw_handler = self.sub.raw[self._logical(record.topic)]
            try:
                await raw_handler(record, session)
            except Reject as exc:
                raise _Poison(record, str(exc)) from exc
            return ("raw", "processed")
        if isinstance(event, str) or model is None:  # a type it does not take
            return (str(event), "skipped")
        if event.id not in claimed:
            return (event.type, "duplicate")
        claimed.discard(event.id)  # a second copy later in the batch is a duplicate
        try:
            payload = model.model_validate(event.data)
        except ValidationError as exc:
            raise _Poison(record, f"payload of {event.type} invalid: {exc}") from exc
        received.append(Received(event, payload))
        return (event.type, "processed")

    async def _dead_letter(self, record: ConsumerRecord, error: str) -> bool:
        """Publish the record to its dead-letter topic; False if shutdown came first (the
        offset is then not committed and the record is handled again after a restart)."""
        topic = self._logical(record.topic)
        headers = [
            ("leadflow-error", error[:4000].encode()),
            ("leadflow-consumer", self.group.encode()),
            ("leadflow-origin", f"{topic}/{record.partition}/{record.offset}".encode()),
        ]
        while True:
            try:
                await self.producer.send_and_wait(
                    self.prefix + dlq_topic(topic),
                    value=record.value,
                    key=record.key,
                    headers=headers,
                )
                break
            except KafkaError as exc:
                log.warning("dead-letter publish failed; retrying", extra={"error": repr(exc)})
                # The broker may have lost the topic (an in-memory broker after a restart).
                with contextlib.suppress(KafkaError, RuntimeError, OSError):
                    await create_topics(
                        self.bootstrap,
                        [self.prefix + dlq_topic(topic)],
                        self.topics,
                        attempts=2,
                    )
                await self.stop_signal.pause(1.0)
                if self.stop_signal:
                    return False
        metrics.events_consumed.labels(
            self.service, self.sub.name, "unknown", "dead_lettered"
        ).inc()
        await self._passed([record])
        log.error(
            "event dead-lettered",
            extra={
                "consumer": self.group,
                "topic": topic,
                "offset": record.offset,
                "error": error[:500],
            },
        )
        return True
