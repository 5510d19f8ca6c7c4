"""A service process freezes its start-up heap and collects at its own thresholds (checked in a
process of its own: the test process's collector stays as it is)."""

from __future__ import annotations

import json
import subprocess
import sys

from leadflow.service import SERVICE_GC_THRESHOLDS

PROBE = """
import gc, json
from leadflow.service import settle_heap
before = gc.get_freeze_count()
settle_heap()
print(json.dumps({"before": before, "frozen": gc.get_freeze_count(), "thresholds": gc.get_threshold()}))
"""


def test_a_service_process_freezes_its_start_up_heap_and_collects_less_often():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["before"] == 0
    assert seen["frozen"] > 10_000  # the modules and models imported: all out of the scans
    assert tuple(seen["thresholds"]) == SERVICE_GC_THRESHOLDS != (700, 10, 10)
