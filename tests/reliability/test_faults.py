"""The crash points of leadflow.faults: armed by one variable, exiting at exactly the n-th arrival,
inert when unset or in production."""

import subprocess
import sys

import pytest
from leadflow import faults

PROGRAM = """
from leadflow import faults
for i in range(1, 6):
    faults.reached("consumer.db_committed")
    print(i, flush=True)
"""


def run(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=60
    )


def test_the_process_exits_at_the_nth_arrival_and_not_before():
    done = run({"LEADFLOW_FAULT_EXIT_AFTER": "consumer.db_committed:3"})
    assert done.returncode == faults.EXIT_CODE
    assert done.stdout.split() == ["1", "2"]  # arrivals 1 and 2 passed, the third never returned
    assert "consumer.db_committed" in done.stderr


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"LEADFLOW_FAULT_EXIT_AFTER": "outbox.published:1"},  # another point
        {"LEADFLOW_FAULT_EXIT_AFTER": "consumer.db_committed:1", "LEADFLOW_ENV": "production"},
    ],
)
def test_unarmed_points_do_nothing(env):
    done = run(env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "2", "3", "4", "5"]


@pytest.mark.parametrize(
    "value", ["consumer.db_committed", "nowhere:1", "consumer.db_committed:0", "outbox.published:x"]
)
def test_a_malformed_setting_is_refused_naming_the_variable(value):
    with pytest.raises(ValueError, match="LEADFLOW_FAULT_EXIT_AFTER"):
        faults.parse(value)


def test_parse():
    assert faults.parse(None) is None
    assert faults.parse("outbox.published:4") == ("outbox.published", 4)
