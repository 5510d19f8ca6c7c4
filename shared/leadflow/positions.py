"""Where a consumer stands in each partition, kept in PostgreSQL with the state it produced.

The broker's committed offsets are a convenience; these rows are the truth. Each batch writes
the next offset of every partition it read in the batch's own transaction, so effects and
position can never disagree. On assignment the consumer seeks to them.

A broker can lose its log (the embedded broker keeps it in memory and comes back empty, then
fills again as relays re-publish): a consumer that resumed at its old offset would read the new
log from the middle and skip its beginning. So each partition keeps an anchor, a record read
before at a position checked since. Every `VERIFY_INTERVAL` seconds, and on assignment, the
anchor is looked up in the broker's log: still there, the newest record read becomes the
anchor; gone, shorter, or another record in its place, the broker lost the log and the
consumer reads the partition again from the start (the inbox drops what it handled before).
A position beyond the log's end is never skipped past either: it is read from the start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from sqlalchemy.ext.asyncio import AsyncSession

from leadflow import metrics
from leadflow.db import Database, ManyRows
from leadflow.kafka import LogInspector, record_digest

log = logging.getLogger(__name__)

VERIFY_INTERVAL = 2.0  # real seconds between checks that the broker still holds what was read


@dataclass(frozen=True, slots=True)
class Mark:
    """A record read: its offset and fingerprint."""

    offset: int
    digest: int


@dataclass(frozen=True, slots=True)
class Stored:
    next_offset: int
    anchor: Mark | None
    last: Mark | None = None  # the last record read (not checked since)


class Positions:
    """One consumer's positions (`consumer` is its subscription's name, as in the inbox)."""

    def __init__(
        self,
        table: sa.Table,
        db: Database,
        *,
        consumer: str,
        service: str,
        inspector: LogInspector,
        verify_interval: float = VERIFY_INTERVAL,
    ) -> None:
        self.table = table
        self.db = db
        self.consumer = consumer
        self.service = service
        self.inspector = inspector
        self.verify_interval = verify_interval
        self._anchors: dict[TopicPartition, Mark] = {}
        self._latest: dict[TopicPartition, Mark] = {}  # newest record read, not yet an anchor
        self._expected: dict[TopicPartition, int] = {}  # where the next record should be
        self._rewind: set[TopicPartition] = set()  # to read again from the start
        self._verified_at = time.monotonic()
        t = table
        # One statement per batch, whatever the number of its partitions (six by default), not
        # one execution per partition.
        self._rows = ManyRows(t, ["consumer", "topic", "partition", "next_offset", "last_digest"])
        self._upsert = self._rows.insert().on_conflict_do_update(
            index_elements=[t.c.consumer, t.c.topic, t.c.partition],
            set_={
                "next_offset": sa.text("excluded.next_offset"),
                "last_digest": sa.text("excluded.last_digest"),
                "updated_at": sa.func.now(),
            },
        )

    @classmethod
    def of(
        cls, inbox: sa.Table, db: Database, *, consumer: str, service: str, bootstrap: str
    ) -> Positions | None:
        """The positions of a consumer whose inbox is `inbox`; None when that schema keeps none."""
        table = inbox.metadata.tables.get(f"{inbox.schema}.consumer_positions")
        if table is None:
            return None
        inspector = LogInspector(bootstrap, f"{service}-{consumer}-positions")
        return cls(table, db, consumer=consumer, service=service, inspector=inspector)

    async def close(self) -> None:
        await self.inspector.close()

    # -- in the batch's transaction -------------------------------------------------------

    async def record(self, session: AsyncSession, records: list[ConsumerRecord]) -> None:
        """Write where each partition of `records` continues, in the batch's transaction; call
        `advance` with the same records once it committed."""
        newest = _newest(records)
        if not newest:
            return
        await session.execute(
            self._upsert,
            self._rows.params(
                {
                    "consumer": self.consumer,
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "next_offset": record.offset + 1,
                    "last_digest": record_digest(record),
                }
                for tp, record in newest.items()
            ),
        )

    def advance(self, records: list[ConsumerRecord]) -> None:
        """After the batch committed: remember the newest record of each partition (an anchor
        at the next check). A partition whose records do not go on from where it stood was
        moved by the client or the broker: its position lay beyond the log's end, or the broker
        answered from another place of a log it lost and filled again. It is read again from
        its start (next `verify`), which is counted and logged."""
        for tp, first in _oldest(records).items():
            expected = self._expected.get(tp)
            if expected is not None and first.offset != expected:
                self._lost(tp, f"read from offset {first.offset} where {expected} was next")
                self._rewind.add(tp)
        for tp, record in _newest(records).items():
            self._latest[tp] = Mark(record.offset, record_digest(record))
            self._expected[tp] = record.offset + 1

    # -- on assignment ----------------------------------------------------------------------

    async def resume(self, consumer: AIOKafkaConsumer, assigned: Iterable[TopicPartition]) -> None:
        """Seek each assigned partition to its stored position, or to its start when the broker
        no longer holds the log that position was in. Partitions with no stored position start
        where the broker's committed offset (or the earliest record) says."""
        assigned = set(assigned)
        for tp in assigned:
            self._latest.pop(tp, None)
            self._expected.pop(tp, None)
        stored = await self._load(assigned)
        if not stored:
            return
        try:
            lost, held = await self._lost_logs(stored, last_too=True)
        except (KafkaError, OSError, TimeoutError) as exc:
            # The broker cannot be asked now: resume where the database says; the anchors are
            # checked again on the next pass.
            log.warning("positions not checked on assignment", extra={"error": repr(exc)})
            lost, held = set(), set()
        for tp, where in stored.items():
            if tp in lost:
                await self._restart(consumer, tp)
                continue
            log.info(
                "partition resumed at its stored position",
                extra={
                    "consumer": self.consumer,
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "offset": where.next_offset,
                    "anchor": where.anchor.offset if where.anchor else None,
                    "checked": tp in held,
                },
            )
            consumer.seek(tp, where.next_offset)
            self._expected[tp] = where.next_offset
            if where.anchor is not None:
                self._anchors[tp] = where.anchor

    def forget(self) -> None:
        """Drop what was learnt of every partition (the member is gone): a new member resumes
        from the database."""
        self.revoked({*self._anchors, *self._latest, *self._expected, *self._rewind})

    def revoked(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._rewind.discard(tp)
            self._anchors.pop(tp, None)
            self._latest.pop(tp, None)
            self._expected.pop(tp, None)

    async def _load(self, partitions: set[TopicPartition]) -> dict[TopicPartition, Stored]:
        if not partitions:
            return {}
        t = self.table
        async with self.db.unit_of_work() as session:
            rows = (
                await session.execute(
                    sa.select(
                        t.c.topic,
                        t.c.partition,
                        t.c.next_offset,
                        t.c.last_digest,
                        t.c.anchor_offset,
                        t.c.anchor_digest,
                    ).where(
                        t.c.consumer == self.consumer,
                        t.c.topic.in_(sorted({tp.topic for tp in partitions})),
                    )
                )
            ).all()
        stored = {}
        for row in rows:
            tp = TopicPartition(row.topic, row.partition)
            if tp in partitions:
                anchor = (
                    Mark(row.anchor_offset, row.anchor_digest)
                    if row.anchor_offset is not None
                    else None
                )
                last = (
                    Mark(row.next_offset - 1, row.last_digest)
                    if row.last_digest is not None and row.next_offset > 0
                    else None
                )
                stored[tp] = Stored(row.next_offset, anchor, last)
        return stored

    # -- every VERIFY_INTERVAL -----------------------------------------------------------------

    async def verify(self, consumer: AIOKafkaConsumer, *, force: bool = False) -> None:
        """Check, at most every `verify_interval` seconds, that the broker still holds the log
        read since the last check; promote the newest records read to anchors, or read a lost
        partition again from its start."""
        assignment = consumer.assignment()
        for tp in assignment:
            # The end of the log as the last fetch told it: a log that ends before where the
            # partition stands is not the one read (Kafka never lets a position pass the end).
            expected = self._expected.get(tp)
            end = consumer.highwater(tp) if expected is not None else None
            if end is not None and end < expected and tp not in self._rewind:
                self._lost(tp, f"the log ends at offset {end}, before {expected}")
                self._rewind.add(tp)
        for tp in [tp for tp in self._rewind if tp in assignment]:
            await self._restart(consumer, tp, counted=True)
        self._rewind.clear()
        now = time.monotonic()
        if not force and now - self._verified_at < self.verify_interval:
            return
        self._verified_at = now
        latest = {tp: mark for tp, mark in self._latest.items() if tp in assignment}
        if not latest:
            return
        checks = {
            tp: Stored(mark.offset + 1, self._anchors.get(tp), mark) for tp, mark in latest.items()
        }
        try:
            lost, held = await self._lost_logs(checks)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.debug("positions not checked", extra={"error": repr(exc)})
            return
        promoted: dict[TopicPartition, Mark] = {}
        for tp, mark in latest.items():
            if tp in lost:
                await self._restart(consumer, tp)
            elif tp in held and self._latest.get(tp) == mark:
                promoted[tp] = mark
                del self._latest[tp]
        if not promoted:
            return
        self._anchors.update(promoted)
        t = self.table
        async with self.db.unit_of_work() as session:
            await session.execute(
                sa.update(t)
                .where(
                    t.c.consumer == sa.bindparam("c"),
                    t.c.topic == sa.bindparam("t"),
                    t.c.partition == sa.bindparam("p"),
                )
                .values(anchor_offset=sa.bindparam("o"), anchor_digest=sa.bindparam("d")),
                [
                    {
                        "c": self.consumer,
                        "t": tp.topic,
                        "p": tp.partition,
                        "o": m.offset,
                        "d": m.digest,
                    }
                    for tp, m in promoted.items()
                ],
            )

    async def _lost_logs(
        self, checks: dict[TopicPartition, Stored], *, last_too: bool = False
    ) -> tuple[set[TopicPartition], set[TopicPartition]]:
        """(the partitions whose log is not the one read, those whose log is). Each is judged by
        its anchor, or, with none yet, by the record just before its position (which must still
        be there); a partition the broker gave no clear answer for is in neither.

        With `last_too` (on assignment), a partition whose anchor holds is judged again by the
        last record read: a broker that lost its log and was filled again by the relays' replay
        holds the same records in the same order, but not the duplicates a relay's failed pass
        left in the log read before, so the old anchor can still stand where it stood while the
        records after it moved to lower offsets, and the stored position would skip them."""
        lost, held = await self._judge(checks)
        if not last_too:
            return lost, held
        again = {
            tp: Stored(where.next_offset, None, where.last)
            for tp, where in checks.items()
            if tp in held
            and where.anchor is not None
            and where.last is not None
            and where.last.offset != where.anchor.offset
        }
        if not again:
            return lost, held
        lost_after, held_after = await self._judge(again)
        return lost | lost_after, (held - set(again)) | held_after

    async def _judge(
        self, checks: dict[TopicPartition, Stored]
    ) -> tuple[set[TopicPartition], set[TopicPartition]]:
        """One look at the broker's log for each partition's mark (its anchor, else the last
        record read, else the offset before its position)."""
        marks: dict[TopicPartition, Mark | int] = {}
        for tp, where in checks.items():
            if where.anchor is not None:
                marks[tp] = where.anchor
            elif where.last is not None:
                # No anchor yet (the broker went away before the first check): the last record
                # read, by its fingerprint. A log filled again holds a record at its offset,
                # which proves nothing by itself.
                marks[tp] = where.last
            elif where.next_offset > 0:
                marks[tp] = where.next_offset - 1
        looks = await self.inspector.look(
            {tp: m.offset if isinstance(m, Mark) else m for tp, m in marks.items()}
        )
        lost: set[TopicPartition] = set()
        held = {tp for tp in checks if tp not in marks}  # nothing read yet: nothing to lose
        for tp, mark in marks.items():
            look = looks.get(tp)
            if look is None:
                continue  # not known this time: asked again at the next check
            offset, digest = (mark.offset, mark.digest) if isinstance(mark, Mark) else (mark, None)
            if look.offset is None:
                lost.add(tp)  # the log ends before the record read
            elif look.offset < offset:
                lost.add(tp)  # the offset is beyond the log's end: read from the start
            elif look.offset == offset and digest is not None and look.digest != digest:
                lost.add(tp)  # another record stands where the one read stood
            else:  # the record read, or a later one (retention removed it): the log goes on
                held.add(tp)
        return lost, held

    async def _restart(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, *, counted: bool = False
    ) -> None:
        """Read the partition again from its log's start (offset 0, or the first the log holds),
        and store that as its position."""
        start = 0
        if not counted:
            self._lost(tp, "the log read before is not in the broker any more")
        if tp not in consumer.assignment():
            return  # moved to another member meanwhile: it resumes from the database
        consumer.seek(tp, start)
        # Where the log starts is not known here (retention): no record is out of place.
        self._expected.pop(tp, None)
        t = self.table
        async with self.db.unit_of_work() as session:
            await session.execute(
                sa.update(t)
                .where(
                    t.c.consumer == self.consumer,
                    t.c.topic == tp.topic,
                    t.c.partition == tp.partition,
                )
                .values(
                    next_offset=start,
                    last_digest=None,
                    anchor_offset=None,
                    anchor_digest=None,
                    updated_at=sa.func.now(),
                )
            )

    def _lost(self, tp: TopicPartition, why: str) -> None:
        self._anchors.pop(tp, None)
        self._latest.pop(tp, None)
        metrics.broker_resets.labels(self.service, "consumer").inc()
        log.warning(
            "broker lost the log a consumer read; reading the partition from its start",
            extra={
                "consumer": self.consumer,
                "topic": tp.topic,
                "partition": tp.partition,
                "reason": why,
            },
        )


def _newest(records: list[ConsumerRecord]) -> dict[TopicPartition, ConsumerRecord]:
    newest: dict[TopicPartition, ConsumerRecord] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        seen = newest.get(tp)
        if seen is None or record.offset > seen.offset:
            newest[tp] = record
    return newest


def _oldest(records: list[ConsumerRecord]) -> dict[TopicPartition, ConsumerRecord]:
    oldest: dict[TopicPartition, ConsumerRecord] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        seen = oldest.get(tp)
        if seen is None or record.offset < seen.offset:
            oldest[tp] = record
    return oldest
