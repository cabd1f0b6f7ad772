"""Standalone server on the ``websockets`` library (asyncio implementation).

Writes go straight through the sans-I/O protocol to the asyncio transport, so ``peer.send``
never awaits; flow control comes from the transport's ``pause_writing``/``resume_writing``.
"""

from __future__ import annotations

import asyncio
import http
from typing import Any

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers as WsHeaders
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as WsRequest
from websockets.http11 import Response as WsResponse
from websockets.protocol import State
from websockets.typing import Subprotocol

from ..app import App
from ..cork import Cork
from ..http import Accept, Headers, Request, Response
from ..logs import library_logger
from ..peer import Peer, high_water
from ._gate import ReadGate
from ._reads import small_reads

__all__ = ["create_server"]

_OPEN = State.OPEN


#: What an open connection keeps as its handshake request (see ``handler``).
_HANDSHAKE_DONE = WsRequest("/", WsHeaders())


class _Connection(ServerConnection):
    """A ``ServerConnection`` that tells its peer when writing pauses and resumes, has it
    check its send buffer after a read while paused (the pongs websockets wrote), and reads
    on once its close frame is sent."""

    peer: Peer | None = None
    accept: Accept | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.peer is not None:
            self.peer._pause_writing()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.peer is not None:
            self.peer._resume_writing()

    def send_data(self) -> None:
        super().send_data()
        # Once websockets has failed the connection (sent its close frame and the end of its
        # stream) it must read on, to see the client's answer or the end of the stream, even
        # where its queue of frames had paused reading: after a failure ("too many
        # fragments") nothing takes frames from that queue again, and the connection, the
        # peer and its close hook would wait for the keepalive. (A close it started normally
        # keeps reading paused until the queue drains, as websockets intends.)
        if self.protocol.eof_sent:
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        # websockets answers pings as it reads them: while the client is not reading, the
        # pongs count against the send buffer limit like any message.
        super().data_received(data)
        peer = self.peer
        if peer is not None and peer._write_paused:
            peer._check_buffer()


class _Transport:
    __slots__ = ("_closing", "_conn", "_protocol", "_transport", "cork", "gate")

    def __init__(self, conn: _Connection, cork: Cork | None) -> None:
        self.cork = cork
        self._conn = conn
        self._protocol = conn.protocol
        self._transport = conn.transport
        self._closing: asyncio.Task[None] | None = None
        self.gate = ReadGate()

    def send_text(self, payload: str | bytes) -> None:
        protocol = self._protocol
        if protocol.state is _OPEN:
            protocol.send_text(payload.encode() if type(payload) is str else payload)  # type: ignore[arg-type]
            self._transport.writelines(protocol.data_to_send())

    def send_binary(self, payload: bytes) -> None:
        protocol = self._protocol
        if protocol.state is _OPEN:
            protocol.send_binary(payload)
            self._transport.writelines(protocol.data_to_send())

    def buffered_amount(self) -> int:
        return self._transport.get_write_buffer_size()

    def bind(self, peer: Peer) -> None:
        self._conn.peer = peer

    def close(self, code: int, reason: str) -> None:
        self.gate.open()
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._conn.close(code, reason))

    def abort(self) -> None:
        self.gate.open()
        self._transport.abort()

    def pause_reading(self) -> None:
        self.gate.pause()

    def resume_reading(self) -> None:
        self.gate.open()


def _request(conn: ServerConnection, ws_request: WsRequest) -> Request:
    path, _, query = ws_request.path.partition("?")
    remote = conn.remote_address
    return Request(
        path=path,
        query_string=query,
        headers=Headers(ws_request.headers.raw_items()),
        remote_address=str(remote[0]) if remote else None,
    )


def _response(response: Response) -> WsResponse:
    status = http.HTTPStatus(response.status)
    headers = WsHeaders(response.header_items())
    body = response.body_bytes
    headers["Content-Length"] = str(len(body))
    return WsResponse(status.value, status.phrase, headers, body)


def _close_info(conn: ServerConnection) -> tuple[int, str]:
    """The close that ended the connection: ours if we closed first, else the client's."""
    protocol = conn.protocol
    sent, received = protocol.close_sent, protocol.close_rcvd
    if sent is not None and (received is None or not protocol.close_rcvd_then_sent):
        return sent.code, sent.reason
    if received is not None:
        return received.code, received.reason
    return 1006, ""


async def create_server(app: App, host: str | None, port: int | None, **options: Any) -> Server:
    """Start listening; ``options`` go to ``websockets.asyncio.server.serve`` (its ``logger``
    is ``crosswire.server.websockets`` unless given: see :mod:`crosswire.logs`)."""
    limits = app.limits
    options.setdefault("logger", library_logger("websockets"))

    async def process_request(conn: ServerConnection, ws_request: WsRequest) -> WsResponse | None:
        request = _request(conn, ws_request)
        if not request.is_websocket:
            return _response(await app.handle_http(request))
        result = await app.handle_upgrade(request)
        if isinstance(result, Response):
            return _response(result)
        assert isinstance(conn, _Connection)
        conn.accept = result
        return None

    def select_subprotocol(conn: ServerConnection, offered: Any) -> Subprotocol | None:
        accept = getattr(conn, "accept", None)
        if accept is None or accept.subprotocol is None:
            return None
        return Subprotocol(accept.subprotocol) if accept.subprotocol in offered else None

    def process_response(
        conn: ServerConnection, ws_request: WsRequest, response: WsResponse
    ) -> None:
        accept = getattr(conn, "accept", None)
        if accept is not None and response.status_code == 101:
            for name, value in accept.headers.items():
                response.headers[name] = value

    async def handler(conn: ServerConnection) -> None:
        assert isinstance(conn, _Connection) and conn.request is not None
        accept = conn.accept or Accept()
        small_reads(conn.transport)
        cork = Cork.of(conn.transport, limits.coalesce_writes)
        transport = _Transport(conn, cork)
        peer = app.connect(transport, _request(conn, conn.request), accept.chosen(conn.subprotocol))
        # The peer keeps its own Request. websockets reads its handshake request and response
        # only during the handshake, and afterwards checks only that a request came (a None
        # request would make the next frame a handshake): a shared stand-in replaces it, so
        # that an open connection does not keep its headers twice (about 2 KiB).
        conn.request, conn.response, conn.accept = _HANDSHAKE_DONE, None, None
        receive = peer._receive_data
        gate = transport.gate
        writes = app.hub.writes
        # Frames websockets has parsed and not yet handed over: while there are more, what
        # this turn of the loop writes is held and leaves together (crosswire.cork). A
        # private attribute of the connection; without it, nothing is held for its reads.
        pending = getattr(getattr(conn, "recv_messages", None), "frames", None)
        if pending is None:
            cork = None  # (fan-outs to this connection can still hold it: transport.cork)
        try:
            async for data in conn:
                if cork is not None and pending and writes.held is None:
                    writes.open()  # more in this read: what this message fans out is held
                receive(data, type(data) is not str)
                if cork is not None and bool(pending) is not cork.held:
                    writes.after_message(cork, bool(pending))
                if gate.paused:
                    await gate.wait()
        except ConnectionClosed:
            pass  # the connection ended: `finally` reports how
        finally:
            if transport._closing is not None:
                await transport._closing
            else:
                await conn.wait_closed()
            peer._closed(*_close_info(conn))

    return await ws_serve(
        handler,
        host,
        port,
        create_connection=_Connection,
        process_request=process_request,
        process_response=process_response,
        select_subprotocol=select_subprotocol,
        max_size=limits.max_message_size,
        write_limit=high_water(limits.send_buffer_limit, 32 * 1024),
        ping_interval=limits.ping_interval,
        ping_timeout=limits.ping_timeout,
        close_timeout=limits.close_timeout,
        open_timeout=limits.open_timeout,
        **options,
    )
