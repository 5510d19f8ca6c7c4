"""SLA timer benchmark: many open timers in sla_timer.timers come due at one instant; the sla-timer
service (a real process, its firing worker as in production) fires them. Compared in the same
run with a bare SKIP LOCKED claim-and-update loop over a copy of the table in the same PostgreSQL,
and with two schedulers one could use instead, on the same PostgreSQL with the same count of
jobs due at one instant: APScheduler 3 with its SQLAlchemy job store (psycopg 3, a thread pool
of 10) and procrastinate jobs deferred with `schedule_at` (one async worker, concurrency 10)."""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import sqlalchemy as sa
from common import Services, env_int, percentile, pg_dsn, progress

POLL = 0.25  # seconds between counts of fired timers

# Each timer's ladder: a warning due at its instant `d`, its breach an hour later, so every timer
# fires exactly one level (one sla.warning event) during the benchmark. Timer g of a set is due
# at `first + g * step` seconds: step 0 puts a whole set at one instant.
INSERT = """
INSERT INTO {table} (id, lead_id, sla, party, channel, team, clock, limit_seconds, started_at,
                     due_at, state, level, ladder, next_fire_at, version, policy_version)
SELECT gen_random_uuid(), gen_random_uuid(), 'first_response', 'sales', 'inbound', 'fallback',
       'wall', 3600, d - interval '45 minutes', d + interval '15 minutes', 'open', 0,
       jsonb_build_array(
           jsonb_build_object('level', 'warning', 'at', to_jsonb(d)),
           jsonb_build_object('level', 'breached', 'at', to_jsonb(d + interval '1 hour'))),
       d, 1, 'bench'
FROM (SELECT $1::timestamptz + (g * $2::float8) * interval '1 second' AS d
      FROM generate_series(0, $3::int - 1) AS g) AS due
"""

# Each fired timer's lag: when its firing transaction began (the sla.warning row's created_at in
# the outbox, now() of that transaction) after the instant its warning was due.
LAGS = """
SELECT count(*),
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY extract(epoch FROM
           o.created_at - (t.ladder -> 0 ->> 'at')::timestamptz))
FROM sla_timer.outbox o JOIN sla_timer.timers t ON o.key = t.lead_id::text
WHERE t.started_at >= $1::timestamptz - interval '45 minutes'
  AND t.started_at <= $2::timestamptz - interval '45 minutes'
"""

BARE_CLAIM = """
WITH due AS (
    SELECT id FROM bench_timers WHERE next_fire_at <= now()
    ORDER BY next_fire_at LIMIT 500 FOR UPDATE SKIP LOCKED)
UPDATE bench_timers t SET level = 1, version = t.version + 1,
       next_fire_at = (t.ladder -> 1 ->> 'at')::timestamptz
FROM due WHERE t.id = due.id
"""


async def insert_due(
    conn: asyncpg.Connection, table: str, count: int, due: datetime, step: float = 0.0
) -> None:
    """`count` open timers, the first due at `due`, the next ones `step` seconds apart."""
    if count > 0:
        await conn.execute(INSERT.format(table=table), due, step, count)


async def exact_lags(conn: asyncpg.Connection, first: datetime, last: datetime) -> dict:
    """Fire lag of every timer due between `first` and `last`, from sla-timer's outbox."""
    fired, (p50, p99) = await conn.fetchrow(LAGS, first, last)
    return {"fired_exact": fired, "lag_p50_s": p50, "lag_p99_s": p99}


async def wait_service_fired(conn: asyncpg.Connection, count: int, due: datetime) -> list:
    """Poll the count of fired timers until all `count` fired (or the timeout): the curve of
    (seconds after `due`, fired so far)."""
    curve: list[tuple[float, int]] = []
    deadline = time.time() + env_int("BENCH_TIMER_TIMEOUT", 600)
    last_report = time.time()
    while time.time() < deadline:
        n = await conn.fetchval("SELECT count(*) FROM sla_timer.timers WHERE level >= 1")
        now = time.time()
        curve.append((now - due.timestamp(), n))
        if now - last_report > 10:
            last_report = now
            progress(f"  fired {n}/{count}")
        if n >= count:
            break
        await asyncio.sleep(POLL)
    return curve


async def bare_firing(conn: asyncpg.Connection, count: int) -> dict:
    await conn.execute("CREATE TABLE bench_timers (LIKE sla_timer.timers INCLUDING ALL)")
    await insert_due(conn, "bench_timers", count, datetime.now(UTC) - timedelta(seconds=1))
    start = time.monotonic()
    fired = 0
    while True:
        status = await conn.execute(BARE_CLAIM)
        n = int(status.split()[-1])
        if n == 0:
            break
        fired += n
    seconds = time.monotonic() - start
    await conn.execute("DROP TABLE bench_timers")
    return {"fired": fired, "seconds": seconds, "fires_per_s": fired / seconds}


def crossing(curve: list[tuple[float, int]], count: int) -> float | None:
    """The first time at which at least `count` timers had fired."""
    return next((t for t, n in curve if n >= count), None)


async def run_timers(settings, logdir: Path) -> dict:
    count = env_int("BENCH_TIMERS", 100_000)
    lead = env_int("BENCH_TIMER_LEAD_SECONDS", 10)
    conn = await asyncpg.connect(pg_dsn(settings.database_url))
    try:
        progress(f"timers bare: {count} due timers, SKIP LOCKED claim+update in batches of 500")
        bare = await bare_firing(conn, count)
        progress(
            f"  bare: {bare['fired']} fired in {bare['seconds']:.2f}s: {bare['fires_per_s']:.0f}/s"
        )

        open_total = max(env_int("BENCH_TIMERS_OPEN", count), count)
        spread = env_int("BENCH_TIMER_SPREAD_SECONDS", 20)
        progress("timers: starting sla-timer as a process")
        services = await Services.start(["sla-timer"], settings, logdir)
        try:
            if open_total > count:
                progress(f"timers: {open_total - count} open timers due in 30 days (not firing)")
                await insert_due(
                    conn, "sla_timer.timers", open_total - count, datetime.now(UTC) + timedelta(30)
                )
            due = datetime.now(UTC) + timedelta(seconds=lead)
            progress(
                f"timers: inserting {count} open timers, all due at one instant ({lead}s ahead)"
            )
            await insert_due(conn, "sla_timer.timers", count, due)
            inserted_at = datetime.now(UTC)
            if inserted_at > due:
                progress("  warning: the insert ended after the due instant; lag includes it")
            curve = await wait_service_fired(conn, count, due)
            burst_exact = await exact_lags(conn, due, due)
            spread_result = None
            if spread > 0:
                begin = datetime.now(UTC) + timedelta(seconds=lead)
                step = spread / count
                progress(f"timers: {count} more due one by one over {spread}s ({lead}s ahead)")
                await insert_due(conn, "sla_timer.timers", count, begin, step)
                end = begin + timedelta(seconds=step * (count - 1))
                spread_curve = await wait_service_fired(conn, 2 * count, begin)
                spread_result = {
                    "timers": count,
                    "seconds": spread,
                    "fired": spread_curve[-1][1] - count if spread_curve else 0,
                    "offered_per_s": count / spread,
                    **await exact_lags(conn, begin, end),
                }
                progress(
                    f"  spread: {spread_result['fired_exact']} fired; lag p50 "
                    f"{spread_result['lag_p50_s']}s p99 {spread_result['lag_p99_s']}s"
                )
            outbox = await conn.fetchval("SELECT count(*) FROM sla_timer.outbox")
            peak = services.peak_rss()["sla-timer"]
        finally:
            await services.stop()
    finally:
        await conn.close()
    fired = curve[-1][1] if curve else 0
    first = crossing(curve, 1)
    done = crossing(curve, count)
    service = {
        "timers": count,
        "open": open_total,
        "fired": fired,
        "events_in_outbox": outbox,
        "first_fire_s": first,
        "all_fired_s": done,
        "fires_per_s": fired / (done - first)
        if done and first is not None and done > first
        else None,
        "lag_p50_s": burst_exact["lag_p50_s"],
        "lag_p99_s": burst_exact["lag_p99_s"],
        "fired_exact": burst_exact["fired_exact"],
        "peak_rss_mib": peak,
    }
    progress(
        f"  sla-timer: {fired}/{count} fired; {service['fires_per_s'] or 0:.0f} fires/s; "
        f"lag p50 {service['lag_p50_s']}s p99 {service['lag_p99_s']}s"
    )
    alternatives = {}
    if env_int("BENCH_TIMER_ALTERNATIVES", 1):
        alternatives["apscheduler"] = await apscheduler_firing(settings.database_url, count, lead)
        alternatives["procrastinate"] = await procrastinate_firing(
            settings.database_url, count, lead
        )
    return {"bare": bare, "service": service, "spread": spread_result, **alternatives}


# The alternatives: each job only notes the instant it ran, so the figures are the scheduler's.
FIRED: list[float] = []
_FIRED_LOCK = threading.Lock()


def aps_fire() -> None:
    with _FIRED_LOCK:
        FIRED.append(time.time())


def summarise(count: int, due: datetime, inserted_s: float, late_insert: bool) -> dict:
    """Fires/s between the first and the last fire, and lags after the due instant."""
    fired = sorted(t - due.timestamp() for t in FIRED)
    first = fired[0] if fired else None
    done = fired[-1] if len(fired) >= count else None
    last = fired[-1] if fired else None
    return {
        "timers": count,
        "fired": len(fired),
        "insert_s": inserted_s,
        "insert_ended_after_due": late_insert,
        "first_fire_s": first,
        "all_fired_s": done,
        # over what fired, also when the timeout came first
        "fires_per_s": len(fired) / (last - first)
        if last and first is not None and last > first
        else None,
        "lag_p50_s": percentile(fired, 50) if fired else None,
        "lag_p99_s": percentile(fired, 99) if len(fired) >= count else None,
    }


async def wait_fired(count: int, what: str) -> None:
    deadline = time.time() + env_int("BENCH_TIMER_TIMEOUT", 600)
    last_report = time.time()
    while len(FIRED) < count and time.time() < deadline:
        if time.time() - last_report > 10:
            last_report = time.time()
            progress(f"  {what}: fired {len(FIRED)}/{count}")
        await asyncio.sleep(POLL)


async def apscheduler_firing(database_url: str, count: int, lead: int) -> dict:
    """APScheduler 3, BackgroundScheduler + SQLAlchemyJobStore on the same PostgreSQL (sync psycopg
    driver), one date-triggered job per timer. The jobs are written in bulk in the job store's own
    format (its add_job writes one row per transaction); firing is the library's own loop."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.job import Job
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.util import datetime_to_utc_timestamp

    url = database_url.replace("postgresql+asyncpg://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url, pool_size=12)
    store = SQLAlchemyJobStore(engine=engine, tablename="apscheduler_jobs")
    scheduler = BackgroundScheduler(
        jobstores={"default": store},
        executors={"default": ThreadPoolExecutor(10)},
        job_defaults={"misfire_grace_time": None, "coalesce": False, "max_instances": 1},
        timezone=UTC,
    )
    FIRED.clear()
    # Inserting takes a while; the due instant leaves room for it (about 20k rows/s).
    due = datetime.now(UTC) + timedelta(seconds=lead + count / 20_000)
    progress(f"timers apscheduler: writing {count} jobs, all due at one instant")

    def write_jobs() -> float:
        start = time.monotonic()
        store.jobs_t.create(engine, checkfirst=True)
        trigger = DateTrigger(run_date=due, timezone=UTC)
        rows = []
        with engine.begin() as conn:
            for i in range(count):
                job = Job(
                    scheduler,
                    id=f"timer-{i}",
                    func=aps_fire,
                    trigger=trigger,
                    executor="default",
                    args=(),
                    kwargs={},
                    name="fire",
                    misfire_grace_time=None,
                    coalesce=False,
                    max_instances=1,
                    next_run_time=due,
                )
                rows.append(
                    {
                        "id": job.id,
                        "next_run_time": datetime_to_utc_timestamp(due),
                        "job_state": pickle.dumps(job.__getstate__(), pickle.HIGHEST_PROTOCOL),
                    }
                )
                if len(rows) == 5000:
                    conn.execute(store.jobs_t.insert(), rows)
                    rows = []
            if rows:
                conn.execute(store.jobs_t.insert(), rows)
        return time.monotonic() - start

    try:
        inserted_s = await asyncio.to_thread(write_jobs)
        late = datetime.now(UTC) > due
        await asyncio.to_thread(scheduler.start)
        await wait_fired(count, "apscheduler")
    finally:
        await asyncio.to_thread(scheduler.shutdown, False)
        await asyncio.to_thread(engine.dispose)
    result = summarise(count, due, inserted_s, late)
    progress(
        f"  apscheduler: {result['fired']}/{count} fired; {result['fires_per_s'] or 0:.0f} "
        f"fires/s; lag p50 {result['lag_p50_s']}s p99 {result['lag_p99_s']}s"
    )
    return result


async def procrastinate_firing(database_url: str, count: int, lead: int) -> dict:
    """procrastinate: one job per timer deferred with `schedule_at` (batch_defer_async), one worker
    in this process with concurrency 10, LISTEN/NOTIFY on and a poll every 0.25 s (a scheduled job
    becoming due sends no notification), finished jobs deleted."""
    import procrastinate

    dsn = pg_dsn(database_url)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))

    @app.task(name="fire", queue="timers")
    async def fire() -> None:
        FIRED.append(time.time())

    FIRED.clear()
    due = datetime.now(UTC) + timedelta(seconds=lead + count / 10_000)
    progress(f"timers procrastinate: deferring {count} jobs with schedule_at, one instant")
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        start = time.monotonic()
        deferrer = fire.configure(schedule_at=due)
        for offset in range(0, count, 5000):
            await deferrer.batch_defer_async(*({} for _ in range(min(5000, count - offset))))
        inserted_s = time.monotonic() - start
        late = datetime.now(UTC) > due
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=["timers"],
                concurrency=10,
                wait=True,
                fetch_job_polling_interval=0.25,
                delete_jobs="always",
                install_signal_handlers=False,
            )
        )
        try:
            await wait_fired(count, "procrastinate")
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
    result = summarise(count, due, inserted_s, late)
    progress(
        f"  procrastinate: {result['fired']}/{count} fired; {result['fires_per_s'] or 0:.0f} "
        f"fires/s; lag p50 {result['lag_p50_s']}s p99 {result['lag_p99_s']}s"
    )
    return result
