"""A service's background loops are kept alive by `supervise`: a crash is logged and the loop
started again, a cancelled wait inside the loop (a library future cancelled under it) counts as
a crash, and only a cancellation of the loop's own task, or the stop signal, ends it."""

import asyncio
import logging

import pytest
from leadflow.loops import Stop
from leadflow.service import supervise


async def test_a_wait_cancelled_under_the_loop_is_a_crash_and_the_loop_runs_again(caplog):
    runs = []

    async def work() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            cancelled = asyncio.get_running_loop().create_future()
            cancelled.cancel()  # as a client cancels a request's future when its connection goes
            await cancelled

    with caplog.at_level(logging.ERROR, logger="leadflow.service"):
        await asyncio.wait_for(supervise("consumer:leads", work, Stop()), 10)
    assert runs == [0, 1]
    [record] = [r for r in caplog.records if "cancelled wait" in r.getMessage()]
    assert record.task == "consumer:leads"


async def test_a_crash_is_logged_and_the_loop_runs_again(caplog):
    runs = []

    async def work() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="leadflow.service"):
        await asyncio.wait_for(supervise("worker", work, Stop()), 30)
    assert runs == [0, 1, 2]
    assert sum("crashed; restarting" in r.getMessage() for r in caplog.records) == 2


async def test_cancelling_the_loops_own_task_ends_it():
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(supervise("worker", work, Stop()))
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_after_the_stop_signal_a_cancelled_wait_ends_the_loop():
    stop = Stop()
    runs = []

    async def work() -> None:
        runs.append(1)
        stop.set()
        cancelled = asyncio.get_running_loop().create_future()
        cancelled.cancel()
        await cancelled

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(supervise("worker", work, stop), 10)
    assert runs == [1]


async def test_every_runs_its_work_again_after_a_failure_until_stopping(caplog):
    stop = Stop()
    passes = []

    async def refresh() -> None:
        passes.append(len(passes))
        if len(passes) == 2:
            raise ConnectionError("database away")
        if len(passes) == 4:
            stop.set()

    with caplog.at_level(logging.WARNING, logger="leadflow.loops"):
        await asyncio.wait_for(stop.every(0.01, refresh, failed="keys not read"), 10)
    assert passes == [0, 1, 2, 3]
    [failure] = [r for r in caplog.records if r.getMessage() == "keys not read"]
    assert "database away" in failure.error
