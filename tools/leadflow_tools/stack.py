"""The supervisor behind `leadflow run`: starts the embedded PostgreSQL, the broker and the six
services, restarts whichever exits unexpectedly (with backoff, until one keeps crashing),
writes their logs to size-rotated files, makes scheduled backups and stops everything in order.

Every process is supervised the same way, by one loop in the main thread: `Popen.poll` reaps an
exit at once (no zombie), the exit is reported on the console and in `logs/supervisor.log`, and
the process is started again once what it needs is ready (services need PostgreSQL and the
broker). What the loop knows is written to `leadflow-run.json` for `leadflow status`."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO

import httpx

from leadflow_tools import backup
from leadflow_tools.devstack import (
    EmbeddedBroker,
    EmbeddedPostgres,
    die_with_parent,
    ensure_database,
)
from leadflow_tools.home import Home, RunOptions
from leadflow_tools.registry import all_specs, migrate_all
from leadflow_tools.supervisor import serve_command

# A process that exits this many times within the window is not coming back by itself.
CRASH_LOOP_EXITS = 5
CRASH_LOOP_WINDOW = 60.0
BACKOFF_BASE = 0.5  # seconds before the first restart, doubling with each recent exit
BACKOFF_CAP = 10.0
START_TIMEOUT = 120.0  # a process not ready by then is killed and counts as an exit
STOP_TIMEOUT = 20.0  # a process still running this long after its stop signal is killed
PREPARE_TIMEOUT = 15.0  # seconds for creating the database or the topics once a server is up
TAIL_LINES = 20
TICK = 0.2

log = logging.getLogger("leadflow.run")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class ChildLog:
    """A process's stdout and stderr, read from its pipe by a thread into a size-rotated file
    (RotatingFileHandler), the last lines kept for a failure's message.

    The supervisor owns the file rather than the process: the services, PostgreSQL and the
    broker all write to stdout/stderr, none has to know about files, and rotation never races
    with a writer (the handler renames the file between two lines)."""

    def __init__(self, home: Home, name: str, options: RunOptions) -> None:
        self.path = home.logs / f"{name}.log"
        self.handler = logging.handlers.RotatingFileHandler(
            self.path,
            maxBytes=options.log_max_bytes,
            backupCount=options.log_backups,
            encoding="utf-8",
        )
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def write(self, line: str) -> None:
        self.tail.append(line)
        self.handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))

    def follow(self, pipe: IO[bytes]) -> None:
        def read() -> None:
            with pipe:
                for raw in iter(pipe.readline, b""):
                    self.write(raw.decode("utf-8", "replace").rstrip("\n"))

        threading.Thread(target=read, name=f"log:{self.path.stem}", daemon=True).start()

    def close(self) -> None:
        self.handler.close()


@dataclass
class Child:
    """One supervised process: how to start it, when it is ready, what it needs first."""

    name: str
    launch: Callable[[], subprocess.Popen]
    ready: Callable[[], bool]
    log: ChildLog
    needs: tuple[str, ...] = ()
    url: str | None = None
    stop_signal: int = signal.SIGTERM
    # Something the process does once it is ready, before dependants start (migrations, topics).
    on_ready: Callable[[], None] | None = None
    # False while something keeps the process from starting again (PostgreSQL's backends of a
    # killed server still hold its data directory).
    may_launch: Callable[[], bool] = lambda: True
    proc: subprocess.Popen | None = None
    state: str = "waiting"  # waiting, starting, running, restarting, stopped
    restarts: int = 0
    exits: collections.deque[float] = field(default_factory=collections.deque)
    next_start: float = 0.0
    started_at: float = 0.0
    last_exit: str | None = None
    problem: str | None = None  # the last failure of on_ready, said once

    def snapshot(self) -> dict:
        return {
            "name": self.name,
            "pid": self.proc.pid if self.proc is not None else None,
            "state": self.state,
            "restarts": self.restarts,
            "url": self.url,
            "log": str(self.log.path),
            "last_exit": self.last_exit,
        }


class CrashLoop(RuntimeError):
    """A process exited CRASH_LOOP_EXITS times within CRASH_LOOP_WINDOW seconds."""

    def __init__(self, child: Child) -> None:
        self.child = child
        lines = "\n".join(f"    {line}" for line in child.log.tail) or "    (nothing)"
        super().__init__(
            f"{child.name} keeps crashing ({len(child.exits)} exits within "
            f"{CRASH_LOOP_WINDOW:.0f} s, the last: {child.last_exit}); stopping Leadflow.\n"
            f"  the last lines of {child.log.path}:\n{lines}"
        )


def _server_left(data_dir) -> bool:
    """Whether a process of a killed PostgreSQL still works in its data directory (a backend
    outliving its postmaster); PostgreSQL refuses to start over it, so the restart waits."""
    import psutil

    for proc in psutil.process_iter(["name", "cwd"]):
        if proc.info["name"] == "postgres" and proc.info["cwd"] == str(data_dir):
            return True
    return False


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


class StackSupervisor:
    """Runs one single-machine installation (see the module's docstring)."""

    def __init__(self, home: Home, options: RunOptions, env: dict[str, str]) -> None:
        self.home = home
        self.options = options
        self.env = env
        self.children: dict[str, Child] = {}
        self.stopping = threading.Event()
        self.phase = "starting"
        self.failure: str | None = None
        self.started_at = _now()
        self.migrated = False
        self.last_backup: dict | None = None
        self._backup_thread: threading.Thread | None = None
        self._next_backup = time.monotonic() + options.backup_interval
        self._written: str | None = None
        self._written_at = 0.0
        self._console = logging.handlers.RotatingFileHandler(
            home.logs / "supervisor.log",
            maxBytes=options.log_max_bytes,
            backupCount=options.log_backups,
            encoding="utf-8",
        )
        self._console.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(self._console)
        log.setLevel(logging.INFO)
        log.propagate = False

    # -- what runs --------------------------------------------------------------------------

    def build(self) -> None:
        """The processes of this installation: the embedded PostgreSQL and broker unless
        LEADFLOW_DATABASE_URL / LEADFLOW_KAFKA_BOOTSTRAP name others, then the six services."""
        env, needs = self.env, []
        if "LEADFLOW_DATABASE_URL" not in env:
            pg = EmbeddedPostgres(self.home.pgdata, port=self.options.pg_port, durable=True)
            env["LEADFLOW_DATABASE_URL"] = pg.url.rsplit("/", 1)[0] + "/" + backup.DATABASE
            self._add(
                Child(
                    "postgresql",
                    lambda: pg.launch(subprocess.PIPE, own_session=True),
                    pg.ready,
                    ChildLog(self.home, "postgresql", self.options),
                    url=f"postgresql://127.0.0.1:{pg.port}/{backup.DATABASE}",
                    stop_signal=signal.SIGINT,  # PostgreSQL's fast shutdown
                    on_ready=lambda: self._prepare_database(pg.url),
                    may_launch=lambda: not _server_left(pg.data_dir),
                )
            )
            needs.append("postgresql")
        if "LEADFLOW_KAFKA_BOOTSTRAP" not in env:
            broker = EmbeddedBroker(self.options.broker_port)
            env["LEADFLOW_KAFKA_BOOTSTRAP"] = broker.bootstrap
            self._add(
                Child(
                    "broker",
                    lambda: broker.launch(subprocess.PIPE, own_session=True),
                    broker.ready,
                    ChildLog(self.home, "broker", self.options),
                    url=f"kafka://{broker.bootstrap}",
                    # An in-memory broker comes back empty: the topics consumers subscribe to
                    # are created again (relays create theirs on demand).
                    on_ready=self._ensure_topics,
                )
            )
            needs.append("broker")
            # Its topics with the partitions it gives a topic it creates again after a restart,
            # so a consumer group's assignment still covers every partition then.
            env.setdefault("LEADFLOW_TOPIC_PARTITIONS", str(EmbeddedBroker.AUTO_CREATED_PARTITIONS))
        offset = self.options.port_offset
        ports = {spec.name: spec.port + offset for spec in all_specs()}
        # One machine: webhooks to a local receiver are expected; the services find each other
        # on the ports given here.
        env.setdefault("LEADFLOW_WEBHOOK_ALLOW_PRIVATE", "true")
        env.setdefault("LEADFLOW_ROUTING_URL", f"http://127.0.0.1:{ports['routing']}")
        env.setdefault("LEADFLOW_INGEST_URL", f"http://127.0.0.1:{ports['ingest']}")
        env.setdefault("LEADFLOW_NOTIFY_URL", f"http://127.0.0.1:{ports['notify']}")
        env.setdefault("LEADFLOW_PUBLIC_URL", f"http://127.0.0.1:{ports['feedback']}")
        if env.get("LEADFLOW_CLOCK_START") and not env.get("LEADFLOW_CLOCK_ANCHOR"):
            env["LEADFLOW_CLOCK_ANCHOR"] = str(time.time())  # every process shares this anchor
        env.pop("LEADFLOW_PORT", None)  # each service gets its own port below
        for name, port in ports.items():
            url = f"http://127.0.0.1:{port}"
            self._add(
                Child(
                    name,
                    lambda name=name, port=port: self._launch_service(name, port),
                    lambda url=url: _answers(f"{url}/healthz"),
                    ChildLog(self.home, name, self.options),
                    needs=tuple(needs),
                    url=url,
                )
            )

    def _add(self, child: Child) -> None:
        self.children[child.name] = child

    def _launch_service(self, name: str, port: int) -> subprocess.Popen:
        return subprocess.Popen(
            serve_command(name, port),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(signal.SIGTERM),
            start_new_session=True,
        )

    def _prepare_database(self, admin_url: str) -> None:
        # Bounded: the loop waits for it, and a server that died meanwhile is seen next tick.
        asyncio.run(asyncio.wait_for(ensure_database(admin_url, backup.DATABASE), PREPARE_TIMEOUT))
        if not self.migrated:
            self.say("applying migrations …")
            migrate_all(self.env["LEADFLOW_DATABASE_URL"])
            self.migrated = True

    def _ensure_topics(self, timeout: float | None = PREPARE_TIMEOUT) -> None:
        from leadflow.kafka import ensure_topics
        from leadflow.settings import Settings

        os.environ.update(self.env)
        asyncio.run(asyncio.wait_for(ensure_topics(Settings()), timeout))

    def _prepare_external(self) -> None:
        """PostgreSQL or a broker given by address: migrations and topics before services."""
        os.environ.update(self.env)
        if "postgresql" not in self.children:
            self.say("applying migrations …")
            migrate_all(self.env["LEADFLOW_DATABASE_URL"])
            self.migrated = True
        if "broker" not in self.children:
            self._ensure_topics(timeout=None)  # the broker's client waits for it to answer

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until SIGINT/SIGTERM (exit 0) or a process that keeps crashing (exit 1);
        every process is stopped on the way out."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stopping.set())
        try:
            self.build()
            self._prepare_external()
            while not self.stopping.is_set():
                self._tick()
                self.stopping.wait(TICK)
            return 0
        except CrashLoop as exc:
            self.failure = str(exc)
            self.say(str(exc), logging.ERROR)
            return 1
        except Exception as exc:  # e.g. an external PostgreSQL or Kafka that never answered
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("leadflow run failed")
            self.say(f"leadflow run: {self.failure}", logging.ERROR)
            return 1
        finally:
            self.stop_all()

    def _tick(self) -> None:
        now = time.monotonic()
        for child in self.children.values():
            if child.proc is not None:
                code = child.proc.poll()  # reaps it: no zombie
                if code is not None:
                    self._exited(child, describe_exit(code), now)
                elif child.state == "starting":
                    self._check_ready(child, now)
            if (
                child.proc is None
                and now >= child.next_start
                and all(self.children[n].state == "running" for n in child.needs)
                and child.may_launch()
            ):
                self._launch(child, now)
        if self.phase == "starting" and all(c.state == "running" for c in self.children.values()):
            self.phase = "running"
            self._banner()
        self._maybe_backup(now)
        self.write_state()

    def _launch(self, child: Child, now: float) -> None:
        try:
            child.proc = child.launch()
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            child.log.write(f"--- {_now()} could not start: {exc}")
            self._exited(child, f"could not start: {exc}", now)
            return
        if child.state == "restarting":
            child.restarts += 1
        child.state = "starting"
        child.started_at = now
        child.problem = None
        child.log.write(f"--- {_now()} started, pid {child.proc.pid}")
        child.log.follow(child.proc.stdout)
        if child.restarts:
            self.say(f"{child.name}: restarted (pid {child.proc.pid}, restart {child.restarts})")
        else:
            self.say(f"{child.name}: starting (pid {child.proc.pid}) …")

    def _check_ready(self, child: Child, now: float) -> None:
        if child.ready():
            try:
                if child.on_ready is not None:
                    child.on_ready()
            except Exception as exc:  # tried again next tick, until START_TIMEOUT
                if child.problem != str(exc):
                    child.problem = str(exc)
                    self.say(f"{child.name}: not prepared yet: {exc}", logging.WARNING)
            else:
                child.state = "running"
                self.say(f"{child.name}: ready")
                return
        if now - child.started_at > START_TIMEOUT:
            self.say(
                f"{child.name}: not ready {START_TIMEOUT:.0f} s after starting; killing it",
                logging.ERROR,
            )
            child.proc.kill()  # reaped and restarted by the next tick

    def _exited(self, child: Child, reason: str, now: float) -> None:
        pid = child.proc.pid if child.proc is not None else None
        child.proc = None
        child.last_exit = reason
        child.exits.append(now)
        while child.exits and child.exits[0] < now - CRASH_LOOP_WINDOW:
            child.exits.popleft()
        self.say(
            f"{child.name}: exited unexpectedly (pid {pid}, {reason})"
            if pid
            else f"{child.name}: {reason}",
            logging.ERROR,
        )
        if len(child.exits) >= CRASH_LOOP_EXITS:
            child.state = "stopped"
            raise CrashLoop(child)
        delay = min(BACKOFF_BASE * 2 ** (len(child.exits) - 1), BACKOFF_CAP)
        child.state = "restarting"
        child.next_start = now + delay
        self.say(f"{child.name}: restarting in {delay:.1f} s")

    def _banner(self) -> None:
        lines = ["", "Leadflow is running:"]
        for child in self.children.values():
            extra = "   (docs: /docs, health: /healthz)" if child.url.startswith("http") else ""
            lines.append(f"  {child.name:<10} {child.url}{extra}")
        if "feedback" in self.children:
            lines.append(
                f"review page {self.children['feedback'].url}/review: people sign in with an "
                "account (`leadflow users create`); tools give an API key as "
                "`Authorization: Bearer` or as the password of HTTP Basic, as every API but "
                "/healthz, /readyz and /metrics takes it."
            )
        lines.append(
            f"home {self.home.root} (logs in {self.home.logs}); `leadflow status` shows each "
            "process; press Ctrl-C to stop."
        )
        print("\n".join(lines), flush=True)
        log.info("Leadflow is running")

    def say(self, message: str, level: int = logging.INFO) -> None:
        """On the console (the journal under systemd) and in logs/supervisor.log."""
        print(f"{_now()} {message}", flush=True)
        log.log(level, message)

    # -- scheduled backups ------------------------------------------------------------------

    def _maybe_backup(self, now: float) -> None:
        pg = self.children.get("postgresql")
        if (
            not self.options.backup_interval
            or pg is None
            or pg.state != "running"
            or now < self._next_backup
            or (self._backup_thread is not None and self._backup_thread.is_alive())
        ):
            return
        self._next_backup = now + self.options.backup_interval
        self._backup_thread = threading.Thread(target=self._backup, name="backup", daemon=True)
        self._backup_thread.start()

    def _backup(self) -> None:
        target = self.home.backups / backup.backup_name()
        started = time.monotonic()
        try:
            backup.dump(self.options.pg_port, target)
        except (backup.BackupError, OSError) as exc:
            self.say(f"scheduled backup failed: {exc}", logging.ERROR)
            self.last_backup = {"at": _now(), "error": str(exc)}
            return
        removed = backup.prune(self.home.backups, self.options.backup_keep)
        self.last_backup = {"at": _now(), "file": str(target)}
        self.say(
            f"backup written: {target} ({target.stat().st_size / 1e6:.1f} MB, "
            f"{time.monotonic() - started:.1f} s); {len(removed)} older removed, "
            f"keeping {self.options.backup_keep}"
        )

    # -- state and stop ---------------------------------------------------------------------

    def write_state(self, force: bool = False) -> None:
        """`leadflow-run.json`, replaced whole (never half-written), when something changed
        and every few seconds (its `updated_at` shows the supervisor is alive)."""
        body = {
            "pid": os.getpid(),
            "home": str(self.home.root),
            "phase": self.phase,
            "started_at": self.started_at,
            "failure": self.failure,
            "last_backup": self.last_backup,
            "processes": [c.snapshot() for c in self.children.values()],
        }
        text = json.dumps(body, indent=2)
        if not force and text == self._written and time.monotonic() - self._written_at < 5:
            return
        self._written, self._written_at = text, time.monotonic()
        body["updated_at"] = _now()
        partial = self.home.state_file.with_name(self.home.state_file.name + ".part")
        partial.write_text(json.dumps(body, indent=2), encoding="utf-8")
        partial.replace(self.home.state_file)

    def stop_all(self) -> None:
        """Services first (they finish their unit of work), then the broker, then PostgreSQL;
        a process that does not stop within STOP_TIMEOUT is killed."""
        self.phase = "stopping" if self.failure is None else "failed"
        self.say("stopping …")
        self.write_state(force=True)
        services = [c for c in self.children.values() if c.name not in ("postgresql", "broker")]
        infrastructure = [self.children[n] for n in ("broker", "postgresql") if n in self.children]
        for group in (services, infrastructure[:1], infrastructure[1:]):
            for child in group:
                if child.proc is not None and child.proc.poll() is None:
                    child.proc.send_signal(child.stop_signal)
            for child in group:
                if child.proc is None:
                    child.state = "stopped"
                    continue
                try:
                    child.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.say(f"{child.name}: still running; killing it", logging.WARNING)
                    child.proc.kill()
                    child.proc.wait(5)
                child.state = "stopped"
        if self._backup_thread is not None:
            self._backup_thread.join(30)
        if self.phase == "stopping":
            self.phase = "stopped"
        self.write_state(force=True)
        for child in self.children.values():
            child.log.close()
        self.say("stopped.")
        log.removeHandler(self._console)
        self._console.close()


def run_stack(home: Home) -> int:
    """`leadflow run`: refuses a home another supervisor is running, then supervises it."""
    running = read_state(home)
    if running is not None and running.get("phase") not in ("stopped", "failed"):
        if pid_alive(running.get("pid")):
            print(
                f"leadflow run: Leadflow is already running from {home.root} "
                f"(pid {running['pid']}); `leadflow status` shows it.",
                file=sys.stderr,
            )
            return 1
    home.create()
    options = RunOptions.from_env()
    return StackSupervisor(home, options, dict(os.environ)).run()


def read_state(home: Home) -> dict | None:
    try:
        return json.loads(home.state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
