"""`leadflow run` on one machine heals itself: each process killed with SIGKILL while leads flow
is restarted, readiness tells the outage and the recovery, every lead is delivered once; a
process that keeps crashing stops the stack naming it; a backup restores leads, clocks and
deliveries into a new installation."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from leadflow.settings import Settings
from leadflow_tools.devstack import EmbeddedPostgres, free_port
from leadflow_tools.registry import SERVICE_ORDER, all_specs
from reliability.pipeline import (
    CountingReceiver,
    assert_each_lead_exactly_once,
    configure_routing,
    end_state,
    send_lead,
    settle_and_count,
)
from support.harness import TEST_KEYS, eventually

pytestmark = pytest.mark.e2e

SERVICE_PORTS = {spec.name: spec.port for spec in all_specs()}


def free_offset() -> int:
    """An offset that moves the six service ports (8001–8006) onto six free ones in a row."""
    for _ in range(50):
        base = free_port()
        taken = False
        for port in range(base, base + len(SERVICE_ORDER)):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    taken = True
                    break
        if not taken:
            return base - 8001
    raise RuntimeError("no six free ports in a row")


def leadflow(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "leadflow_tools.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Installation:
    """A `leadflow run` process with a home, ports and an output file of its own."""

    home: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    @classmethod
    def at(cls, home: Path, **extra: str) -> Installation:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
        offset = free_offset()
        services = range(8001 + offset, 8001 + offset + len(SERVICE_ORDER))
        pg_port = next(p for p in iter(free_port, None) if p not in services)
        broker_port = next(p for p in iter(free_port, None) if p not in (*services, pg_port))
        env.update(
            LEADFLOW_HOME=str(home),
            LEADFLOW_PG_PORT=str(pg_port),
            LEADFLOW_BROKER_PORT=str(broker_port),
            LEADFLOW_PORT_OFFSET=str(offset),
            LEADFLOW_ENV="test",
            LEADFLOW_API_KEYS=json.dumps([k.model_dump(exclude={"sha256"}) for k in TEST_KEYS]),
            LEADFLOW_CONSUMER_SESSION_TIMEOUT_MS="6000",
            LEADFLOW_TOPIC_PARTITIONS="3",
            **extra,
        )
        return cls(home, env)

    @property
    def output(self) -> Path:
        return self.home.parent / f"{self.home.name}-run.out"

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "leadflow_tools.cli", "run"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def said(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def state(self) -> dict:
        try:
            return json.loads((self.home / "leadflow-run.json").read_text())
        except (OSError, ValueError):
            return {}

    def process(self, name: str) -> dict:
        return next(p for p in self.state().get("processes", []) if p["name"] == name)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{SERVICE_PORTS[name] + int(self.env['LEADFLOW_PORT_OFFSET'])}"

    @property
    def database_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.env['LEADFLOW_PG_PORT']}/leadflow"

    async def running(self, timeout: float = 180) -> None:
        def up():
            assert self.proc.poll() is None, f"leadflow run exited:\n{self.said()}"
            return self.state().get("phase") == "running"

        await eventually(up, timeout, describe=lambda: self.said()[-3000:])

    def stop(self, timeout: float = 90) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise

    def pids(self) -> set[int]:
        state = self.state()
        return {state.get("pid")} | {p["pid"] for p in state.get("processes", []) if p["pid"]}


def alive(pid: int) -> bool:
    """A process that exists, zombie or not (a zombie is one nobody reaped)."""
    return Path(f"/proc/{pid}").exists()


def normalised(state):
    """An end state whose lists are sorted (rows come back in another order after a restore)."""
    return (
        state.ingest_leads,
        state.mql_leads,
        state.assignments,
        {lead: sorted(d) for lead, d in state.deliveries.items()},
        {lead: sorted(t) for lead, t in state.timers.items()},
        state.feedback,
    )


async def all_ready(http: httpx.AsyncClient, lf: Installation) -> bool:
    for name in SERVICE_ORDER:
        try:
            if (await http.get(f"{lf.url(name)}/readyz", timeout=3)).status_code != 200:
                return False
        except httpx.HTTPError:
            return False
    return True


async def watch_readiness(http: httpx.AsyncClient, url: str, seen: list, done: asyncio.Event):
    """Every answer of /readyz until `done` is set, changes only (a refused connection is
    written as 0); the last is of a request sent after `done` was set (one in flight then may
    bring an older answer)."""
    while True:
        finished = done.is_set()
        try:
            code = (await http.get(f"{url}/readyz", timeout=3)).status_code
        except httpx.HTTPError:
            code = 0
        if not seen or seen[-1] != code:
            seen.append(code)
        if finished:
            return
        await asyncio.sleep(0.05)


@pytest.mark.timeout(900)
async def test_each_process_killed_comes_back_and_every_lead_is_delivered_once(tmp_path):
    lf = Installation.at(tmp_path / "home", LEADFLOW_BACKUP_INTERVAL="20", LEADFLOW_BACKUP_KEEP="2")
    lf.start()
    accepted: dict[int, str] = {}
    timings: dict[str, float] = {}
    try:
        await lf.running()
        async with CountingReceiver() as receiver, httpx.AsyncClient(timeout=15) as http:
            services = {name: SimpleNamespace(url=lf.url(name)) for name in SERVICE_ORDER}
            await configure_routing(http, services, receiver.url)
            enough = asyncio.Event()

            async def sender() -> None:
                n = 0
                while not enough.is_set():
                    await send_lead(http, lf.url("ingest"), n, accepted)
                    n += 1
                    await asyncio.sleep(0.1)

            sending = asyncio.create_task(sender())

            def flowing(task: asyncio.Task, count: int) -> bool:
                if task.done():
                    task.result()  # the sender's failure, if it failed
                return len(accepted) >= count

            for victim in ("broker", "postgresql", *SERVICE_ORDER):
                before = lf.process(victim)
                assert before["state"] == "running", before
                # A dead broker or database shows at every service; a dead service at itself
                # (a refused connection, 0). Each service is watched: the outage may be short.
                infrastructure = victim in ("broker", "postgresql")
                watched = SERVICE_ORDER if infrastructure else (victim,)
                seen: dict[str, list[int]] = {name: [] for name in watched}
                watching = asyncio.Event()
                watchers = [
                    asyncio.create_task(watch_readiness(http, lf.url(n), seen[n], watching))
                    for n in watched
                ]
                await eventually(lambda s=seen: all(c and c[-1] == 200 for c in s.values()), 30)
                for codes in seen.values():
                    codes[:] = [200]
                sent_before = len(accepted)
                started = time.monotonic()
                os.kill(before["pid"], signal.SIGKILL)

                def restarted(v=victim, b=before):
                    now = lf.process(v)
                    return (
                        now["state"] == "running"
                        and now["pid"] != b["pid"]
                        and now["restarts"] == b["restarts"] + 1
                    )

                await eventually(restarted, 120, describe=lambda v=victim: lf.process(v))
                await eventually(lambda: all_ready(http, lf), 120)
                timings[victim] = time.monotonic() - started
                watching.set()
                await asyncio.gather(*watchers)
                assert not alive(before["pid"]), f"{victim}'s killed process was not reaped"
                assert (
                    f"{victim}: exited unexpectedly (pid {before['pid']}, killed by SIGKILL)"
                    in (lf.said())
                )
                outage = 503 if infrastructure else 0
                assert all(c[0] == 200 and c[-1] == 200 for c in seen.values()), (victim, seen)
                assert any(outage in c for c in seen.values()), (victim, seen)
                # Leads keep coming in before the next process is killed.
                await eventually(lambda n=sent_before: flowing(sending, n + 5), 60)
            enough.set()
            await sending
            lead_ids = set(accepted.values())
            settings = Settings(database_url=lf.database_url)
            state = await settle_and_count(settings, receiver, lead_ids, timeout=240)
            assert_each_lead_exactly_once(state, receiver, lead_ids)
            print(f"{len(lead_ids)} leads delivered once; back after (s): {timings}")

            status = leadflow("status", env=lf.env)
            assert status.returncode == 0, status.stdout + status.stderr
            for name in ("broker", "postgresql", *SERVICE_ORDER):
                [row] = [line for line in status.stdout.splitlines() if line.startswith(name + " ")]
                assert row.split()[2:4] == ["running", "1"] and row.endswith("ready"), row

            # A backup of the running stack; a restore refuses to touch it.
            dump = tmp_path / "leadflow.dump"
            made = leadflow("backup", "--out", str(dump), env=lf.env)
            assert made.returncode == 0, made.stderr
            assert "backup written" in made.stdout and dump.stat().st_size > 0
            refused = leadflow("restore", str(dump), env=lf.env)
            assert refused.returncode == 1 and "stop it first" in refused.stderr
            await eventually(lambda: "backup written" in lf.said(), 60)
        pids = lf.pids()
        assert lf.stop() == 0, lf.said()[-3000:]
        assert "stopped." in lf.said()
        assert not [pid for pid in pids if alive(pid)], "processes left after SIGTERM"
        scheduled = sorted((lf.home / "backups").glob("leadflow-*.dump"))
        assert 1 <= len(scheduled) <= 2, scheduled  # LEADFLOW_BACKUP_KEEP

        # Restored into a new installation, everything is there again.
        other = Installation.at(tmp_path / "restored")
        restored = leadflow("restore", str(dump), env=other.env, timeout=300)
        assert restored.returncode == 0, restored.stdout + restored.stderr
        server = EmbeddedPostgres(other.home / "pgdata", port=int(other.env["LEADFLOW_PG_PORT"]))
        await asyncio.to_thread(server.start)
        try:
            again = await end_state(Settings(database_url=other.database_url))
        finally:
            await asyncio.to_thread(server.stop)
        assert normalised(again) == normalised(state)
        assert len(again.deliveries) == len(lead_ids) and len(again.timers) == len(lead_ids)
    finally:
        lf.stop()


async def test_a_service_that_keeps_crashing_stops_the_stack_with_its_last_log_lines(tmp_path):
    lf = Installation.at(tmp_path / "home")
    scoring_port = SERVICE_PORTS["scoring"] + int(lf.env["LEADFLOW_PORT_OFFSET"])
    with socket.socket() as squatter:  # scoring cannot listen: it exits at every start
        squatter.bind(("127.0.0.1", scoring_port))
        squatter.listen()
        lf.start()
        try:
            code = await asyncio.wait_for(asyncio.to_thread(lf.proc.wait), 240)
        finally:
            lf.stop()
    said = lf.said()
    assert code == 1, said[-3000:]
    assert "scoring keeps crashing (5 exits within 60 s" in said, said[-3000:]
    assert "address already in use" in said.split("scoring keeps crashing")[1].lower()
    assert "stopped." in said
    assert not [pid for pid in lf.pids() if alive(pid)], "processes left after the crash loop"
    status = leadflow("status", env=lf.env)
    assert status.returncode == 3 and "scoring keeps crashing" in status.stdout, status.stdout
