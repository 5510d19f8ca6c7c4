"""`make bench`: every benchmark against one embedded PostgreSQL and broker, the results table
written into docs/benchmarks.md. Sizes come from BENCH_* environment variables (see the doc)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import machine, progress
from ingest import run_ingest
from leadflow.settings import Settings
from pipeline import bare_insert, bare_kafka, run_pipeline
from support.harness import TestStack
from timers import run_timers

PRODUCTION_SESSION_TIMEOUT = Settings.model_fields["consumer_session_timeout_ms"].default

ROOT = Path(__file__).resolve().parent.parent
SIZES = {
    "BENCH_LEADS": "5000",
    "BENCH_BATCH": "500",
    "BENCH_BATCH_CONCURRENCY": "2",
    "BENCH_RATES": "20,200",
    "BENCH_LATENCY_SECONDS": "10",
    "BENCH_LATENCY_BATCH": "50",
    "BENCH_INGEST_REQUESTS": "3000",
    "BENCH_CONCURRENCY": "32",
    "BENCH_TIMERS": "100000",
    "BENCH_TIMERS_OPEN": "100000",
    "BENCH_TIMER_SPREAD_SECONDS": "20",
    "BENCH_TIMER_LEAD_SECONDS": "10",
    "BENCH_WARMUP": "200",
}


def fmt(value, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def ratio(a, b) -> str:
    return "–" if not a or not b else f"{100 * a / b:.1f} %"


def verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "**not met**")


# claimers of the sla-timer service in the benchmark (the setting's default)
CLAIMERS = Settings.model_fields["sla_timer_claimers"].default


def busy(info: dict) -> bool:
    """Whether the 1-minute load at the start or the end was above the CPU count."""
    cpus = int(info["nproc"] or 1)
    return any(
        float(info[key].split()[0]) > cpus
        for key in ("load_at_start", "load_at_end")
        if info.get(key)
    )


def cpu_table(per_lead: dict[str, float], cpus: int) -> list[str]:
    """CPU time per lead of each process in the saturation phase, and the ceiling it sets."""
    total = sum(per_lead.values())
    return [
        "CPU time per delivered lead in the saturation phase, each process with its children",
        "(user + system, from `/proc`; PostgreSQL with its backends). The sum is what one lead",
        "costs the machine end to end, whatever else shares it, so it bounds the throughput:",
        f"{cpus} CPUs give at most {fmt(cpus * 1000 / total) if total else '–'} leads/s"
        " at this cost.",
        "",
        "| Process | CPU per lead | Share |",
        "|---|---|---|",
        *(
            f"| {name} | {fmt(ms, 2)} ms | {ratio(ms, total)} |"
            for name, ms in sorted(per_lead.items(), key=lambda item: -item[1])
        ),
        f"| **all** | **{fmt(total, 2)} ms** | 100 % |",
        "",
    ]


def render(results: dict, info: dict, started: datetime, seconds: float) -> str:
    sizes = {k: os.environ.get(k, v) for k, v in SIZES.items()}
    non_default = " ".join(f"{k}={v}" for k, v in sizes.items() if v != SIZES[k])
    command = f"{non_default} make bench".strip()
    p, i, t = results["pipeline"], results["ingest"], results["timers"]
    sat, bare_pg, bare_k = p["saturation"], results["bare_insert"], results["bare_kafka"]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`); running it again rewrites this file. Benchmarks are",
        "not tests: they assert nothing about time. Every figure is set beside a limit measured in",
        "the same run on the same machine, because absolute numbers on a shared machine mean little.",
        "",
        "## Run",
        "",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC; the run took {seconds / 60:.1f} min",
        f"- Command: `{command}` (from the repository root)",
        f"- Machine: {info['nproc']} CPUs (`nproc`), {info['cpu']}, {info['ram']} RAM, "
        f"{info['os']}, Python {info['python']}",
        f"- Load average (1, 5, 15 min) at the start: {info['load_at_start']}; at the end: "
        f"{info.get('load_at_end', '–')}"
        + (
            " (above the CPU count: other work shared the machine, so the figures are noisy"
            " and low)."
            if busy(info)
            else "."
        ),
        "- Stack: embedded PostgreSQL and the embedded Kafka-protocol broker (one of each),",
        "  every service a real process (`leadflow serve <name>`, one uvicorn process each), the",
        "  load generator and the webhook receiver in one more process: all on the same CPUs.",
        "- Sizes: " + ", ".join(f"`{k}={v}`" for k, v in sizes.items()),
        "",
        "Defaults are scaled down so that a run takes about ten minutes on two cores; the issue's",
        "full sizes are `BENCH_LEADS=50000 BENCH_RATES=200,1000 BENCH_TIMERS_OPEN=1000000 make bench`",
        "(one million open timers, 100,000 of them due at once).",
        "Every phase prints a progress line with its counts while it runs.",
        "",
        "## Against the targets",
        "",
        "| Target | Measured | Verdict |",
        "|---|---|---|",
    ]
    at_1000 = next((x for x in p["loads"] if x["rate"] == 1000), None)
    timer_rate = t["service"]["fires_per_s"]
    spread = t.get("spread")
    lines += [
        f"| Pipeline ≥ 5,000 leads/s | {fmt(sat['leads_per_s'])} leads/s end to end "
        f"({fmt(sat['leads'])} leads) | {verdict(sat['leads_per_s'] >= 5000)} |",
        "| Pipeline p99 < 250 ms at 1,000 leads/s | "
        + (
            f"{fmt(at_1000['p99_ms'])} ms | {verdict(at_1000['p99_ms'] < 250)} |"
            if at_1000
            else "not run by default (`BENCH_RATES=200,1000`) | not measured |"
        ),
        f"| SLA timers ≥ 10,000 fires/s | {fmt(timer_rate)} fires/s "
        f"({fmt(t['service']['timers'])} timers) | "
        f"{verdict(None if timer_rate is None else timer_rate >= 10000)} |",
        "| SLA timers p99 lag < 500 ms, timers coming due over time "
        f"({fmt(t['service']['open'])} open) | "
        + (
            f"{fmt(spread['lag_p99_s'], 3)} s at {fmt(spread['offered_per_s'])} due/s | "
            f"{verdict(None if spread['lag_p99_s'] is None else spread['lag_p99_s'] < 0.5)} |"
            if spread
            else "not run (`BENCH_TIMER_SPREAD_SECONDS=0`) | not measured |"
        ),
        "| SLA timers p99 lag, all due at one instant (reported; bounded by the fire rate) | "
        f"{fmt(t['service']['lag_p99_s'], 2)} s for {fmt(t['service']['timers'])} at once | "
        "– |",
        *(
            [
                f"| Timers ahead of APScheduler and procrastinate | {fmt(timer_rate)} vs "
                f"{fmt(t['apscheduler']['fires_per_s'])} and "
                f"{fmt(t['procrastinate']['fires_per_s'])} fires/s | "
                + verdict(
                    None
                    if timer_rate is None
                    else all(
                        timer_rate > (t[k]["fires_per_s"] or 0)
                        for k in ("apscheduler", "procrastinate")
                    )
                )
                + " |"
            ]
            if "apscheduler" in t
            else []
        ),
        f"| Ingest ≥ 70 % of bare | {ratio(i['ingest']['rps'], i['bare']['rps'])} "
        f"({fmt(i['ingest']['rps'])} vs {fmt(i['bare']['rps'])} req/s) | "
        f"{verdict(i['ingest']['rps'] >= 0.7 * i['bare']['rps'])} |",
        "",
        "## 1. Pipeline: POST /v1/leads:batch → signed webhook",
        "",
        "Six services as processes, ten reps, one webhook endpoint for `lead.routed` at a local",
        f"receiver; a warm-up of {sizes['BENCH_WARMUP']} leads first. Latency runs from the start"
        " of the POST that",
        "carried the lead to the first delivery of its webhook at the receiver.",
        "",
        "| Phase | Leads | Delivered | Throughput | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|---|---|",
        f"| As fast as ingest takes them (batches of {sat['batch']}, "
        f"{sizes['BENCH_BATCH_CONCURRENCY']} in flight) | {fmt(sat['leads'])} | "
        f"{fmt(sat['delivered'])} | {fmt(sat['leads_per_s'])} leads/s (intake "
        f"{fmt(sat['intake_per_s'])}/s) | {fmt(sat['p50_ms'])} ms | – | {fmt(sat['p99_ms'])} ms | – |",
    ]
    for x in p["loads"]:
        lines.append(
            f"| Offered {fmt(x['rate'])} leads/s (batches of {x['batch']}, achieved offer "
            f"{fmt(x['achieved_offer_per_s'])}/s) | {fmt(x['offered'])} offered, "
            f"{fmt(x['leads'])} accepted"
            + (f", refused {x['refused']}" if x["refused"] else "")
            + f" | {fmt(x['delivered'])} | "
            f"{fmt(x['leads_per_s'])} leads/s | {fmt(x['p50_ms'])} ms | {fmt(x['p95_ms'])} ms | "
            f"{fmt(x['p99_ms'])} ms | {fmt(x['max_ms'])} ms |"
        )
    lines += [
        "",
        "Limits of the same PostgreSQL and broker, same run:",
        "",
        "| Limit | Figure | Pipeline as a share of it |",
        "|---|---|---|",
        f"| Bare batched INSERT (asyncpg executemany, {sat['batch']} rows a transaction, one "
        f"jsonb lead per row) | {fmt(bare_pg['rows_per_s'])} rows/s | "
        f"{ratio(sat['leads_per_s'], bare_pg['rows_per_s'])} |",
        f"| Bare aiokafka consume→produce loop (lead-sized messages, services' producer "
        f"settings, commit per poll) | {fmt(bare_k['messages_per_s'])} msgs/s | "
        f"{ratio(sat['leads_per_s'], bare_k['messages_per_s'])} |",
        "",
        f"Duplicate webhook deliveries seen by the receiver: {p['duplicates']}.",
        "",
        "Where the time goes, per service over the whole pipeline run: events its outbox emitted,",
        "how long they waited for the relay (publish time minus the start of the transaction that",
        "wrote them), and events its consumers processed.",
        "",
        "| Service | Emitted | Relay wait p50 | Relay wait p99 | Consumed |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {fmt(x['emitted'])} | {fmt(x['relay_p50_s'], 2)} s | "
            f"{fmt(x['relay_p99_s'], 2)} s | {fmt(x['consumed'])} |"
            for name, x in p["stages"].items()
        ),
        "",
        *cpu_table(sat["cpu_ms_per_lead"], int(info["nproc"] or 1)),
        "## 2. Ingest: single-lead POST /v1/leads",
        "",
        f"{fmt(i['ingest']['requests'])} requests each, {i['concurrency']} concurrent senders, each",
        "an httpx `AsyncClient` with one kept-alive connection, after 300 warm-up requests; both",
        "servers one uvicorn process with uvloop and httptools. The bare endpoint",
        "(`bench/bare_app.py`) only answers 202 without reading the body. Ingest ran alone (its",
        "outbox relay publishing to the broker, nothing consuming).",
        "",
        "| Server | req/s | p50 | p99 | not 202 |",
        "|---|---|---|---|---|",
        f"| Bare FastAPI 202 | {fmt(i['bare']['rps'])} | {fmt(i['bare']['p50_ms'], 1)} ms | "
        f"{fmt(i['bare']['p99_ms'], 1)} ms | {i['bare']['failures']} |",
        f"| Ingest | {fmt(i['ingest']['rps'])} | {fmt(i['ingest']['p50_ms'], 1)} ms | "
        f"{fmt(i['ingest']['p99_ms'], 1)} ms | {i['ingest']['failures']} |",
        f"| Ingest / bare | {ratio(i['ingest']['rps'], i['bare']['rps'])} | | | |",
        "",
        "CPU time per request (user + system, from `/proc`; PostgreSQL with its backends):",
        "",
        "| Process | Bare | Ingest |",
        "|---|---|---|",
        *(
            f"| {name} | {fmt(i['bare'].get('cpu_ms_per_request', {}).get(name), 2)} ms | "
            f"{fmt(i['ingest'].get('cpu_ms_per_request', {}).get(name), 2)} ms |"
            for name in i["ingest"].get("cpu_ms_per_request", {})
        ),
        "",
        "The load generator shares the CPUs: it bounds the bare endpoint more than ingest, so",
        "the ratio, if anything, flatters ingest.",
        "",
        "## 3. SLA timers: many due at one instant, and due one by one",
        "",
        f"{fmt(t['service']['open'])} open first-response timers in `sla_timer.timers` (inserted",
        "straight into the table; those not in the burst are due in 30 days).",
        f"{fmt(t['service']['timers'])} of them have their warning level due at one instant a few",
        "seconds ahead; the sla-timer service (a process, its firing worker) fires them.",
        "Every timer fires one level (one `sla.warning` event into the outbox). Each timer's lag is",
        "exact: when its firing transaction began (its outbox row's `created_at`) after the instant",
        "it was due; the rate and first/all-fired times come from counts polled every 0.25 s.",
        "",
        "| Firing | Timers | Fires/s | First fire | Lag p50 | Lag p99 | All fired |",
        "|---|---|---|---|---|---|---|",
        f"| sla-timer service (`fire_due`: {CLAIMERS} claims of 1,000 at once while a backlog"
        f" waits) | {fmt(t['service']['fired'])} | "
        f"{fmt(timer_rate)} | {fmt(t['service']['first_fire_s'], 2)} s | "
        f"{fmt(t['service']['lag_p50_s'], 2)} s | {fmt(t['service']['lag_p99_s'], 2)} s | "
        f"{fmt(t['service']['all_fired_s'], 2)} s |",
        f"| Bare SQL: SKIP LOCKED claim + UPDATE of 500, no events | {fmt(t['bare']['fired'])} | "
        f"{fmt(t['bare']['fires_per_s'])} | | | | {fmt(t['bare']['seconds'], 2)} s |",
        f"| Service / bare | | {ratio(timer_rate, t['bare']['fires_per_s'])} | | | | |",
        *(
            f"| {label} | {fmt(t[key]['fired'])} | {fmt(t[key]['fires_per_s'])} | "
            f"{fmt(t[key]['first_fire_s'], 2)} s | {fmt(t[key]['lag_p50_s'], 2)} s | "
            f"{fmt(t[key]['lag_p99_s'], 2)} s | {fmt(t[key]['all_fired_s'], 2)} s |"
            for key, label in (
                ("apscheduler", "APScheduler 3, SQLAlchemyJobStore (psycopg 3), 10 threads"),
                ("procrastinate", "procrastinate, `schedule_at` jobs, 1 worker, concurrency 10"),
            )
            if key in t
        ),
        "",
        *(
            [
                f"Then {fmt(spread['timers'])} more timers came due one by one, evenly over "
                f"{spread['seconds']} s ({fmt(spread['offered_per_s'])} due per second), with the "
                "same open timers in the table:",
                "",
                "| Firing, due over time | Timers | Due/s | Fired | Lag p50 | Lag p99 |",
                "|---|---|---|---|---|---|",
                f"| sla-timer service | {fmt(spread['timers'])} | {fmt(spread['offered_per_s'])} | "
                f"{fmt(spread['fired_exact'])} | {fmt(spread['lag_p50_s'], 3)} s | "
                f"{fmt(spread['lag_p99_s'], 3)} s |",
            ]
            if spread
            else []
        ),
        "",
        f"Events written to sla-timer's outbox: {fmt(t['service']['events_in_outbox'])}.",
        "",
        "The alternatives ran on the same PostgreSQL with the same number of jobs due at one",
        "instant, each job only noting when it ran (so they emit no events, unlike the service).",
        "APScheduler's jobs were written in bulk in its job store's own row format (its `add_job`",
        "commits one row at a time); procrastinate's were deferred with `batch_defer_async`. Both",
        "ran inside the benchmark process, the service as its own process. Their lags are exact",
        "(each fire time is noted), as the service's are.",
        "Write times (not in the rates): "
        + ", ".join(
            f"{key} {fmt(t[key]['insert_s'], 1)} s"
            for key in ("apscheduler", "procrastinate")
            if key in t
        )
        + ".",
        "",
        *(
            []
            if t["service"]["open"] >= 1_000_000
            else [
                "Not measured in this run: one million open timers (`BENCH_TIMERS_OPEN=1000000`).",
                "",
            ]
        ),
        "## 4. Memory: peak RSS per service process",
        "",
        "VmHWM from `/proc/<pid>/status` at the end of the pipeline run (section 1).",
        "",
        "| Service | Peak RSS |",
        "|---|---|",
    ]
    for name, mib in p["peak_rss_mib"].items():
        lines.append(f"| {name} | {fmt(mib, 1)} MiB |")
    lines.append(
        f"| sla-timer, timer run (section 3) | {fmt(t['service']['peak_rss_mib'], 1)} MiB |"
    )
    lines += [
        "",
        "## Raw results",
        "",
        "```json",
        json.dumps(results, indent=2, default=str),
        "```",
        "",
    ]
    return "\n".join(lines)


async def main() -> int:
    os.environ.setdefault("LEADFLOW_TEST_BACKEND", "embedded")
    out = Path(os.environ.get("BENCH_OUT", ROOT / "docs" / "benchmarks.md"))
    started = datetime.now(UTC)
    t0 = time.monotonic()
    info = machine()
    progress(f"machine: {info['nproc']} CPUs, {info['ram']}, Python {info['python']}")
    progress("starting embedded PostgreSQL and broker")
    stack = await asyncio.to_thread(TestStack.start)
    logdir = Path(tempfile.mkdtemp(prefix="leadflow-bench-"))
    progress(f"service logs in {logdir}")
    results: dict = {}
    try:
        phases = os.environ.get("BENCH_PHASES", "pipeline,ingest,timers").split(",")
        # Every database is migrated up front, so that the run does not depend on the source
        # tree staying importable for the next quarter of an hour.
        settings, ingest_settings, timer_settings = [
            # The services' own consumer session timeout, not the tests' shorter one.
            await stack.isolated_settings(consumer_session_timeout_ms=PRODUCTION_SESSION_TIMEOUT)
            for _ in range(3)
        ]
        if "pipeline" in phases:
            results["bare_insert"] = await bare_insert(settings)
            results["bare_kafka"] = await bare_kafka(settings)
            results["pipeline"] = await run_pipeline(settings, logdir, stack.processes())
        if "ingest" in phases:
            results["ingest"] = await run_ingest(ingest_settings, logdir, stack.processes())
        if "timers" in phases:
            results["timers"] = await run_timers(timer_settings, logdir)
    finally:
        await asyncio.to_thread(stack.stop)
    if set(results) != {"bare_insert", "bare_kafka", "pipeline", "ingest", "timers"}:
        progress("partial run (BENCH_PHASES): results printed, the doc left as it is")
        print(json.dumps(results, indent=2, default=str))
        return 0
    load = os.getloadavg()
    info["load_at_end"] = f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    text = render(results, info, started, time.monotonic() - t0)
    await asyncio.to_thread(out.parent.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(out.write_text, text)
    progress(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    progress("command: " + shlex.join([sys.executable, *sys.argv]))
    sys.exit(asyncio.run(main()))
