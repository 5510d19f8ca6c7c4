"""SLA timer benchmark: many open timers in sla_timer.timers come due at one instant; the sla-timer
service (a real process, its firing worker as in production) fires them. Compared in the same
run with a bare SKIP LOCKED claim-and-update loop over a copy of the table in the same PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from common import Services, env_int, pg_dsn, progress

POLL = 0.25  # seconds between counts of fired timers

# Each timer's ladder: a warning due at the common instant, its breach an hour later, so every
# timer fires exactly one level (one sla.warning event) during the benchmark.
INSERT = """
INSERT INTO {table} (id, lead_id, sla, party, channel, team, clock, limit_seconds, started_at,
                     due_at, state, level, ladder, next_fire_at, version, policy_version)
SELECT gen_random_uuid(), gen_random_uuid(), 'first_response', 'sales', 'inbound', 'fallback',
       'wall', 3600, $1::timestamptz - interval '45 minutes', $1::timestamptz + interval '15 minutes',
       'open', 0,
       jsonb_build_array(
           jsonb_build_object('level', 'warning', 'at', $2::text),
           jsonb_build_object('level', 'breached', 'at', $3::text)),
       $1::timestamptz, 1, 'bench'
FROM generate_series(1, $4)
"""

BARE_CLAIM = """
WITH due AS (
    SELECT id FROM bench_timers WHERE next_fire_at <= now()
    ORDER BY next_fire_at LIMIT 500 FOR UPDATE SKIP LOCKED)
UPDATE bench_timers t SET level = 1, version = t.version + 1,
       next_fire_at = (t.ladder -> 1 ->> 'at')::timestamptz
FROM due WHERE t.id = due.id
"""


async def insert_due(conn: asyncpg.Connection, table: str, count: int, due: datetime) -> None:
    await conn.execute(
        INSERT.format(table=table),
        due,
        due.isoformat(),
        (due + timedelta(hours=1)).isoformat(),
        count,
    )


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


async def run_timers(settings, logdir: Path) -> dict:  # noqa: ANN001
    count = env_int("BENCH_TIMERS", 100_000)
    lead = env_int("BENCH_TIMER_LEAD_SECONDS", 10)
    conn = await asyncpg.connect(pg_dsn(settings.database_url))
    try:
        progress(f"timers bare: {count} due timers, SKIP LOCKED claim+update in batches of 500")
        bare = await bare_firing(conn, count)
        progress(
            f"  bare: {bare['fired']} fired in {bare['seconds']:.2f}s: {bare['fires_per_s']:.0f}/s"
        )

        progress("timers: starting sla-timer as a process")
        services = await Services.start(["sla-timer"], settings, logdir)
        try:
            due = datetime.now(UTC) + timedelta(seconds=lead)
            progress(
                f"timers: inserting {count} open timers, all due at one instant ({lead}s ahead)"
            )
            await insert_due(conn, "sla_timer.timers", count, due)
            inserted_at = datetime.now(UTC)
            if inserted_at > due:
                progress("  warning: the insert ended after the due instant; lag includes it")
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
        "fired": fired,
        "events_in_outbox": outbox,
        "first_fire_s": first,
        "all_fired_s": done,
        "fires_per_s": fired / (done - first)
        if done and first is not None and done > first
        else None,
        "lag_p50_s": crossing(curve, max(1, count // 2)),
        "lag_p99_s": crossing(curve, max(1, int(count * 0.99))),
        "peak_rss_mib": peak,
    }
    progress(
        f"  sla-timer: {fired}/{count} fired; {service['fires_per_s'] or 0:.0f} fires/s; "
        f"lag p50 {service['lag_p50_s']}s p99 {service['lag_p99_s']}s"
    )
    return {"bare": bare, "service": service}
