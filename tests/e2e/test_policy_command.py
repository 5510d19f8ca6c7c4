"""`leadflow policy` from the command line against feedback running as a real process: a refused
file is named by path and line and kept nowhere, a valid one becomes a draft, the diff shows what
changed, publishing makes it current and a rollback makes the one before current again."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from leadflow_tools.supervisor import ServiceProcess, start_all

SHIPPED = Path(__file__).parents[2] / "shared/leadflow/contracts/policy_default.yaml"


@pytest.fixture
async def feedback(settings, tmp_path):
    process = ServiceProcess("feedback", settings, tmp_path / "feedback.log")
    try:
        await start_all([process])
        yield process.url
    finally:
        await asyncio.to_thread(process.stop)


async def leadflow_policy(feedback_url: str, command: str, *args: str):
    argv = [sys.executable, "-m", "leadflow_tools.cli", "policy", command, "--url", feedback_url]
    env = {k: v for k, v in os.environ.items() if k != "LEADFLOW_API_KEY"}
    return await asyncio.to_thread(
        subprocess.run, [*argv, *args], capture_output=True, text=True, timeout=60, env=env
    )


async def test_a_policy_is_pushed_compared_published_and_rolled_back(feedback, tmp_path):
    text = SHIPPED.read_text().replace('version: "2026.11-default"', 'version: "2026.12-cli"', 1)
    broken = tmp_path / "broken.yaml"
    broken.write_text(text.replace("    fit_min: 70\n", "    fit_min: seventy\n", 1))
    refused = await leadflow_policy(feedback, "push", str(broken))
    assert refused.returncode == 1
    line = next(i for i, row in enumerate(broken.read_text().splitlines(), 1) if "seventy" in row)
    assert "  scoring.mql.fit_min: Input should be a valid number" in refused.stderr
    assert f"(line {line})" in refused.stderr

    good = tmp_path / "policy.yaml"
    good.write_text(text.replace("    fit_min: 70\n", "    fit_min: 75\n", 1))
    pushed = await leadflow_policy(feedback, "push", str(good))
    assert pushed.returncode == 0, pushed.stderr
    assert "version 2 (2026.12-cli) kept as a draft" in pushed.stdout

    diff = await leadflow_policy(feedback, "diff", "1", "2")
    assert diff.returncode == 0, diff.stderr
    assert "-    fit_min: 70\n+    fit_min: 75\n" in diff.stdout
    assert "  scoring.mql.fit_min: 70.0 -> 75.0" in diff.stdout

    published = await leadflow_policy(feedback, "publish", "2")
    assert published.returncode == 0, published.stderr
    assert "version 2 (2026.12-cli) is the current policy" in published.stdout
    listed = await leadflow_policy(feedback, "versions")
    rows = [row.split() for row in listed.stdout.splitlines()[1:]]
    assert [(row[0], row[1], row[2]) for row in rows] == [
        ("1", "2026.11-default", "superseded"),
        ("2", "2026.12-cli", "published"),
    ]

    rolled = await leadflow_policy(feedback, "rollback")
    assert rolled.returncode == 0, rolled.stderr
    assert "version 1 (2026.11-default) is the current policy" in rolled.stdout
    shown = await leadflow_policy(feedback, "show")
    assert shown.stdout == SHIPPED.read_text()
