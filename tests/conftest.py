"""Session-wide real PostgreSQL and Kafka-protocol broker; each test gets its own database and topics.

The topics of a test's settings are deleted when whatever made them ends: the fixture that made
them at its teardown (after the fixture's own teardown, so nothing of it still uses them), the
test body's own at the end of the test."""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest
from hypothesis import settings as hypothesis_settings
from leadflow.diagnostics import task_stacks
from support.harness import TestStack

# A property is judged by what it asserts, not by how long one example took: on a machine busy
# with other test processes a deadline fails examples that are right (speed is benchmarked).
hypothesis_settings.register_profile("leadflow", deadline=None)
hypothesis_settings.load_profile("leadflow")

_session: list[TestStack] = []  # the session's stack, once a test asked for it
_owned_by_fixtures: set[str] = set()  # prefixes a fixture made: deleted at its own teardown


@pytest.fixture(scope="session")
def stack():
    stack = TestStack.start()
    _session.append(stack)
    yield stack
    _session.clear()
    stack.stop()


@pytest.fixture
async def settings(stack):
    return await stack.isolated_settings()


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    if not _session:
        return (yield)
    stack = _session[0]
    made: list[str] = []
    # Registered before the fixture runs, so it runs after the fixture's own teardown.
    fixturedef.addfinalizer(lambda: stack.delete_topics(made))
    before = len(stack.issued_prefixes)
    try:
        return (yield)
    finally:
        made.extend(stack.issued_prefixes[before:])
        _owned_by_fixtures.update(made)


def _timeout_of(item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 0)


def _dump_tasks_of_main_loop() -> None:
    """Print the stack of every task of the event loop the main thread is running (what a test
    that hangs is waiting for), from another thread, through the loop itself."""
    frame = sys._current_frames().get(threading.main_thread().ident)
    while frame is not None:
        loop = frame.f_locals.get("self")
        if isinstance(loop, asyncio.AbstractEventLoop):
            break
        frame = frame.f_back
    else:
        return

    def dump() -> None:
        print(f"+++ tasks of the test's event loop, {_DUMP_BEFORE:.0f} s before its timeout +++")
        print(task_stacks(loop))

    loop.call_soon_threadsafe(dump)


_DUMP_BEFORE = 10.0  # seconds before a test's timeout its event loop's tasks are printed


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    before = len(_session[0].issued_prefixes) if _session else 0
    timeout = _timeout_of(item)
    watchdog = None
    if timeout > 3 * _DUMP_BEFORE:
        watchdog = threading.Timer(timeout - _DUMP_BEFORE, _dump_tasks_of_main_loop)
        watchdog.daemon = True
        watchdog.start()
    try:
        return (yield)
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if _session:
            stack = _session[0]
            made = [p for p in stack.issued_prefixes[before:] if p not in _owned_by_fixtures]
            stack.delete_topics(made)
