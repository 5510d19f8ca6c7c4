"""`leadflow keys` from the command line against feedback and routing running as real processes:
a key created is printed once and works on routing within seconds, the list shows it without the
key, a rotation prints a new key, and a revoked key is refused on routing within seconds."""

import asyncio
import os
import subprocess
import sys

import httpx
import pytest
from leadflow_tools.supervisor import ServiceProcess, start_all
from support.harness import eventually


@pytest.fixture
async def processes(settings, tmp_path):
    procs = {
        name: ServiceProcess(name, settings, tmp_path / f"{name}.log")
        for name in ("feedback", "routing")
    }
    try:
        await start_all(list(procs.values()))
        yield procs
    finally:
        await asyncio.gather(*(asyncio.to_thread(proc.stop) for proc in procs.values()))


async def leadflow_keys(feedback_url: str, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "leadflow_tools.cli", "keys", "--url", feedback_url, *args]
    env = {k: v for k, v in os.environ.items() if k != "LEADFLOW_API_KEY"}
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60, env=env
    )


def printed(output: str, label: str) -> str:
    return next(
        line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith(label)
    )


async def answers(url: str, key: str) -> int:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{url}/v1/teams", headers={"Authorization": f"Bearer {key}"})
    return response.status_code


async def test_keys_are_created_listed_rotated_and_revoked_from_the_command_line(processes):
    feedback, routing = processes["feedback"].url, processes["routing"].url

    made = await leadflow_keys(feedback, "create", "dashboards", "--scope", "config:read")
    assert made.returncode == 0, made.stderr
    key, key_id = printed(made.stdout, "key:"), printed(made.stdout, "id:")
    assert key.startswith("lf_") and "shown this once" in made.stdout

    async def works(key: str) -> bool:
        return await answers(routing, key) == 200

    await eventually(lambda: works(key), timeout=30)

    listed = await leadflow_keys(feedback, "list")
    assert listed.returncode == 0, listed.stderr
    assert (
        key_id in listed.stdout and "dashboards" in listed.stdout and "config:read" in listed.stdout
    )
    assert key not in listed.stdout

    rotated = await leadflow_keys(feedback, "rotate", key_id, "--grace", "600")
    assert rotated.returncode == 0, rotated.stderr
    new_key = printed(rotated.stdout, "key:")
    assert new_key != key

    revoked = await leadflow_keys(feedback, "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr

    async def refused() -> bool:
        return await answers(routing, key) == 401

    await eventually(refused, timeout=10, interval=0.2)
    await eventually(lambda: works(new_key), timeout=30)


async def test_the_command_names_what_was_refused(processes):
    feedback = processes["feedback"].url
    bad = await leadflow_keys(feedback, "create", "x", "--scope", "leads:erase")
    assert bad.returncode == 1
    assert "refused (422)" in bad.stderr and "scopes" in bad.stderr
    unknown = await leadflow_keys(feedback, "revoke", "00000000-0000-4000-8000-000000000000")
    assert unknown.returncode == 1 and "refused (404)" in unknown.stderr
    away = await leadflow_keys("http://127.0.0.1:9", "list")
    assert away.returncode == 1 and "cannot reach feedback" in away.stderr
