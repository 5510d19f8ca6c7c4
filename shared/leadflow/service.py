"""The app factory: wires one service (settings, clock, database, outbox, consumers, HTTP) the same way."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadflow import asyncapi, audit, keys, metrics, policies
from leadflow.auth import find_key, require_scope
from leadflow.clock import Clock, clock_from_settings
from leadflow.consumer import ConsumerRunner, Subscription
from leadflow.db import Database, kernel_tables
from leadflow.diagnostics import log_task_stacks_on_signal
from leadflow.errors import (
    document_problems,
    install_problem_handlers,
    problem_response,
    storable_parameters,
)
from leadflow.kafka import TopicLayout, make_producer, start_with_retry
from leadflow.keys import KeyRing
from leadflow.logs import configure_logging
from leadflow.loops import Stop
from leadflow.outbox import OUTBOX_TAG, Outbox, OutboxRelay
from leadflow.policies import CurrentPolicy
from leadflow.retry import exponential_backoff
from leadflow.settings import ApiKeySpec, Settings, get_settings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything a service's endpoints, handlers and workers depend on; built once per process."""

    spec: ServiceSpec
    settings: Settings
    clock: Clock
    db: Database
    outbox: Outbox
    producer: AIOKafkaProducer
    relay: OutboxRelay
    consumers: list[ConsumerRunner] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)
    stop: Stop = field(default_factory=Stop)  # set at shutdown; workers loop `while not rt.stop`
    key_ring: KeyRing | None = None  # keys issued through the API (leadflow.keys)
    current_policy: CurrentPolicy | None = None  # the published policy (leadflow.policies)

    def find_key(self, presented: str) -> ApiKeySpec | None:
        """The key presented, among the bootstrap keys of the settings and those issued through
        the API that are valid now; a use of an issued key is remembered."""
        now = self.clock.now()
        issued = self.key_ring.specs(now) if self.key_ring is not None else []
        spec = find_key([*self.settings.api_keys, *issued], presented)
        if spec is not None and self.key_ring is not None and spec in issued:
            self.key_ring.used(spec.sha256, now)
        return spec

    @property
    def policy(self):
        if "policy" not in self.state:
            from leadflow.contracts.policy import load_policy

            self.state["policy"] = load_policy(self.settings.policy_file)
        return self.state["policy"]


Worker = Callable[[Runtime], Awaitable[None]]


@dataclass
class ServiceSpec:
    """What makes one service different from another; everything else is shared."""

    name: str
    package: str  # the Python package holding migrations/
    metadata: sa.MetaData
    port: int
    routers: list[APIRouter] = field(default_factory=list)
    subscriptions: Callable[[Runtime], list[Subscription]] = lambda rt: []
    workers: dict[str, Worker] = field(default_factory=dict)
    on_start: Callable[[Runtime], Awaitable[None]] | None = None
    description: str = ""
    # what a service adds to its app beyond routers (feedback: sessions and page headers)
    extend_app: Callable[[FastAPI, Settings], None] | None = None

    def consumes(self, rt: Runtime) -> list[Subscription]:
        """Every subscription the service runs: its own, then the kernel's (its copy of the API
        keys issued through the API, its current policy)."""
        return [
            *self.subscriptions(rt),
            keys.subscription(self.metadata),
            policies.subscription(self.metadata),
        ]


async def runtime(request: Request) -> Runtime:
    # async: FastAPI would run a plain function in its thread pool on every request
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(runtime)]


async def supervise(name: str, work: Callable[[], Awaitable[None]], stop: Stop) -> None:
    """Keep a background loop alive: log a crash and start it again after a pause.

    A `CancelledError` that comes while this task is not being cancelled is a crash too: a
    library future cancelled under the loop (a Kafka client tearing down a connection with a
    request in flight) ends the await that waited for it, and would otherwise end the loop
    for good without a word."""
    crashes = 0
    while True:
        try:
            await work()
            return
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or task.cancelling() or stop:
                raise
            crashes += 1
            log.error(
                "background task ended by a cancelled wait; restarting",
                extra={"task": name, "crashes": crashes},
                exc_info=True,
            )
        except Exception:
            if stop:
                return
            crashes += 1
            log.exception("background task crashed; restarting", extra={"task": name})
        await stop.pause(exponential_backoff(crashes, base=0.5))


class Observe:
    """Times every HTTP request into the request histogram (service, method, route, status).

    Plain ASGI rather than `@app.middleware("http")`: Starlette's BaseHTTPMiddleware runs the
    endpoint in a task and streams the response through memory channels, which cost more than
    the small endpoints it timed."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            metrics.http_requests.labels(
                self.service,
                scope["method"],
                getattr(route, "path", "unmatched"),
                str(status),
            ).observe(time.perf_counter() - started)


class BodyLimit:
    """Refuses bodies larger than the limit with 413 before the endpoint reads them."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        if declared is not None:
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): read up to the limit first, then hand the body on.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                chunks = []
                break
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            "Payload too large",
            f"request bodies are limited to {self.limit} bytes",
            instance=scope.get("path"),
        )
        await response(scope, receive, send)


# How often the cyclic collector runs in a service process: the young generation after 10,000
# new container objects instead of 700 (the older ones at their defaults). With the start-up
# heap frozen, at the defaults the collections still took 15 % of notify's CPU under load; a
# young generation of 50,000 cost less CPU again but held a batch's garbage longer (feedback's
# peak RSS 520 MiB at 50,000 leads, past the 512 MiB limit of its Kubernetes manifest).
SERVICE_GC_THRESHOLDS = (10_000, 10, 10)


def settle_heap(thresholds: tuple[int, int, int] = SERVICE_GC_THRESHOLDS) -> None:
    """In a service process about to serve: collect once, then move what imports and start-up
    made (modules, models, compiled statements: most of the heap, and all of it long-lived) out
    of the cyclic collector's sight (`gc.freeze`), so that its full collections scan only what
    the process made since; and collect each generation at `thresholds`."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)


def create_app(spec: ServiceSpec, settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        configure_logging(spec.name, settings.log_level)
        # A broken policy file stops the service here, before it opens anything, rather than
        # failing (and dead-lettering) every event later.
        from leadflow.contracts.policy import PolicyError, load_policy

        try:
            policy = load_policy(settings.policy_file)
        except PolicyError as exc:
            log.error("refusing to start: %s", exc)
            raise
        clock = clock_from_settings(settings)
        db = Database(settings.database_url)
        outbox_table, inbox_table = kernel_tables(spec.metadata)
        producer = make_producer(settings, client_id=spec.name)
        await start_with_retry(producer, "producer")
        stop = Stop()
        relay = OutboxRelay(
            db,
            outbox_table,
            producer,
            service=spec.name,
            topic_prefix=settings.topic_prefix,
            batch_size=settings.outbox_batch_size,
            replay_window=settings.outbox_replay_window,
            recover_lost_logs=settings.broker_reset_recovery,
            topics=TopicLayout.of(settings),
            bootstrap=settings.kafka_bootstrap,
            stop=stop,
        )
        db.on_commit(OUTBOX_TAG, relay.wake)
        rt = Runtime(
            spec,
            settings,
            clock,
            db,
            Outbox(outbox_table, source=spec.name, clock=clock),
            producer,
            relay,
            stop=stop,
        )
        rt.state["policy"] = policy
        rt.key_ring = KeyRing(db, spec.metadata)
        # The policy published last, when there is one, replaces the file's before anything
        # decides; later publications replace it while the service runs.
        rt.current_policy = CurrentPolicy(
            db, spec.metadata, policy, lambda published: rt.state.update(policy=published)
        )
        app.state.runtime = rt
        try:
            await rt.current_policy.load(stop)
            if spec.on_start is not None:
                await spec.on_start(rt)
        except BaseException:  # refusing to start: close what is already open
            await producer.stop()
            await db.dispose()
            raise
        tasks = [
            asyncio.create_task(supervise("outbox-relay", relay.run, stop), name="outbox-relay"),
            asyncio.create_task(
                supervise("api-keys", lambda: rt.key_ring.run(stop), stop), name="api-keys"
            ),
            asyncio.create_task(
                supervise("policy", lambda: rt.current_policy.run(stop), stop), name="policy"
            ),
        ]
        for sub in spec.consumes(rt):
            runner = ConsumerRunner(
                sub,
                db,
                inbox_table,
                producer,
                service=spec.name,
                bootstrap=settings.kafka_bootstrap,
                topic_prefix=settings.topic_prefix,
                batch_size=settings.consumer_batch_size,
                max_attempts=settings.consumer_max_attempts,
                fetch_wait_ms=(
                    settings.consumer_fetch_wait_ms
                    if sub.urgent
                    else settings.consumer_relaxed_fetch_wait_ms
                ),
                session_timeout_ms=settings.consumer_session_timeout_ms,
                recover_lost_logs=settings.broker_reset_recovery,
                topics=TopicLayout.of(settings),
                stop=stop,
            )
            rt.consumers.append(runner)
            name = f"consumer:{sub.name}"
            tasks.append(asyncio.create_task(supervise(name, runner.run, stop), name=name))
        for name, worker in spec.workers.items():
            tasks.append(
                asyncio.create_task(supervise(name, lambda w=worker: w(rt), stop), name=name)
            )
        log_task_stacks_on_signal(asyncio.get_running_loop())
        log.info("service started", extra={"port": settings.port or spec.port})
        try:
            yield
        finally:
            # Loops finish their unit of work and return; cancelling one inside a database
            # transaction can leave its connection hanging, so that is the last resort.
            stop.set()
            relay.wake()
            _, running = await asyncio.wait(tasks, timeout=10)
            for task in running:
                log.warning(
                    "background task still running; cancelling", extra={"task": task.get_name()}
                )
                task.cancel()
            if running:
                await asyncio.wait(running, timeout=5)
            await asyncio.gather(*(runner.stop() for runner in rt.consumers))
            await producer.stop()
            await db.dispose()
            log.info("service stopped")

    app = FastAPI(
        title=f"Leadflow {spec.name}",
        description=spec.description,
        version="0.1.0",
        lifespan=lifespan,
        dependencies=[Depends(storable_parameters)],
    )
    install_problem_handlers(app)
    document_problems(app)

    app.add_middleware(Observe, service=spec.name)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": spec.name}

    @app.get("/readyz", tags=["operations"])
    async def readyz(rt: RuntimeDep) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(rt.db.ping(), 2)
            checks["database"] = "ok"
        except Exception as exc:  # readiness reports the failure instead of raising it
            checks["database"] = f"unreachable: {type(exc).__name__}"
        # Asked now, not remembered: the cluster's metadata outlives a dead broker, and an idle
        # relay never notices one. A metadata request on the producer's connection is cheap.
        try:
            await asyncio.wait_for(rt.producer.client.fetch_all_metadata(), 2)
            checks["broker"] = "ok"
        except Exception as exc:  # as for the database
            checks["broker"] = f"unreachable: {type(exc).__name__}"
        checks["outbox relay"] = "ok" if rt.relay.healthy else "its last pass failed"
        ready = all(checks[k] == "ok" for k in ("database", "broker", "outbox relay"))
        # A member that joined its group is ready even with no partition (more replicas than
        # partitions): it idles as a consumer and still serves HTTP.
        for runner in rt.consumers:
            partitions = runner.partitions
            if runner.joined and partitions is not None:
                checks[f"consumer:{runner.sub.name}"] = f"joined, {partitions} partitions"
            else:
                checks[f"consumer:{runner.sub.name}"] = "waiting"
                ready = False
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # Beside /docs and unauthenticated like it: the service's topics and events (AsyncAPI 3.0),
    # from the subscriptions it runs, so the document cannot drift from the code.
    @app.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi_document(rt: RuntimeDep) -> JSONResponse:
        if "asyncapi" not in rt.state:
            consumes = [runner.sub for runner in rt.consumers]
            rt.state["asyncapi"] = asyncapi.document(service=spec.name, consumes=consumes)
        return JSONResponse(rt.state["asyncapi"])

    for router in spec.routers:
        app.include_router(router)
    app.include_router(audit.router(spec.metadata, require_scope("admin")))
    app.include_router(keys.router(require_scope("admin"), issuer=spec.name == keys.ISSUER))
    if spec.extend_app is not None:
        spec.extend_app(app, settings)
    return app
