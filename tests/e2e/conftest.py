"""All five services as real processes against the session's PostgreSQL and broker."""

import pytest
from leadflow.registry import SERVICE_ORDER
from leadflow.testing import ServiceProcess, start_all


@pytest.fixture
async def services(stack, settings, tmp_path):
    procs = {
        name: ServiceProcess(name, settings, tmp_path / f"{name}.log") for name in SERVICE_ORDER
    }
    try:
        await start_all(list(procs.values()))
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()
