"""What ``crosswire.start(server="uvicorn")`` adds to uvicorn: an open timeout, pongs within
the send buffer limit, and a send that needs no coroutine.

uvicorn arms no timer until it has answered a first request, so a client that sends half a
request and then nothing holds its connection, and a file descriptor, for ever. The HTTP
protocol made here drops such a connection once ``Limits.open_timeout`` runs out, unless
by then a request is being answered or the connection has become a WebSocket (uvicorn then
hands the socket to another protocol, and the timer is cancelled so that it does not keep
the HTTP protocol alive: 2-3 KiB per WebSocket until it fires).

uvicorn answers every ping as it reads it, whether or not the client reads the pongs; the
ASGI application never sees them. The WebSocket protocol made here counts the pongs written
while the socket's buffer is past its high-water mark, and past ``Limits.send_buffer_limit``
closes the connection with 1013, as crosswire closes a client that does not read its
messages (the application gets ``websocket.disconnect`` with that code).

uvicorn stops reading the socket after every message it queues for the application, and
starts again once the application has taken it: two ``epoll_ctl`` calls and the selector's
bookkeeping per message. The protocol made here stops only once :data:`READ_AHEAD`
messages wait (as websockets' own server does with its ``max_queue``), so reading still
stops for an application that falls behind.

Its ``send_now`` writes a message the way uvicorn's ASGI ``send`` does when that need not
wait. crosswire's ASGI adapter finds it on the ``send`` it is given (a bound method of this
protocol) and sends through it: no coroutine per message, and, with the socket and uvicorn's
queue of parsed messages at hand, the replies to one read coalesced like on the other
servers (:mod:`crosswire.cork`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from ..limits import Limits

__all__ = ["READ_AHEAD", "http_protocol", "websocket_protocol"]

#: Messages uvicorn may hold for the application before it stops reading the socket
#: (websockets' default ``max_queue``).
READ_AHEAD = 16


def http_protocol(open_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's own HTTP protocol class (httptools or h11), with an open timeout."""
    base: Any = AutoHTTPProtocol

    class OpenTimeoutProtocol(base):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._open_timer = self.loop.call_later(open_timeout, self._open_timed_out)

        def connection_lost(self, exc: Exception | None) -> None:
            self._open_timer.cancel()
            super().connection_lost(exc)

        def handle_websocket_upgrade(self, *args: Any) -> None:
            # The socket becomes the WebSocket protocol's: the timer must not keep this
            # protocol (its request's headers, its parser) alive until it fires.
            self._open_timer.cancel()
            super().handle_websocket_upgrade(*args)

        def _open_timed_out(self) -> None:
            transport = self.transport
            if self.cycle is None and transport.get_protocol() is self:
                transport.close()  # no request came whole, and it is no WebSocket either

    return OpenTimeoutProtocol


def websocket_protocol(limits: Limits) -> type[asyncio.Protocol]:
    """uvicorn's WebSocket protocol (on websockets' sans-I/O core), with its pongs counted
    against ``limits.send_buffer_limit``."""
    base: Any = WebSocketsSansIOProtocol
    limit, close_timeout = limits.send_buffer_limit, limits.close_timeout

    class BoundedPongsProtocol(base):  # type: ignore[misc]
        _paused_at = 0
        _overflowed = False
        #: uvicorn's ``send`` waits for the socket before it writes a message (for
        #: crosswire's ASGI adapter, which counts what is in flight).
        send_writes_first = False
        read_paused: bool  # (uvicorn's: whether it stopped reading the socket)

        def pause_writing(self) -> None:
            super().pause_writing()
            # uvicorn writes no message while paused: what the buffer gains is pongs.
            self._paused_at = self.transport.get_write_buffer_size()

        def handle_ping(self) -> None:
            super().handle_ping()
            if self.writable.is_set() or self._overflowed:
                return
            if self.transport.get_write_buffer_size() - self._paused_at > limit:
                self._overflow()

        def send_now(self, payload: str | bytes, text: bool) -> bool:
            """Write one message now, as this protocol's ASGI ``send`` would when it need not
            wait; False where it would wait or refuse (writes paused, closing, closed, no
            handshake), and the caller then goes through ``send``. For crosswire's ASGI
            adapter, which calls it without a coroutine per message."""
            if (
                self.close_sent
                or self.disconnected
                or not self.handshake_complete
                or self.initial_response is not None
                or not self.writable.is_set()
            ):
                return False
            conn = self.conn
            try:
                if text:
                    conn.send_text(payload.encode() if type(payload) is str else payload)
                else:
                    conn.send_binary(payload)
            except InvalidState:  # (send raises ClientDisconnected for it)
                return False
            self.transport.write(b"".join(conn.data_to_send()))
            return True

        def send_receive_event_to_app(self) -> None:
            if self.read_paused or self.queue.qsize() + 1 >= READ_AHEAD:
                super().send_receive_event_to_app()  # (it stops reading: the queue is full)
                return
            # uvicorn's stops reading whenever it is not stopped already: say it is, for the
            # time of the call, so that it queues the message and reads on.
            self.read_paused = True
            try:
                super().send_receive_event_to_app()
            finally:
                self.read_paused = False

        def _overflow(self) -> None:
            self._overflowed = True
            self.conn.send_close(1013, "send buffer overflow")
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.queue.put_nowait(
                {"type": "websocket.disconnect", "code": 1013, "reason": "send buffer overflow"}
            )
            # A client that does not read will not answer the close frame either.
            self.transport.pause_reading()
            self.loop.call_later(close_timeout, self.transport.abort)

    return BoundedPongsProtocol
