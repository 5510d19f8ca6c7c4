"""All six services as real processes against the session's PostgreSQL and broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from leadflow_tools.registry import SERVICE_ORDER
from leadflow_tools.supervisor import ServiceProcess, start_all
from support.harness import LeadRun, routed_leads


@pytest.fixture
async def services(stack, settings, tmp_path):
    procs = {
        name: ServiceProcess(name, settings, tmp_path / f"{name}.log") for name in SERVICE_ORDER
    }
    try:
        await start_all(list(procs.values()))
        yield procs
    finally:  # all at once: each stop waits for its process to finish
        await asyncio.gather(*(asyncio.to_thread(proc.stop) for proc in procs.values()))


@pytest.fixture
async def lead_run(services) -> AsyncIterator[LeadRun]:
    """The running services with one rep and a webhook endpoint for `lead.routed`; the test
    sends its lead with `ingest`."""
    async with routed_leads({name: proc.url for name, proc in services.items()}) as run:
        yield run
