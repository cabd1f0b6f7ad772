"""The transport of servers whose send is a coroutine (aiohttp, every ASGI server).

``peer.send`` must never await. A server's send coroutine nearly always finishes without
suspending: the frame goes to the socket's buffer at once, and the coroutine only waits when
that buffer is full (the client is not reading) or a lock is held. So each send is run
*eagerly*: stepped at once, in the caller's frame, like Python 3.12's eager tasks. Only a send
that does suspend gets a task, which finishes it and then the sends queued behind it, in order.
While that task runs, the queued bytes count towards the peer's send buffer, and the peer is
told to pause when they pass the high-water mark.

Nothing here creates a task or a queue entry per message while the client keeps up.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from ..peer import high_water

if TYPE_CHECKING:
    from ..peer import Peer

__all__ = ["EagerTransport", "Resume", "step"]

logger = logging.getLogger("crosswire.adapters")

HIGH_WATER = 64 * 1024

SendOne = Callable[[str | bytes, bool], Coroutine[Any, Any, None]]
SendClose = Callable[[int, str], Coroutine[Any, Any, None]]


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


class EagerTransport:
    """The Transport of an adapter whose native send must be awaited."""

    def __init__(
        self,
        send_one: SendOne,
        send_close: SendClose,
        abort: Callable[[], None],
        *,
        close_timeout: float,
        send_buffer_limit: int,
        extra_buffered: Callable[[], int] | None = None,
    ) -> None:
        self._send_one = send_one
        self._send_close = send_close
        self._abort = abort
        self._close_timeout = close_timeout
        self._high_water = high_water(send_buffer_limit, HIGH_WATER)
        self._low_water = self._high_water // 4
        self._extra_buffered = extra_buffered
        #: Sends waiting behind one that suspended; None while nothing is in flight.
        self._backlog: collections.deque[tuple[str | bytes, bool]] | None = None
        self._backlog_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._paused = False
        self._close: tuple[int, str] | None = None
        self._close_sent = False
        self._gone = False
        self._abort_timer: asyncio.TimerHandle | None = None
        self._read_gate = asyncio.Event()
        self._read_gate.set()
        self.peer: Peer | None = None

    # -- Transport -------------------------------------------------------------------------

    def send_text(self, payload: str | bytes) -> None:
        self._send(payload, True)

    def send_binary(self, payload: bytes) -> None:
        self._send(payload, False)

    def buffered_amount(self) -> int:
        extra = self._extra_buffered() if self._extra_buffered is not None else 0
        return self._backlog_bytes + extra

    def close(self, code: int, reason: str) -> None:
        if self._close is not None or self._gone:
            return
        self._close = (code, reason)
        self._abort_timer = asyncio.get_running_loop().call_later(self._close_timeout, self.abort)
        if self._backlog is None:  # nothing in flight: the close frame goes now
            self._close_sent = True
            self._run(self._send_close(code, reason), 0)
        # else: the task sends it after the backlog

    def abort(self) -> None:
        self._gone = True
        if self._backlog is not None:
            self._backlog.clear()
        self._backlog_bytes = 0
        self._abort()

    def pause_reading(self) -> None:
        self._read_gate.clear()

    def resume_reading(self) -> None:
        self._read_gate.set()

    # -- used by the adapter ---------------------------------------------------------------

    def start(self, peer: Peer) -> None:
        self.peer = peer

    @property
    def reading_paused(self) -> bool:
        """Whether the peer asked to stop reading (its inbound queue is full)."""
        return not self._read_gate.is_set()

    async def wait_reading(self) -> None:
        """Return once reading is allowed again."""
        await self._read_gate.wait()

    async def aclose(self) -> None:
        """The connection has ended: stop sending, cancel and await the task if any."""
        self._gone = True
        if self._abort_timer is not None:
            self._abort_timer.cancel()
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
            # A task cancelled before its first step never ran its own cleanup.
            self._task = None
            self._backlog = None
            self._backlog_bytes = 0

    # -- sending ---------------------------------------------------------------------------

    def _send(self, payload: str | bytes, text: bool) -> None:
        if self._close is not None or self._gone:
            return
        if self._backlog is None:
            # step() and _run() inlined: this is every message's path.
            coro = self._send_one(payload, text)
            try:
                waiting_on = coro.send(None)
            except StopIteration:
                return
            except Exception as exc:
                self._lost(exc)
                return
            self._suspended(Resume(coro, waiting_on), len(payload))
            return
        self._backlog.append((payload, text))
        self._backlog_bytes += len(payload)
        if not self._paused and self._backlog_bytes > self._high_water:
            self._paused = True
            if self.peer is not None:
                self.peer._pause_writing()

    def _run(self, coro: Coroutine[Any, Any, None], size: int) -> None:
        """Step one send; if it suspends, a task finishes it and everything queued after it."""
        try:
            rest = step(coro)
        except Exception as exc:
            self._lost(exc)
            return
        if rest is not None:
            self._suspended(rest, size)

    def _suspended(self, rest: Resume, size: int) -> None:
        """A send suspended: from now on sends queue behind it, and a task finishes them."""
        self._backlog = collections.deque()
        self._backlog_bytes = size
        self._task = asyncio.get_running_loop().create_task(self._finish(rest, size))

    async def _finish(self, first: Awaitable[None], size: int) -> None:
        backlog = self._backlog
        assert backlog is not None
        try:
            await first
            self._backlog_bytes -= size
            while backlog:
                payload, text = backlog.popleft()
                await self._send_one(payload, text)
                self._backlog_bytes -= len(payload)
                self._maybe_resume()
            if self._close is not None and not self._close_sent:
                self._close_sent = True
                await self._send_close(*self._close)
        except Exception as exc:
            self._lost(exc)
        finally:
            self._backlog = None
            self._backlog_bytes = 0
            self._task = None
            self._maybe_resume()

    def _maybe_resume(self) -> None:
        if self._paused and self._backlog_bytes <= self._low_water:
            self._paused = False
            if self.peer is not None:
                self.peer._resume_writing()

    def _lost(self, exc: Exception) -> None:
        # The server refused to send: the connection is closing or gone, and the adapter's
        # receive loop is about to see it end. Nothing more can be written.
        logger.debug("send failed, connection is gone: %r", exc)
        self._gone = True
