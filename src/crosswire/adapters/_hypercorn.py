"""What ``crosswire.start(server="hypercorn")`` changes in hypercorn's WebSocket stream: its size
limit mended, and less of hypercorn's work per message.

hypercorn (0.17-0.18) reads WebSocket frames with wsproto in its ``WSStream``. Past its
``websocket_max_message_size`` it goes wrong four ways, which a crosswire App behind it
cannot see or mend through ASGI:

* it inflates a compressed frame whole before it compares sizes: a 1 MB frame of zeros
  becomes 1 GiB in memory (wsproto's permessage-deflate decompresses without a bound);
* once a message is too big it keeps adding the rest of it to its buffer, and handles one
  event per read, so a close frame read together with the last fragments is never seen and
  the TCP connection is never closed;
* it never tells the application: the peer stays open until the client drops;
* wsproto hands out a frame's payload as it arrives, so a frame header declaring 2**62 bytes
  followed by a few holds the connection open for ever (hypercorn sends no pings to end it).

:class:`WSStream` is hypercorn's stream with these mended: inflation stops at the limit
(:class:`BoundedDeflate`), a frame whose header declares more than the limit fails with
1009 once its header is read (:class:`BoundedFrameDecoder`), the rest of a message that is
too big is dropped, and the application gets ``websocket.disconnect`` with the code
hypercorn sent (1009). A frame wsproto cannot parse (a protocol error, bad UTF-8) now gets a
close frame with wsproto's code (1002, 1007, 1009) before the connection ends, where
hypercorn dropped the connection without one; what the client sends after it is dropped
unread. Either way the connection ends with the client's close frame or end of stream, or
after ``websocket_close_timeout`` (an attribute crosswire adds to hypercorn's Config:
``Limits.close_timeout``).

The stream also spares each message some of hypercorn's work, for crosswire's ASGI adapter
(``adapters/asgi.py``): a message that arrives whole in one frame is handed to the
application without hypercorn's buffer; :meth:`WSStream.send_now` writes a message at once
where hypercorn's ``app_send`` would not wait (HTTP/1.1 on asyncio; the frame made in one
step without an extension, ``adapters/_server_frames.py``); and ``transport`` and ``queue``
let the adapter hold the socket while more messages of a read wait (:mod:`crosswire.cork`).

:func:`install` puts the stream in hypercorn's HTTP/1.1 and HTTP/2 protocols (hypercorn also
serves WebSockets over HTTP/2, RFC 8441, on a cleartext socket to a client that opens with the
HTTP/2 preface); that is process-wide, and does for every hypercorn server of the process what
it does for crosswire's.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from typing import Any, cast

from hypercorn.asyncio.tcp_server import TCPServer
from hypercorn.protocol import h2 as hypercorn_h2
from hypercorn.protocol import h11 as hypercorn_h11
from hypercorn.protocol import ws_stream
from hypercorn.protocol.events import StreamClosed
from wsproto.connection import ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, ParseFailed

from ._server_frames import FIN_BINARY, FIN_TEXT, server_frame

__all__ = ["BoundedDeflate", "BoundedFrameDecoder", "WSStream", "install"]


class BoundedDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, inflating at most ``max_size`` bytes per message: past
    it the frame fails with 1009 before anything more is inflated."""

    max_size = 0
    _inflated = 0

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        allowed = self.max_size - self._inflated
        try:  # one byte more than allowed tells a message that is too big
            inflated = self._decompressor.decompress(bytes(data), allowed + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(inflated)
        if self._inflated > self.max_size:
            return CloseReason.MESSAGE_TOO_BIG
        return inflated

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        result = super().frame_inbound_complete(proto, fin)
        if isinstance(result, bytes):
            self._inflated += len(result)
            if self._inflated > self.max_size:
                result = CloseReason.MESSAGE_TOO_BIG
        if fin:
            self._inflated = 0
        return result


class BoundedFrameDecoder(FrameDecoder):
    """wsproto's frame decoder, failing with 1009 a data frame whose header declares more
    than ``max_size`` bytes, as soon as the header is read. wsproto hands out a frame's
    payload as it arrives, so without it a header declaring 2**62 bytes holds the connection
    open for ever, waiting. A compressed frame is held to the same bound, as websockets,
    uvicorn and aiohttp hold it (docs/servers.md)."""

    max_size = 0

    def parse_header(self) -> bool:
        if not super().parse_header():
            return False
        header = self.header
        assert header is not None
        if header.payload_len > self.max_size and not header.opcode.iscontrol():
            raise ParseFailed("message too big", CloseReason.MESSAGE_TOO_BIG)
        return True


class WSStream(ws_stream.WSStream):
    """hypercorn's WebSocket stream with its size limit mended (see the module docstring)."""

    #: The rest of a message that was too big is being dropped.
    _discarding = False
    #: The close frame for a failure is sent and the application told.
    _failed = False
    #: wsproto can parse no more (after a frame it failed): what arrives is dropped unread.
    _lingering = False
    #: Set once the stream has ended (for the close timeout to stop waiting).
    _ended: asyncio.Event | None = None

    #: The connection's frame decoder and inflater are bounded.
    _bounded: bool
    #: ``app_send`` writes a message, then waits for the socket to drain (for crosswire's
    #: ASGI adapter, which counts what is in flight).
    send_writes_first = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Both set here, with hypercorn's own: CPython 3.11 keeps an instance's attributes
        # without a dict of its own (0.8 KiB less per connection) only while they are among
        # those its first few dozen instances set; one first set later (when the stream's
        # first event comes) gives every stream its own dict.
        self._bounded = False
        self._tcp = _tcp_server(self.send)

    def _bound(self) -> None:
        """Bound the frame decoder and the inflater of the connection, once it exists (done
        before wsproto reads the first byte of it, which may come before the 101 is out)."""
        self._bounded = True
        limit = self.config.websocket_max_message_size
        proto = self.connection._proto
        decoder = proto._frame_decoder
        decoder.__class__ = BoundedFrameDecoder
        cast(BoundedFrameDecoder, decoder).max_size = limit
        for extension in proto.extensions:
            if type(extension) is PerMessageDeflate:
                extension.__class__ = BoundedDeflate
                cast(BoundedDeflate, extension).max_size = limit

    # -- writing without a coroutine per message (crosswire's ASGI adapter) -----------------

    @property
    def transport(self) -> asyncio.BaseTransport | None:
        """The connection's asyncio transport (HTTP/1.1), for write coalescing."""
        tcp = self._tcp
        return None if tcp is None else tcp.writer.transport

    @property
    def queue(self) -> asyncio.Queue[Any] | None:
        """What hypercorn has read for the application and it has not received yet."""
        return getattr(self.app_put, "__self__", None)

    def send_now(self, payload: str | bytes, text: bool) -> bool:
        """Write one message now, as :meth:`app_send` would when it need not wait; False
        where it would wait or refuse (another write in progress, bytes still buffered, the
        stream not open, HTTP/2), and the caller then goes through ``app_send``."""
        tcp = self._tcp
        if (
            tcp is None
            or self.closed
            or self.state is not ws_stream.ASGIWebsocketState.CONNECTED
            or tcp.send_lock.locked()
        ):
            return False
        transport = tcp.writer.transport
        connection = self.connection
        if (
            transport.get_write_buffer_size()
            or transport.is_closing()
            or connection.state is not ConnectionState.OPEN
        ):
            return False
        proto = connection._proto
        if not proto.extensions and proto._outbound_opcode is None:
            # The frame wsproto would make, made in one step (no extension, not inside a
            # fragmented message): FIN, no reserved bit, unmasked.
            if isinstance(payload, str):
                payload = payload.encode()
            data = server_frame(FIN_TEXT if text else FIN_BINARY, payload)
        elif text:
            data = connection.send(TextMessage(data=_text(payload)))
        else:
            data = connection.send(BytesMessage(data=bytes(payload)))  # type: ignore[arg-type]
        transport.write(data)
        return True

    async def handle(self, event: Any) -> None:
        if not self._bounded and getattr(self, "connection", None) is not None:
            self._bound()
        if self._failed:
            if isinstance(event, StreamClosed):  # the application has been told already
                self.closed = True
                if self._ended is not None:
                    self._ended.set()
                return
            if self._lingering:
                return
        await super().handle(event)

    async def _handle_events(self) -> None:
        for event in self.connection.events():
            if isinstance(event, Message):
                if self._failed:  # the application was told the connection ended
                    continue  # (its queue would fill, and hypercorn wait on it for ever)
                buffer = self.buffer
                if (
                    event.message_finished
                    and buffer.value is None
                    and not self._discarding
                    and len(event.data) <= buffer.max_length
                ):
                    # A whole message in one frame, nearly every message: handed over as
                    # hypercorn's buffer hands it over, without making the buffer.
                    assert self.app_put is not None  # (set when the application started)
                    data = event.data
                    if isinstance(event, TextMessage):
                        message = {"type": "websocket.receive", "bytes": None, "text": data}
                    else:
                        message = {"type": "websocket.receive", "bytes": bytes(data), "text": None}
                    await self.app_put(message)
                else:
                    await self._message(event)
            elif isinstance(event, Ping):
                await self._send_wsproto_event(event.response())
            elif isinstance(event, CloseConnection):
                if self.connection.state is ConnectionState.OPEN:  # wsproto failed a frame
                    await self._fail(event.code, event.reason or "", parsing=False)
                    return
                if self.connection.state is ConnectionState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                await self.send(StreamClosed(stream_id=self.stream_id))

    async def _message(self, event: Message[Any]) -> None:
        if self._discarding:  # the rest of a message that was too big
            self._discarding = not event.message_finished
            return
        try:
            self.buffer.extend(event)
        except ws_stream.FrameTooLargeError:
            self.buffer.clear()
            self._discarding = not event.message_finished
            await self._fail(CloseReason.MESSAGE_TOO_BIG, "message too big", parsing=True)
            return
        if event.message_finished:
            assert self.app_put is not None  # (set when the application started)
            await self.app_put(self.buffer.to_message())
            self.buffer.clear()

    async def _fail(self, code: int, reason: str, *, parsing: bool) -> None:
        """Send a close frame with ``code`` and tell the application. The connection ends
        with the client's answer (read while wsproto can still ``parse``), when the client
        closes it, or after ``websocket_close_timeout``, whichever comes first."""
        if self._failed or self.closed:
            return
        self._failed = True
        self._lingering = not parsing
        await self._send_wsproto_event(CloseConnection(code=code, reason=reason))
        self.state = ws_stream.ASGIWebsocketState.CLOSED
        if self.app_put is not None:
            await self.app_put(
                {"type": "websocket.disconnect", "code": int(code), "reason": reason}
            )
        self._ended = asyncio.Event()
        self.task_group.spawn(self._end_after_close_timeout, self._ended)

    async def _end_after_close_timeout(self, ended: asyncio.Event) -> None:
        timeout = getattr(self.config, "websocket_close_timeout", 5.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ended.wait(), timeout)
        if not self.closed:
            await self.send(StreamClosed(stream_id=self.stream_id))


def install() -> None:
    """Serve WebSockets through :class:`WSStream` in every hypercorn server of this process:
    over HTTP/1.1, and over HTTP/2 (RFC 8441's extended CONNECT, which hypercorn also serves
    on a cleartext socket to a client that starts with the HTTP/2 preface)."""
    hypercorn_h11.WSStream = WSStream  # type: ignore[attr-defined]
    hypercorn_h2.WSStream = WSStream  # type: ignore[attr-defined]


def _text(payload: str | bytes) -> str:
    return payload if type(payload) is str else payload.decode()  # type: ignore[union-attr]


def _tcp_server(send: Any) -> TCPServer | None:
    """hypercorn's asyncio TCP server under a stream's ``send`` over HTTP/1.1; None over
    HTTP/2 (whose frames hypercorn's h2 protocol makes) or on another worker class."""
    http = getattr(send, "__self__", None)
    if not isinstance(http, hypercorn_h11.H11Protocol):
        return None
    tcp = getattr(http.send, "__self__", None)
    return tcp if isinstance(tcp, TCPServer) else None
