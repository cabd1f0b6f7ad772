"""ReadGate: whether an adapter's receive loop may read the next message."""

from __future__ import annotations

import asyncio

__all__ = ["ReadGate"]


class ReadGate:
    """Open, or paused by the peer while its inbound queue is full. The future a paused
    reader waits on is made only then: an ``asyncio.Event`` would cost every idle connection
    a deque (about 600 bytes) for a pause that most never see."""

    __slots__ = ("_resumed", "paused")

    def __init__(self) -> None:
        self.paused = False
        self._resumed: asyncio.Future[None] | None = None

    def pause(self) -> None:
        self.paused = True

    def open(self) -> None:
        """Let the reader go on (it is woken if it waits)."""
        self.paused = False
        resumed, self._resumed = self._resumed, None
        if resumed is not None and not resumed.done():
            resumed.set_result(None)

    async def wait(self) -> None:
        """Return once the gate is open."""
        while self.paused:
            if self._resumed is None:
                self._resumed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._resumed)
