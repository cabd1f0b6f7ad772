"""Test your routers and hooks in-process: no sockets, no server, the real App/Peer/Router.

::

    from crosswire.testing import TestClient

    async def test_add():
        async with TestClient(router).connect() as conn:
            reply = await conn.request(Add, {"a": 1, "b": 2})
            assert reply.payload.sum == 3

Every wait has a timeout (``timeout=``, default 2 s): a test that expects a frame that never
comes fails with ``TimeoutError`` instead of hanging.

A connection speaks the dialect the server chose for it: ``connect(dialect="rover")`` asks for
one as a real client does (the ``dialect`` query parameter); without it, the endpoint's
default (the canonical dialect for a Router), or the one a subprotocol offered names.
``send``, ``request``, ``join`` and ``leave`` write frames of that dialect, and frames are read
in it into the same :class:`Frame` (:mod:`crosswire.client.dialects` has the mapping);
:meth:`TestConnection.send_raw` sends anything else. ``docs/testing.md`` has the details.

::

    async with TestClient(router).connect(dialect="rover") as conn:
        ack = await conn.join("room:1", {"username": "ann"})
        assert ack.data == {"members": 1}
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal

from .app import App, HookProvider
from .client.dialects import CANONICAL, DIALECTS, ClientDialect
from .client.frames import Frame, JoinAck, typed
from .cork import Hold
from .errors import ErrorCode, JoinRefused, WsError
from .http import Headers, Request, Response
from .peer import Peer
from .schema import MessageSchema

__all__ = [
    "DialectName",
    "Frame",
    "JoinAck",
    "JoinRefused",
    "Rejected",
    "TestClient",
    "TestConnection",
]

DEFAULT_TIMEOUT = 2.0

#: A dialect a test connection can ask for, by name.
DialectName = Literal["canonical", "events", "rover"]

#: Seconds between two looks at the server's peer, in the events dialect (which answers an
#: accepted join and a leave with nothing): see :meth:`TestConnection.join`.
_LOOK_EVERY = 0.005


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

    def __init__(self, app: App, timeout: float, dialect: ClientDialect = CANONICAL) -> None:
        self._app = app
        self.timeout = timeout
        self._speaks = dialect
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

    @property
    def dialect(self) -> str:
        """The dialect this connection speaks: ``canonical``, ``events`` or ``rover``."""
        return self._speaks.name

    # -- sending ---------------------------------------------------------------------------

    async def send(
        self,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Send a message of ``schema`` in the connection's dialect (the payload is validated
        first, as a client would). ``meta`` needs the canonical dialect (the events dialect
        takes a ``correlationId``, sent as ``id``): elsewhere it raises ``ValueError``."""
        text = self._speaks.encode(schema.type, schema.dump_payload(payload), dict(meta or {}))
        await self.send_raw(text)

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
        ``schema.response``. Progress frames go to ``on_progress``; an error answering the
        call raises :class:`~crosswire.WsError`. ``timeout_ms`` is sent as
        ``meta.timeoutMs`` (the canonical dialect only).

        Rover's frames carry no correlation id: there, the reply is the next frame of the
        response's type, and the call's error the next ``error`` frame."""
        response = schema.response
        if response is None:
            raise TypeError(f"{schema.type} is not an RPC schema")
        speaks = self._speaks
        full_meta = dict(meta or {})
        cid = correlation_id or uuid.uuid4().hex[:12]
        if speaks.correlates:
            full_meta["correlationId"] = cid
        elif correlation_id is not None:
            raise ValueError(f"the {speaks.name} dialect has no correlation ids")
        if timeout_ms is not None:
            full_meta["timeoutMs"] = timeout_ms
        await self.send(schema, payload, meta=full_meta)

        def answers(frame: Frame) -> bool:
            if speaks.correlates and frame.correlation_id != cid:
                return False
            return (
                frame.type == response.type
                or speaks.progress(frame) is not None
                or speaks.error(frame) is not None
            )

        while True:
            frame = await self._take(answers, timeout)
            progress = speaks.progress(frame)
            if progress is not None:
                if on_progress is not None:
                    on_progress(progress[0])
                continue
            error = speaks.error(frame)
            if error is not None:
                raise error
            return typed(frame, response)

    async def abort(self, correlation_id: str) -> None:
        """Ask the server to cancel an RPC in flight (``$ws:abort``; the canonical dialect
        only: the others have no such frame, and raise ``ValueError``)."""
        frame = self._speaks.abort(correlation_id)
        if frame is None:
            raise ValueError(f"the {self.dialect} dialect cannot abort a call")
        await self.send_raw(frame)

    async def join(self, topic: str, data: Any = None, *, timeout: float | None = None) -> JoinAck:
        """Join ``topic`` with ``data`` (the join handler's ``ctx.payload``; None: none) and
        return the server's :class:`JoinAck` (the ack's ``data``, and its ``frame``). Raises
        :class:`~crosswire.JoinRefused` (``code``, ``reason``) when the server refuses it.

        In Rover's dialect ``data`` is an object whose fields go beside ``topic``; the events
        dialect carries none (``ValueError``). The events dialect answers an accepted join
        with nothing: there, ``join`` returns once the server's peer is in the topic (the
        test client looks at it), and its error event, which has no code, is an ``INTERNAL``
        refusal with the server's message as ``reason``."""
        speaks = self._speaks
        cid = uuid.uuid4().hex[:12]
        await self.send_raw(speaks.join(topic, data, cid))
        answer: JoinAck | JoinRefused | None = None

        def answers(frame: Frame) -> bool:
            nonlocal answer
            answer = speaks.join_answer(frame, topic, cid)
            return answer is not None

        joined = None if speaks.acknowledges_topics else (lambda: topic in self.peer.topics)
        if await self._take_or(answers, joined, timeout) is None:
            return JoinAck(topic)
        if isinstance(answer, JoinRefused):
            raise answer
        assert answer is not None
        return answer

    async def leave(self, topic: str, data: Any = None, *, timeout: float | None = None) -> None:
        """Leave ``topic`` (``data``: for the leave handler, as in :meth:`join`); returns once
        the server acknowledged it (in the events dialect: once the server's peer is out of
        the topic). A leave is never refused; an error answering the frame raises it."""
        speaks = self._speaks
        cid = uuid.uuid4().hex[:12]
        await self.send_raw(speaks.leave(topic, data, cid))
        answer: bool | WsError = False

        def answers(frame: Frame) -> bool:
            nonlocal answer
            answer = speaks.leave_answer(frame, topic, cid)
            return answer is not False

        left = None if speaks.acknowledges_topics else (lambda: topic not in self.peer.topics)
        await self._take_or(answers, left, timeout)
        if isinstance(answer, WsError):
            raise answer

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

    async def expect_error(
        self, code: ErrorCode | str | None = None, *, timeout: float | None = None
    ) -> WsError:
        """The next frame must be an error of the dialect (``ERROR`` or ``RPC_ERROR``, Rover's
        ``error``, the ``error`` event), with ``code`` when given; returns it. The events
        dialect's errors carry no code: there, pass none (a code raises AssertionError)."""
        frame = await self.receive(timeout=timeout)
        error = self._speaks.error(frame)
        if error is None:
            raise AssertionError(f"expected an error {code or ''}, got {frame.type}: {frame.json}")
        if code is not None and not self._speaks.error_codes:
            raise AssertionError(
                f"expected error {code}: the events dialect's errors carry no code "
                f"(got {error.message!r}); call expect_error() without one"
            )
        if code is not None and error.code != code:
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
        frame = await self._take_or(match, None, timeout)
        assert frame is not None
        return frame

    async def _take_or(
        self,
        match: Callable[[Frame], bool],
        done: Callable[[], bool] | None,
        timeout: float | None,
    ) -> Frame | None:
        """The first frame received that ``match``es (taken from the inbox); or None as soon
        as ``done()`` holds, for a state of the server no frame announces (looked at every
        few milliseconds)."""

        async def wait() -> Frame | None:
            while True:
                for i, frame in enumerate(self._inbox):
                    if match(frame):
                        return self._inbox.pop(i)
                if done is not None and done():
                    return None
                if self.close_code is not None:
                    raise ConnectionError(
                        f"the connection closed ({self.close_code} {self.close_reason!r}) "
                        "before the expected frame"
                    )
                self._arrived.clear()
                if done is None:
                    await self._arrived.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._arrived.wait(), _LOOK_EVERY)

        return await asyncio.wait_for(wait(), timeout if timeout is not None else self.timeout)

    def _deliver(self, data: str | bytes, binary: bool) -> None:
        self._inbox.append(self._speaks.parse(data, binary))
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
        dialect: DialectName | None = None,
    ) -> AsyncIterator[TestConnection]:
        """Open a connection through the App's ``upgrade`` hook; closed (1000) on exit.
        Raises :class:`Rejected` if the upgrade hook refuses it, or if the endpoint does not
        serve the ``dialect`` asked for (400).

        ``dialect`` asks for one as a real client does, with the ``dialect`` query
        parameter; None asks for none, and the connection speaks the server's choice (the
        endpoint's default, or the dialect a subprotocol in ``subprotocols`` names)."""
        query, speaks = self._opening(path, query, subprotocols, dialect)
        items = list((headers or {}).items())
        items.append(("upgrade", "websocket"))
        if subprotocols:
            items.append(("sec-websocket-protocol", ", ".join(subprotocols)))
        request = Request(path, query, Headers(items), remote_address)
        result = await self.app.handle_upgrade(request)
        if isinstance(result, Response):
            raise Rejected(result)
        subprotocol = result.subprotocol if result.subprotocol in subprotocols else None
        conn = TestConnection(self.app, self.timeout, speaks)
        conn._peer = self.app.connect(
            conn._transport,
            request,
            result.chosen(subprotocol),
        )
        await asyncio.sleep(0)
        try:
            yield conn
        finally:
            await conn.close()

    def _opening(
        self, path: str, query: str, subprotocols: tuple[str, ...], dialect: str | None
    ) -> tuple[str, ClientDialect]:
        """The query string that asks for ``dialect``, and the dialect the connection will
        speak: the one asked for, else the one the server chooses for such a handshake (a
        dialect of the application's own is read as the canonical one)."""
        if dialect is not None:
            speaks = DIALECTS.get(dialect)
            if speaks is None:
                raise ValueError(f"dialect is one of {', '.join(DIALECTS)}, not {dialect!r}")
            if "dialect" in Request(path, query).query:
                raise ValueError("the query names a dialect already: give dialect= alone")
            return (f"{query}&" if query else "") + f"dialect={dialect}", speaks
        offered = [("sec-websocket-protocol", ", ".join(subprotocols))] if subprotocols else []
        request = Request(path, query, Headers(offered))
        endpoint = self.app.endpoint_for(request)
        chosen = endpoint.dialect_for(request) if endpoint is not None else None
        if chosen is None:  # (the handshake is refused)
            return query, CANONICAL
        return query, DIALECTS.get(chosen[0].name, CANONICAL)
