"""The transport of servers whose send is a coroutine (aiohttp, every ASGI server).

``peer.send`` must never await. A server's send coroutine nearly always finishes without
suspending: the frame goes to the socket's buffer at once, and the coroutine only waits when
that buffer is full (the client is not reading) or a lock is held. So each send is run
*eagerly*: its first step runs at once (:func:`crosswire.eager.step`), in a copy of the
caller's context so that no context variable it sets leaks out. Only a send that does suspend
gets a task, which finishes it and then the sends queued behind it, in order.

Two exceptions run in a task from the start: close frames (servers wrap closing in
``asyncio.timeout``, which must belong to a task of ours), and sends made outside any task
(a timer callback), where a server's send could not use the current task at all.

While a task is sending, queued bytes count towards the peer's send buffer, and the peer is told
to pause once they and the server's own buffer pass the high-water mark.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextvars
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from ..eager import Resume
from ..peer import high_water
from ._gate import ReadGate

if TYPE_CHECKING:
    from ..cork import Cork
    from ..peer import Peer

__all__ = ["HIGH_WATER", "EagerTransport"]

logger = logging.getLogger("crosswire.adapters")

#: The default high-water mark (lowered to ``Limits.send_buffer_limit`` if that is smaller).
HIGH_WATER = 64 * 1024


def _size(payload: str | bytes) -> int:
    return len(payload.encode()) if isinstance(payload, str) else len(payload)


class EagerTransport(abc.ABC):
    """The Transport of an adapter whose native send must be awaited: each adapter subclasses
    it with ``_send_one``, ``_send_close`` and ``_drop`` (methods, so that an idle connection
    keeps no closures), and ``_server_buffered`` when its server has a write buffer of its own.

    With a server buffer (aiohttp, ``hands_over``), a send counts as handed over once the
    server has it. Without one (ASGI), a send counts until its coroutine has finished.

    Unless ``trusted_send``, each send's first step runs in a copy of the caller's context and
    only inside a task: unknown code may wrap the send (ASGI middleware such as OpenTelemetry's
    sets context variables there, and could look at the current task). An adapter that calls
    its server's own send directly, which does neither, passes ``trusted_send=True`` and skips
    both, which are most of the cost of a fan-out.
    """

    __slots__ = (
        "_abort_timer",
        "_backlog",
        "_backlog_bytes",
        "_close",
        "_close_sent",
        "_close_timeout",
        "_gone",
        "_leftover",
        "_low_water",
        "_paused",
        "_read_gate",
        "_task",
        "_trusted",
        "cork",
        "hands_over",
        "high_water",
        "peer",
    )

    def __init__(
        self,
        *,
        close_timeout: float,
        send_buffer_limit: int,
        hands_over: bool = False,
        trusted_send: bool = False,
    ) -> None:
        self._trusted = trusted_send
        self._close_timeout = close_timeout
        self.high_water = high_water(send_buffer_limit, HIGH_WATER)
        self._low_water = self.high_water // 4
        #: Whether the server has a write buffer of its own (``_server_buffered``).
        self.hands_over = hands_over
        #: Sends waiting behind one in flight; None while nothing is in flight.
        self._backlog: collections.deque[tuple[str | bytes, bool]] | None = None
        self._backlog_bytes = 0
        self._task: asyncio.Task[None] | None = None
        self._leftover: Resume | None = None
        self._paused = False
        self._close: tuple[int, str] | None = None
        self._close_sent = False
        self._gone = False
        self._abort_timer: asyncio.TimerHandle | None = None
        self._read_gate = ReadGate()
        self.peer: Peer | None = None
        self.cork: Cork | None = None

    # -- what each adapter writes with ---------------------------------------------------------

    @abc.abstractmethod
    def _send_one(self, payload: str | bytes, text: bool) -> Coroutine[Any, Any, None]:
        """The server's send of one message (a coroutine, stepped eagerly)."""

    @abc.abstractmethod
    async def _send_close(self, code: int, reason: str) -> None:
        """The server's close."""

    @abc.abstractmethod
    def _drop(self) -> None:
        """End the connection now, without a close handshake."""

    def _server_buffered(self) -> int:
        """Bytes in the server's own write buffer (with ``hands_over``)."""
        return 0

    # -- Transport -------------------------------------------------------------------------

    def bind(self, peer: Peer) -> None:
        self.peer = peer

    def send_text(self, payload: str | bytes) -> None:
        self._send(payload, True)

    def send_binary(self, payload: bytes) -> None:
        self._send(payload, False)

    def buffered_amount(self) -> int:
        return self._backlog_bytes + self._server_buffered()

    def close(self, code: int, reason: str) -> None:
        if self._close is not None or self._gone:
            return
        self._close = (code, reason)
        self._read_gate.open()  # the client's close frame must be read
        self._abort_timer = asyncio.get_running_loop().call_later(self._close_timeout, self.abort)
        if self._backlog is None:  # nothing in flight: a task sends the close frame now
            self._start_task(None, 0)
        # else: the task in flight sends it after the backlog

    def abort(self) -> None:
        self._gone = True
        self._read_gate.open()  # the adapter's receive loop must see the end
        if self._backlog is not None:
            self._backlog.clear()
        self._backlog_bytes = 0
        if self._task is not None:
            self._task.cancel()
        self._drop()

    def pause_reading(self) -> None:
        self._read_gate.pause()

    def resume_reading(self) -> None:
        self._read_gate.open()

    # -- used by the adapter ---------------------------------------------------------------

    @property
    def reading_paused(self) -> bool:
        """Whether the peer asked to stop reading (its inbound queue is full)."""
        return self._read_gate.paused

    async def wait_reading(self) -> None:
        """Return once reading is allowed again (or the connection is closing)."""
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
        if self._leftover is not None:
            self._leftover.close()
            self._leftover = None
        self._task = None
        self._backlog = None
        self._backlog_bytes = 0

    # -- sending ---------------------------------------------------------------------------

    def _send(self, payload: str | bytes, text: bool) -> None:
        if self._close is not None or self._gone:
            return
        if self._backlog is not None:  # something is in flight: queue behind it
            self._backlog.append((payload, text))
            self._backlog_bytes += _size(payload)
            self._maybe_pause()
            return
        context = None
        if not self._trusted:
            if asyncio.current_task() is None:  # a timer callback: no task to step it in
                self._backlog = collections.deque([(payload, text)])
                self._backlog_bytes = _size(payload)
                self._start_task(None, 0)
                return
            context = contextvars.copy_context()
        coro = self._send_one(payload, text)
        try:  # step() inlined: this is every message's path
            waiting_on = coro.send(None) if context is None else context.run(coro.send, None)
        except StopIteration:
            return
        except Exception as exc:
            self._lost(exc)
            return
        # It suspended: finish it, and what follows, in a task.
        rest = Resume(coro, waiting_on)
        # Handed to a server with its own buffer, the frame is counted there already.
        in_flight = 0 if self.hands_over else _size(payload)
        self._backlog = collections.deque()
        self._backlog_bytes = in_flight
        self._start_task(rest, in_flight, context)
        self._maybe_pause()

    def _start_task(
        self, first: Resume | None, in_flight: int, context: contextvars.Context | None = None
    ) -> None:
        if self._backlog is None:
            self._backlog = collections.deque()
        self._leftover = first
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._drain(first, in_flight), context=context)

    async def _drain(self, first: Resume | None, in_flight: int) -> None:
        backlog = self._backlog
        assert backlog is not None
        handed_over = self.hands_over
        try:
            if first is not None:
                self._leftover = None
                await first
                self._backlog_bytes -= in_flight
            while backlog and not self._gone:
                payload, text = backlog.popleft()
                size = _size(payload)
                if handed_over:  # the server's buffer counts it from now on
                    self._backlog_bytes -= size
                await self._send_one(payload, text)
                if not handed_over:
                    self._backlog_bytes -= size
                self._maybe_resume()
            if self._close is not None and not self._close_sent and not self._gone:
                self._close_sent = True
                await self._send_close(*self._close)
        except Exception as exc:
            self._lost(exc)
        finally:
            self._backlog = None
            self._backlog_bytes = 0
            self._task = None
            self._maybe_resume()

    def _maybe_pause(self) -> None:
        if not self._paused and self.buffered_amount() > self.high_water:
            self._paused = True
            if self.peer is not None:
                self.peer._pause_writing()

    def _maybe_resume(self) -> None:
        if self._paused and max(self._backlog_bytes, 0) <= self._low_water:
            self._paused = False
            if self.peer is not None:
                self.peer._resume_writing()

    def _lost(self, exc: Exception) -> None:
        # The server refused to send: the connection is closing or gone, and the adapter's
        # receive loop is about to see it end. Nothing more can be written.
        logger.debug("send failed, connection is gone: %r", exc)
        self._gone = True
        self._read_gate.open()
