"""crosswire as an ASGI application: run it under uvicorn, hypercorn or granian, or mount it
inside Starlette, FastAPI or Litestar next to their HTTP routes.

``crosswire.asgi(app)`` answers ``websocket`` scopes with the hooks, ``http`` scopes with the
App's ``http`` handler (426 without one), ``lifespan`` startup with ``App.startup()`` (the bus
connects) and shutdown by closing every peer with 1001. ASGI has no ping: keepalive is the
server's setting (uvicorn ``--ws-ping-interval``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

from ..app import App
from ..cork import Cork
from ..http import Headers, Request, Response
from ..limits import Limits, message_size, surely_within
from ..logs import filter_library_logger
from ._eager import EagerTransport
from ._reads import small_reads

__all__ = ["ASGIApp"]

Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]


def _request(scope: Scope) -> Request:
    client = scope.get("client")
    return Request(
        path=scope.get("path", "/"),
        query_string=scope.get("query_string", b"").decode("latin-1"),
        headers=Headers(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in scope.get("headers", ())
        ),
        remote_address=str(client[0]) if client else None,
    )


#: The last UTF-8 payload decoded for an ASGI server and its text. A publish hands the same
#: bytes object to every subscriber in turn, so it is decoded once, not once per subscriber.
_last_decoded: tuple[bytes, str] = (b"", "")


class _Transport(EagerTransport):
    """Writes through the ASGI ``send`` (which middleware may wrap: sends are not trusted).
    ASGI cannot drop a connection: dropping it cancels the handler serving it, and the server
    then closes it."""

    __slots__ = ("_asgi_send", "_handler_task", "aborted", "disconnected")

    def __init__(
        self,
        send: Send,
        handler_task: asyncio.Task[Any] | None,
        limits: Limits,
        trusted_send: bool = False,
        hands_over: bool = False,
    ) -> None:
        super().__init__(
            close_timeout=limits.close_timeout,
            send_buffer_limit=limits.send_buffer_limit,
            hands_over=hands_over,
            trusted_send=trusted_send,
        )
        self._asgi_send = send
        self._handler_task = handler_task
        #: Whether _drop() cancelled the handler; whether the handler is past its loop.
        self.aborted = False
        self.disconnected = False

    async def _send_one(self, payload: str | bytes, text: bool) -> None:
        if text:
            await self._asgi_send({"type": "websocket.send", "text": _as_text(payload)})
        else:
            await self._asgi_send({"type": "websocket.send", "bytes": payload})

    async def _send_close(self, code: int, reason: str) -> None:
        if not self.disconnected:
            await self._asgi_send({"type": "websocket.close", "code": code, "reason": reason})

    def _drop(self) -> None:
        if not self.aborted and not self.disconnected and self._handler_task is not None:
            self.aborted = True
            self._handler_task.cancel()


class _ServerSendTransport(_Transport):
    """Writes through the ASGI server's own ``send`` (``ASGIApp(trusted_send=True)``): a
    coroutine function, so a message's send is that coroutine itself, with no coroutine of
    ours around it."""

    __slots__ = ()

    def _send_one(self, payload: str | bytes, text: bool) -> Coroutine[Any, Any, None]:
        if text:
            return self._asgi_send({"type": "websocket.send", "text": _as_text(payload)})  # type: ignore[return-value]
        return self._asgi_send({"type": "websocket.send", "bytes": payload})  # type: ignore[return-value]


class _DirectTransport(_ServerSendTransport):
    """Writes through the server's ``send_now`` (crosswire's uvicorn protocol,
    ``adapters/_uvicorn.py``, and hypercorn stream, ``adapters/_hypercorn.py``) while nothing
    is in flight: no coroutine per message. Where that would wait (the socket's buffer is
    full) or refuse, and for a message bigger than the high-water mark, the server's ``send``
    takes the message, as on :class:`_ServerSendTransport`.

    The server's socket buffer counts in :meth:`buffered_amount`. A server whose ``send``
    writes before it waits for the socket (``send_writes_first``: hypercorn) has a message
    once its send began (``hands_over``); uvicorn's waits first, so a message counts as
    queued here until its send returns, then as the socket's."""

    __slots__ = ("_send_now", "_socket")

    def __init__(
        self, send: Send, handler_task: asyncio.Task[Any] | None, limits: Limits, server: Any
    ) -> None:
        super().__init__(
            send,
            handler_task,
            limits,
            trusted_send=True,
            hands_over=bool(getattr(server, "send_writes_first", False)),
        )
        self._send_now: Callable[[str | bytes, bool], bool] = server.send_now
        self._socket: asyncio.WriteTransport | None = server.transport

    def _server_buffered(self) -> int:
        sock = self._socket
        return 0 if sock is None else sock.get_write_buffer_size()

    def _drop(self) -> None:
        # Cancelling the handler lets the server end the connection its way, which may wait
        # on the socket for ever for a client that does not read (hypercorn writes a close
        # frame and drains): the socket is aborted too.
        super()._drop()
        if self._socket is not None:
            self._socket.abort()

    def _send(self, payload: str | bytes, text: bool) -> None:
        if (
            self._backlog is None
            and self._close is None
            and not self._gone
            # (a bigger message goes through send, which waits for the socket to drain: its
            # bytes count in buffered_amount until then, and the peer sees backpressure)
            and len(payload) <= self.high_water
            and self._send_now(payload, text)
        ):
            return
        super()._send(payload, text)


def _as_text(payload: str | bytes) -> str:
    """ASGI wants ``str`` for text frames; crosswire hands over UTF-8 bytes."""
    global _last_decoded
    if type(payload) is str:
        return payload
    last_bytes, last_text = _last_decoded
    if payload is last_bytes:
        return last_text
    text = payload.decode()  # type: ignore[union-attr]
    _last_decoded = (payload, text)  # type: ignore[assignment]
    return text


def _raw_headers(items: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items]


class ASGIApp:
    """An ASGI 3 application serving one crosswire :class:`~crosswire.App`.

    uvicorn logs each WebSocket's path with its query string at INFO (where
    ``?access_token=`` travels), the request's headers and frames at DEBUG, and the bytes of
    an invalid UTF-8 frame at ERROR: the ``uvicorn.error`` logger gets crosswire's filter
    (:mod:`crosswire.logs`).
    """

    def __init__(self, app: App, *, trusted_send: bool = False) -> None:
        """``trusted_send``: the ASGI server calls this application directly (no middleware
        wraps its ``send``), and its ``send`` is a coroutine function that sets no context
        variable and looks at no task, as uvicorn's and hypercorn's are. Each message is then
        sent by the server's coroutine alone, without a copied context (see
        :class:`~crosswire.adapters._eager.EagerTransport`). ``server="uvicorn"`` and
        ``server="hypercorn"`` set it; leave it off where the application is mounted or
        wrapped."""
        self.app = app
        self._trusted = trusted_send
        filter_library_logger("uvicorn.error")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "http":
            await self._http(scope, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                try:
                    await self.app.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    raise
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await self.app.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, send: Send) -> None:
        response = await self.app.handle_http(_request(scope))
        body = response.body_bytes
        headers = [*response.header_items(), ("Content-Length", str(len(body)))]
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": _raw_headers(headers),
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _refuse(self, scope: Scope, send: Send, response: Response) -> None:
        if "websocket.http.response" in scope.get("extensions", {}):
            body = response.body_bytes
            headers = [*response.header_items(), ("Content-Length", str(len(body)))]
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": response.status,
                    "headers": _raw_headers(headers),
                }
            )
            await send({"type": "websocket.http.response.body", "body": body})
        else:  # the server answers 403
            await send({"type": "websocket.close", "code": 1008})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.app
        event = await receive()
        if event["type"] != "websocket.connect":
            return
        request = _request(scope)
        result = await app.handle_upgrade(request)
        if isinstance(result, Response):
            await self._refuse(scope, send, result)
            return
        subprotocol = result.subprotocol if result.subprotocol in request.subprotocols else None
        await send(
            {
                "type": "websocket.accept",
                "subprotocol": subprotocol,
                "headers": _raw_headers(list(result.headers.items())),
            }
        )
        limits = app.limits
        task = asyncio.current_task()
        # crosswire's uvicorn protocol or hypercorn stream (server="uvicorn", "hypercorn"):
        # send is its method, and it has send_now, transport and queue.
        server = getattr(send, "__self__", None) if self._trusted else None
        send_now = getattr(server, "send_now", None)
        cork: Cork | None = None
        pending: Any = None  # what the server parsed and has not handed over yet
        if send_now is not None:
            small_reads(server.transport)  # type: ignore[union-attr]
            transport: _Transport = _DirectTransport(send, task, limits, server)
            cork = transport.cork = Cork.of(server.transport, limits.coalesce_writes)  # type: ignore[union-attr]
            pending = getattr(getattr(server, "queue", None), "_queue", None)
            if pending is None:
                cork = None  # (fan-outs to this connection can still hold it)
        elif self._trusted:
            transport = _ServerSendTransport(send, task, limits, trusted_send=True)
        else:
            transport = _Transport(send, task, limits)
        peer = app.connect(transport, request, result.chosen(subprotocol))
        # This coroutine lives as long as the connection: it keeps neither the handshake's
        # request (the peer keeps it without the handshake's headers) nor the Accept.
        del request, result
        limit = limits.max_message_size
        limit_chars = surely_within(limit)
        writes = app.hub.writes
        code, reason = 1006, ""
        try:
            while True:
                event = await receive()
                kind = event["type"]
                if kind == "websocket.receive":
                    text = event.get("text")
                    data: str | bytes = text if text is not None else event["bytes"]
                    if len(data) > limit_chars and message_size(data) > limit:
                        peer.close(1009, "message too big")
                        continue
                    if cork is None:
                        peer._receive_data(data, text is None)
                    else:  # as the aiohttp adapter: a read's replies leave together
                        if pending and writes.held is None:
                            writes.open()  # more in this read: what this fans out is held
                        peer._receive_data(data, text is None)
                        if bool(pending) is not cork.held:
                            writes.after_message(cork, bool(pending))
                    if transport.reading_paused:
                        await transport.wait_reading()
                elif kind == "websocket.disconnect":
                    code = int(event.get("code", 1005))
                    reason = str(event.get("reason") or "")
                    break
        except asyncio.CancelledError:
            if not transport.aborted:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        except OSError:
            pass  # the connection ended: `finally` reports how
        finally:
            transport.disconnected = True  # from here on _drop() cannot cancel this handler
            try:
                await transport.aclose()
            finally:
                peer._closed(code, reason)
