"""The typed client: one WebSocket connection to a crosswire (or WS-Kit) server, kept open.

One task owns the connection: it connects, reads, and reconnects with backoff after a loss it
did not ask for. Everything else talks to it through the client's state: ``send`` writes at
once when open and queues (bounded) otherwise; ``request``, ``join`` and ``leave`` register a
pending call, send or queue its frame, and wait for the answer with a timeout. A lost
connection fails every pending call with ``UNAVAILABLE`` (the server cancelled them). On the
next open the client joins its topics again (:mod:`crosswire.client.topics`), then sends the
queued frames. A topic joined with ``recover`` is joined again from the last position seen:
the events missed meanwhile come to the handlers, in order and once each, or, when the server
could not recover them, the ``on_resync`` listeners are told.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal
from urllib.parse import urlencode

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from ..errors import ConfigurationError, ErrorCode, JoinRefused, ValidationError, WsError
from ..schema import RESERVED_META_KEYS, MessageSchema
from ..wire import canonical
from ..wire.dialect import Position
from .backoff import Reconnect
from .dialects import CANONICAL
from .frames import Frame, JoinAck, error_of, parse, typed
from .topics import Joining, Memberships, Resync

__all__ = ["Auth", "Authenticated", "Client", "ClientState", "ErrorContext"]

logger = logging.getLogger("crosswire.client")

#: Close codes after which reconnecting cannot help: the server refused this client (but a
#: 1008 ``Session expired``: the next attempt brings a fresh token).
NO_RECONNECT = frozenset({1002, 1003, 1007, 1008, 1009})
SESSION_EXPIRED = "Session expired"

#: Seconds a connection must last for the next loss to start the backoff again.
STABLE_AFTER = 1.0


class ClientState(StrEnum):
    """Where the connection is. ``RECONNECTING``: an attempt is scheduled or under way after a
    loss (or after a first attempt failed)."""

    CLOSED = "closed"
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"
    RECONNECTING = "reconnecting"


@dataclass(frozen=True, slots=True, kw_only=True)
class Auth:
    """A token sent with every connection attempt: ``token()`` (plain or async) is called
    each time; ``None`` sends none. ``attach="query"`` adds ``?access_token=<token>`` (the
    name is ``query_param``); ``"protocol"`` offers the subprotocol ``bearer.<token>``
    (``protocol_prefix``), after the client's own (``protocol_position="append"``) or before
    them.

    ``"message"`` sends it in band, for a server with ``router.authenticate``: ``{"token":
    <token>}`` in ``$ws:authenticate`` as soon as the connection opens, before the topics and
    the queue. When the server's answer says the session expires, the client refreshes it on
    the same connection with a fresh ``token()``, ``refresh_before`` seconds before the end
    (at three quarters of a shorter session)."""

    token: Callable[[], str | Awaitable[str | None] | None]
    attach: Literal["query", "protocol", "message"] = "query"
    query_param: str = "access_token"
    protocol_prefix: str = "bearer."
    protocol_position: Literal["prepend", "append"] = "append"
    refresh_before: float = 30.0


@dataclass(frozen=True, slots=True)
class Authenticated:
    """The server's answer to in-band credentials: the user it found (None: anonymous) and
    when the session ends (Unix time in seconds; None: it does not)."""

    user_id: str | None
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class ErrorContext:
    """What went wrong, for ``on_error`` listeners.

    ``parse``: a frame that is not a canonical message. ``validation``: a message whose payload
    does not match the schema it was registered or requested with. ``overflow``: a message
    dropped because the queue was full (or off) while offline. ``server``: an ``ERROR`` frame
    (not the answer to a request). ``handler``: an ``on`` handler (or another listener:
    ``on_unhandled``, ``on_progress``, ``on_resync``) raised. ``rejoin``: the server refused
    to join a topic again after a reconnect (the error is a :class:`~crosswire.JoinRefused`,
    ``details`` the topic); the client forgot the topic. ``auth``: in-band credentials
    (``Auth(attach="message")``) were refused on open, or a refresh failed (the session then
    ends at its expiry, and the client reconnects with a fresh token).
    """

    type: Literal["parse", "validation", "overflow", "server", "handler", "rejoin", "auth"]
    details: Any = None


Handler = Callable[[Frame], Any]
ErrorListener = Callable[[Exception, ErrorContext], Any]
ResyncListener = Callable[[Resync], Any]


class _Call:
    """A request waiting for its reply (``response``), a join (``joining``: its marker) or a
    leave of ``topic`` waiting for its answer, or a control frame waiting for the frame type
    ``answer`` (its payload settles it)."""

    __slots__ = ("answer", "future", "joining", "on_progress", "response", "sent", "topic")

    def __init__(
        self,
        future: asyncio.Future[Any],
        *,
        response: MessageSchema[Any] | None = None,
        on_progress: Callable[[Any], Any] | None = None,
        topic: str | None = None,
        joining: Joining | None = None,
        answer: str | None = None,
    ) -> None:
        self.answer = answer
        self.future = future
        self.response = response
        self.on_progress = on_progress
        self.topic = topic
        self.joining = joining
        self.sent = False


class Client:
    """A typed client for the canonical dialect (``docs/client.md``).

    ::

        async with Client("ws://127.0.0.1:8000/") as client:
            client.on(Chat, lambda frame: print(frame.payload.text))
            reply = await client.request(Add, {"a": 1, "b": 2})
            welcome = await client.join("room:7", {"username": "ann"})  # the ack's data
            await client.join("news:1", recover=True)  # missed events come after a reconnect

    Options (keyword-only): ``subprotocols``, ``headers`` (sent with the handshake),
    ``auth`` (:class:`Auth`), ``reconnect`` (:class:`~crosswire.client.Reconnect`),
    ``queue`` (``"drop-newest"``, ``"drop-oldest"`` or ``"off"``: what happens to frames
    sent while not connected when ``queue_size`` are already waiting), ``queue_size``,
    ``pending_requests_limit``, ``request_timeout``, ``connect_timeout`` and
    ``close_timeout`` (seconds), ``ping_interval`` (seconds between WebSocket pings, which
    find a connection that died silently; ``None``: none), ``max_message_size`` (bytes; a
    larger message from the server closes the connection with 1009) and ``send_deadline``
    (send each request's timeout as ``meta.timeoutMs``, so that a crosswire server stops the
    handler at the deadline; WS-Kit 0.10 servers refuse that key: turn it off for them).
    """

    def __init__(
        self,
        url: str,
        *,
        subprotocols: tuple[str, ...] = (),
        headers: Mapping[str, str] | None = None,
        auth: Auth | None = None,
        reconnect: Reconnect | None = None,
        queue: Literal["drop-newest", "drop-oldest", "off"] = "drop-newest",
        queue_size: int = 1000,
        pending_requests_limit: int = 1000,
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        close_timeout: float = 5.0,
        ping_interval: float | None = 20.0,
        max_message_size: int | None = 16 * 1024 * 1024,
        send_deadline: bool = True,
    ) -> None:
        if queue not in ("drop-newest", "drop-oldest", "off"):
            raise ConfigurationError(f"queue must be drop-newest, drop-oldest or off: {queue!r}")
        for name, value in (
            ("queue_size", queue_size),
            ("pending_requests_limit", pending_requests_limit),
        ):
            if type(value) is not int or value < 1:
                raise ConfigurationError(f"{name} must be an int >= 1, not {value!r}")
        self.url = url
        self._subprotocols = subprotocols
        self._headers = dict(headers or {})
        self._auth = auth
        self._reconnect = reconnect if reconnect is not None else Reconnect()
        self._queue_policy = queue
        self._queue_size = queue_size
        self._pending_limit = pending_requests_limit
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._close_timeout = close_timeout
        self._ping_interval = ping_interval
        self._max_message_size = max_message_size
        self._send_deadline = send_deadline

        self._state = ClientState.CLOSED
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        #: Callers of wait_open(), woken by the next open.
        self._open_waiters: list[asyncio.Future[None]] = []
        self._closing = False
        #: False once close() was called or the client gave up: sends then fail at once.
        self._accepting = True
        self._last_error: BaseException | None = None
        #: Frames waiting for a connection: (text, correlation id of a request or None).
        self._queue: deque[tuple[str, str | None]] = deque()
        self._calls: dict[str, _Call] = {}
        self._next_id = 0
        self._handlers: dict[str, tuple[MessageSchema[Any], Handler]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._state_listeners: list[Callable[[ClientState], Any]] = []
        self._error_listeners: list[ErrorListener] = []
        self._unhandled_listeners: list[Handler] = []
        self._resync_listeners: list[ResyncListener] = []
        self._memberships = Memberships()
        #: In-band authentication (``Auth(attach="message")``): the token of the attempt
        #: under way, and the timer of the next refresh.
        self._in_band_token: str | None = None
        self._refresh: asyncio.TimerHandle | None = None
        self._close_reason = ""

    # -- state -----------------------------------------------------------------------------

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def is_connected(self) -> bool:
        return self._state is ClientState.OPEN

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose on the current connection."""
        return self._ws.subprotocol if self._ws is not None else None

    @property
    def queued(self) -> int:
        """How many frames wait for a connection."""
        return len(self._queue)

    @property
    def topics(self) -> dict[str, Any]:
        """The topics the client is in (joined, and not left), each with the data it was
        joined with: what it joins again after a reconnect."""
        return dict(self._memberships.joined)

    def position(self, topic: str) -> Position | None:
        """The last position seen of ``topic`` (``(offset, epoch)``: the ack's, then each
        event's), if it was joined with ``recover=True``; None otherwise, or when the server
        gave none."""
        return self._memberships.position(topic)

    # -- connecting ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, and keep the connection up (reconnecting per ``reconnect``) until
        :meth:`close`. Returns once open; raises :class:`ConnectionError` if the client gave
        up first (every allowed attempt failed, the server refused the handshake with a 4xx
        status, or it closed with a code that reconnecting cannot help). Cancelling it leaves
        the client trying; :meth:`close` stops it (``async with`` does both)."""
        if self._runner is None or self._runner.done():
            self._closing = False
            self._accepting = True
            self._last_error = None
            self._runner = asyncio.get_running_loop().create_task(self._run())
        await self.wait_open()

    async def wait_open(self) -> None:
        """Wait for the connection to be open (at once if it is). Raises
        :class:`ConnectionError` if the client stops trying first."""
        if self.is_connected:
            return
        runner = self._runner
        if runner is None or runner.done():
            raise ConnectionError(f"not connecting to {self.url}") from self._last_error
        waiter = asyncio.get_running_loop().create_future()
        self._open_waiters.append(waiter)
        try:
            await asyncio.wait({waiter, runner}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if waiter in self._open_waiters:
                self._open_waiters.remove(waiter)
        if not waiter.done():
            raise ConnectionError(f"could not connect to {self.url}") from self._last_error

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection and stop reconnecting; every wait is bounded by
        ``close_timeout``. Pending requests, joins and leaves fail with ``CANCELLED``, queued
        frames are dropped, the joined topics are forgotten, running async handlers are
        cancelled, and later sends fail with ``UNAVAILABLE`` until :meth:`connect`."""
        self._closing = True
        self._accepting = False
        runner = self._runner
        if runner is not None and not runner.done():
            ws = self._ws
            if ws is not None:
                self._set_state(ClientState.CLOSING)
                try:
                    async with asyncio.timeout(self._close_timeout):
                        await ws.close(code, reason)
                except TimeoutError:  # the server does not answer: drop the connection
                    ws.transport.abort()
            runner.cancel()
            await asyncio.wait({runner}, timeout=self._close_timeout)
        self._runner = None
        self._cancel_refresh()
        self._queue.clear()
        self._memberships.clear()
        self._fail_calls(WsError(ErrorCode.CANCELLED, "the client closed"))
        current = asyncio.current_task()  # close() may be called from an async handler
        handlers = [task for task in self._tasks if task is not current]
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=self._close_timeout)
        self._set_state(ClientState.CLOSED)

    async def __aenter__(self) -> Client:
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- sending ---------------------------------------------------------------------------

    async def send(
        self,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> bool:
        """Send a message of ``schema`` (validated first: raises
        :class:`~crosswire.ValidationError`). True if it was written now; False if it was
        queued for the next connection, or dropped (``on_error`` says so). Raises
        :class:`~crosswire.WsError` ``UNAVAILABLE`` once the client is closed or gave up."""
        text = _encode(schema, payload, meta, None)
        return await self._write_or_queue(text, None) == "sent"

    async def request(
        self,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - also the server's deadline (timeoutMs)
        meta: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        on_progress: Callable[[Any], Any] | None = None,
    ) -> Frame:
        """Call an RPC and return its reply, the payload validated against
        ``schema.response``.

        The server learns the deadline (``meta.timeoutMs``). Raises
        :class:`~crosswire.WsError`: the server's ``RPC_ERROR``; ``DEADLINE_EXCEEDED`` if no
        reply came within ``timeout`` (default ``request_timeout``); ``UNAVAILABLE`` if the
        connection was lost first, the frame could not be queued or the client is closed;
        ``RESOURCE_EXHAUSTED`` past ``pending_requests_limit``. Progress frames go to
        ``on_progress``. Cancelling the call sends ``$ws:abort``, so the server stops the
        handler.
        """
        response = schema.response
        if response is None:
            raise TypeError(f"{schema.type} is not an RPC schema (it has no response)")
        if len(self._calls) >= self._pending_limit:
            raise WsError(ErrorCode.RESOURCE_EXHAUSTED, "too many requests pending")
        seconds = self._request_timeout if timeout is None else timeout
        cid = correlation_id or self._new_id()
        if cid in self._calls:
            raise ValueError(f"a request with correlation id {cid!r} is pending")
        standard: dict[str, Any] = {"correlationId": cid}
        if self._send_deadline:
            standard["timeoutMs"] = max(1, int(seconds * 1000))
        text = _encode(schema, payload, meta, standard)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        call = _Call(future, response=response, on_progress=on_progress)
        self._calls[cid] = call
        try:
            async with asyncio.timeout(seconds):
                if await self._write_or_queue(text, cid) == "dropped":
                    raise WsError(ErrorCode.UNAVAILABLE, "not connected, and the queue is full")
                return await future
        except TimeoutError:
            await self._abort(call, cid)
            raise WsError(
                ErrorCode.DEADLINE_EXCEEDED, f"no reply to {schema.type} within {seconds} s"
            ) from None
        except asyncio.CancelledError:
            await self._abort(call, cid)
            raise
        finally:
            self._calls.pop(cid, None)
            self._unqueue(cid)

    async def authenticate(
        self,
        credentials: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - as request's
    ) -> Authenticated:
        """Send ``credentials`` in band (``$ws:authenticate``) on the open connection and
        wait for the server's ``$ws:authenticated``: to refresh a session that expires
        without reconnecting (``Auth(attach="message")`` does it by itself). Raises
        :class:`~crosswire.WsError`: the server's refusal (``UNAUTHENTICATED`` ``Refresh
        refused``: the session keeps its old expiry), ``DEADLINE_EXCEEDED`` without an
        answer within ``timeout`` (default ``request_timeout``), ``UNAVAILABLE`` when not
        connected (credentials are never queued)."""
        ws = self._ws
        if ws is None or self._state is not ClientState.OPEN:
            raise WsError(ErrorCode.UNAVAILABLE, "not connected: credentials are not queued")
        seconds = self._request_timeout if timeout is None else timeout
        cid = self._new_id()
        future = asyncio.get_running_loop().create_future()
        self._calls[cid] = _Call(future, answer=canonical.AUTHENTICATED)
        try:
            async with asyncio.timeout(seconds):
                await ws.send(_authenticate_frame(credentials, cid))
                answer = await future
        except TimeoutError:
            raise WsError(
                ErrorCode.DEADLINE_EXCEEDED, f"no answer to the credentials in {seconds} s"
            ) from None
        except ConnectionClosed:
            raise WsError(ErrorCode.UNAVAILABLE, "the connection was lost") from None
        finally:
            self._calls.pop(cid, None)
        return self._authenticated(answer)

    def _authenticated(self, answer: Any) -> Authenticated:
        """The server's ``$ws:authenticated``; with ``Auth(attach="message")`` and an
        expiry, the next refresh is scheduled."""
        body = answer if isinstance(answer, dict) else {}
        user, expires_ms = body.get("userId"), body.get("expiresAt")
        expires_at = expires_ms / 1000 if isinstance(expires_ms, int | float) else None
        session = Authenticated(user if isinstance(user, str) else None, expires_at)
        self._cancel_refresh()
        if expires_at is not None and self._auth is not None and self._auth.attach == "message":
            left = expires_at - time.time()
            delay = max(0.0, left - min(self._auth.refresh_before, left / 4))
            self._refresh = asyncio.get_running_loop().call_later(delay, self._refresh_soon)
        return session

    def _refresh_soon(self) -> None:
        self._refresh = None
        task = asyncio.ensure_future(self._refresh_session())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refresh_session(self) -> None:
        try:
            token = await self._token()
            if token is not None:
                await self.authenticate({"token": token})
        except Exception as exc:  # the session ends at its expiry; then a new connection
            self._report(exc, "auth", None)

    def _cancel_refresh(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None

    async def join(
        self,
        topic: str,
        data: Any = None,
        *,
        recover: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - as request's
    ) -> Any:
        """Join ``topic`` (``$ws:join``) with ``data`` (the join handler's ``ctx.payload``;
        None: none), and return the data of the server's ack (what the handler gave
        ``ctx.accept(data)``; None when none).

        Once acknowledged, the client remembers the topic and its data (:attr:`topics`) and
        joins it again, with the same data, after each reconnect. With ``recover=True`` it
        also keeps the topic's position (:meth:`position`; the topic needs a ``History`` on
        the server) and joins it again from there: the events missed meanwhile come to the
        handlers, in order, none twice; when the server could not recover them the
        :meth:`on_resync` listeners are told.

        Like a request, a join while not connected waits in the queue, and every wait is
        bounded by ``timeout`` (default ``request_timeout``). Raises
        :class:`~crosswire.JoinRefused` (``code``, ``reason``) when the server refuses, and
        :class:`~crosswire.WsError` as :meth:`request` does (``DEADLINE_EXCEEDED``,
        ``UNAVAILABLE``, ...).

        Cancelling it (or its timeout) takes a queued join out of the queue; a join already
        sent cannot be called back: the server may join the topic all the same, and the
        client does not remember it. :meth:`leave` it to be sure."""
        if not isinstance(topic, str) or not topic:
            raise ValueError(f"a topic is a non-empty string, not {topic!r}")
        marker = self._memberships.joining(topic, data, recover=recover)
        try:
            ack: JoinAck = await self._topic_call(topic, timeout, joining=marker)
        except BaseException:
            self._memberships.settled(topic, marker)
            raise
        return ack.data

    async def leave(
        self,
        topic: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - as request's
    ) -> None:
        """Leave ``topic`` (``$ws:leave``): the client forgets it at once (it is not joined
        again after a reconnect), and returns once the server acknowledged the leave.

        While not connected there is nothing to leave on the server (a new connection starts
        in no topic): it returns at once, and a join of the topic still waiting in the queue
        is taken out of it (that ``join`` raises ``CANCELLED``)."""
        self._memberships.left(topic)
        if not self.is_connected:
            self._unqueue_joins(topic)
            return
        await self._topic_call(topic, timeout, joining=None)

    async def _topic_call(
        self,
        topic: str,
        timeout: float | None,  # noqa: ASYNC109 - as request's
        *,
        joining: Joining | None,
    ) -> Any:
        """Send the join of ``joining`` (or a leave when None) and wait for its answer (the
        JoinAck of a join; the topic is remembered when it comes)."""
        if len(self._calls) >= self._pending_limit:
            raise WsError(ErrorCode.RESOURCE_EXHAUSTED, "too many requests pending")
        seconds = self._request_timeout if timeout is None else timeout
        cid = self._new_id()
        if joining is not None:
            text = self._memberships.join_frame(topic, joining, cid)
        else:
            text = CANONICAL.leave(topic, None, cid)
        future = asyncio.get_running_loop().create_future()
        self._calls[cid] = _Call(future, topic=topic, joining=joining)
        try:
            async with asyncio.timeout(seconds):
                if await self._write_or_queue(text, cid) == "dropped":
                    raise WsError(ErrorCode.UNAVAILABLE, "not connected, and the queue is full")
                return await future
        except TimeoutError:
            what = "join" if joining else "leave"
            raise WsError(
                ErrorCode.DEADLINE_EXCEEDED, f"no answer to the {what} of {topic!r} in {seconds} s"
            ) from None
        finally:
            self._calls.pop(cid, None)
            self._unqueue(cid)

    def _unqueue_joins(self, topic: str) -> None:
        for text, cid in list(self._queue):
            call = self._calls.get(cid) if cid is not None else None
            if call is not None and call.joining is not None and call.topic == topic:
                self._queue.remove((text, cid))
                left = WsError(ErrorCode.CANCELLED, f"{topic!r} was left before the join was sent")
                _settle(call.future, left)

    # -- receiving -------------------------------------------------------------------------

    def on(self, schema: MessageSchema[Any], handler: Handler) -> Callable[[], None]:
        """Call ``handler(frame)`` (plain or async) for every ``schema`` message; the frame's
        payload is validated and typed. One handler per type. Returns a function that
        unregisters it."""
        if schema.type in self._handlers:
            raise ValueError(f"{schema.type} already has a handler")
        self._handlers[schema.type] = (schema, handler)

        def unregister() -> None:
            if self._handlers.get(schema.type, (None, None))[1] is handler:
                del self._handlers[schema.type]

        return unregister

    def on_state(self, listener: Callable[[ClientState], Any]) -> Callable[[], None]:
        """Call ``listener(state)`` on every change of state. Returns an unregister function."""
        return _listen(self._state_listeners, listener)

    def on_error(self, listener: ErrorListener) -> Callable[[], None]:
        """Call ``listener(error, ErrorContext)`` for what cannot be raised to a caller (see
        :class:`ErrorContext`). Without listeners, those are logged."""
        return _listen(self._error_listeners, listener)

    def on_unhandled(self, listener: Handler) -> Callable[[], None]:
        """Call ``listener(frame)`` for messages no handler or request takes (raw payload)."""
        return _listen(self._unhandled_listeners, listener)

    def on_resync(self, listener: ResyncListener) -> Callable[[], None]:
        """Call ``listener(Resync(topic, data))`` (plain or async) when a topic joined with
        ``recover=True`` was joined again after a reconnect without the events missed
        meanwhile: reload its state (``data`` is the rejoin's ack data). It is called before
        the events that follow the rejoin. Without listeners, it is logged. Returns an
        unregister function."""
        return _listen(self._resync_listeners, listener)

    # -- the connection's task -------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0  # attempts in a row that did not give a lasting connection
        while not self._closing:
            self._set_state(ClientState.CONNECTING if failures == 0 else ClientState.RECONNECTING)
            try:
                async with asyncio.timeout(self._connect_timeout):
                    ws = await self._open()
            except Exception as exc:  # whatever stopped this attempt (the token's too)
                self._last_error = exc
                failures += 1
                if _final(exc) or not self._reconnect.allows(failures):
                    self._give_up(f"could not connect: {exc!r}")
                    return
                self._set_state(ClientState.RECONNECTING)
                await asyncio.sleep(self._reconnect.delay(failures, random.random()))
                continue
            if self._closing:  # close() was called as the handshake finished
                ws.transport.abort()
                return
            opened_at = loop.time()
            code = await self._serve(ws)
            if self._closing:
                return
            self._fail_calls(WsError(ErrorCode.UNAVAILABLE, f"the connection was lost ({code})"))
            expired = code == 1008 and self._close_reason == SESSION_EXPIRED
            if code in NO_RECONNECT and not expired:
                self._give_up(f"the server closed the connection with {code}")
                return
            # A connection that ends at once counts as a failed attempt: a server that accepts
            # and closes must not be hammered, and max_attempts must end it.
            failures = 1 if loop.time() - opened_at >= STABLE_AFTER else failures + 1
            if not self._reconnect.allows(failures):
                self._give_up(f"the connection was lost ({code})")
                return
            self._set_state(ClientState.RECONNECTING)
            await asyncio.sleep(self._reconnect.delay(failures, random.random()))

    def _give_up(self, why: str) -> None:
        logger.warning("client: %s: %s; not reconnecting", self.url, why)
        self._accepting = False
        self._queue.clear()
        self._fail_calls(WsError(ErrorCode.UNAVAILABLE, why))
        self._set_state(ClientState.CLOSED)

    async def _open(self) -> ClientConnection:
        url, subprotocols = self.url, list(self._subprotocols)
        token = await self._token()
        self._in_band_token = None
        if token is not None and self._auth is not None:
            if self._auth.attach == "message":
                self._in_band_token = token  # sent once the connection is open
            elif self._auth.attach == "query":
                separator = "&" if "?" in url else "?"
                url = f"{url}{separator}{urlencode({self._auth.query_param: token})}"
            else:
                offered = self._auth.protocol_prefix + token
                if self._auth.protocol_position == "append":
                    subprotocols.append(offered)
                else:
                    subprotocols.insert(0, offered)
        return await connect(
            url,
            subprotocols=subprotocols or None,  # type: ignore[arg-type]
            additional_headers=self._headers,
            open_timeout=None,  # the caller's timeout bounds the attempt
            ping_interval=self._ping_interval,
            ping_timeout=self._ping_interval,
            close_timeout=self._close_timeout,
            max_size=self._max_message_size,
        )

    async def _token(self) -> str | None:
        if self._auth is None:
            return None
        token = self._auth.token()
        if inspect.isawaitable(token):
            token = await token
        return token

    async def _serve(self, ws: ClientConnection) -> int:
        """Run one open connection until it closes; returns the close code. With an
        in-band token the connection counts as open (sends go out, not to the queue) once
        the server accepted it."""
        self._ws = ws
        try:
            if self._in_band_token is not None and not await self._authenticate_on_open(ws):
                return await self._closed_by_server(ws)
            self._set_state(ClientState.OPEN)
            for waiter in self._open_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            await self._rejoin(ws)
            await self._flush(ws)
            async for data in ws:
                frame = parse(data, isinstance(data, bytes))
                if frame.type == canonical.HEARTBEAT:
                    ack = {"type": canonical.HEARTBEAT_ACK}
                    await ws.send(orjson.dumps(ack).decode())
                    continue
                try:
                    self._dispatch(frame)
                except Exception as exc:  # a frame the client cannot make sense of
                    self._report(exc, "parse", frame.raw)
        except ConnectionClosed:
            pass
        finally:
            self._ws = None
            self._cancel_refresh()
            self._memberships.lost()
            if not ws.transport.is_closing():  # cancelled while open: do not leak the socket
                ws.transport.abort()
        received = ws.protocol.close_rcvd
        self._close_reason = received.reason if received is not None else ""
        return received.code if received is not None else 1006

    async def _authenticate_on_open(self, ws: ClientConnection) -> bool:
        """Send the in-band token before anything else and read until the server answers
        it (other frames go to their handlers); whether it was accepted."""
        cid = self._new_id()
        token, self._in_band_token = self._in_band_token, None
        await ws.send(_authenticate_frame({"token": token}, cid))
        try:
            async with asyncio.timeout(self._connect_timeout):
                while True:
                    data = await ws.recv()
                    frame = parse(data, isinstance(data, bytes))
                    if frame.type == canonical.AUTHENTICATED and frame.correlation_id == cid:
                        self._authenticated(frame.payload)
                        return True
                    if frame.type in (canonical.ERROR, canonical.RPC_ERROR):
                        self._report(error_of(frame), "auth", None)
                        return False
                    self._dispatch(frame)
        except TimeoutError:
            error = WsError(ErrorCode.DEADLINE_EXCEEDED, "no answer to the in-band token")
            self._report(error, "auth", None)
            return False

    async def _closed_by_server(self, ws: ClientConnection) -> int:
        """Wait (bounded) for the server to close a connection it refused; its code."""
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            async with asyncio.timeout(self._close_timeout):
                await ws.wait_closed()
        if not ws.transport.is_closing():
            ws.transport.abort()
        received = ws.protocol.close_rcvd
        self._close_reason = received.reason if received is not None else ""
        return received.code if received is not None else 1006

    async def _rejoin(self, ws: ClientConnection) -> None:
        """Join the remembered topics again, before anything else is sent; their answers come
        to :meth:`_dispatch`."""
        for topic, text in self._memberships.rejoins(self._new_id):
            if topic in self._memberships.joined:  # (not left while the others were sent)
                await ws.send(text)

    async def _flush(self, ws: ClientConnection) -> None:
        queue = self._queue
        while queue:
            text, cid = queue.popleft()
            try:
                await ws.send(text)
            except ConnectionClosed:
                queue.appendleft((text, cid))  # still waiting: sent on the next connection
                raise
            call = self._calls.get(cid) if cid is not None else None
            if call is not None:
                call.sent = True

    async def _write_or_queue(
        self, text: str, cid: str | None
    ) -> Literal["sent", "queued", "dropped"]:
        if not self._accepting:
            raise WsError(ErrorCode.UNAVAILABLE, "the client is closed: call connect()")
        ws = self._ws
        if ws is not None and self._state is ClientState.OPEN and not self._queue:
            with contextlib.suppress(ConnectionClosed):  # lost just now: queue it
                await ws.send(text)
                if cid is not None:
                    self._calls[cid].sent = True
                return "sent"
        queue = self._queue
        if self._queue_policy == "off" or (
            len(queue) >= self._queue_size and self._queue_policy == "drop-newest"
        ):
            self._report(OverflowError("not connected: frame dropped"), "overflow", text)
            return "dropped"
        if len(queue) >= self._queue_size:  # drop-oldest
            dropped, dropped_cid = queue.popleft()
            self._report(OverflowError("queue full: oldest frame dropped"), "overflow", dropped)
            if dropped_cid is not None and dropped_cid in self._calls:
                error = WsError(ErrorCode.UNAVAILABLE, "dropped from the full queue")
                _settle(self._calls[dropped_cid].future, error)
        queue.append((text, cid))
        return "queued"

    def _unqueue(self, cid: str) -> None:
        for item in self._queue:
            if item[1] == cid:
                self._queue.remove(item)
                return

    async def _abort(self, call: _Call, cid: str) -> None:
        ws = self._ws
        if call.sent and ws is not None:
            frame = {"type": canonical.ABORT, "meta": {"correlationId": cid}}
            with contextlib.suppress(ConnectionClosed):
                await ws.send(orjson.dumps(frame).decode())

    # -- what arrives ----------------------------------------------------------------------

    def _dispatch(self, frame: Frame) -> None:
        cid = frame.correlation_id
        call = self._calls.get(cid) if cid is not None else None
        if call is not None and not call.future.done():
            if call.answer is not None:
                if frame.type == call.answer:
                    call.future.set_result(frame.payload)
                    return
                if frame.type in (canonical.RPC_ERROR, canonical.ERROR):
                    call.future.set_exception(error_of(frame))
                    return
            elif call.topic is not None:
                if self._answer_topic_call(call, frame):
                    return
            elif frame.type == canonical.RPC_PROGRESS:
                if call.on_progress is not None:
                    self._run_listener(call.on_progress, frame.payload, "handler")
                return
            elif frame.type == canonical.RPC_ERROR:
                call.future.set_exception(error_of(frame))
                return
            elif call.response is not None and frame.type == call.response.type:
                try:
                    call.future.set_result(typed(frame, call.response))
                except ValidationError as exc:
                    call.future.set_exception(exc)
                    self._report(exc, "validation", frame.json)
                return
        rejoined = self._memberships.rejoin_answer(frame) if cid is not None else False
        if isinstance(rejoined, JoinRefused):
            self._report(rejoined, "rejoin", rejoined.topic)
            return
        if isinstance(rejoined, Resync):
            self._resync(rejoined)
            return
        if rejoined:
            return
        admitted = self._memberships.admit(frame)
        if admitted is False:
            logger.debug("client: %s seen already: dropped", frame.meta)
            return
        if isinstance(admitted, Resync):  # a new epoch in the live stream: the past was lost
            self._resync(admitted)
        if frame.type == "<text>":
            self._report(ValueError("not a canonical frame"), "parse", frame.raw)
        elif frame.type == canonical.ERROR:
            self._report(error_of(frame), "server", frame.json)
        elif (route := self._handlers.get(frame.type)) is not None:
            schema, handler = route
            try:
                typed_frame = typed(frame, schema)
            except ValidationError as exc:
                self._report(exc, "validation", frame.json)
                return
            self._run_listener(handler, typed_frame, "handler")
        else:
            for listener in list(self._unhandled_listeners):
                self._run_listener(listener, frame, "handler")

    def _answer_topic_call(self, call: _Call, frame: Frame) -> bool:
        """Settle a join or a leave with ``frame`` if it answers it; whether it did. An
        accepted join is remembered now, before the next frame (an event of the topic) is
        read."""
        topic, cid = call.topic, frame.correlation_id
        assert topic is not None and cid is not None
        if call.joining is not None:
            answer = CANONICAL.join_answer(frame, topic, cid)
            if answer is None:
                return False
            if isinstance(answer, JoinRefused):
                call.future.set_exception(answer)
            else:
                self._memberships.accepted(topic, call.joining, answer)
                call.future.set_result(answer)
            return True
        left = CANONICAL.leave_answer(frame, topic, cid)
        if isinstance(left, WsError):
            call.future.set_exception(left)
        elif left:
            call.future.set_result(None)
        return left is not False

    def _resync(self, resync: Resync) -> None:
        if not self._resync_listeners:
            logger.warning("client: %r was not recovered after the reconnect: resync", resync.topic)
        for listener in list(self._resync_listeners):
            self._run_listener(listener, resync, "handler")

    def _run_listener(self, listener: Callable[[Any], Any], arg: Any, what: Any) -> None:
        try:
            result = listener(arg)
        except Exception as exc:
            self._report(exc, what, None)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(self._await_listener(result, what))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _await_listener(self, result: Awaitable[Any], what: Any) -> None:
        try:
            await result
        except Exception as exc:
            self._report(exc, what, None)

    def _report(self, error: Exception, what: Any, details: Any) -> None:
        context = ErrorContext(what, details)
        if not self._error_listeners:
            logger.warning("client: %s error: %s", what, error)
        for listener in list(self._error_listeners):
            try:
                listener(error, context)
            except Exception:
                logger.exception("client: an on_error listener raised")

    # -- small helpers ---------------------------------------------------------------------

    def _set_state(self, state: ClientState) -> None:
        if state is self._state:
            return
        self._state = state
        for listener in list(self._state_listeners):
            try:
                listener(state)
            except Exception:
                logger.exception("client: an on_state listener raised")

    def _fail_calls(self, error: WsError) -> None:
        for call in self._calls.values():
            _settle(call.future, error)

    def _new_id(self) -> str:
        self._next_id += 1
        return f"c{self._next_id}"


def _encode(
    schema: MessageSchema[Any],
    payload: Any,
    meta: Mapping[str, Any] | None,
    standard: Mapping[str, Any] | None,
) -> str:
    frame: dict[str, Any] = {"type": schema.type}
    full = {k: v for k, v in (meta or {}).items() if k not in RESERVED_META_KEYS}
    if standard:
        full.update(standard)
    if full:
        frame["meta"] = full
    fragment = schema.dump_payload(payload)
    if fragment is not None:
        frame["payload"] = fragment
    return orjson.dumps(frame).decode()


def _settle(future: asyncio.Future[Frame], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _listen(listeners: list[Any], listener: Any) -> Callable[[], None]:
    listeners.append(listener)

    def unregister() -> None:
        if listener in listeners:
            listeners.remove(listener)

    return unregister


def _final(exc: Exception) -> bool:
    """Whether a failed attempt means trying again cannot help: a bad URL, or a handshake
    refused with a 4xx status (but 408 and 429, which ask to come back later)."""
    if isinstance(exc, InvalidURI):
        return True
    return (
        isinstance(exc, InvalidStatus)
        and 400 <= exc.response.status_code < 500
        and (exc.response.status_code not in (408, 429))
    )


def _authenticate_frame(credentials: Any, correlation_id: str) -> str:
    frame = {
        "type": canonical.AUTHENTICATE,
        "meta": {"correlationId": correlation_id},
        "payload": credentials,
    }
    return orjson.dumps(frame).decode()
