"""Session-wide real PostgreSQL and Kafka-protocol broker; each test gets its own database and topics."""

import pytest
from support.harness import TestStack


@pytest.fixture(scope="session")
def stack():
    stack = TestStack.start()
    yield stack
    stack.stop()


@pytest.fixture
async def settings(stack):
    return await stack.isolated_settings()
