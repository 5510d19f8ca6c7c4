"""`leadflow status`: each process of a single-machine installation, as its supervisor wrote
it down, with each service's readiness, consumer lag and outbox backlog asked of it now."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from leadflow_tools.home import Home
from leadflow_tools.stack import pid_alive, read_state


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int | None
    state: str
    restarts: int
    readiness: str
    lag: float | None
    backlog: float | None


def _service_figures(url: str) -> tuple[str, float | None, float | None]:
    """(readiness, consumer lag, outbox backlog) from the service's /readyz and /metrics."""
    try:
        ready = httpx.get(f"{url}/readyz", timeout=3)
        metrics = httpx.get(f"{url}/metrics", timeout=3).text
    except httpx.HTTPError as exc:
        return f"no answer ({type(exc).__name__})", None, None
    if ready.status_code == 200:
        readiness = "ready"
    else:
        failing = [f"{k}: {v}" for k, v in ready.json().get("checks", {}).items() if v != "ok"]
        readiness = "not ready (" + "; ".join(failing) + ")"
    lag = backlog = 0.0
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "leadflow_consumer_lag":
                lag += sample.value
            elif sample.name == "leadflow_outbox_backlog":
                backlog += sample.value
    return readiness, lag, backlog


def collect(home: Home) -> tuple[dict | None, bool, list[ProcessStatus]]:
    """(the supervisor's state file, whether the supervisor is alive, each process)."""
    state = read_state(home)
    if state is None:
        return None, False, []
    alive = pid_alive(state.get("pid")) and state.get("phase") not in ("stopped", "failed")
    rows = []
    for p in state.get("processes", []):
        readiness, lag, backlog = "-", None, None
        if not alive:
            p = {**p, "state": "stopped", "pid": None}
        elif p["state"] != "running":
            readiness = "not ready"
        elif (p.get("url") or "").startswith("http"):
            readiness, lag, backlog = _service_figures(p["url"])
        else:
            readiness = "ready"
        rows.append(
            ProcessStatus(p["name"], p["pid"], p["state"], p["restarts"], readiness, lag, backlog)
        )
    return state, alive, rows


def render(home: Home) -> tuple[str, int]:
    """The text `leadflow status` prints and its exit code: 0 when every process runs and is
    ready, 1 when one is not, 3 when Leadflow is not running."""
    state, alive, rows = collect(home)
    if state is None:
        return f"Leadflow is not running from {home.root} (no {home.state_file.name}).", 3
    if alive:
        head = f"Leadflow is {state['phase']} from {home.root} (supervisor pid {state['pid']})"
    else:
        head = f"Leadflow is not running from {home.root} (last: {state.get('phase')})"
    lines = [head]
    if state.get("failure"):
        lines.append(f"it stopped because: {state['failure'].splitlines()[0]}")
    backup = state.get("last_backup")
    if backup:
        lines.append(f"last scheduled backup: {backup.get('file') or backup.get('error')}")
    lines.append(
        f"{'process':<11}{'pid':>8}  {'state':<11}{'restarts':>8}  {'lag':>6}{'backlog':>8}  readiness"
    )

    def figure(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    for r in rows:
        lines.append(
            f"{r.name:<11}{r.pid or '-':>8}  {r.state:<11}{r.restarts:>8}  "
            f"{figure(r.lag):>6}{figure(r.backlog):>8}  {r.readiness}"
        )
    if not alive:
        return "\n".join(lines), 3
    healthy = all(r.state == "running" and r.readiness == "ready" for r in rows)
    return "\n".join(lines), 0 if healthy else 1
