"""Test your routers and hooks in-process: no sockets, no server, the real App/Peer/Router.

::

    from crosswire.testing import TestClient

    async def test_add():
        async with TestClient(router).connect() as conn:
            reply = await conn.request(Add, {"a": 1, "b": 2})
            assert reply.payload.sum == 3

Every wait has a timeout (``timeout=``, default 2 s): a test that expects a frame that never
comes fails with ``TimeoutError`` instead of hanging. The connection speaks the canonical
dialect (``{"type", "meta", "payload"}``); :meth:`TestConnection.send_raw` sends anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson

from .app import App, HookProvider
from .client.frames import Frame, error_of, parse, typed
from .cork import Hold
from .errors import ErrorCode, WsError
from .http import Accept, Headers, Request, Response
from .peer import Peer
from .schema import MessageSchema
from .wire import canonical

__all__ = ["Frame", "Rejected", "TestClient", "TestConnection"]

DEFAULT_TIMEOUT = 2.0


class Rejected(Exception):
    """The upgrade hook refused the connection with an HTTP response."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"connection refused with {response.status}")
        self.response = response
        self.status = response.status


class _MemoryTransport:
    """The server side of an in-memory connection."""

    def __init__(self, conn: TestConnection) -> None:
        self._conn = conn
        self.peer: Peer | None = None
        self.cork: Hold | None = None  # nothing to hold: there is no socket

    def bind(self, peer: Peer) -> None:
        self.peer = peer

    def send_text(self, payload: str | bytes) -> None:
        self._conn._deliver(payload if isinstance(payload, str) else payload.decode(), False)

    def send_binary(self, payload: bytes) -> None:
        self._conn._deliver(payload, True)

    def buffered_amount(self) -> int:
        return 0

    def close(self, code: int, reason: str) -> None:
        self._conn._server_closed(code, reason)

    def abort(self) -> None:
        self._conn._server_closed(1006, "")

    def pause_reading(self) -> None:
        self._conn._reading.clear()

    def resume_reading(self) -> None:
        self._conn._reading.set()


class TestConnection:
    """One in-memory connection; see :class:`TestClient`."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: App, timeout: float) -> None:
        self._app = app
        self.timeout = timeout
        self._inbox: list[Frame] = []
        self._arrived = asyncio.Event()
        self._reading = asyncio.Event()
        self._reading.set()
        self._transport = _MemoryTransport(self)
        self._peer: Peer | None = None
        #: ``(code, reason)`` once the connection has ended.
        self.close_code: int | None = None
        self.close_reason: str | None = None

    @property
    def peer(self) -> Peer:
        """The server-side peer of this connection."""
        assert self._peer is not None
        return self._peer

    # -- sending ---------------------------------------------------------------------------

    async def send(
        self,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Send a message of ``schema`` (the payload is validated first, as a client would)."""
        frame: dict[str, Any] = {"type": schema.type, "meta": dict(meta or {})}
        fragment = schema.dump_payload(payload)
        if fragment is not None:
            frame["payload"] = fragment
        await self.send_raw(orjson.dumps(frame).decode())

    async def send_raw(self, data: str | bytes) -> None:
        """Send one frame as it is: ``str`` as text, ``bytes`` as binary."""
        if self.close_code is not None:
            raise ConnectionError("the connection is closed")
        await asyncio.wait_for(self._reading.wait(), self.timeout)
        self.peer._receive_data(data, not isinstance(data, str))
        await asyncio.sleep(0)  # let what the message started run

    async def request(
        self,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
        timeout_ms: int | None = None,
        correlation_id: str | None = None,
        on_progress: Callable[[Any], Any] | None = None,
        timeout: float | None = None,
    ) -> Frame:
        """Call an RPC and return its reply, with the payload validated against
        ``schema.response``. Progress frames go to ``on_progress``; an ``RPC_ERROR`` raises
        :class:`~crosswire.WsError`. ``timeout_ms`` is sent as ``meta.timeoutMs``."""
        response = schema.response
        if response is None:
            raise TypeError(f"{schema.type} is not an RPC schema")
        cid = correlation_id or uuid.uuid4().hex[:12]
        full_meta = {**(meta or {}), "correlationId": cid}
        if timeout_ms is not None:
            full_meta["timeoutMs"] = timeout_ms
        await self.send(schema, payload, meta=full_meta)
        while True:
            frame = await self._take(
                lambda f: (
                    f.correlation_id == cid
                    and f.type in (response.type, canonical.RPC_PROGRESS, "RPC_ERROR")
                ),
                timeout,
            )
            if frame.type == canonical.RPC_PROGRESS:
                if on_progress is not None:
                    on_progress(frame.payload)
                continue
            if frame.type == "RPC_ERROR":
                raise error_of(frame)
            return typed(frame, response)

    async def abort(self, correlation_id: str) -> None:
        """Ask the server to cancel an RPC in flight (``$ws:abort``)."""
        frame = {"type": canonical.ABORT, "meta": {"correlationId": correlation_id}}
        await self.send_raw(orjson.dumps(frame).decode())

    # -- receiving -------------------------------------------------------------------------

    async def receive(self, *, timeout: float | None = None) -> Frame:
        """The next frame the server sent (waits at most ``timeout``, default the client's)."""
        return await self._take(lambda f: True, timeout)

    async def receive_as(
        self, schema: MessageSchema[Any], *, timeout: float | None = None
    ) -> Frame:
        """The next frame, which must be a ``schema`` message; its payload typed."""
        frame = await self.receive(timeout=timeout)
        if frame.type != schema.type:
            raise AssertionError(f"expected {schema.type}, got {frame.type}: {frame.json}")
        return typed(frame, schema)

    async def expect_error(self, code: ErrorCode | str, *, timeout: float | None = None) -> WsError:
        """The next frame must be an ``ERROR`` or ``RPC_ERROR`` with ``code``; returns it."""
        frame = await self.receive(timeout=timeout)
        if frame.type not in ("ERROR", "RPC_ERROR"):
            raise AssertionError(f"expected an error {code}, got {frame.type}: {frame.json}")
        error = error_of(frame)
        if error.code != code:
            raise AssertionError(f"expected error {code}, got {error.code}: {error.message}")
        return error

    async def expect_close(
        self, code: int | None = None, *, timeout: float | None = None
    ) -> tuple[int, str]:
        """Wait until the server closes the connection; check ``code`` if given."""

        async def closed() -> None:
            while self.close_code is None:
                self._arrived.clear()
                await self._arrived.wait()

        await asyncio.wait_for(closed(), timeout if timeout is not None else self.timeout)
        assert self.close_code is not None and self.close_reason is not None
        if code is not None and self.close_code != code:
            raise AssertionError(f"expected close {code}, got {self.close_code}")
        return self.close_code, self.close_reason

    @property
    def pending(self) -> list[Frame]:
        """Frames received and not taken yet."""
        return list(self._inbox)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close from the client side; the server's close hook runs."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.peer._closed(code, reason)
            self._arrived.set()
            await asyncio.sleep(0)

    # -- plumbing --------------------------------------------------------------------------

    async def _take(self, match: Callable[[Frame], bool], timeout: float | None) -> Frame:
        async def wait() -> Frame:
            while True:
                for i, frame in enumerate(self._inbox):
                    if match(frame):
                        return self._inbox.pop(i)
                if self.close_code is not None:
                    raise ConnectionError(
                        f"the connection closed ({self.close_code} {self.close_reason!r}) "
                        "before the expected frame"
                    )
                self._arrived.clear()
                await self._arrived.wait()

        return await asyncio.wait_for(wait(), timeout if timeout is not None else self.timeout)

    def _deliver(self, data: str | bytes, binary: bool) -> None:
        self._inbox.append(parse(data, binary))
        self._arrived.set()

    def _server_closed(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self._arrived.set()
            asyncio.get_running_loop().call_soon(self.peer._closed, code, reason)


class TestClient:
    """Connects in-memory clients to an App or a Router (wrapped in an App for you)."""

    __test__ = False  # not a pytest test class

    def __init__(self, app: App | HookProvider, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.app = app if isinstance(app, App) else App(app)
        self.timeout = timeout

    @contextlib.asynccontextmanager
    async def connect(
        self,
        path: str = "/",
        *,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        subprotocols: tuple[str, ...] = (),
        remote_address: str = "127.0.0.1",
    ) -> AsyncIterator[TestConnection]:
        """Open a connection through the App's ``upgrade`` hook; closed (1000) on exit.
        Raises :class:`Rejected` if the upgrade hook refuses it."""
        items = list((headers or {}).items())
        items.append(("upgrade", "websocket"))
        if subprotocols:
            items.append(("sec-websocket-protocol", ", ".join(subprotocols)))
        request = Request(path, query, Headers(items), remote_address)
        result = await self.app.handle_upgrade(request)
        if isinstance(result, Response):
            raise Rejected(result)
        subprotocol = result.subprotocol if result.subprotocol in subprotocols else None
        conn = TestConnection(self.app, self.timeout)
        conn._peer = self.app.connect(
            conn._transport,
            request,
            Accept(headers=result.headers, subprotocol=subprotocol, context=result.context),
        )
        await asyncio.sleep(0)
        try:
            yield conn
        finally:
            await conn.close()
