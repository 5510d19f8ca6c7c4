"""`eventually` and its blocking twin `eventually_sync`: the value that ended the wait, and a
failure that says what was last seen (or what `describe` says)."""

import pytest
from support.harness import eventually, eventually_sync


def test_eventually_sync_returns_the_first_truthy_value():
    values = iter([0, None, [], "ready", "later"])
    assert eventually_sync(lambda: next(values), timeout=5, interval=0.01) == "ready"


def test_eventually_sync_fails_with_the_last_value_seen():
    with pytest.raises(AssertionError, match=r"within 0.2s; last value: \[\]"):
        eventually_sync(lambda: [], timeout=0.2, interval=0.01)


def test_eventually_sync_fails_with_what_describe_says():
    with pytest.raises(AssertionError, match="the demo printed nothing") as failed:
        eventually_sync(
            lambda: False, timeout=0.1, interval=0.01, describe=lambda: "the demo printed nothing"
        )
    assert "last value" not in str(failed.value)


def test_eventually_sync_lets_an_error_of_the_check_through():
    def check():
        raise AssertionError("the process exited")

    with pytest.raises(AssertionError, match="the process exited"):
        eventually_sync(check, timeout=5)


async def test_eventually_awaits_an_async_check_and_describes_a_failure():
    calls = []

    async def check():
        calls.append(1)
        return len(calls) >= 3 and len(calls)

    assert await eventually(check, timeout=5, interval=0.01) == 3
    with pytest.raises(AssertionError, match="still 2 rows"):
        await eventually(lambda: None, timeout=0.1, interval=0.01, describe=lambda: "still 2 rows")
