"""Test harnesses: the session's stack with the test keys, sample payloads, polling helpers,
services in-process and the messaging harnesses. Lives with the tests; never shipped."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import os
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from leadflow.settings import DEV_API_KEY, ApiKeySpec, Settings
from leadflow_tools.devstack import Stack
from leadflow_tools.receiver import WebhookReceiver

TEST_KEYS = [
    ApiKeySpec(name="admin", key=DEV_API_KEY, scopes=["*"]),
    ApiKeySpec(name="hubspot", key="lf_test_source", scopes=["leads:write"], source="hubspot"),
    ApiKeySpec(name="crm", key="lf_test_sales", scopes=["sales:write"]),
    ApiKeySpec(name="marketo", key="lf_test_marketo", scopes=["leads:write"], source="marketo"),
    # read-only keys, one read scope each
    ApiKeySpec(name="leads-reader", key="lf_test_leads_reader", scopes=["leads:read"]),
    ApiKeySpec(name="reports-reader", key="lf_test_reports_reader", scopes=["reports:read"]),
    ApiKeySpec(name="config-reader", key="lf_test_config_reader", scopes=["config:read"]),
    ApiKeySpec(
        name="reader", key="lf_test_reader", scopes=["leads:read", "reports:read", "config:read"]
    ),
]

ADMIN = {"Authorization": f"Bearer {DEV_API_KEY}"}
SOURCE = {"Authorization": "Bearer lf_test_source"}
SALES = {"Authorization": "Bearer lf_test_sales"}
MARKETO = {"Authorization": "Bearer lf_test_marketo"}
LEADS_READER = {"Authorization": "Bearer lf_test_leads_reader"}
REPORTS_READER = {"Authorization": "Bearer lf_test_reports_reader"}
CONFIG_READER = {"Authorization": "Bearer lf_test_config_reader"}
READER = {"Authorization": "Bearer lf_test_reader"}
# A request that presents no key at all, to a client that would otherwise present READER.
NO_KEY = {"Authorization": ""}


async def present_read_key(request: httpx.Request) -> None:
    """A request hook: a GET that names no key presents READER (every read scope, nothing
    more), so tests read as a reporting tool would; writes present only the key a test gives,
    and NO_KEY sends none."""
    if request.headers.get("authorization") == "":
        del request.headers["authorization"]
    elif request.method == "GET" and not {"authorization", "x-api-key"} & set(request.headers):
        request.headers.update(READER)


# A lead that the default policy promotes to MQL: fit 100, intent tier 2, decision maker.
QUALIFIED_LEAD = {
    "email": "Ada.Lovelace@Analytical-Engines.example",
    "first_name": "Ada",
    "last_name": "Lovelace",
    "title": "CTO",
    "role": "decision_maker",
    "seniority": "c_level",
    "company": {
        "name": "Analytical Engines",
        "industry": "software",
        "employees": 250,
        "country": "PL",
    },
    "source": {
        "system": "hubspot",
        "channel": "inbound",
        "campaign": "q4-webinar",
        "lead_magnet": "sla-playbook",
    },
    "consent": {"basis": "consent"},
    "intent_tier": 2,
    "intent_note": "researching lead routing tools",
}


def sample_lead(n: int) -> dict:
    return {**QUALIFIED_LEAD, "email": f"buyer{n}@prospect{n}.example", "external_id": f"crm-{n}"}


def _docker_engine_available() -> bool:
    """True when testcontainers is installed and a Docker engine answers."""
    try:
        import docker  # installed with testcontainers

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


class _Container:
    """Adapts a testcontainers container to the start/stop shape of the embedded components."""

    def __init__(self, container) -> None:
        self.container = container

    def stop(self) -> None:
        self.container.stop()


def _start_containers(admin_url: str | None, bootstrap: str | None, owned: list) -> tuple[str, str]:
    """PostgreSQL and Kafka (KRaft) in Docker, for machines that have an engine."""
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    if not admin_url:
        pg = PostgresContainer("postgres:16-alpine", driver="asyncpg").start()
        owned.append(_Container(pg))
        admin_url = pg.get_connection_url()
    if not bootstrap:
        kafka = KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft().start()
        owned.append(_Container(kafka))
        bootstrap = kafka.get_bootstrap_server()
    return admin_url, bootstrap


SPARES = 2  # databases copied ahead (a test may make settings for two runs to compare)
# Whether the database being made for a test is copied from the template (per task, so that
# settings made concurrently each get what they asked for).
_copy_template: contextvars.ContextVar[bool] = contextvars.ContextVar("copy_template", default=True)


class TestStack(Stack):
    """The session's PostgreSQL and broker.

    External when LEADFLOW_TEST_DATABASE_URL / LEADFLOW_TEST_KAFKA_BOOTSTRAP are set; otherwise in
    Docker (testcontainers) when an engine answers, or embedded (the default on machines without
    one). LEADFLOW_TEST_BACKEND=embedded|docker forces the choice. Settings carry the test keys.
    """

    @classmethod
    def start(cls) -> TestStack:  # type: ignore[override]
        owned: list = []
        admin_url = os.environ.get("LEADFLOW_TEST_DATABASE_URL")
        bootstrap = os.environ.get("LEADFLOW_TEST_KAFKA_BOOTSTRAP")
        backend = os.environ.get("LEADFLOW_TEST_BACKEND", "auto")
        if backend not in ("auto", "embedded", "docker"):
            raise ValueError("LEADFLOW_TEST_BACKEND must be auto, embedded or docker")
        if (not admin_url or not bootstrap) and (
            backend == "docker" or (backend == "auto" and _docker_engine_available())
        ):
            admin_url, bootstrap = _start_containers(admin_url, bootstrap, owned)
        stack = Stack.start(admin_url, bootstrap, owned)
        return cls(stack.admin_url, stack.bootstrap, stack.workdir, stack._owned)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.issued_prefixes: list[str] = []  # every topic prefix handed out, in order
        self._template: str | None = None
        self._spares: list[asyncio.Task[str]] = []  # the next databases, being copied
        self._template_lock = asyncio.Lock()
        self._deleting = concurrent.futures.ThreadPoolExecutor(1, "topic-deletion")
        self._stopped = False

    async def isolated_settings(
        self, *, from_migrations: bool = False, **overrides: Any
    ) -> Settings:
        """Settings of a database and topics of their own; the database is a copy of the
        migrated template unless `from_migrations` asks for one built by running every
        service's migrations on it."""
        copying = _copy_template.set(not from_migrations)
        try:
            settings = await super().isolated_settings(
                **{"api_keys": TEST_KEYS, "consumer_session_timeout_ms": 6_000, **overrides}
            )
        finally:
            _copy_template.reset(copying)
        self.issued_prefixes.append(settings.topic_prefix)
        return settings

    async def new_database(self, name: str) -> str:
        """A copy of the session's migrated template: one copy instead of six services'
        migrations per test (the copies are what the migrations build, revisions included, so
        tests of the migrations themselves run on them unchanged). The copy is made ahead, while
        the previous test runs, and renamed when asked for."""
        if not _copy_template.get():
            return await super().new_database(name)
        spare = await self._take_spare()
        await self._admin(f'ALTER DATABASE "{spare}" RENAME TO "{name}"')
        return f"{self.admin_url.rsplit('/', 1)[0]}/{name}"

    async def _take_spare(self) -> str:
        loop = asyncio.get_running_loop()
        spares = [task for task in self._spares if task.get_loop() is loop]
        spare = spares.pop(0) if spares else None
        while len(spares) < SPARES:
            spares.append(loop.create_task(self._copy_of_template()))
        self._spares = spares
        if spare is not None:
            try:
                return await spare
            except Exception as exc:  # a copy made ahead failed: say why, then copy again now
                warnings.warn(
                    f"a database copied ahead failed ({exc!r}); copying again", stacklevel=1
                )
        return await self._copy_of_template()

    async def _copy_of_template(self) -> str:
        template = await self._migrated_template()
        name = f"spare_{uuid.uuid4().hex[:12]}"
        await self._admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    async def _admin(self, statement: str) -> None:
        import asyncpg

        plain = self.admin_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(plain)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    async def _migrated_template(self) -> str:
        """The template database, migrated on first use. PostgreSQL copies a template only while
        no one else is connected to it: the migrations close their connections, and nothing
        else ever connects to it."""
        async with self._template_lock:
            if self._template is None:
                name = f"template_{uuid.uuid4().hex[:12]}"
                await super().new_database(name)
                self._template = name
        return self._template

    def delete_topics(self, prefixes: list[str]) -> None:
        """Delete every topic whose name starts with one of `prefixes`, in the background (the
        next test need not wait): the in-memory broker would otherwise hold every topic of the
        session, thousands by the end of a run. Once the stack stops, its broker goes with them."""
        if prefixes and not self._stopped:
            self._deleting.submit(asyncio.run, _delete_topics(self.bootstrap, tuple(prefixes)))

    def stop(self) -> None:
        self._stopped = True
        self._deleting.shutdown(wait=True, cancel_futures=False)
        super().stop()


async def _delete_topics(bootstrap: str, prefixes: tuple[str, ...]) -> None:
    """Topics of these prefixes deleted; a broker that is down or was restarted empty (a test
    may do either) is no failure: its topics are gone already or go with it."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        async with asyncio.timeout(30):
            await admin.start()
            names = [t for t in await admin.list_topics() if t.startswith(prefixes)]
            if names:
                await admin.delete_topics(names, timeout_ms=10_000)
    except (KafkaError, OSError, TimeoutError):
        pass
    finally:
        await admin.close()


@asynccontextmanager
async def service_clients(settings: Settings) -> AsyncIterator[dict[str, httpx.AsyncClient]]:
    """All six services in this process (`service_client` each), by name."""
    from contextlib import AsyncExitStack

    from leadflow_tools.registry import SERVICE_ORDER

    async with AsyncExitStack() as stack:
        yield {
            name: await stack.enter_async_context(service_client(name, settings))
            for name in SERVICE_ORDER
        }


@asynccontextmanager
async def service_client(name: str, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """One service in this process, lifespan and all, behind an httpx client whose GETs present
    READER unless they name a key (`present_read_key`)."""
    from leadflow.service import create_app
    from leadflow_tools.registry import service_spec

    app = create_app(service_spec(name), settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url=f"http://{name}",
            event_hooks={"request": [present_read_key]},
        ) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@asynccontextmanager
async def routing_and_notify(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Notify in this process behind an httpx client, with routing running beside it (its
    client is the first one's `routing`): routing decides, notify delivers."""
    async with service_client("routing", settings) as rt, service_client("notify", settings) as nt:
        nt.routing = rt  # type: ignore[attr-defined]
        yield nt


def _not_met(timeout: float, last, describe) -> AssertionError:
    said = describe() if describe is not None else f"last value: {last!r}"
    return AssertionError(f"condition not met within {timeout}s; {said}")


async def eventually(check, timeout: float = 30.0, interval: float = 0.2, describe=None):
    """Poll `check` (sync or async) until it returns something truthy; fail with its last value,
    or with what `describe()` says."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise _not_met(timeout, last, describe)


def eventually_sync(check, timeout: float = 30.0, interval: float = 0.2, describe=None):
    """`eventually` for synchronous tests (a browser, a subprocess): poll the plain callable
    `check`, blocking, until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise _not_met(timeout, last, describe)


async def rows_in(settings: Settings, table: str) -> int:
    """How many rows a service's table holds (`table` as `schema.name`)."""
    import sqlalchemy as sa
    from leadflow.db import Database

    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            return await session.scalar(sa.text(f"SELECT count(*) FROM {table}"))
    finally:
        await db.dispose()


async def emitted(settings: Settings, event_type: str, schema: str = "routing") -> list:
    """A service's events of this type in its outbox, in the order it wrote them."""
    import sqlalchemy as sa
    from leadflow.contracts.events import CloudEvent
    from leadflow.db import Database

    db = Database(settings.database_url)
    try:
        async with db.unit_of_work() as session:
            rows = (
                await session.execute(sa.text(f'SELECT payload FROM "{schema}".outbox ORDER BY id'))
            ).all()
    finally:
        await db.dispose()
    found = (CloudEvent.from_bytes(r.payload) for r in rows)
    return [e for e in found if e.type == event_type]


async def publish_events(settings: Settings, topic: str, payloads: list) -> None:
    """Publish typed payloads as CloudEvents, as the service owning `topic` would."""
    from leadflow.contracts.events import make_event
    from leadflow.kafka import make_producer

    producer = make_producer(settings, "test-publisher")
    await producer.start()
    try:
        for payload in payloads:
            event = make_event(payload, source="test")
            await producer.send(
                settings.topic_prefix + topic, event.to_bytes(), key=str(payload.lead_id).encode()
            )
        await producer.flush()
    finally:
        await producer.stop()


def sample_mql(n: int, *, channel: str = "inbound", domain: str | None = None, country: str = "PL"):
    """A lead.mql payload as scoring emits it."""
    from datetime import UTC, datetime

    from leadflow.contracts.events import LeadCompany, LeadMql, LeadSource

    return LeadMql(
        lead_id=uuid.uuid4(),
        fit=100,
        engagement=60.0,
        intent_tier=2,
        channel=channel,
        source=LeadSource(system="hubspot", channel=channel, campaign="q4"),
        company=LeadCompany(name=f"Co {n}", domain=domain, country=country, size_band="50-249"),
        email=f"lead{n}@example.com",
        promoted_at=datetime.now(UTC),
    )


def sample_breach(
    lead_id: uuid.UUID | None = None,
    *,
    sla: str = "first_response",
    level: str = "breached",
    team: str | None = "Inbound",
    channel: str | None = "inbound",
):
    """An sla.breached payload as sla-timer emits it (due an hour ago)."""
    from datetime import UTC, datetime, timedelta

    from leadflow.contracts.events import SlaBreached

    now = datetime.now(UTC)
    return SlaBreached(
        lead_id=lead_id or uuid.uuid4(),
        timer_id=uuid.uuid4(),
        sla=sla,
        channel=channel,
        team=team,
        started_at=now - timedelta(hours=3),
        due_at=now - timedelta(hours=1),
        level=level,
    )


def sample_routed(lead_id: uuid.UUID, at, *, team: str = "emea", **fields):
    """A lead.routed payload as routing emits it for an inbound lead its team takes with no rep
    yet; `fields` set any other member (`kind`, `channel`...)."""
    from leadflow.contracts.events import LeadRouted

    return LeadRouted(
        **{
            "lead_id": lead_id,
            "assignment_id": uuid.uuid4(),
            "team_id": None,
            "team": team,
            "rep_id": None,
            "channel": "inbound",
            "routed_at": at,
            **fields,
        }
    )


def sample_attempt(lead_id: uuid.UUID | None = None):
    """A lead.contact_attempt payload as feedback emits it."""
    from datetime import UTC, datetime

    from leadflow.contracts.events import LeadContactAttempt

    return LeadContactAttempt(
        lead_id=lead_id or uuid.uuid4(),
        attempt_id=uuid.uuid4(),
        channel="call",
        occurred_at=datetime.now(UTC),
    )


def sample_attempt_event(lead_id: uuid.UUID | None = None):
    """`sample_attempt` in its CloudEvent envelope, as it travels on the feedback topic."""
    from leadflow.contracts.events import make_event

    return make_event(sample_attempt(lead_id), source="test")


async def read_topic(settings: Settings, topic: str, at_least: int, idle: float = 0.0) -> list:
    """Every record of `topic` (its full name) from the start, once there are `at_least`; with
    `idle`, also whatever more arrives in that many seconds (to show that nothing more does)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        group_id=f"reader-{uuid.uuid4()}",
    )
    await consumer.start()
    got: list = []
    try:

        async def enough() -> bool:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                got.extend(records)
            return len(got) >= at_least

        await eventually(enough, timeout=60)
        if idle:
            extra = await consumer.getmany(timeout_ms=int(idle * 1000))
            for records in extra.values():
                got.extend(records)
    finally:
        await consumer.stop()
    return got


@dataclass
class LeadRun:
    """Leads' way through running services: the rep they are routed to, the endpoint their
    `lead.routed` webhook is signed for and the receiver that endpoint points at. Methods act on
    the last lead sent unless given another `lead_id`."""

    urls: dict[str, str]
    http: httpx.AsyncClient
    receiver: WebhookReceiver
    rep: dict
    secret: str
    lead_id: str = ""

    async def ingest(self, lead: dict) -> dict:
        """Send the lead from the CRM source; the answer to the source."""
        created = await self.http.post(f"{self.urls['ingest']}/v1/leads", headers=SOURCE, json=lead)
        assert created.status_code == 202, created.text
        self.lead_id = created.json()["lead_id"]
        return created.json()

    async def delivered(self, timeout: float = 60) -> list[tuple[dict[str, str], bytes]]:
        """The webhook deliveries, once there is one."""
        return await eventually(lambda: self.receiver.received, timeout=timeout)

    async def first_response_timer(self, lead_id: str | None = None) -> dict | None:
        """The lead's first-response SLA timer as sla-timer shows it; None before it opens."""
        url = f"{self.urls['sla-timer']}/v1/leads/{lead_id or self.lead_id}/slas"
        timers = (await self.http.get(url)).json().get("timers", [])
        first = [t for t in timers if t["sla"] == "first_response"]
        return first[0] if first else None

    async def first_response(
        self, state: str | None = None, timeout: float = 30, lead_id: str | None = None
    ) -> dict:
        """The lead's first-response SLA timer, once it exists (and is in `state`, if given)."""

        async def in_state() -> dict | None:
            timer = await self.first_response_timer(lead_id)
            return timer if timer and state in (None, timer["state"]) else None

        return await eventually(in_state, timeout=timeout)

    async def connected_call(self, lead_id: str | None = None) -> None:
        """The rep's call reaches the lead, reported once feedback knows the lead (its
        consumer may lag sla-timer's)."""
        lead_id = lead_id or self.lead_id

        async def known_to_feedback() -> bool:
            url = f"{self.urls['feedback']}/v1/leads/{lead_id}/lifecycle"
            return (await self.http.get(url)).status_code == 200

        await eventually(known_to_feedback, timeout=60)
        attempt = await self.http.post(
            f"{self.urls['feedback']}/v1/leads/{lead_id}/attempts",
            headers=SALES,
            json={"channel": "call", "rep_id": self.rep["id"], "outcome": "connected"},
        )
        assert attempt.status_code == 202, attempt.text


@asynccontextmanager
async def routed_leads(urls: dict[str, str]) -> AsyncIterator[LeadRun]:
    """Running services (`urls` by service name) given one rep and a webhook endpoint for
    `lead.routed` at a local receiver; leads are then sent with `LeadRun.ingest`."""
    async with (
        WebhookReceiver() as receiver,
        httpx.AsyncClient(timeout=10, event_hooks={"request": [present_read_key]}) as http,
    ):
        rep = await http.post(
            f"{urls['routing']}/v1/reps",
            headers=ADMIN,
            json={"name": "Rep One", "email": "rep1@vendor.example"},
        )
        assert rep.status_code == 201, rep.text
        endpoint = await http.post(
            f"{urls['notify']}/v1/webhook-endpoints",
            headers=ADMIN,
            json={"url": receiver.url, "event_types": ["lead.routed"]},
        )
        assert endpoint.status_code == 201, endpoint.text
        yield LeadRun(urls, http, receiver, rep.json(), endpoint.json()["secret"])


def counted(counter) -> float:
    """A counter's total over all its labels, in this process."""
    return sum(s.value for s in counter.collect()[0].samples if s.name.endswith("_total"))


class _Background:
    """A database and a producer over `settings`, with tasks and consumer runners started in
    the background: on exit the tasks are cancelled, the runners stopped, the rest closed."""

    def __init__(self, settings: Settings, client_id: str) -> None:
        from leadflow.db import Database
        from leadflow.kafka import make_producer
        from leadflow.loops import Stop

        self.settings = settings
        self.db = Database(settings.database_url)
        self.producer = make_producer(settings, client_id)
        self.tasks: list[asyncio.Task] = []
        self.stop = Stop()  # what the relays started here stop on

    def started_runners(self) -> list:
        return []

    async def __aenter__(self):
        await self.producer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        # As a service stops: loops finish their unit of work and return. A task cancelled in
        # the middle of a database transaction may have its cancellation turned into a database
        # error, which a consume loop retries as transient: it would never end.
        self.stop.set()
        for runner in self.started_runners():
            runner.stop_signal.set()
        if self.tasks:
            _, running = await asyncio.wait(self.tasks, timeout=15)
            for task in running:
                task.cancel()
            if running:
                _, still = await asyncio.wait(running, timeout=15)
                assert not still, f"background tasks that would not stop: {still}"
        for runner in self.started_runners():
            await runner.stop()
        await self.producer.stop()
        await self.db.dispose()


class MessagingHarness(_Background):
    """The kernel's messaging over one service's outbox and inbox tables, against the real
    database and broker: a producer, outbox relays and consumer runners, all stopped on exit."""

    def __init__(self, settings: Settings, outbox, inbox) -> None:
        super().__init__(settings, "test")
        self.outbox_table = outbox
        self.inbox_table = inbox
        self.runners: list = []

    def started_runners(self) -> list:
        return self.runners

    def topic(self, name: str) -> str:
        return self.settings.topic_prefix + name

    async def send(self, topic: str, values: list[bytes], key: bytes = b"one-lead") -> None:
        """Publish raw values in order, all on one key (one partition), so that a single poll
        can return them as one batch."""
        futures = [await self.producer.send(self.topic(topic), value, key=key) for value in values]
        await asyncio.gather(*futures)

    def run(self, work) -> None:
        """Run `work()` in the background until the harness exits."""
        self.tasks.append(asyncio.create_task(work()))

    def relay(
        self, service: str = "test", producer=None, start: bool = True, recover: bool = False
    ):
        """An outbox relay woken by each commit that emits, running in the background unless
        `start` is False (then `run(relay.run)` starts it)."""
        from leadflow.outbox import OUTBOX_TAG, OutboxRelay

        relay = OutboxRelay(
            self.db,
            self.outbox_table,
            producer or self.producer,
            bootstrap=self.settings.kafka_bootstrap,
            service=service,
            topic_prefix=self.settings.topic_prefix,
            recover_lost_logs=recover,
            stop=self.stop,
        )
        self.db.on_commit(OUTBOX_TAG, relay.wake)
        if start:
            self.run(relay.run)
        return relay

    async def consume(
        self,
        takes: tuple,
        apply,
        name: str = "probe",
        max_attempts: int = 3,
        recover: bool = False,
    ):
        """A consumer runner of the payload models `takes` (on their topics) applying each batch
        with `apply(session, received)`, in the background, with short retry backoffs."""
        from leadflow.consumer import ConsumerRunner, Subscription

        runner = ConsumerRunner(
            Subscription(name, takes, apply),
            self.db,
            self.inbox_table,
            self.producer,
            service="test",
            bootstrap=self.settings.kafka_bootstrap,
            topic_prefix=self.settings.topic_prefix,
            max_attempts=max_attempts,
            base_backoff=0.01,
            session_timeout_ms=self.settings.consumer_session_timeout_ms,
            recover_lost_logs=recover,
        )
        await runner.start()
        self.runners.append(runner)
        self.tasks.append(asyncio.create_task(runner.run()))
        return runner


def each(handler):
    """An `apply` that hands every received event to `handler(event, session)` in turn: kernel
    tests observe the consume loop one event at a time."""

    async def apply(session, received: list) -> None:
        for item in received:
            await handler(item.event, session)

    return apply


def interleave(runs: list[list]) -> list:
    """Step i of every run before step i + 1 of any: each poll batch mixes many leads."""
    return [run[i] for i in range(max(map(len, runs))) for run in runs if i < len(run)]


class BatchRun(_Background):
    """A service's subscriptions, each in a consumer runner of its own over `settings` (own
    database, own topics), reading polls of `batch_size` records and started when first
    consumed from; `passes` holds how many events each `apply` got. Tests
    run the same events at two batch sizes and compare what the service wrote."""

    def __init__(
        self, settings: Settings, service: str, subscriptions, inbox, batch_size: int
    ) -> None:
        super().__init__(settings, f"test-{service}-batches")
        self.service = service
        self.inbox = inbox
        self.batch_size = batch_size
        self.subscriptions = {s.name: s for s in subscriptions}
        self.default = next(iter(self.subscriptions))
        self.passes: list[int] = []
        self.runners: dict[str, Any] = {}

    def started_runners(self) -> list:
        return list(self.runners.values())

    @property
    def runner(self):
        """The runner of the default subscription."""
        return self.runners[self.default]

    def subscription(self, name: str | None = None, topic: str | None = None):
        if name is None and topic is not None:
            return next(s for s in self.subscriptions.values() if topic in s.topics)
        return self.subscriptions[name or self.default]

    def topic_for(self, subscription) -> str:
        """Where events for `subscription` are published when no topic is named: its first."""
        return subscription.topics[0]

    async def publish(self, values: list[bytes], topic: str | None = None) -> None:
        """Publish raw values in order on one key (one partition), so polls return them in
        order; to `topic`, or the default subscription's topic (`topic_for`)."""
        name = self.settings.topic_prefix + (topic or self.topic_for(self.subscription()))
        futures = [await self.producer.send(name, value, key=b"one-key") for value in values]
        await asyncio.gather(*futures)

    async def start(self, name: str):
        """The subscription's runner, started with each `apply` counted (once)."""
        import dataclasses

        from leadflow.consumer import ConsumerRunner

        if name not in self.runners:
            subscription = self.subscriptions[name]
            apply = subscription.apply

            async def counted(session, received: list) -> None:
                self.passes.append(len(received))
                await apply(session, received)

            runner = ConsumerRunner(
                dataclasses.replace(subscription, apply=counted if apply else None),
                self.db,
                self.inbox,
                self.producer,
                service=self.service,
                bootstrap=self.settings.kafka_bootstrap,
                topic_prefix=self.settings.topic_prefix,
                batch_size=self.batch_size,
                max_attempts=2,
                base_backoff=0.01,
                session_timeout_ms=self.settings.consumer_session_timeout_ms,
            )
            await runner.start()
            self.runners[name] = runner
            self.tasks.append(asyncio.create_task(runner.run()))
        return self.runners[name]

    async def consume(
        self,
        values: list[bytes],
        handled: int,
        topic: str | None = None,
        *,
        subscription: str | None = None,
    ) -> None:
        """Publish to `topic` (or the subscription's, `topic_for`), then run the subscription
        reading it until the inbox holds `handled` events in all."""
        sub = self.subscription(subscription, topic)
        await self.publish(values, topic or self.topic_for(sub))
        await self.start(sub.name)
        await eventually(lambda: self.inbox_count(handled), timeout=120)

    async def inbox_count(self, at_least: int) -> bool:
        import sqlalchemy as sa

        async with self.db.unit_of_work() as session:
            count = await session.scalar(sa.select(sa.func.count()).select_from(self.inbox))
        return count >= at_least
