"""crosswire inside aiohttp: ``crosswire.aiohttp_handler(app)`` is an aiohttp web handler.

Add it to any ``web.Application`` route, next to the application's HTTP handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import WebSocketError, WSMessage, WSMsgType, web

from ..app import App
from ..cork import Cork
from ..http import Headers, Request, Response
from ..limits import Limits, message_size, surely_within
from ..logs import filter_library_logger
from ..peer import high_water, receivable_close_code
from ._eager import HIGH_WATER, EagerTransport
from ._reads import small_reads
from ._server_frames import FIN_BINARY, FIN_TEXT, server_frame

__all__ = ["handler"]

_TEXT, _BINARY = WSMsgType.TEXT, WSMsgType.BINARY

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _request(request: web.Request) -> Request:
    return Request(
        path=request.path,
        query_string=request.query_string,
        headers=Headers(request.headers.items()),
        remote_address=request.remote,
    )


def _web_response(response: Response) -> web.Response:
    return web.Response(
        status=response.status, body=response.body_bytes, headers=dict(response.header_items())
    )


def _close_info(msg: WSMessage) -> tuple[int, str]:
    """The close code and reason carried by aiohttp's CLOSE or ERROR message (a client's
    close frame without a code: 1005; with one that may not be sent: the 1002 answering it)."""
    if msg.type is WSMsgType.CLOSE:
        code = int(msg.data)
        if code == 0:
            return 1005, ""
        if not receivable_close_code(code):
            return 1002, "invalid close code"
        return code, str(msg.extra or "")
    if msg.type is WSMsgType.ERROR and isinstance(msg.data, WebSocketError):
        return int(msg.data.code), str(msg.data)
    return 1006, ""


class _Transport(EagerTransport):
    """Writes through aiohttp's WebSocketResponse: its own ``send_frame`` (which sets no
    context variable and looks at no task, so sends are trusted), and its socket's buffer
    counted as the server's.

    Without compression, a message up to the high-water mark is written to the socket's
    transport at once, as aiohttp's writer writes an uncompressed frame, while nothing waits:
    nothing is queued here or buffered by the transport, and aiohttp has not begun to close.
    Otherwise it goes through ``send_frame``, in order behind what waits."""

    __slots__ = ("_direct", "_raw", "_send_frame", "_ws")

    def __init__(
        self, ws: web.WebSocketResponse, raw: asyncio.Transport | None, limits: Limits
    ) -> None:
        super().__init__(
            close_timeout=limits.close_timeout,
            send_buffer_limit=limits.send_buffer_limit,
            hands_over=raw is not None,
            trusted_send=True,
        )
        self._ws = ws
        self._raw = raw
        self._send_frame = ws.send_frame
        #: Frames are written here (no permessage-deflate; set once the handshake is done).
        self._direct = False

    def _send(self, payload: str | bytes, text: bool) -> None:
        raw = self._raw
        if (
            self._direct
            and self._backlog is None
            and self._close is None
            and not self._gone
            and not self._ws.closed
            and len(payload) <= self.high_water  # (bigger: counted until the socket drains)
            and not raw.get_write_buffer_size()  # type: ignore[union-attr]  # (_direct: raw)
            and not raw.is_closing()  # type: ignore[union-attr]
        ):
            if isinstance(payload, str):
                payload = payload.encode()
            raw.write(server_frame(FIN_TEXT if text else FIN_BINARY, payload))  # type: ignore[union-attr]
            return
        super()._send(payload, text)

    def _send_one(self, payload: str | bytes, text: bool) -> Coroutine[Any, Any, None]:
        data = payload.encode() if type(payload) is str else payload
        return self._send_frame(data, _TEXT if text else _BINARY)  # type: ignore[arg-type]

    async def _send_close(self, code: int, reason: str) -> None:
        await self._ws.close(code=code, message=reason.encode())

    def _drop(self) -> None:
        if self._raw is not None:
            self._raw.abort()

    def _server_buffered(self) -> int:
        return self._raw.get_write_buffer_size() if self._raw is not None else 0


def handler(app: App) -> Handler:
    """An aiohttp handler serving ``app``'s hooks on the route it is added to.

    aiohttp logs the subprotocols a client offers (where ``bearer.<token>`` travels) when none
    is served: the ``aiohttp.websocket`` logger gets crosswire's filter (:mod:`crosswire.logs`).
    """
    limits = app.limits
    filter_library_logger("aiohttp.websocket")

    async def handle(web_request: web.Request) -> web.StreamResponse:
        request = _request(web_request)
        if not request.is_websocket:
            return _web_response(await app.handle_http(request))
        result = await app.handle_upgrade(request)
        if isinstance(result, Response):
            return _web_response(result)
        subprotocol = result.subprotocol if result.subprotocol in request.subprotocols else None
        # aiohttp's writer waits for the socket to drain only past writer_limit: keep it (and
        # the socket's high-water mark) within the peer's send buffer limit, so that a client
        # that stops reading makes sends wait, and the peer sees it.
        water = high_water(limits.send_buffer_limit, HIGH_WATER)
        ws = web.WebSocketResponse(
            protocols=(subprotocol,) if subprotocol else (),
            # aiohttp refuses a frame of max_msg_size bytes: one more, so that a message of
            # exactly max_message_size passes, as on the other servers.
            max_msg_size=limits.max_message_size + 1,
            heartbeat=limits.ping_interval,
            # The loop below answers close frames: aiohttp answers every code with 1000,
            # even those no client may send (1006), which must be failed with 1002.
            autoclose=False,
            timeout=limits.close_timeout,
            writer_limit=water,
        )
        ws.headers.update(result.headers)
        await ws.prepare(web_request)
        raw = web_request.transport
        if raw is not None:
            raw.set_write_buffer_limits(high=water)
            small_reads(raw)

        transport = _Transport(ws, raw, limits)
        transport._direct = raw is not None and not ws.compress
        cork = transport.cork = Cork.of(raw, limits.coalesce_writes)  # before the peer reads it
        peer = app.connect(
            transport,
            request,
            result.chosen(subprotocol),
        )
        del request  # (the peer keeps its own: this one would live as long as the connection)
        received: tuple[int, str] = (1006, "")
        writes = app.hub.writes
        # Messages aiohttp has parsed and not yet handed over: while there are more, what
        # this turn of the loop writes is held and leaves together (crosswire.cork). A
        # private attribute of aiohttp's reader; without it, nothing is held for its reads.
        pending = getattr(getattr(ws, "_reader", None), "_buffer", None)
        if pending is None:
            cork = None  # (fan-outs to this connection can still hold it: transport.cork)
        # Inflated, a message of max_message_size + 1 bytes still passes aiohttp's bound.
        limit = limits.max_message_size
        limit_chars = surely_within(limit) if ws.compress else None
        try:
            while True:
                msg = await ws.receive()
                if msg.type is WSMsgType.TEXT:
                    is_binary = False
                elif msg.type is WSMsgType.BINARY:
                    is_binary = True
                else:
                    received = _close_info(msg)
                    if msg.type is WSMsgType.CLOSE:  # the client's: answer it
                        code = received[0]
                        await ws.close(code=1000 if code == 1005 else code, drain=False)
                    break
                if (
                    limit_chars is not None
                    and len(msg.data) > limit_chars
                    and message_size(msg.data) > limit
                ):
                    peer.close(1009, "message too big")
                    continue
                if cork is not None and pending and writes.held is None:
                    writes.open()  # more in this read: what this message fans out is held
                peer._receive_data(msg.data, is_binary)
                if cork is not None and bool(pending) is not cork.held:
                    writes.after_message(cork, bool(pending))
                if transport.reading_paused:
                    await transport.wait_reading()
        except OSError:
            pass  # the connection ended: `finally` reports how
        finally:
            await transport.aclose()
            peer._closed(*received)
        return ws

    return handle
