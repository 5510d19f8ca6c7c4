"""Shared pieces of the benchmarks: sizes from the environment, percentiles, process memory,
the machine description, and services started as real processes like the e2e suite does."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from leadflow_tools.supervisor import ServiceProcess, start_all


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def env_list(name: str, default: str) -> list[float]:
    return [float(x) for x in os.environ.get(name, default).split(",") if x.strip()]


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0–100) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def peak_rss_mib(pid: int) -> float | None:
    """Peak resident set size (VmHWM) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and of its children it has waited for)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # after the command: state ppid ... utime(14) stime(15) cutime(16) cstime(17), 1-based
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / CLOCK_TICKS


def tree_cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named process and all its descendants,
    e.g. PostgreSQL's postmaster with its backends; a process that ended is counted in its
    parent's total once the parent has waited for it."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)

    def total(pid: int) -> float:
        own = stats.get(pid, (0, 0.0))[1]
        return own + sum(total(child) for child in children.get(pid, []))

    return {name: total(pid) for name, pid in pids.items()}


def cpu_used(processes: dict[str, int], this_process: str) -> dict[str, float]:
    """CPU seconds used so far by each named process with its descendants (services,
    PostgreSQL with its backends, the broker) and, as `this_process`, by this one alone (the
    load generator; the processes it started are counted under their own names)."""
    used = tree_cpu_seconds(processes)
    times = os.times()
    used[this_process] = times.user + times.system
    return used


def machine() -> dict[str, str]:
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    load = os.getloadavg()
    return {
        "nproc": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "cpu": cpu or platform.processor(),
        "ram": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "python": sys.version.split()[0],
        "os": f"{platform.system()} {platform.release()}",
        "load_at_start": f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    }


def pg_dsn(database_url: str) -> str:
    """An asyncpg DSN from the SQLAlchemy URL the services use."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


@dataclass
class Services:
    """Some services of Leadflow as real OS processes, each `leadflow serve <name>`."""

    procs: dict[str, ServiceProcess]

    @classmethod
    async def start(cls, names: list[str], settings, logdir: Path) -> Services:
        procs = {n: ServiceProcess(n, settings, logdir / f"{n}.log") for n in names}
        try:
            await start_all(list(procs.values()))
        except BaseException:
            for p in procs.values():
                p.stop()
            raise
        return cls(procs)

    def url(self, name: str) -> str:
        return self.procs[name].url

    def peak_rss(self) -> dict[str, float | None]:
        return {n: peak_rss_mib(p.proc.pid) for n, p in self.procs.items() if p.proc}

    async def stop(self) -> None:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in self.procs.values()))
