"""A send buffer for servers whose send is a coroutine (ASGI, aiohttp).

``peer.send`` must never await, so these adapters put outgoing messages in a queue that one
writer task per connection drains. Messages produced while a received message is being
handled are flushed by the receive loop itself, without waking the writer task.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..peer import Peer

__all__ = ["QueuedTransport"]

HIGH_WATER = 64 * 1024
LOW_WATER = 16 * 1024

SendOne = Callable[[str | bytes, bool], Awaitable[None]]
SendClose = Callable[[int, str], Awaitable[None]]


class QueuedTransport:
    """The Transport of an adapter whose native send must be awaited."""

    def __init__(
        self,
        send_one: SendOne,
        send_close: SendClose,
        abort: Callable[[], None],
        *,
        close_timeout: float,
        extra_buffered: Callable[[], int] | None = None,
    ) -> None:
        self._send_one = send_one
        self._send_close = send_close
        self._abort = abort
        self._close_timeout = close_timeout
        self._extra_buffered = extra_buffered
        self._queue: collections.deque[tuple[str | bytes, bool]] = collections.deque()
        self._bytes = 0
        self._paused = False
        self._writing = False
        self._dispatching = False
        self._close: tuple[int, str] | None = None
        self._closed = False
        self._wake = asyncio.Event()
        self._read_gate = asyncio.Event()
        self._read_gate.set()
        self._writer: asyncio.Task[None] | None = None
        self._abort_timer: asyncio.TimerHandle | None = None
        self.peer: Peer | None = None

    # -- Transport ---------------------------------------------------------------------------

    def send(self, payload: str | bytes, text: bool) -> None:
        if self._close is not None:
            return
        self._queue.append((payload, text))
        self._bytes += len(payload)
        if not self._paused and self._bytes > HIGH_WATER:
            self._paused = True
            if self.peer is not None:
                self.peer._pause_writing()
        if not self._dispatching:
            self._wake.set()

    def buffered_amount(self) -> int:
        extra = self._extra_buffered() if self._extra_buffered is not None else 0
        return self._bytes + extra

    def close(self, code: int, reason: str) -> None:
        if self._close is None:
            self._close = (code, reason)
            self._wake.set()
            loop = asyncio.get_running_loop()
            self._abort_timer = loop.call_later(self._close_timeout, self.abort)

    def abort(self) -> None:
        self._queue.clear()
        self._bytes = 0
        self._abort()

    def pause_reading(self) -> None:
        self._read_gate.clear()

    def resume_reading(self) -> None:
        self._read_gate.set()

    # -- used by the adapter -----------------------------------------------------------------

    def start(self, peer: Peer) -> None:
        self.peer = peer
        self._writer = asyncio.get_running_loop().create_task(self._run())

    def begin_dispatch(self) -> None:
        """A received message is being handled: its replies are flushed by ``end_dispatch``."""
        self._dispatching = True

    async def end_dispatch(self) -> None:
        self._dispatching = False
        if self._queue or self._close is not None:
            await self.flush()
        if not self._read_gate.is_set():
            await self._read_gate.wait()

    async def flush(self) -> None:
        """Write everything queued, then the close frame if one was asked for."""
        if self._writing or self._closed:
            return
        self._writing = True
        try:
            queue = self._queue
            while queue:
                payload, text = queue.popleft()
                self._bytes -= len(payload)
                await self._send_one(payload, text)
                if self._paused and self._bytes <= LOW_WATER:
                    self._paused = False
                    if self.peer is not None:
                        self.peer._resume_writing()
            if self._close is not None and not self._closed:
                self._closed = True
                await self._send_close(*self._close)
        finally:
            self._writing = False

    async def _run(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                # The socket is gone; the receive loop sees the disconnect and ends.
                self._closed = True

    async def aclose(self) -> None:
        """Stop the writer task; called once the connection has ended."""
        self._closed = True
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.wait([self._writer])
