"""Standalone server on ``picows``: the fastest option (``crosswire[picows]``).

picows hands over frames; this adapter reassembles fragmented messages, enforces
``max_message_size`` on the whole message (1009), checks UTF-8 of text messages (1007) and
answers the closing handshake. Its handshake is synchronous, so the ``upgrade`` hook must be a
plain function here (checked at startup). picows does not negotiate permessage-deflate.

Write coalescing (:mod:`crosswire.cork`) holds frames here, in user space: picows writes each
frame to the socket with its own ``send()``, and has no call that writes several. While a
batch holds a connection, :class:`_Frames` builds its frames (the 2-10 byte header of an
unmasked server frame, RFC 6455 section 5.2, before the payload) and writes them in one call
when the batch ends. Everything else (the handshake, reading and parsing frames, control
frames, closing) is picows'.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib.util
import logging
import os
import sys
import warnings
from collections.abc import Callable
from http import HTTPStatus
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from multidict import CIMultiDict
from picows import (
    WSCloseCode,
    WSFrame,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from ..app import App
from ..cork import Hold
from ..errors import ConfigurationError
from ..hooks import is_async_callable
from ..http import Accept, Headers, Request, Response
from ..limits import Limits
from ..logs import library_logger
from ..peer import Peer, high_water, receivable_close_code
from ._build_stamp import SOURCES, build_stamp
from ._server_frames import FIN_BINARY, FIN_TEXT, server_frame

__all__ = ["create_server"]

_TEXT, _BINARY, _CONT, _CLOSE, _PING = (
    WSMsgType.TEXT,
    WSMsgType.BINARY,
    WSMsgType.CONTINUATION,
    WSMsgType.CLOSE,
    WSMsgType.PING,
)


_READ = f"{__package__}._picows_read"


def _frame_reader() -> tuple[type[FrameReader], bool]:
    """``(FrameReader, compiled)``: the compiled read path (``_picows_read``) when it is built,
    loads, and was built from the installed picows release and the source beside it
    (``_build_stamp``); else that source, run as Python (and importable under the module's
    name from then on)."""
    if not os.environ.get("CROSSWIRE_NO_EXTENSIONS"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # Cython warns when picows' types changed size
                module = importlib.import_module(_READ)
            if module.COMPILED:
                here = build_stamp(version("picows"), Path(__file__).parent)
                if here != module.BUILT_FOR:
                    raise ImportError(f"built for {module.BUILT_FOR}, running with {here}")
        except Exception as exc:
            library_logger("picows").warning(
                "the compiled picows read path does not fit (%s); running it as Python", exc
            )
        else:
            return module.FrameReader, module.COMPILED
    # The source, even where the extension sits beside it (an import would prefer that).
    spec = importlib.util.spec_from_file_location(_READ, Path(__file__).with_name(SOURCES[0]))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_READ] = module
    spec.loader.exec_module(module)
    setattr(sys.modules[__package__], "_picows_read", module)  # noqa: B010
    return module.FrameReader, False


#: Whether picows' frames are read by the compiled ``on_ws_frame`` (see ``_picows_read``).
_reader, COMPILED = _frame_reader()
if TYPE_CHECKING:
    from ._picows_read import FrameReader
else:
    FrameReader = _reader


#: Held frames past this many bytes are written at once (the connection stays held).
FRAMES_FLUSH_AT = 64 * 1024


class _Frames:
    """A connection's writes held in a batch (a :class:`~crosswire.cork.Hold`): while held,
    the transport's ``send_text`` (and ``send_binary``) append frames here instead of sending
    them through picows, and :meth:`release` writes them in one call to the connection's asyncio
    transport (after anything picows itself wrote earlier: that transport's buffer keeps the
    order). Held frames are written before a close frame that crosswire sends (a server close,
    the answer to a client's close). When picows closes on its own (a protocol error in the
    same read, a keepalive timeout), or the connection is lost or aborted, what is still held
    is dropped: after a close frame no data frame may follow."""

    __slots__ = ("_append", "_flush_at", "_frames", "_size", "_transport", "held", "queued")

    def __init__(self, transport: _Transport, flush_at: int) -> None:
        self._transport = transport
        #: ``_text``, bound once: what the transport's and the peer's text writes are while
        #: held (one object, so that release can tell it is still in place).
        self._append: Callable[[str | bytes], None] = self._text
        self._frames: list[bytes] = []
        self._size = 0
        #: Held bytes past which they are written at once (no more than the transport's
        #: high-water mark, so that a slow consumer is noticed as early as without holding).
        self._flush_at = flush_at
        self.held = False
        self.queued = 0

    def hold(self) -> None:
        if not self.held and not self._transport._ws.is_close_frame_sent:
            self.held = True
            transport = self._transport
            transport.send_text = self._append
            # The Hub's fan-out writes through the peer's write_text, which is the
            # transport's send_text as it was when the client kept up: held too.
            peer = transport._listener.peer
            if peer is not None and peer.write_text is transport._send_text:
                peer.write_text = self._append

    def release(self) -> None:
        if self.held:
            self.held = False
            transport = self._transport
            transport.send_text = transport._send_text
            peer = transport._listener.peer
            if peer is not None and peer.write_text is self._append:
                peer.write_text = transport._send_text
            if self._frames:
                self._write()

    def flush(self) -> None:
        if self._frames:
            self._write()

    @property
    def size(self) -> int:
        """Bytes held."""
        return self._size

    def _text(self, payload: str | bytes) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        self._frames.append(server_frame(FIN_TEXT, data))
        self._size += len(data)
        if self._size > self._flush_at:
            self._write()

    def _binary(self, payload: bytes) -> None:
        self._frames.append(server_frame(FIN_BINARY, bytes(payload)))
        self._size += len(payload)
        if self._size > self._flush_at:
            self._write()

    def drop(self) -> None:
        """Forget what is held (the connection is being dropped)."""
        self._frames, self._size = [], 0
        self.release()

    def _write(self) -> None:
        frames, self._frames, self._size = self._frames, [], 0
        transport = self._transport
        ws = transport._ws
        if ws.is_close_frame_sent or ws.is_disconnected or transport._raw.is_closing():
            return
        transport._raw.write(frames[0] if len(frames) == 1 else b"".join(frames))


class _Transport:
    __slots__ = (
        "_closer",
        "_frames",
        "_listener",
        "_loop",
        "_raw",
        "_send_text",
        "_timeout",
        "_ws",
        "cork",
        "send_text",
    )

    def __init__(self, ws: WSTransport, limits: Limits, listener: _Listener, hold: bool) -> None:
        self._ws = ws
        self._listener = listener
        self._raw = ws.underlying_transport
        high = high_water(limits.send_buffer_limit, 64 * 1024)
        self._raw.set_write_buffer_limits(high=high)
        self._timeout = limits.close_timeout
        self._loop = asyncio.get_running_loop()
        self._closer: asyncio.TimerHandle | None = None
        # picows' send is compiled: bound here, a send costs no Python frame of ours.
        self._send_text: Callable[[str | bytes], None] = functools.partial(ws.send, _TEXT)
        # Replaced by _Frames' own while a batch holds the connection.
        self.send_text: Callable[[str | bytes], None] = self._send_text
        self._frames = _Frames(self, min(FRAMES_FLUSH_AT, high)) if hold else None
        self.cork: Hold | None = self._frames

    def send_binary(self, payload: bytes) -> None:
        # (Rare next to text: a method, where a second partial would cost every connection.)
        frames = self._frames
        if frames is not None and frames.held:
            frames._binary(payload)
        else:
            self._ws.send(_BINARY, payload)

    def buffered_amount(self) -> int:
        held = self._frames.size if self._frames is not None else 0
        return int(self._raw.get_write_buffer_size()) + held

    def bind(self, peer: Peer) -> None:
        self._listener.peer = peer

    def release(self) -> None:
        """Write the held frames now (before a close frame, which picows sends itself)."""
        if self._frames is not None:
            self._frames.release()

    def close(self, code: int, reason: str) -> None:
        if self._ws.is_close_frame_sent:
            return
        self.release()
        self._ws.send_close(cast(WSCloseCode, code), reason.encode())
        self.resume_reading()  # the client's close frame must be read
        self._closer = self._loop.call_later(self._timeout, self._ws.disconnect, False)

    def abort(self) -> None:
        if self._frames is not None:
            self._frames.drop()
        self._ws.disconnect(False)

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        if not self._ws.is_disconnected:
            self._raw.resume_reading()


class _Listener(FrameReader):
    def __init__(self, app: App, request: Request, accept: Accept) -> None:
        self._app = app
        self._request: Request | None = request  # (until the connection opens)
        self._accept = accept
        self._max = app.limits.max_message_size
        self._parts: list[bytes] = []
        self._parts_size = 0
        self._parts_binary = False
        self._transport: _Transport | None = None
        self.peer: Peer | None = None
        self._receive: Callable[[str | bytes, bool], None] = _not_connected
        #: The connection failed (a protocol error): what follows but a close is dropped.
        self._failed = False
        self._cork: Hold | None = None
        self._writes = app.hub.writes

    def on_ws_connected(self, transport: WSTransport) -> None:
        # Frames are held in user space (_Frames): coalescing needs no TCP_CORK here.
        hold = self._app.limits.coalesce_writes
        self._transport = _Transport(transport, self._app.limits, self, hold)
        self._cork = self._transport.cork
        # picows does not expose the client address during its handshake; add it now.
        peername = transport.underlying_transport.get_extra_info("peername")
        assert self._request is not None
        request = dataclasses.replace(
            self._request, remote_address=str(peername[0]) if peername else None
        )
        self._request = None
        self.peer = self._app.connect(self._transport, request, self._accept)
        self._receive = self.peer._receive_data

    def _frame(self, transport: WSTransport, frame: WSFrame) -> None:
        """Every frame but a whole text message (those are :class:`FrameReader`'s)."""
        kind = frame.msg_type
        if self._failed:  # only the client's close frame matters now
            if kind is _CLOSE:
                self._on_close(transport, frame)
            return
        if frame.rsv1 or frame.rsv2 or frame.rsv3:  # picows negotiates no extension
            self._fail(1002, "reserved bits set")
            return
        if kind is _BINARY and frame.fin and not self._parts:
            self._receive(frame.get_payload_as_bytes(), True)
            return
        peer = self.peer
        assert peer is not None
        if kind is _TEXT or kind is _BINARY or kind is _CONT:
            self._fragment(peer, frame, kind)
        elif kind is _PING:
            self._on_ping(peer, transport, frame)
        elif kind is _CLOSE:
            self._on_close(transport, frame)

    def _on_ping(self, peer: Peer, transport: WSTransport, frame: WSFrame) -> None:
        # Answered here rather than by picows (enable_auto_pong=False), so that pongs to a
        # client that does not read count against the send buffer limit like any message.
        if not transport.is_close_frame_sent:
            transport.send_pong(frame.get_payload_as_bytes())
            if peer._write_paused:
                peer._check_buffer()

    def _invalid_utf8(self) -> None:
        self._fail(1007, "invalid UTF-8")

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: close with ``code``; the frames that follow in the same read
        reach no hook, and only a close frame is answered."""
        self._failed = True
        self._receive = _drop
        self._parts.clear()
        if self.peer is not None:
            self.peer.close(code, reason)

    def _fragment(self, peer: Peer, frame: WSFrame, kind: WSMsgType) -> None:
        if (kind is _CONT) != bool(self._parts):
            self._fail(1002, "unexpected continuation frame")
            return
        if kind is not _CONT:
            self._parts_binary = kind is _BINARY
        self._parts_size += frame.payload_size
        if self._parts_size > self._max:
            self._fail(1009, "message too big")
            return
        self._parts.append(frame.get_payload_as_bytes())
        if frame.fin:
            data = b"".join(self._parts)
            self._parts.clear()
            self._parts_size = 0
            if self._parts_binary:
                self._receive(data, True)
                return
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self._fail(1007, "invalid UTF-8")
                return
            self._receive(text, False)

    def _on_close(self, transport: WSTransport, frame: WSFrame) -> None:
        # picows records the client's close frame; answering it is the listener's job, after
        # the replies still held.
        if self._transport is not None:
            self._transport.release()
        if not transport.is_close_frame_sent:
            if frame.payload_size < 2:  # no code: picows would answer with code 0
                transport.send_close(cast(WSCloseCode, 1000))
            elif receivable_close_code(_code(frame.get_close_code())):
                transport.send_close(frame.get_close_code(), frame.get_close_message())
            else:  # picows lets 0, 1006, 1015 and 5000+ through
                self._fail(1002, "invalid close code")
        transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self._transport is not None and self._transport._closer is not None:
            self._transport._closer.cancel()
        if self.peer is not None:
            self.peer._closed(*_close_info(transport))

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer._pause_writing()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer._resume_writing()


def _drop(data: str | bytes, is_binary: bool) -> None:
    """Takes the messages of a connection that failed."""


def _not_connected(data: str | bytes, is_binary: bool) -> None:
    raise RuntimeError("picows delivered a frame before on_ws_connected")


def _close_info(transport: WSTransport) -> tuple[int, str]:
    """The close that ended the connection: the server's if it closed first (crosswire, or
    picows itself on a protocol error or keepalive timeout), else the client's."""
    handshake = transport.close_handshake
    if handshake is None:
        return 1006, ""
    sent, received = handshake.sent, handshake.recv
    # (picows' reason is None when the close frame had none: the hook is given "")
    if sent is not None and (received is None or not handshake.recv_then_sent):
        return _code(sent.code), sent.reason or ""
    if received is not None:
        return _code(received.code), received.reason or ""
    return 1006, ""


def _code(code: WSCloseCode | int) -> int:
    number = int(code.value if isinstance(code, WSCloseCode) else code)
    return 1005 if number == 0 else number  # picows: NO_INFO (0) is "no code in the frame"


def _request(upgrade: WSUpgradeRequest) -> Request:
    target = upgrade.path.decode() if isinstance(upgrade.path, bytes) else str(upgrade.path)
    path, _, query = target.partition("?")
    return Request(
        path=path,
        query_string=query,
        headers=Headers((str(k), str(v)) for k, v in upgrade.headers.items()),
    )


def _http_response(response: Response) -> WSUpgradeResponse:
    created = WSUpgradeResponse()
    created.version = b"HTTP/1.1"
    created.status = HTTPStatus(response.status)
    created.headers = CIMultiDict(response.header_items())
    created.body = response.body_bytes
    return created


async def create_server(
    app: App, host: str | None, port: int | None, **options: Any
) -> asyncio.Server:
    """Start listening; ``options`` go to ``picows.ws_create_server`` (its ``logger_name`` is
    the logger ``crosswire.server.picows`` unless given: see :mod:`crosswire.logs`)."""
    # An adapter, not the Logger: picows gives a Logger a child per connection, which the
    # logger's filter would not see.
    options.setdefault("logger_name", logging.LoggerAdapter(library_logger("picows")))
    if app.upgrade_is_async():
        raise ConfigurationError(
            "the picows server runs the upgrade hook inside its synchronous handshake: "
            "make the upgrade hook a plain function, or serve with server='websockets'"
        )
    if app.http is not None and is_async_callable(app.http):
        raise ConfigurationError("the picows server needs a plain (not async) http handler")
    limits = app.limits
    ping = limits.ping_interval is not None and limits.ping_timeout is not None
    if ping and limits.ping_timeout > limits.ping_interval:  # type: ignore[operator]
        # picows asserts this inside every connection, which would refuse them all silently.
        raise ConfigurationError(
            "the picows server needs Limits.ping_timeout <= Limits.ping_interval "
            f"(got {limits.ping_timeout} > {limits.ping_interval})"
        )

    def factory(upgrade: WSUpgradeRequest) -> Any:
        request = _request(upgrade)
        if not request.is_websocket:
            return WSUpgradeResponseWithListener(_http_response(_sync_http(app, request)), None)
        result = app.handle_upgrade_sync(request)
        if isinstance(result, Response):
            return WSUpgradeResponseWithListener(_http_response(result), None)
        subprotocol = result.subprotocol if result.subprotocol in request.subprotocols else None
        headers = dict(result.headers)
        if subprotocol is not None:
            headers["Sec-WebSocket-Protocol"] = subprotocol
        accept = result.chosen(subprotocol)
        listener = _Listener(app, request, accept)
        return WSUpgradeResponseWithListener(
            WSUpgradeResponse.create_101_response(headers), listener
        )

    return await ws_create_server(
        factory,
        host,
        port,
        max_frame_size=limits.max_message_size,
        websocket_handshake_timeout=limits.open_timeout,
        enable_auto_ping=ping,
        enable_auto_pong=False,  # _Listener._on_ping answers, within the send buffer limit
        auto_ping_idle_timeout=limits.ping_interval or 20.0,
        auto_ping_reply_timeout=limits.ping_timeout or 20.0,
        **options,
    )


def _sync_http(app: App, request: Request) -> Response:
    return app.handle_http_sync(request)
