"""Session-wide real PostgreSQL and Kafka-protocol broker; each test gets its own database and topics.

The topics of a test's settings are deleted when whatever made them ends: the fixture that made
them at its teardown (after the fixture's own teardown, so nothing of it still uses them), the
test body's own at the end of the test."""

from __future__ import annotations

import pytest
from support.harness import TestStack

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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    before = len(_session[0].issued_prefixes) if _session else 0
    try:
        return (yield)
    finally:
        if _session:
            stack = _session[0]
            made = [p for p in stack.issued_prefixes[before:] if p not in _owned_by_fixtures]
            stack.delete_topics(made)
