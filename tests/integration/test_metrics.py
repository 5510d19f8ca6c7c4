"""The operational gauges and counters over the real PostgreSQL and broker: consumer lag, outbox
age and backlog, overdue SLA timers, timers started, and the series that exist from the start."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import sqlalchemy as sa
from aiokafka.errors import KafkaConnectionError
from leadflow import metrics
from leadflow.clock import Clock
from leadflow.consumer import ConsumerRunner, Subscription
from leadflow.contracts.events import TOPIC_FEEDBACK, LeadContactAttempt, LeadRouted, make_event
from leadflow.db import Database, kernel_tables
from leadflow.outbox import Outbox
from leadflow_feedback.models import metadata as feedback_metadata
from leadflow_sla_timer.models import timers
from leadflow_sla_timer.use_cases import measure_open
from prometheus_client import REGISTRY
from support.harness import MessagingHarness, each, eventually, service_client

OUTBOX, INBOX = kernel_tables(feedback_metadata)


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def attempt() -> LeadContactAttempt:
    return LeadContactAttempt(
        lead_id=uuid.uuid4(), attempt_id=uuid.uuid4(), channel="call", occurred_at=datetime.now(UTC)
    )


class Kernel(MessagingHarness):
    """The kernel's loops over feedback's outbox and inbox, stopped at the end of a test."""

    def __init__(self, settings) -> None:
        super().__init__(settings, OUTBOX, INBOX)

    async def backdated_row(self, seconds: int) -> None:
        """One unpublished outbox row written `seconds` ago."""
        outbox = Outbox(OUTBOX, source="test", clock=Clock())
        async with self.db.unit_of_work() as session:
            event = await outbox.emit(session, attempt())
            await session.execute(
                sa.update(OUTBOX)
                .where(OUTBOX.c.event_id == event.id)
                .values(created_at=sa.func.now() - timedelta(seconds=seconds))
            )


async def test_consumer_lag_counts_waiting_events_and_returns_to_zero(settings):
    service = f"lag-{uuid.uuid4().hex[:8]}"
    async with Kernel(settings) as k:
        topic = settings.topic_prefix + TOPIC_FEEDBACK
        for _ in range(10):  # one key: one partition, the order they are handled in
            event = make_event(attempt(), source="test")
            await k.producer.send_and_wait(topic, event.to_bytes(), key=b"lead")
        gate = asyncio.Event()
        handled = []

        async def handler(event, session):
            await gate.wait()  # the consumer is busy: the events behind this one wait
            handled.append(event.id)

        runner = ConsumerRunner(
            Subscription("probe", (LeadContactAttempt,), each(handler)),
            k.db,
            INBOX,
            k.producer,
            service=service,
            bootstrap=settings.kafka_bootstrap,
            topic_prefix=settings.topic_prefix,
            lag_interval=0,  # every poll, so the test need not wait out the 5 s
            session_timeout_ms=settings.consumer_session_timeout_ms,
        )
        k.runners.append(runner)
        # The first dead letter must be visible to increase(): its series exists at 0 already.
        dead = {"service": service, "consumer": "probe", "type": "unknown"}
        assert sample("leadflow_events_consumed_total", **dead, outcome="dead_lettered") == 0.0

        def lag() -> float | None:
            return sample(
                "leadflow_consumer_lag", service=service, consumer="probe", topic=TOPIC_FEEDBACK
            )

        await runner.start()
        k.run(runner.run)
        # The batch in hand counts as waiting: all 10, although the consumer fetched them all.
        await eventually(lambda: _ready(lag() == 10), timeout=60)
        gate.set()
        await eventually(lambda: _ready(len(handled) == 10), timeout=60)
        await eventually(lambda: _ready(lag() == 0), timeout=30)
        assert len(set(handled)) == 10


async def test_consumer_lag_refresh_is_throttled_and_survives_unfetched_partitions(settings):
    service = f"lag-{uuid.uuid4().hex[:8]}"
    async with Kernel(settings) as k:

        async def handler(event, session):
            pass

        runner = ConsumerRunner(
            Subscription("idle", (LeadContactAttempt,), each(handler)),
            k.db,
            INBOX,
            k.producer,
            service=service,
            bootstrap=settings.kafka_bootstrap,
            topic_prefix=settings.topic_prefix,
            session_timeout_ms=settings.consumer_session_timeout_ms,
        )
        k.runners.append(runner)
        await runner.start()
        # Before any fetch: no highwater on any partition; measuring must neither raise nor
        # report a number it does not know.
        await runner._measure_lag({})
        labels = {"service": service, "consumer": "idle", "topic": TOPIC_FEEDBACK}
        assert sample("leadflow_consumer_lag", **labels) is None
        runner._lag_measured_at = float("-inf")
        polls = []  # every poll asks to measure; at most one in 5 s does
        measure = runner._measure_lag

        async def counted(batches) -> None:
            polls.append(batches)
            await measure(batches)

        runner._measure_lag = counted
        k.run(runner.run)
        await eventually(lambda: _ready(sample("leadflow_consumer_lag", **labels) == 0), timeout=60)
        measured, polled = runner._lag_measured_at, len(polls)
        await eventually(lambda: len(polls) >= polled + 3, timeout=30, interval=0.05)
        assert runner._lag_measured_at == measured


async def test_outbox_age_and_backlog_report_a_waiting_row_and_clear_once_published(settings):
    service = f"outbox-{uuid.uuid4().hex[:8]}"
    async with Kernel(settings) as k:
        relay = k.relay(service, start=False)
        # Another instance holds the relay lock (it is mid-pass): this relay cannot publish,
        # and still reports what waits.
        async with k.db.engine.connect() as other_instance:
            await other_instance.execute(sa.select(sa.func.pg_advisory_lock(relay.lock_key)))
            await other_instance.commit()
            await k.backdated_row(90)
            k.run(relay.run)
            await eventually(_reported(service, lambda b, a: b == 1 and 90 <= a < 150), timeout=30)
            await other_instance.execute(sa.select(sa.func.pg_advisory_unlock(relay.lock_key)))
            await other_instance.commit()
        await eventually(_reported(service, lambda b, a: b == 0 and a == 0), timeout=30)
        async with k.db.unit_of_work() as session:
            unpublished = await session.scalar(
                sa.select(sa.func.count())
                .select_from(OUTBOX)
                .where(OUTBOX.c.published_at.is_(None))
            )
        assert unpublished == 0


class RefusingBroker:
    """A producer whose broker refuses every send, as while Kafka is unreachable."""

    async def send(self, *args, **kwargs):
        raise KafkaConnectionError("broker unreachable")


async def test_outbox_age_is_reported_while_relay_passes_fail(settings):
    service = f"outbox-{uuid.uuid4().hex[:8]}"
    async with Kernel(settings) as k:
        relay = k.relay(service, producer=RefusingBroker(), start=False)
        await k.backdated_row(60)
        await k.backdated_row(30)
        k.run(relay.run)
        await eventually(_reported(service, lambda b, a: b == 2 and 60 <= a < 120), timeout=30)
        assert relay.healthy is False


async def test_a_timer_counts_only_once_its_transaction_commits(settings):
    db = Database(settings.database_url)
    labels = {"sla": "first_response", "channel": "partner", "team": f"t-{uuid.uuid4()}"}
    child = metrics.sla_timers_started.labels(*labels.values())
    try:
        try:
            async with db.unit_of_work() as session:
                metrics.count_on_commit(session, child)
                await session.execute(sa.select(1))
                raise RuntimeError("handler failed after the insert")
        except RuntimeError:
            pass
        assert sample("leadflow_sla_timers_started_total", **labels) == 0
        async with db.unit_of_work() as session:
            metrics.count_on_commit(session, child)
            await session.execute(sa.select(1))
        assert sample("leadflow_sla_timers_started_total", **labels) == 1
    finally:
        await db.dispose()


async def test_a_response_time_is_observed_only_once_its_transaction_commits(settings):
    db = Database(settings.database_url)
    labels = {"channel": "partner", "team": f"t-{uuid.uuid4()}"}
    child = metrics.lead_response.labels(*labels.values())
    try:
        try:
            async with db.unit_of_work() as session:
                metrics.observe_on_commit(session, [(child, 90.0)])
                await session.execute(sa.select(1))
                raise RuntimeError("handler failed after the insert")
        except RuntimeError:
            pass
        assert sample("leadflow_lead_response_seconds_count", **labels) == 0
        async with db.unit_of_work() as session:
            metrics.observe_on_commit(session, [(child, 90.0), (child, 30.0)])
            await session.execute(sa.select(1))
        assert sample("leadflow_lead_response_seconds_count", **labels) == 2
        assert sample("leadflow_lead_response_seconds_sum", **labels) == 120.0
    finally:
        await db.dispose()


async def test_overdue_timers_are_counted_in_real_seconds_of_a_simulated_clock(settings):
    speed = 60.0  # one real second is a simulated minute
    clock = Clock(start=datetime(2026, 3, 2, 9, 0, tzinfo=UTC), speed=speed)
    db = Database(settings.database_url)
    now = clock.now()
    due = {
        "45 real s late": now - timedelta(minutes=45),  # overdue
        "10 real s late": now - timedelta(minutes=10),  # due, the firing loop has 30 s
        "not due yet": now + timedelta(hours=1),
        "closed": None,
    }
    try:
        async with db.unit_of_work() as session:
            for next_fire_at in due.values():
                await session.execute(
                    sa.insert(timers).values(
                        id=uuid.uuid4(),
                        lead_id=uuid.uuid4(),
                        sla="first_response",
                        clock="business",
                        limit_seconds=7200,
                        started_at=now - timedelta(hours=3),
                        due_at=now - timedelta(hours=1),
                        ladder=[],
                        next_fire_at=next_fire_at,
                    )
                )
        await measure_open(SimpleNamespace(clock=clock, db=db))
        assert sample("leadflow_sla_open_timers", sla="first_response") == 3
        assert sample("leadflow_sla_timers_overdue", sla="first_response") == 1
    finally:
        await db.dispose()


async def test_sla_timer_counts_a_started_timer_once_and_exports_its_series(settings):
    team = f"Team {uuid.uuid4().hex[:6]}"
    routed = LeadRouted(
        lead_id=uuid.uuid4(),
        assignment_id=uuid.uuid4(),
        team_id=None,
        team=team,
        rep_id=None,
        channel="partner",
        routed_at=datetime.now(UTC),
    )
    started = {"sla": "first_response", "channel": "partner", "team": team}
    async with service_client("sla-timer", settings) as client:
        await eventually(lambda: _status(client, "/readyz", 200), timeout=90)
        rt = client.app.state.runtime
        topic = settings.topic_prefix + routed.topic
        consumed = {"service": "sla-timer", "consumer": "timers", "type": "lead.routed"}
        before = sample("leadflow_events_consumed_total", **consumed, outcome="processed") or 0
        # Routed twice (a re-routing): the clock started with the first one is kept.
        for _ in range(2):
            event = make_event(routed, source="routing")
            await rt.producer.send_and_wait(
                topic, event.to_bytes(), key=str(routed.lead_id).encode()
            )
        await eventually(
            lambda: _ready(sample("leadflow_sla_timers_started_total", **started) == 1), timeout=60
        )
        await eventually(
            lambda: _ready(
                sample("leadflow_events_consumed_total", **consumed, outcome="processed")
                == before + 2
            ),
            timeout=60,
        )
        assert sample("leadflow_sla_timers_started_total", **started) == 1
        text = (await client.get("/metrics")).text
        for series in (
            'leadflow_events_consumed_total{consumer="timers",outcome="dead_lettered",service="sla-timer",type="unknown"}',
            'leadflow_outbox_oldest_unpublished_age_seconds{service="sla-timer"}',
            'leadflow_consumer_lag{consumer="timers",service="sla-timer",topic="leadflow.routing"}',
            'leadflow_sla_timers_overdue{sla="first_response"}',
        ):
            assert series in text, series


def _reported(service: str, expected):
    async def check():
        backlog = sample("leadflow_outbox_backlog", service=service)
        age = sample("leadflow_outbox_oldest_unpublished_age_seconds", service=service)
        return backlog is not None and age is not None and expected(backlog, age) and (backlog, age)

    return check


async def _status(client, path: str, status: int) -> bool:
    return (await client.get(path)).status_code == status


async def _ready(value):
    return value
