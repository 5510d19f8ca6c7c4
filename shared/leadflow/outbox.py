"""Transactional outbox: events are written with the state that caused them, then relayed to Kafka."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow import faults, metrics
from leadflow.clock import Clock
from leadflow.contracts.events import CloudEvent, Payload, make_event
from leadflow.db import Database, ManyRows, is_transient, touch
from leadflow.kafka import LogInspector, TopicLayout, create_topics, digest_of
from leadflow.loops import Stop
from leadflow.retry import exponential_backoff

log = logging.getLogger(__name__)


class Outbox:
    """Writes a service's outgoing events into its outbox table, inside the caller's transaction."""

    def __init__(self, table: sa.Table, *, source: str, clock: Clock) -> None:
        self.table = table
        self.source = source
        self.clock = clock
        # Events are written with one statement over one array per column (a `.values(rows)`
        # statement is compiled anew for every call, and executemany runs one execution per
        # row); their ids follow the order given. A single event goes in with a plain INSERT.
        self._rows = ManyRows(table, ["event_id", "topic", "key", "payload"])
        self._insert = self._rows.insert()
        self._insert_one = sa.insert(table)

    async def emit(
        self,
        session: AsyncSession,
        payload: Payload,
        *,
        policy_version: str | None = None,
        time: datetime | None = None,
    ) -> CloudEvent:
        (event,) = await self.emit_many(session, [(payload, policy_version)], time=time)
        return event

    async def emit_many(
        self,
        session: AsyncSession,
        payloads: Sequence[tuple[Payload, str | None]],
        *,
        time: datetime | None = None,
    ) -> list[CloudEvent]:
        """Write several events, each `(payload, policy_version)`, in one round trip; their
        outbox ids (and so their publishing order) follow the order given."""
        if not payloads:
            return []
        at = time or self.clock.now()
        events = [
            make_event(payload, source=self.source, time=at, policy_version=policy_version)
            for payload, policy_version in payloads
        ]
        rows = [
            {
                "event_id": event.id,
                "topic": payload.topic,
                "key": str(payload.lead_id),
                "payload": event.to_bytes(),
            }
            for event, (payload, _) in zip(events, payloads, strict=True)
        ]
        if len(rows) == 1:  # a request's event: a plain INSERT, cheaper for one row
            await session.execute(self._insert_one, rows[0])
        else:
            await session.execute(self._insert, self._rows.params(rows))
        touch(session, OUTBOX_TAG)
        return events


OUTBOX_TAG = "outbox"

# While more than a batch waits, the backlog is counted at most this often (real seconds); in
# between it is the last count minus what was published since. Counting is O(backlog).
COUNT_INTERVAL = 5.0
# How often an idle relay asks the broker whether its partitions still end where it wrote them,
# and at most how often a busy one stores how far it wrote (real seconds).
RESET_CHECK_INTERVAL = 5.0
SAVE_INTERVAL = 1.0


class OutboxRelay:
    """Publishes unpublished outbox rows in id order and marks them published.

    One relay per service schema publishes at a time (a transaction-scoped advisory lock),
    so events of one lead leave in the order they were written even with many instances.
    A crash between publish and mark re-publishes; consumers dedupe by event id.

    Published rows are kept for `replay_window` seconds. The relay remembers how far it wrote
    each partition (`relay_positions`); a broker that hands out an offset below that, or whose
    partition ends before it, lost its log (an in-memory broker that restarted), and the
    relay publishes the rows of the window again, in their order.
    """

    def __init__(
        self,
        db: Database,
        table: sa.Table,
        producer: AIOKafkaProducer,
        *,
        bootstrap: str,
        service: str,
        topic_prefix: str = "",
        batch_size: int = 500,
        poll_interval: float = 0.5,
        replay_window: int = 3600,
        recover_lost_logs: bool = False,
        topics: TopicLayout | None = None,
        stop: Stop | None = None,
    ) -> None:
        self.stop = stop if stop is not None else Stop()
        # Topics this relay has seen exist; any other is created before its first publish (an
        # in-memory broker forgets its topics on restart).
        self.topics = topics or TopicLayout()
        self.bootstrap = bootstrap
        self._topics_ready: set[str] = set()
        self.db = db
        self.table = table
        self.producer = producer
        self.service = service
        self.topic_prefix = topic_prefix
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.replay_window = replay_window
        self.positions = (
            table.metadata.tables.get(f"{table.schema}.relay_positions")
            if recover_lost_logs
            else None
        )
        self.inspector = (
            LogInspector(bootstrap, f"{service}-relay") if self.positions is not None else None
        )
        # (topic, partition) -> the offset the next record written there should get, at least
        self._written: dict[tuple[str, int], int] | None = None  # None: not loaded yet
        self._saved_at = float("-inf")
        self._checked_at = time.monotonic()
        self.lock_key = zlib.crc32(f"leadflow-outbox:{table.schema}".encode())
        self._wake = asyncio.Event()
        self.healthy = True
        self._backlog = 0
        self._counted_at = float("-inf")

    def wake(self) -> None:
        self._wake.set()

    async def publish_batch(self) -> int:
        """Publish one batch; returns how many rows were published (0: nothing to do or not leader).

        Every pass also reports what still waits (backlog and oldest row's age), leader or not."""
        t = self.table
        async with self.db.unit_of_work() as session:
            leader = await session.scalar(
                sa.select(sa.func.pg_try_advisory_xact_lock(self.lock_key))
            )
            if not leader:  # another instance is publishing; what waits is the same table
                backlog, age = await self._waiting(session)
                self._report(backlog, age)
                return 0
            rows = (
                await session.execute(
                    sa.select(t.c.id, t.c.topic, t.c.key, t.c.payload)
                    .where(t.c.published_at.is_(None))
                    .order_by(t.c.id)
                    .limit(self.batch_size)
                    # Locked until marked published: an erasure (`forget_events`) that comes
                    # meanwhile waits and then finds them published, rather than scrubbing a
                    # row whose old payload this pass is about to send.
                    .with_for_update()
                )
            ).all()
            if not rows:
                self._report(0, 0.0)
                return 0
            topics = {self.topic_prefix + row.topic for row in rows}
            await self._ensure_topics(topics)
            try:
                futures = [
                    await self.producer.send(
                        self.topic_prefix + row.topic, value=row.payload, key=row.key.encode()
                    )
                    for row in rows
                ]
                written = await asyncio.gather(*futures)
            except KafkaError:
                # e.g. UnknownTopicOrPartitionError or a timeout after the broker lost the
                # topic: the next pass creates the batch's topics again before publishing.
                self._topics_ready -= topics
                raise
            faults.reached("outbox.published")
            await session.execute(
                sa.update(t)
                # one array parameter: one statement whatever the batch's size, planned once
                .where(t.c.id == sa.any_(sa.bindparam("ids", type_=sa.ARRAY(sa.BigInteger))))
                .values(published_at=sa.func.now()),
                {"ids": [r.id for r in rows]},
            )
            if await self._wrote(session, rows, written):
                await self._replay(session, "the broker gave offsets below those written before")
                self.wake()  # the window goes out on the next pass, without waiting
                return len(rows)
            if len(rows) < self.batch_size:
                backlog, age = 0, 0.0  # every row that waited was in this batch
            else:
                backlog, age = await self._waiting(session, after=rows[-1].id, published=len(rows))
        for topic, count in Counter(row.topic for row in rows).items():
            metrics.outbox_published.labels(self.service, topic).inc(count)
        self._report(backlog, age)
        return len(rows)

    async def _wrote(self, session: AsyncSession, rows: list, written: list) -> bool:
        """Note how far each partition was written and the fingerprint of its last record
        (stored at most every SAVE_INTERVAL); True when the broker placed a record below where
        the relay wrote before: it lost its log."""
        if self.positions is None:
            return False
        known = await self._known(session)
        lost = False
        for row, meta in zip(rows, written, strict=True):
            if meta is None:  # a producer that reports no placement
                continue
            where = (meta.topic, meta.partition)
            before = known.get(where)
            if before is not None and meta.offset < before[0]:
                lost = True
            elif before is None or meta.offset + 1 >= before[0]:
                known[where] = (meta.offset + 1, digest_of(row.key.encode(), row.payload))
        if lost:
            return True
        if known and time.monotonic() - self._saved_at >= SAVE_INTERVAL:
            await self._save(session, known)
        return False

    async def _known(self, session: AsyncSession) -> dict[tuple[str, int], tuple[int, int | None]]:
        """(topic, partition) -> (the offset the next record written there should get, the
        fingerprint of the last one written)."""
        if self._written is None:
            t = self.positions
            rows = (
                await session.execute(
                    sa.select(t.c.topic, t.c.partition, t.c.next_offset, t.c.last_digest)
                )
            ).all()
            self._written = {(r.topic, r.partition): (r.next_offset, r.last_digest) for r in rows}
        return self._written

    async def _save(
        self, session: AsyncSession, known: dict[tuple[str, int], tuple[int, int | None]]
    ) -> None:
        t = self.positions
        statement = insert(t).on_conflict_do_update(
            index_elements=[t.c.topic, t.c.partition],
            set_={
                "next_offset": sa.text("excluded.next_offset"),
                "last_digest": sa.text("excluded.last_digest"),
                "updated_at": sa.func.now(),
            },
            where=t.c.next_offset <= sa.text("excluded.next_offset"),
        )
        await session.execute(
            statement,
            [
                {"topic": topic, "partition": p, "next_offset": n, "last_digest": d}
                for (topic, p), (n, d) in known.items()
            ],
        )
        self._saved_at = time.monotonic()

    async def _replay(self, session: AsyncSession, why: str) -> None:
        """The broker lost its log: every row published within the replay window waits to be
        published again, in id order, and the relay forgets how far it wrote. Runs as leader,
        in the pass's transaction."""
        t = self.table
        topics = (
            await session.scalars(
                sa.update(t)
                .where(
                    t.c.published_at
                    >= sa.func.now() - sa.text(f"interval '{self.replay_window} seconds'")
                )
                .values(published_at=None)
                .returning(t.c.topic)
            )
        ).all()
        await session.execute(sa.delete(self.positions))
        self._written = {}
        self._topics_ready.clear()
        self._counted_at = float("-inf")
        metrics.broker_resets.labels(self.service, "relay").inc()
        for topic in topics:
            metrics.outbox_republished.labels(self.service, topic).inc()
        log.warning(
            "broker lost its log; publishing the replay window again",
            extra={"reason": why, "events": len(topics), "window_seconds": self.replay_window},
        )

    async def check_log(self) -> bool:
        """Ask the broker whether each partition still holds the last record this relay wrote
        there; if not, it lost its log, and the replay window is published again. True when
        it was."""
        if self.inspector is None:
            return False
        if self._written is None:
            async with self.db.unit_of_work() as session:
                await self._known(session)
        written = dict(self._written or {})
        if not written:
            return False
        looks = await self.inspector.look(
            {TopicPartition(t, p): n - 1 for (t, p), (n, _) in written.items() if n > 0}
        )
        short = []
        for tp, look in looks.items():
            last, digest = written[(tp.topic, tp.partition)]
            if (
                look.offset is None
                or look.offset < last - 1
                or (look.offset == last - 1 and digest is not None and look.digest != digest)
            ):
                short.append(tp)
        if not short:
            return False
        async with self.db.unit_of_work() as session:
            leader = await session.scalar(
                sa.select(sa.func.pg_try_advisory_xact_lock(self.lock_key))
            )
            if not leader:
                return False
            await self._replay(
                session, f"{len(short)} partitions no longer hold the last record written"
            )
        self.wake()
        return True

    async def _ensure_topics(self, topics: set[str]) -> None:
        missing = sorted(topics - self._topics_ready)
        if missing:
            await create_topics(self.bootstrap, missing, self.topics, attempts=2)
            self._topics_ready.update(missing)

    async def _waiting(
        self, session: AsyncSession, *, after: int | None = None, published: int = 0
    ) -> tuple[int, float]:
        """(unpublished rows, age in seconds of the oldest), read through the partial index of
        unpublished rows; `after`: rows up to this id were just published in this transaction."""
        t = self.table
        unpublished = t.c.published_at.is_(None)
        if after is not None:
            unpublished = sa.and_(unpublished, t.c.id > after)
        age = await session.scalar(
            sa.select(sa.func.extract("epoch", sa.func.clock_timestamp() - t.c.created_at))
            .where(unpublished)
            .order_by(t.c.id)
            .limit(1)
        )
        if age is None:
            return 0, 0.0
        if time.monotonic() - self._counted_at >= COUNT_INTERVAL:
            backlog = await session.scalar(
                sa.select(sa.func.count()).select_from(t).where(unpublished)
            )
            self._counted_at = time.monotonic()
        else:
            backlog = self._backlog - published
        return max(backlog or 0, 1), max(float(age), 0.0)

    def _report(self, backlog: int, age: float) -> None:
        self._backlog = backlog
        metrics.outbox_backlog.labels(self.service).set(backlog)
        metrics.outbox_oldest_age.labels(self.service).set(age)

    async def _report_after_failure(self, exc: Exception) -> None:
        """A failed pass still reports what waits (the broker being away is when events age),
        from its own small query; when the database itself failed, the gauges keep their value."""
        if isinstance(exc, sa.exc.SQLAlchemyError) or is_transient(exc):
            return
        try:
            async with self.db.unit_of_work() as session:
                backlog, age = await self._waiting(session)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the database is away too: nothing to measure with
            log.debug("outbox backlog not measured", extra={"error": repr(error)})
            return
        self._report(backlog, age)

    async def purge(self) -> None:
        t = self.table
        async with self.db.unit_of_work() as session:
            await session.execute(
                sa.delete(t).where(
                    t.c.published_at
                    < sa.func.now() - sa.text(f"interval '{self.replay_window} seconds'")
                )
            )

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            if self.inspector is not None:
                with contextlib.suppress(KafkaError, OSError):
                    await asyncio.wait_for(self.inspector.close(), 5)

    async def _run(self) -> None:
        failures = 0  # passes failed in a row
        passes = 0
        while not self.stop:
            self._wake.clear()  # a wake arriving during the pass below is kept for the wait
            try:
                if failures:
                    # The broker was away or refused a pass: it may be back without its log (and
                    # even hold part of the failed pass). Look before writing anything new.
                    self._checked_at = time.monotonic()
                    await self.check_log()
                published = await self.publish_batch()
                if published == 0 and time.monotonic() - self._checked_at >= RESET_CHECK_INTERVAL:
                    self._checked_at = time.monotonic()
                    await self.check_log()
                self.healthy = True
                failures = 0
                passes += 1
                if passes % 200 == 0:
                    await self.purge()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database away: keep the rows, try again later
                self.healthy = False
                log.warning("outbox relay pass failed", extra={"error": repr(exc)})
                await self._report_after_failure(exc)
                failures += 1
                await self.stop.pause(exponential_backoff(failures, base=0.2, cap=5.0))
                continue
            if published >= self.batch_size:
                continue
            await self.stop.pause(self.poll_interval, self._wake)
