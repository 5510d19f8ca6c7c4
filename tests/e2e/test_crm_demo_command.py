"""`leadflow crm-demo hubspot` from the command line, as the README shows it: the embedded stack,
the six services and the local server implementing HubSpot's documented CRM API contract; a
contact webhook becomes a routed lead whose owner and task are written to HubSpot, a call logged
there comes back, and the first-response clock is met."""

import asyncio
import subprocess
import sys


async def test_the_hubspot_round_trip_runs_from_the_command_line(tmp_path):
    command = [sys.executable, "-m", "leadflow_tools.cli", "crm-demo", "hubspot",
               "--state-dir", str(tmp_path)]  # fmt: skip
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()

    def printed(start: str) -> str:
        return next(line for line in lines if line.startswith(start))

    assert "hubspot_owner_id = 41001" in printed("notify → HubSpot: contact 7101")
    assert "'Follow up with Grace Hopper (Analytical Engines)', owner 41001" in printed(
        "notify → HubSpot: task"
    )
    assert "'reported': 1" in printed("HubSpot → ingest: object.creation of call 88001")
    assert printed("sla-timer: first response met at").endswith("the lead is working")
    assert lines[-3:] == ["the HubSpot round trip is complete.", "stopping …", "stopped."]
