"""Crash points for reliability tests: end the process abruptly at a named point.

`LEADFLOW_FAULT_EXIT_AFTER=<point>:<n>` makes the n-th arrival at `<point>` call `os._exit`
(no shutdown hooks, no flushing, like `kill -9` at exactly that instruction). Unset, or under
`LEADFLOW_ENV=production`, every point is a no-op. The variable is read here and nowhere else.

Points:

- `outbox.published`: the relay has sent a batch to the broker but not yet marked it published
  (the restarted relay sends it again; consumers drop the copies by event id).
- `consumer.db_committed`: a consumer's batch transaction committed, its offsets not yet
  committed (the restarted consumer reads the batch again; the inbox makes it a no-op).
"""

from __future__ import annotations

import os
import sys

ENV_VAR = "LEADFLOW_FAULT_EXIT_AFTER"
EXIT_CODE = 86  # distinguishable from a crash or a signal in test logs
POINTS = frozenset({"outbox.published", "consumer.db_committed"})


def parse(value: str | None) -> tuple[str, int] | None:
    """`<point>:<n>` -> (point, n); None when unset or empty. ValueError when malformed."""
    if not value:
        return None
    point, sep, count = value.rpartition(":")
    if not sep or point not in POINTS or not count.isdigit() or int(count) < 1:
        raise ValueError(
            f"{ENV_VAR} must be <point>:<n> with n >= 1 and point one of {sorted(POINTS)}"
        )
    return point, int(count)


_target = None if os.environ.get("LEADFLOW_ENV") == "production" else parse(os.environ.get(ENV_VAR))
_arrivals = 0


def reached(point: str) -> None:
    """Mark an arrival at `point`; exits the process when it is the configured n-th one."""
    global _arrivals
    if _target is None or _target[0] != point:
        return
    _arrivals += 1
    if _arrivals >= _target[1]:
        sys.stderr.write(f'{{"msg": "fault point reached; exiting", "point": "{point}"}}\n')
        sys.stderr.flush()
        os._exit(EXIT_CODE)
