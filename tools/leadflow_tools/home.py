"""A single-machine installation's directory (`LEADFLOW_HOME`) and the settings the tooling
reads for it: where data, logs, backups and configuration live, ports, rotation, backups."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".leadflow"


@dataclass(frozen=True)
class Home:
    """One directory holds an installation: `pgdata/` (the embedded PostgreSQL), `logs/`,
    `backups/`, `leadflow.env` (its configuration) and `leadflow-run.json` (what the supervisor
    of `leadflow run` is doing, read by `leadflow status`)."""

    root: Path

    @classmethod
    def resolve(cls, given: str | os.PathLike | None = None) -> Home:
        """`given` (a command's --home), else `LEADFLOW_HOME`, else `.leadflow`."""
        return cls(Path(given or os.environ.get("LEADFLOW_HOME") or DEFAULT_HOME).resolve())

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def backups(self) -> Path:
        return self.root / "backups"

    @property
    def env_file(self) -> Path:
        return self.root / "leadflow.env"

    @property
    def state_file(self) -> Path:
        return self.root / "leadflow-run.json"

    def create(self) -> None:
        for folder in (self.root, self.logs, self.backups):
            folder.mkdir(parents=True, exist_ok=True)

    def load_env(self) -> None:
        """Variables of `leadflow.env` (KEY=value lines, read with python-dotenv) for those the
        environment does not set: the environment wins, as it does for systemd's overrides."""
        if not self.env_file.exists():
            return
        from dotenv import dotenv_values

        for key, value in dotenv_values(self.env_file).items():
            if value is not None:
                os.environ.setdefault(key, value)


def _int(env: Mapping[str, str], name: str, default: int, least: int = 0) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SystemExit(f"{name}: not a whole number: {raw!r}") from None
    if value < least:
        raise SystemExit(f"{name}: must be at least {least}, not {value}")
    return value


@dataclass(frozen=True)
class RunOptions:
    """What `leadflow run` reads outside `Settings` (documented in docs/operations.md)."""

    pg_port: int = 55432
    broker_port: int = 19092
    # Added to every service's port (8001–8006): two stacks on one machine, or tests.
    port_offset: int = 0
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    backup_interval: int = 0  # seconds between scheduled backups; 0: none
    backup_keep: int = 7

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RunOptions:
        env = os.environ if env is None else env
        return cls(
            pg_port=_int(env, "LEADFLOW_PG_PORT", cls.pg_port, 1),
            broker_port=_int(env, "LEADFLOW_BROKER_PORT", cls.broker_port, 1),
            port_offset=_int(env, "LEADFLOW_PORT_OFFSET", cls.port_offset),
            log_max_bytes=_int(env, "LEADFLOW_LOG_MAX_BYTES", cls.log_max_bytes, 1024),
            log_backups=_int(env, "LEADFLOW_LOG_BACKUPS", cls.log_backups, 1),
            backup_interval=_int(env, "LEADFLOW_BACKUP_INTERVAL", cls.backup_interval),
            backup_keep=_int(env, "LEADFLOW_BACKUP_KEEP", cls.backup_keep, 1),
        )
