"""Ingest benchmark: single-lead POST /v1/leads against a bare FastAPI endpoint that only answers
202; both one uvicorn process (uvloop, httptools), the same httpx async client, N concurrent."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from common import Services, cpu_used, env_int, percentile, progress
from leadflow_tools.devstack import die_with_parent, free_port, stop_process, wait_for
from support.harness import SOURCE, sample_lead

BENCH_DIR = Path(__file__).resolve().parent


async def hammer(
    url: str, first: int, requests: int, concurrency: int, processes: dict[str, int] | None = None
) -> dict:
    """`requests` single-lead POSTs from `concurrency` concurrent senders; every one must be 202.
    With `processes`, also the CPU time each of them (and the load generator) spent per request."""
    latencies: list[float] = []
    errors: dict[str, int] = {}  # status code or exception name: count
    next_n = first
    # Each sender has a client with one kept-alive connection of its own: httpx's pool looks at
    # every one of its connections on each request, so one client with `concurrency`
    # connections spent more CPU per request than the bare server answering it (on the same
    # cores as the servers measured).
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as clients:
        pool = [
            await clients.enter_async_context(httpx.AsyncClient(timeout=60, limits=limits))
            for _ in range(concurrency)
        ]

        async def sender(http: httpx.AsyncClient, count: int) -> None:
            nonlocal next_n
            for _ in range(count):
                n, next_n = next_n, next_n + 1
                t0 = time.monotonic()
                try:
                    response = await http.post(
                        f"{url}/v1/leads", headers=SOURCE, json=sample_lead(n)
                    )
                except httpx.HTTPError as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                latencies.append(time.monotonic() - t0)
                if response.status_code != 202:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1

        share = [
            requests // concurrency + (1 if i < requests % concurrency else 0)
            for i in range(concurrency)
        ]
        cpu_before = cpu_used(processes or {}, LOAD_GENERATOR)
        start = time.monotonic()
        await asyncio.gather(*(sender(http, c) for http, c in zip(pool, share, strict=True)))
        seconds = time.monotonic() - start
        cpu_after = cpu_used(processes or {}, LOAD_GENERATOR)
    ok = requests - sum(errors.values())
    return {
        "cpu_ms_per_request": {
            name: (cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / max(ok, 1)
            for name in cpu_after
        },
        "requests": requests,
        "ok": ok,
        "failures": sum(errors.values()),
        "errors": errors,
        "seconds": seconds,
        "rps": ok / seconds,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


def start_bare(log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        + ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"],
        cwd=BENCH_DIR,
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent(signal.SIGKILL),
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.post(f"{url}/v1/leads", timeout=1).status_code == 202
        except httpx.HTTPError:
            return False

    wait_for(ready, f"bare endpoint (log {log_path})", 30, proc)
    return proc, url


LOAD_GENERATOR = "load generator"


async def run_ingest(
    settings,
    logdir: Path,
    infrastructure: dict[str, int] | None = None,
) -> dict:
    """Bare endpoint, then ingest, the same requests; `infrastructure`: process ids of
    PostgreSQL and the broker, for their CPU time per request."""
    requests = env_int("BENCH_INGEST_REQUESTS", 3_000)
    concurrency = env_int("BENCH_CONCURRENCY", 32)
    warm = min(300, requests)
    progress(f"ingest: {requests} single-lead POSTs, {concurrency} concurrent, bare endpoint first")
    proc, url = start_bare(logdir / "bare.log")
    try:
        await hammer(url, 0, warm, concurrency)
        bare = await hammer(
            url, 0, requests, concurrency, {"server": proc.pid} | (infrastructure or {})
        )
    finally:
        stop_process(proc)
    progress(
        f"  bare: {bare['rps']:.0f} req/s, p50 {bare['p50_ms']:.1f} ms, p99 {bare['p99_ms']:.1f} ms"
    )
    services = await Services.start(["ingest"], settings, logdir)
    try:
        await hammer(services.url("ingest"), 1_000_000, warm, concurrency)
        server = {"server": services.procs["ingest"].proc.pid}
        ingest = await hammer(
            services.url("ingest"),
            2_000_000,
            requests,
            concurrency,
            server | (infrastructure or {}),
        )
    finally:
        await services.stop()
    progress(
        f"  ingest: {ingest['rps']:.0f} req/s, p50 {ingest['p50_ms']:.1f} ms, "
        f"p99 {ingest['p99_ms']:.1f} ms (not 202: {ingest['errors'] or 'none'})"
    )
    return {"bare": bare, "ingest": ingest, "concurrency": concurrency}
