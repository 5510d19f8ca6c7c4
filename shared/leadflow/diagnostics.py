"""What a process is waiting for: the stack of every task of an event loop, down the chain of
coroutines awaiting one another. A service logs it on SIGUSR1 (`kill -USR1 <pid>`), so a loop
that stopped making progress shows where it waits without stopping the process."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

log = logging.getLogger(__name__)


def task_stacks(loop: asyncio.AbstractEventLoop) -> str:
    """One block per task: its name, then `file:line function` of each coroutine it awaits."""
    lines = []
    for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
        lines.append(f"{task.get_name()}:")
        awaited = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                lines.append(
                    f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
                )
            step = getattr(awaited, "cr_await", None)
            awaited = step if step is not None else getattr(awaited, "gi_yieldfrom", None)
    return "\n".join(lines)


def log_task_stacks_on_signal(loop: asyncio.AbstractEventLoop) -> None:
    """Log every task's stack when the process gets SIGUSR1 (where the platform has it)."""
    if sys.platform == "win32":
        return

    def dump() -> None:
        log.warning("tasks of this process (SIGUSR1)", extra={"tasks": task_stacks(loop)})

    loop.add_signal_handler(signal.SIGUSR1, dump)
