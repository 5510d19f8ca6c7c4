"""Pipeline benchmark: leads through the five services, from POST /v1/leads:batch to the signed
webhook at a local receiver; and the limits of the same machine in the same run: a bare aiokafka
consume→produce loop over the same broker and a bare batched INSERT into the same PostgreSQL."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from common import (
    Services,
    cpu_used,
    env_int,
    env_list,
    percentile,
    pg_dsn,
    progress,
)
from leadflow.kafka import make_producer
from leadflow.webhooks import verify
from leadflow_tools.receiver import WebhookReceiver
from leadflow_tools.registry import SERVICE_ORDER
from support.harness import ADMIN, SOURCE, sample_lead

DELIVERY_TIMEOUT = 300.0  # seconds to wait for the last webhook of a phase


class TimedReceiver(WebhookReceiver):
    """A local webhook receiver that notes when each lead's first `lead.routed` arrived."""

    def __init__(self) -> None:
        super().__init__(status=204)
        self.arrivals: dict[str, float] = {}
        self.order: list[str] = []  # lead ids in the order their first webhook arrived
        self.sample: tuple[dict[str, str], bytes] | None = None
        self.duplicates = 0

    def record(self, headers: dict[str, str], body: bytes) -> None:
        at = time.monotonic()
        lead_id = orjson.loads(body)["data"]["lead"]["lead_id"]
        if lead_id in self.arrivals:
            self.duplicates += 1
        else:
            self.arrivals[lead_id] = at
            self.order.append(lead_id)
        if self.sample is None:
            self.sample = (headers, body)

    async def wait_for(self, lead_ids: list[str], within: float) -> int:
        """Wait until every lead's webhook arrived, with a progress line every 10 s; returns
        how many are still missing. Each look takes only the arrivals since the last one: the
        load generator's own CPU counts in the run's CPU per lead."""
        deadline = time.monotonic() + within
        waiting = {lead_id for lead_id in lead_ids if lead_id not in self.arrivals}
        seen = len(self.order)
        last_report = time.monotonic()
        while True:
            waiting.difference_update(self.order[seen:])
            seen = len(self.order)
            now = time.monotonic()
            if not waiting or now >= deadline:
                return len(waiting)
            if now - last_report >= 10:
                last_report = now
                progress(f"  webhooks received {len(lead_ids) - len(waiting)}/{len(lead_ids)}")
            await asyncio.sleep(0.05)


async def post_batch(http: httpx.AsyncClient, ingest: str, leads: list[dict]) -> list[str]:
    response = await http.post(f"{ingest}/v1/leads:batch", headers=SOURCE, json=leads)
    response.raise_for_status()
    results = response.json()["results"]
    refused = [r for r in results if r["status"] != 202]
    if refused:
        raise RuntimeError(f"ingest refused {len(refused)} leads, e.g. {refused[0]}")
    return [r["lead_id"] for r in results]


class LeadNumbers:
    """Hands out lead numbers so that every lead of the run is a new one."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, n: int) -> list[dict]:
        start, self.next = self.next, self.next + n
        return [sample_lead(i) for i in range(start, start + n)]


async def saturate(
    http: httpx.AsyncClient,
    ingest: str,
    receiver: TimedReceiver,
    numbers: LeadNumbers,
    processes: dict[str, int],
) -> dict:
    """N leads offered as fast as ingest takes them (batches of BENCH_BATCH, two in flight);
    with the CPU time each process spent on them."""
    total = env_int("BENCH_LEADS", 5_000)
    batch = env_int("BENCH_BATCH", 500)
    in_flight = env_int("BENCH_BATCH_CONCURRENCY", 2)
    batches = [numbers.take(min(batch, total - i)) for i in range(0, total, batch)]
    queue: asyncio.Queue = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)
    sent: dict[str, float] = {}

    async def worker() -> None:
        while not queue.empty():
            leads = queue.get_nowait()
            at = time.monotonic()
            for lead_id in await post_batch(http, ingest, leads):
                sent[lead_id] = at

    progress(f"pipeline saturation: {total} leads in batches of {batch}, {in_flight} in flight")
    cpu_before = cpu_used(processes, "load generator + receiver")
    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    intake_done = time.monotonic()
    progress(
        f"  ingest accepted {len(sent)} leads in {intake_done - start:.1f}s; waiting for webhooks"
    )
    missing = await receiver.wait_for(list(sent), DELIVERY_TIMEOUT)
    cpu_after = cpu_used(processes, "load generator + receiver")
    delivered = [receiver.arrivals[i] for i in sent if i in receiver.arrivals]
    end = max(delivered) if delivered else time.monotonic()
    latencies = [receiver.arrivals[i] - t for i, t in sent.items() if i in receiver.arrivals]
    result = {
        # milliseconds of CPU per delivered lead, each process (to the last webhook, plus at
        # most the 50 ms the receiver's wait polls at)
        "cpu_ms_per_lead": {
            name: (cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / max(len(delivered), 1)
            for name in cpu_after
        },
        "leads": total,
        "batch": batch,
        "delivered": len(delivered),
        "missing": missing,
        "intake_per_s": len(sent) / (intake_done - start),
        "leads_per_s": len(delivered) / (end - start),
        "seconds": end - start,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }
    progress(
        f"  {len(delivered)}/{total} delivered in {end - start:.1f}s: "
        f"{result['leads_per_s']:.0f} leads/s end to end"
    )
    return result


async def offered_load(
    http: httpx.AsyncClient,
    ingest: str,
    receiver: TimedReceiver,
    numbers: LeadNumbers,
    rate: float,
) -> dict:
    """Leads offered at a fixed rate: a batch of BENCH_LATENCY_BATCH leads (fewer at low rates,
    at least four batches a second) every batch/rate seconds for BENCH_LATENCY_SECONDS;
    latency from the start of the batch's POST to the webhook."""
    seconds = env_int("BENCH_LATENCY_SECONDS", 10)
    batch = max(1, min(env_int("BENCH_LATENCY_BATCH", 50), round(rate / 4)))
    ticks = max(1, round(rate * seconds / batch))
    interval = batch / rate
    sent: dict[str, float] = {}
    late_ticks = 0
    progress(
        f"pipeline at {rate:.0f} leads/s: {ticks * batch} leads, {batch} every {interval:.2f}s"
    )

    refused: dict[str, int] = {}  # status code or exception name: leads refused with it

    async def one(leads: list[dict], at: float) -> None:
        try:
            for lead_id in await post_batch(http, ingest, leads):
                sent[lead_id] = at
        except httpx.HTTPStatusError as exc:  # overload: a refused batch is counted, not fatal
            code = str(exc.response.status_code)
            refused[code] = refused.get(code, 0) + len(leads)
        except httpx.HTTPError as exc:
            name = type(exc).__name__
            refused[name] = refused.get(name, 0) + len(leads)

    tasks = []
    start = time.monotonic()
    for k in range(ticks):
        due = start + k * interval
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -interval:
            late_ticks += 1
        tasks.append(asyncio.create_task(one(numbers.take(batch), time.monotonic())))
    await asyncio.gather(*tasks)
    offered_s = time.monotonic() - start
    missing = await receiver.wait_for(list(sent), DELIVERY_TIMEOUT)
    latencies = [receiver.arrivals[i] - t for i, t in sent.items() if i in receiver.arrivals]
    delivered = [receiver.arrivals[i] for i in sent if i in receiver.arrivals]
    end = max(delivered) if delivered else time.monotonic()
    result = {
        "rate": rate,
        "leads": len(sent),
        "offered": ticks * batch,
        "refused": refused,
        "batch": batch,
        "delivered": len(delivered),
        "missing": missing,
        "achieved_offer_per_s": len(sent) / offered_s,
        "leads_per_s": len(delivered) / (end - start),
        "late_ticks": late_ticks,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
    }
    progress(
        f"  {len(delivered)}/{len(sent)} accepted delivered (refused: {refused or 'none'}); "
        f"p50 {result['p50_ms']:.0f} ms, "
        f"p95 {result['p95_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms"
    )
    return result


STAGE_SQL = """
SELECT
  (SELECT count(*) FROM {s}.outbox) AS emitted,
  (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at))
     FROM {s}.outbox WHERE published_at IS NOT NULL) AS relay_p50_s,
  (SELECT percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at))
     FROM {s}.outbox WHERE published_at IS NOT NULL) AS relay_p99_s,
  (SELECT count(*) FROM {s}.inbox) AS consumed
"""


async def stages(settings) -> dict:
    """Per service: events written to its outbox, how long they waited there before the relay
    published them (from the emitting transaction's start), and events its consumers processed."""
    conn = await asyncpg.connect(pg_dsn(settings.database_url))
    try:
        out = {}
        for schema in ("ingest", "scoring", "routing", "sla_timer", "feedback"):
            row = await conn.fetchrow(STAGE_SQL.format(s=schema))
            out[schema] = dict(row)
            progress(
                f"  {schema}: emitted {row['emitted']}, relay wait p50 {row['relay_p50_s'] or 0:.2f}s"
                f" p99 {row['relay_p99_s'] or 0:.2f}s, consumed {row['consumed']}"
            )
        return out
    finally:
        await conn.close()


async def run_pipeline(
    settings,
    logdir: Path,
    infrastructure: dict[str, int] | None = None,
) -> dict:
    """The six services as processes, reps and a webhook endpoint registered, then the phases.
    `infrastructure`: process ids of PostgreSQL and the broker, for their CPU time."""
    progress("pipeline: starting the six services as processes")
    services = await Services.start(list(SERVICE_ORDER), settings, logdir)
    numbers = LeadNumbers()
    try:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with (
            TimedReceiver() as receiver,
            httpx.AsyncClient(timeout=120, limits=limits) as http,
        ):
            routing, ingest = services.url("routing"), services.url("ingest")
            for n in range(10):
                rep = await http.post(
                    f"{routing}/v1/reps",
                    headers=ADMIN,
                    json={
                        "name": f"Rep {n}",
                        "email": f"rep{n}@vendor.example",
                        "capacity": 10_000,
                    },
                )
                rep.raise_for_status()
            endpoint = await http.post(
                f"{services.url('notify')}/v1/webhook-endpoints",
                headers=ADMIN,
                json={"url": receiver.url, "event_types": ["lead.routed"]},
            )
            endpoint.raise_for_status()
            secret = endpoint.json()["secret"]

            warm = env_int("BENCH_WARMUP", 200)
            progress(f"pipeline warm-up: {warm} leads")
            ids = await post_batch(http, ingest, numbers.take(warm))
            if await receiver.wait_for(ids, 120):
                raise RuntimeError("the warm-up leads did not all reach the webhook receiver")
            headers, body = receiver.sample
            verify(secret, headers, body)  # the deliveries are signed: raises otherwise

            processes = {name: p.proc.pid for name, p in services.procs.items() if p.proc}
            saturation = await saturate(
                http, ingest, receiver, numbers, processes | (infrastructure or {})
            )
            loads = []
            for rate in env_list("BENCH_RATES", "20,200"):
                loads.append(await offered_load(http, ingest, receiver, numbers, rate))
            duplicates = receiver.duplicates
        return {
            "stages": await stages(settings),
            "saturation": saturation,
            "loads": loads,
            "duplicates": duplicates,
            "peak_rss_mib": services.peak_rss(),
        }
    finally:
        await services.stop()


async def bare_insert(settings) -> dict:
    """The same number of leads as plain rows, batched INSERTs (executemany) of BENCH_BATCH."""
    total = env_int("BENCH_LEADS", 5_000)
    batch = env_int("BENCH_BATCH", 500)
    progress(f"bare PostgreSQL: {total} rows, batched INSERT of {batch}")
    conn = await asyncpg.connect(pg_dsn(settings.database_url))
    try:
        await conn.execute(
            "CREATE TABLE bench_leads (id uuid PRIMARY KEY, email text UNIQUE NOT NULL,"
            " payload jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = [
            (uuid.uuid4(), f"bare{n}@prospect{n}.example", orjson.dumps(sample_lead(n)).decode())
            for n in range(total)
        ]
        start = time.monotonic()
        for i in range(0, total, batch):
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO bench_leads (id, email, payload) VALUES ($1, $2, $3::jsonb)",
                    rows[i : i + batch],
                )
        seconds = time.monotonic() - start
        await conn.execute("DROP TABLE bench_leads")
    finally:
        await conn.close()
    result = {"rows": total, "seconds": seconds, "rows_per_s": total / seconds}
    progress(f"  {total} rows in {seconds:.2f}s: {result['rows_per_s']:.0f} rows/s")
    return result


async def bare_kafka(settings) -> dict:
    """A consume→produce loop over the same broker: lead-sized messages from one topic to another,
    producer as the services configure it, offsets committed after each polled batch."""
    total = env_int("BENCH_LEADS", 5_000)
    src, dst = f"{settings.topic_prefix}bench.src", f"{settings.topic_prefix}bench.dst"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(t, num_partitions=settings.topic_partitions, replication_factor=1)
                for t in (src, dst)
            ]
        )
    finally:
        await admin.close()
    progress(f"bare aiokafka: producing {total} lead-sized messages, then consume→produce")
    producer = make_producer(settings, "bench-bare")
    await producer.start()
    consumer = AIOKafkaConsumer(
        src,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=f"{settings.topic_prefix}bench-bare",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    try:
        for n in range(total):
            value = orjson.dumps({"type": "lead.created", "data": sample_lead(n)})
            await producer.send(src, value, key=str(uuid.uuid4()).encode())
        await producer.flush()
        await consumer.start()
        moved = 0
        start = None  # the clock starts at the first polled record, after the group join
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while moved < total and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            if start is None and batches:
                start = time.monotonic()
            for records in batches.values():
                for record in records:
                    await producer.send(dst, record.value, key=record.key)
                    moved += 1
            await producer.flush()
            await consumer.commit()
        seconds = time.monotonic() - (start or time.monotonic())
    finally:
        await consumer.stop()
        await producer.stop()
    result = {"messages": moved, "seconds": seconds, "messages_per_s": moved / seconds}
    progress(f"  {moved} messages in {seconds:.2f}s: {result['messages_per_s']:.0f} msgs/s")
    return result
