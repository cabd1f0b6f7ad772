"""Eager execution of a server's send coroutine: run it at once, in the caller's frame, until
it first suspends; only then does it need a task. The first step runs in the caller's task, so
this is only for code that does not look at the current task (a server's send); user code gets
real tasks (:func:`spawn_eager`, eager on Python 3.12+).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["Resume", "spawn_eager", "step"]


def step(coro: Coroutine[Any, Any, None]) -> Resume | None:
    """Run ``coro`` until it first suspends. ``None`` if it finished (exceptions propagate);
    otherwise a :class:`Resume` to await (in a task) to finish it."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    return Resume(coro, waiting_on)


class Resume:
    """Awaitable that finishes a coroutine :func:`step` left suspended.

    It hands what the coroutine is waiting on to the enclosing task, exactly as if the task had
    run the coroutine from the start (``yield from`` delegation), so cancellation and
    exceptions reach the coroutine the way asyncio delivers them.
    """

    __slots__ = ("_coro", "_waiting_on")

    def close(self) -> None:
        """Close the coroutine without finishing it (its ``finally`` blocks run)."""
        self._coro.close()

    def __init__(self, coro: Coroutine[Any, Any, None], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, None, None]:
        coro, waiting_on = self._coro, self._waiting_on
        while True:
            try:
                yield waiting_on
            except BaseException as exc:  # delivered by the task: pass it to the coroutine
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting_on = coro.send(None)
                except StopIteration:
                    return


def spawn_eager(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A task for ``coro``; on Python 3.12+ it starts at once (an eager task), so a handler
    that never awaits finishes before this returns. On 3.11 it is a plain task."""
    loop = asyncio.get_running_loop()
    if _EAGER_TASKS:
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return loop.create_task(coro)


_EAGER_TASKS = sys.version_info >= (3, 12)
