"""Services as real OS processes: launched with the settings of a stack, waited for, stopped
or killed (the demo, the benchmarks and the end-to-end tests run them so)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from leadflow.settings import Settings
from pydantic import SecretStr

from leadflow_tools.devstack import die_with_parent, free_port, stop_process, wait_for


def serve_command(name: str, port: int) -> list[str]:
    """The command line of one service process listening on `port`."""
    return [sys.executable, "-m", "leadflow_tools.cli", "serve", name, "--port", str(port)]


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce `settings` in another process."""
    env = {
        "LEADFLOW_ENV": settings.env,
        "LEADFLOW_DATABASE_URL": settings.database_url,
        "LEADFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "LEADFLOW_TOPIC_PREFIX": settings.topic_prefix,
        "LEADFLOW_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "LEADFLOW_API_KEYS": "["
        + ",".join(k.model_dump_json(exclude={"key"}) for k in settings.api_keys)
        + "]",
        "LEADFLOW_WEBHOOK_ALLOW_PRIVATE": str(settings.webhook_allow_private).lower(),
        "LEADFLOW_CONSUMER_SESSION_TIMEOUT_MS": str(settings.consumer_session_timeout_ms),
    }
    if settings.clock_start is not None:
        env["LEADFLOW_CLOCK_START"] = settings.clock_start.isoformat()
        env["LEADFLOW_CLOCK_SPEED"] = str(settings.clock_speed)
        env["LEADFLOW_CLOCK_ANCHOR"] = str(settings.clock_anchor)
    # Every other setting given explicitly (a policy file, SMTP, notify's windows …), as the
    # settings read it from the environment: text as is, anything else as JSON.
    # Secrets (SecretStr) as their value: a JSON dump shows them masked.
    for name, value in settings.model_dump(mode="json", include=settings.model_fields_set).items():
        key = f"LEADFLOW_{name.upper()}"
        if key in env or value is None or name == "api_keys":
            continue
        secret = getattr(settings, name)
        if isinstance(secret, SecretStr):
            value = secret.get_secret_value()
        env[key] = value if isinstance(value, str) else json.dumps(value)
    return env


@dataclass
class ServiceProcess:
    """One service as a real OS process (for e2e and crash tests)."""

    name: str
    settings: Settings
    log_path: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        self.launch()
        self.wait_ready(timeout)

    def environment(self) -> dict[str, str]:
        """The process's environment: this one's, with the settings of the stack."""
        return {**os.environ, **settings_env(self.settings)}

    def launch(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            serve_command(self.name, self.port),
            env=self.environment(),
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent(signal.SIGKILL),
        )

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for(self._healthy, f"{self.name} (log {self.log_path})", timeout, self.proc)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the process's log (for a failure's message)."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """kill -9: no shutdown hooks, no flushing; what was not committed is lost."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGTERM)


async def start_all(processes: list[ServiceProcess], timeout: float = 90) -> None:
    """Launch every process, then wait for all of them to be ready (in parallel)."""
    for p in processes:
        p.launch()
    await asyncio.gather(*(asyncio.to_thread(p.wait_ready, timeout) for p in processes))
