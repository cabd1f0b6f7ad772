"""The CrossWS connection model: :class:`Peer` (one connected client) and :class:`Message`.

A peer has three sides, each a small named interface:

* **users** (hooks, handlers): ``send``, ``subscribe``, ``publish``, ``identify``, ``close``,
  ``terminate``, and what they read (``id``, ``request``, ``topics``, ``user_id``, ...);
* **the layers above** (the Hub, the router): ``ready_state``, ``render``, ``transform``,
  ``session``, ``cork``, :meth:`Peer.attach`, :meth:`Peer.send_frame`, ``write_text``,
  :meth:`Peer.write`,
  ``backpressured`` and :meth:`Peer.close_overflowed`;
* **the server adapter below** (:class:`Transport`): the peer's ``_receive_data``,
  ``_closed``, ``_pause_writing``, ``_resume_writing`` and ``_check_buffer``, which only
  adapters call.

What a peer needs of the App that made it is the :class:`Host` protocol (its limits, its Hub
as a :class:`PeerHub`, its task tracking), and of its hooks the :class:`PeerHooks` protocol:
this module imports neither the App nor the Hub. The peer runs the user's hooks in order and
owns the task that runs ``async`` hooks.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Coroutine
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from .errors import ErrorCode, WsError
from .http import Request
from .wire import EVENTS, Dialect
from .wire.dialect import Render

if TYPE_CHECKING:
    from .cork import Hold
    from .limits import Limits

__all__ = [
    "SESSION_EXPIRED",
    "CloseCode",
    "Host",
    "Message",
    "Peer",
    "PeerHooks",
    "PeerHub",
    "ReadyState",
    "Transform",
    "Transport",
    "encode",
    "high_water",
    "receivable_close_code",
]

logger = logging.getLogger("crosswire.peer")


class ReadyState(IntEnum):
    """The WebSocket ``readyState`` of a peer, with the browser's numbers."""

    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


class CloseCode(IntEnum):
    """Close codes crosswire sends or reports. ``docs/close-codes.md`` has the full table."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down (SIGINT/SIGTERM), or client navigating away
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # reported only: the close frame carried no code
    ABNORMAL = 1006  # reported only: the connection dropped without a close frame
    INVALID_DATA = 1007  # text frame that is not UTF-8
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009  # message larger than Limits.max_message_size
    INTERNAL_ERROR = 1011  # server error, or keepalive ping timeout
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013  # send buffer overflow: the client stopped reading


class Transport(Protocol):
    """What a server adapter gives a peer: non-blocking writes and connection control.

    The adapter calls ``peer._pause_writing()`` once the connection's buffer passes a
    high-water mark no larger than ``Limits.send_buffer_limit`` (see :func:`high_water`), and
    ``peer._resume_writing()`` when it has drained; the peer compares ``buffered_amount()``
    with the limit only in between, so a write costs one call when the client keeps up.
    Control frames the server library writes by itself (pongs) count too: while paused, an
    adapter whose library answers pings on its own calls ``peer._check_buffer()`` after
    each socket read.

    ``cork`` is the connection's :class:`~crosswire.cork.Hold` when its writes can be held
    for a batch (see :mod:`crosswire.cork`), else None; the peer reads it once, when it is
    created.
    """

    @property
    def cork(self) -> Hold | None: ...

    def bind(self, peer: Peer) -> None:
        """The peer this transport serves; called before the ``open`` hook runs, so that the
        transport can report pause/resume from the first send on."""

    def send_text(self, payload: str | bytes) -> None:
        """Queue one text message (``str``, or bytes already UTF-8) for writing; never blocks."""

    def send_binary(self, payload: bytes) -> None:
        """Queue one binary message for writing; never blocks."""

    def buffered_amount(self) -> int:
        """Bytes queued for this connection and not yet handed to the kernel."""

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake (reading resumes, to see the client's close frame);
        drop the connection if it does not finish in time."""

    def abort(self) -> None:
        """Drop the connection now, without a closing handshake (reading resumes, so that
        the adapter sees the end)."""

    def pause_reading(self) -> None:
        """Stop reading from the socket (inbound backpressure)."""

    def resume_reading(self) -> None:
        """Read from the socket again."""


#: An outbound transform of one connection (:attr:`Peer.transform`): ``(peer, event, data)``
#: to the ``(event, data)`` to send instead, or None to send the original. For a raw frame,
#: ``event`` is ``""`` and ``data`` its text or bytes. It may be async.
Transform = Callable[
    ["Peer", str, Any], "tuple[str, Any] | Awaitable[tuple[str, Any] | None] | None"
]


class PeerHub(Protocol):
    """What a peer asks of the Hub (:class:`crosswire.Hub` is one)."""

    def subscribe(self, peer: Peer, topic: str) -> None: ...

    def unsubscribe(self, peer: Peer, topic: str) -> None: ...

    def publish(self, topic: str, data: object, *, exclude: Collection[str] = ()) -> int: ...

    def identify(self, peer: Peer, user_id: str | None) -> None:
        """Index ``peer`` under ``user_id`` (its :attr:`Peer.user_id` is still the old one)."""

    def remove(self, peer: Peer) -> None:
        """Forget ``peer`` everywhere: it closed."""

    def clients_of(self, user_id: str) -> list[Peer]:
        """The peers of this process identified as ``user_id``."""

    def to_peer_frame(self, peer: Peer, frame: bytes, *, binary: bool = False) -> bool:
        """Send a frame through the peer's transform, in order with the Hub's deliveries."""


class Host(Protocol):
    """What a peer asks of the App that made it (:class:`crosswire.App` is one)."""

    @property
    def limits(self) -> Limits: ...

    @property
    def hub(self) -> PeerHub: ...

    def spawn(self, coro: Coroutine[Any, Any, None], *, eager: bool = False) -> asyncio.Task[None]:
        """Run a task the App tracks until it ends (shutdown awaits it)."""

    def peer_closed(self, peer: Peer) -> None:
        """``peer`` is closed: the App forgets it."""


class PeerHooks(Protocol):
    """The hooks a peer runs (:class:`crosswire.Hooks` is one); None where there is none."""

    @property
    def open(self) -> Callable[..., Any] | None: ...

    @property
    def message(self) -> Callable[..., Any] | None: ...

    @property
    def close(self) -> Callable[..., Any] | None: ...

    @property
    def error(self) -> Callable[..., Any] | None: ...

    @property
    def drain(self) -> Callable[..., Any] | None: ...


def high_water(limits_send_buffer: int, default: int) -> int:
    """The high-water mark an adapter should use: its ``default``, or lower to stay within
    ``Limits.send_buffer_limit`` so that an overflow is always noticed."""
    return min(default, limits_send_buffer)


def encode(data: object) -> tuple[bytes, bool]:
    """Turn what a user sends into ``(payload, is_text)``: UTF-8 bytes, once per message.

    ``str`` is a text frame, bytes-like a binary frame, anything else JSON (orjson) in a text
    frame. A publish encodes once here, so that no transport encodes the same text again for
    each recipient.
    """
    if type(data) is str:
        return data.encode(), True
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data), False
    if isinstance(data, Message):
        return data.data, not data.is_binary
    return orjson.dumps(data), True


class Message:
    """One whole message received from a peer (fragments already reassembled)."""

    __slots__ = ("_data", "is_binary")

    def __init__(self, data: str | bytes, is_binary: bool) -> None:
        self._data = data
        self.is_binary = is_binary

    @property
    def raw(self) -> str | bytes:
        """The data as the server adapter delivered it (``str`` or ``bytes``)."""
        return self._data

    @property
    def data(self) -> bytes:
        """The message as bytes (UTF-8 for text messages)."""
        d = self._data
        return d.encode() if isinstance(d, str) else d

    def text(self) -> str:
        """The message as text (binary messages are decoded as UTF-8)."""
        d = self._data
        return d if isinstance(d, str) else d.decode()

    def json(self) -> Any:
        """The message parsed as JSON; raises ``orjson.JSONDecodeError`` (a ``ValueError``)."""
        return orjson.loads(self._data)

    def __len__(self) -> int:
        d = self._data
        return len(d.encode()) if isinstance(d, str) else len(d)

    def __repr__(self) -> str:
        # The body may carry tokens or personal data: never print it.
        kind = "binary" if self.is_binary else "text"
        return f"<Message {kind} {len(self)} bytes>"


_OPEN, _MESSAGE, _CLOSE, _DRAIN = range(4)
#: The topics of a peer that never subscribed (shared; replaced by a set on the first).
_NO_TOPICS: frozenset[str] = frozenset()
#: The reason of the 1008 that ends a session past its expiry (:meth:`Peer.expire_at`).
SESSION_EXPIRED = "Session expired"
_STATE_OPEN = ReadyState.OPEN  # a module global: the hot paths compare against it
_new_message = object.__new__  # Peer._receive_data fills the slots without an __init__ call


class Peer:
    """One connected client, the same on every server.

    ``send`` never blocks: data goes into the peer's send buffer. A peer whose buffer passes
    ``Limits.send_buffer_limit`` is closed with 1013 (see ``docs/close-codes.md``).
    """

    __slots__ = (
        "_app",
        "_buffer_seen",
        "_close_sent",
        "_drain_waiters",
        "_expiry",
        "_hooks",
        "_inbox",
        "_inline",
        "_largest_write",
        "_on_data",
        "_on_message",
        "_reading_paused",
        "_task",
        "_topics",
        "_transport",
        "_user_id",
        "_wake",
        "_write_paused",
        "context",
        "cork",
        "dialect",
        "expires_at",
        "id",
        "ready_state",
        "render",
        "request",
        "session",
        "subprotocol",
        "transform",
        "write_text",
    )

    def __init__(
        self,
        app: Host,
        hooks: PeerHooks,
        inline: bool,
        transport: Transport,
        request: Request,
        *,
        dialect: Dialect = EVENTS,
        subprotocol: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        self._app = app
        #: The hooks of the endpoint this peer connected to, and whether they run inline.
        self._hooks = hooks
        self._inline = inline
        #: The wire dialect of this connection (chosen at the handshake).
        self.dialect = dialect
        self._transport = transport
        #: The transport's cork (its socket's writes held in a batch), or None; the Hub holds
        #: it for a burst of publishes (:mod:`crosswire.cork`).
        self.cork: Hold | None = getattr(transport, "cork", None)  # (custom ones may lack it)
        self.id: str = str(uuid.uuid4())
        #: The request that opened the connection, as kept for its lifetime: without the
        #: headers only the handshake reads (:meth:`Request.opened`).
        self.request = request
        self.subprotocol = subprotocol
        self.context: dict[str, Any] = dict(context or {})
        #: The WebSocket ``readyState`` (read it; the peer changes it).
        self.ready_state = ReadyState.OPEN
        #: Its topics: a shared empty frozenset until the first subscribe (most idle
        #: connections of the hooks layer never subscribe).
        self._topics: set[str] | frozenset[str] = _NO_TOPICS
        self._close_sent: tuple[int, str] | None = None
        self._write_paused = False
        #: Writes one text frame already encoded (UTF-8 bytes) as it is: the transport's own
        #: ``send_text`` while the client keeps up, one that also checks the send buffer
        #: while it is past its high-water mark. The Hub's fan-out calls it for each member
        #: (no Python frame of the peer's on that path).
        self.write_text: Callable[[bytes], None] = transport.send_text
        #: While paused: the buffered amount at the last check, and the largest growth
        #: between two checks (the largest write), which may wait on top of the limit.
        self._buffer_seen = 0
        self._largest_write = 0
        self._drain_waiters: list[asyncio.Future[None]] | None = None  # (made when one waits)
        self._inbox: collections.deque[tuple[int, Any, Any]] | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._reading_paused = False
        #: The message hook when hooks run inline (no task); None otherwise.
        self._on_message = self._hooks.message if self._inline else None
        #: State kept by the layer serving this peer (the router's :class:`Session`); see
        #: :meth:`attach`.
        self.session: Any = None
        #: Set by that layer to take each frame raw, ``(peer, data, is_binary)``, before any
        #: Message is built (the router's message path).
        self._on_data: Callable[[Peer, str | bytes, bool], None] | None = None
        #: How events published to this peer are rendered: in its dialect (with the
        #: router's outbound maps in front, set by the router).
        self.render: Render = dialect.render
        #: The outbound transform of this connection (per-client encryption), or None.
        #:
        #: ``transform(peer, event, data)`` gets every message on its way to the client, in
        #: order, and returns ``(event, data)`` to send instead (rendered in the connection's
        #: dialect), or None to send the original; it may be ``async``. A frame sent as it
        #: is (``peer.send``, an error or an acknowledgement of the router) comes with
        #: ``event`` ``""`` and its text (or bytes) as ``data``. Transforms run in the Hub, at
        #: most ``Hub(transform_concurrency=...)`` at once; a client whose messages wait past
        #: ``transform_queue`` is closed as a slow consumer (1013).
        self.transform: Transform | None = None
        self._user_id: str | None = None
        #: When the session ends (Unix time, seconds), or None; see :meth:`expire_at`.
        self.expires_at: float | None = None
        self._expiry: asyncio.TimerHandle | None = None

    # -- what users read -------------------------------------------------------------------

    @property
    def remote_address(self) -> str | None:
        """The client's IP address, as the server saw it."""
        return self.request.remote_address

    @property
    def topics(self) -> frozenset[str]:
        """The topics this peer is subscribed to."""
        return frozenset(self._topics)

    @property
    def user_id(self) -> str | None:
        """The user this connection belongs to, once :meth:`identify` said so."""
        return self._user_id

    @property
    def buffered_amount(self) -> int:
        """Bytes sent to this peer and not yet written to the socket."""
        if self.ready_state is ReadyState.CLOSED:
            return 0
        return self._transport.buffered_amount()

    def __repr__(self) -> str:
        return (
            f"<Peer {self.id[:8]} addr={self.remote_address} "
            f"path={self.request.path} state={self.ready_state.name}>"
        )

    # -- what users do ---------------------------------------------------------------------

    def send(self, data: object) -> bool:
        """Send ``data``: ``str`` as text, bytes as binary, anything else as JSON text.

        Returns ``False`` (and sends nothing) when the peer is no longer open.
        """
        if self.ready_state is not _STATE_OPEN:
            return False
        if self.transform is not None:
            payload, text = encode(data)
            return self._app.hub.to_peer_frame(self, payload, binary=not text)
        if type(data) is str:
            self._transport.send_text(data)
        else:
            payload, text = encode(data)
            self.write(payload, text)
            return True
        if self._write_paused:
            self._check_buffer()
        return True

    def subscribe(self, topic: str) -> None:
        """Join ``topic``; messages published to it reach this peer.

        Raises :class:`~crosswire.WsError` ``RESOURCE_EXHAUSTED`` (not subscribed) when the
        peer already has ``Limits.max_topics`` topics.
        """
        if self.ready_state is ReadyState.OPEN and topic not in self._topics:
            limit = self._app.limits.max_topics
            if len(self._topics) >= limit:
                raise WsError(
                    ErrorCode.RESOURCE_EXHAUSTED,
                    f"too many topics on this connection (Limits.max_topics = {limit})",
                    {"limit": limit},
                    retryable=False,  # not until the connection leaves a topic
                )
            topics = self._topics
            if not isinstance(topics, set):
                topics = self._topics = set()
            topics.add(topic)
            self._app.hub.subscribe(self, topic)

    def unsubscribe(self, topic: str) -> None:
        """Leave ``topic``."""
        topics = self._topics
        if topic in topics and isinstance(topics, set):
            topics.discard(topic)
            self._app.hub.unsubscribe(self, topic)

    def publish(self, topic: str, data: object) -> int:
        """Send ``data`` to every subscriber of ``topic`` except this peer, on every instance
        that shares the App's bus.

        The message is encoded once. Returns the number of local peers it was written to.
        """
        return self._app.hub.publish(topic, data, exclude=(self.id,))

    def identify(self, user_id: str | None) -> None:
        """Say which user this connection belongs to (None: no user), so that messages to
        that user (``hub.to_user``, ``Emitter.to_user``) reach it, on any instance."""
        if self.ready_state is ReadyState.OPEN or user_id is None:
            self._app.hub.identify(self, user_id)
            self._user_id = user_id
            limit = self._app.limits.max_connections_per_user
            if (
                user_id is not None
                and limit is not None
                and len(self._app.hub.clients_of(user_id)) > limit
            ):
                self.close(CloseCode.TRY_AGAIN_LATER, "too many connections for this user")

    def expire_at(self, when: float | None) -> None:
        """End this connection's session at ``when`` (Unix time in seconds, as a token's
        ``exp``; None: never): it is then closed with 1008 ``"Session expired"``. Called
        again, it moves the end (a refreshed token). :attr:`expires_at` tells the current
        one. ``Accept(expires_at=...)`` sets it at the handshake, an in-band authentication's
        :class:`~crosswire.auth.Identity` when the client authenticates or refreshes."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if self.ready_state is not ReadyState.OPEN:
            return
        self.expires_at = when
        if when is not None:
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_later(max(0.0, when - time.time()), self._expired)

    def _expired(self) -> None:
        self._expiry = None
        self.close(CloseCode.POLICY_VIOLATION, SESSION_EXPIRED)

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Close gracefully with ``code`` and ``reason``; the ``close`` hook follows."""
        _check_close(code, reason)
        if self.ready_state is not ReadyState.OPEN:
            return
        self.ready_state = ReadyState.CLOSING
        self._close_sent = (int(code), reason)
        self._transport.close(int(code), reason)

    def terminate(self) -> None:
        """Drop the connection at once, without a closing handshake. Messages already read
        but not yet handed to the ``message`` hook (the rest of the same socket read, or
        waiting for an ``async`` hook) are dropped too; the ``close`` hook follows."""
        if self.ready_state is ReadyState.CLOSED:
            return
        self.ready_state = ReadyState.CLOSING
        self._on_data = _ignore  # what the adapter still hands over from its last read
        if self._inbox:
            kept = [event for event in self._inbox if event[0] != _MESSAGE]
            self._inbox.clear()
            self._inbox.extend(kept)
        self._transport.abort()

    async def wait_for_drain(self) -> None:
        """Wait until the send buffer has drained below its low-water mark.

        Returns at once when the buffer is not full or the peer is closed. Safe to cancel.
        """
        if not self._write_paused or self.ready_state is ReadyState.CLOSED:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(fut)
        try:
            await fut
        finally:
            if self._drain_waiters is not None and fut in self._drain_waiters:
                self._drain_waiters.remove(fut)

    # -- the layers above: the Hub and the router ----------------------------------------

    def attach(self, session: Any, on_frame: Callable[[Peer, str | bytes, bool], None]) -> None:
        """Serve this peer from a layer above the hooks (the router): ``session`` is its
        state for the connection (:attr:`session`), and ``on_frame(peer, data, is_binary)``
        takes each frame as it arrives, instead of the ``message`` hook."""
        self.session = session
        self._on_data = on_frame

    def send_frame(self, payload: bytes) -> bool:
        """Send a text frame already encoded (UTF-8 bytes, what a dialect rendered); False if
        not open. With a :attr:`transform`, the frame goes through it, in order with what the
        Hub delivers."""
        if self.ready_state is not _STATE_OPEN:
            return False
        if self.transform is not None:
            return self._app.hub.to_peer_frame(self, payload)
        self._transport.send_text(payload)
        if self._write_paused:
            self._check_buffer()
        return True

    @property
    def backpressured(self) -> bool:
        """Whether the send buffer is past its high-water mark (the client is behind)."""
        return self._write_paused

    def write(self, payload: bytes, text: bool) -> None:
        """Write an encoded message as it is (no state check, no transform): the Hub's, to a
        peer it found open (text frames in a fan-out: :attr:`write_text`)."""
        if text:
            self.write_text(payload)
            return
        self._transport.send_binary(payload)
        if self._write_paused:
            self._check_buffer()

    def _write_text_checked(self, payload: bytes) -> None:
        """:attr:`write_text` while the send buffer is past its high-water mark."""
        self._transport.send_text(payload)
        self._check_buffer()

    def _check_buffer(self) -> None:
        """The transport is past its high-water mark: close the peer if what waits behind
        the largest write since then is past the limit.

        Called after each write while paused, and by adapters after a read that made the
        server write control frames (pongs). The growth of the buffer between two calls is
        the size of what was written (less what the kernel took meanwhile); the largest such
        write is allowed on top of the limit, so that one message larger than the limit,
        to a client that reads, does not close it: the bytes queued behind it do.
        """
        amount = self._transport.buffered_amount()
        grown = amount - self._buffer_seen
        self._buffer_seen = amount
        if grown > self._largest_write:
            self._largest_write = grown
        if amount - self._largest_write > self._app.limits.send_buffer_limit:
            self.close_overflowed()

    def close_overflowed(self) -> None:
        """Close as a slow consumer: 1013 ``send buffer overflow``, and drop the connection
        if the client does not answer the close frame in ``Limits.close_timeout``."""
        if self.ready_state is not _STATE_OPEN:
            return
        logger.warning(
            "peer %s: send buffer passed %d bytes; closing with 1013",
            self.id,
            self._app.limits.send_buffer_limit,
        )
        self.close(CloseCode.TRY_AGAIN_LATER, "send buffer overflow")
        # A client that stopped reading will never answer the close frame.
        asyncio.get_running_loop().call_later(self._app.limits.close_timeout, self._drop)

    def _drop(self) -> None:
        if self.ready_state is not ReadyState.CLOSED:
            self._transport.abort()

    # -- called by server adapters ---------------------------------------------------------

    def _opened(self) -> None:
        if self._inline:
            hook = self._hooks.open
            if hook is not None:
                self._call_inline(hook, self)
            return
        self._inbox = collections.deque()
        self._wake = asyncio.Event()
        self._task = self._app.spawn(self._run())
        self._enqueue(_OPEN, None, None)

    def _receive_data(self, data: str | bytes, is_binary: bool) -> None:
        """A whole message arrived: ``str`` for text (already checked to be UTF-8), ``bytes``
        for binary. The hot path of every adapter: one call, the Message built in place."""
        on_data = self._on_data
        if on_data is not None:  # a layer above the hooks (the router) takes raw frames
            try:
                on_data(self, data, is_binary)
            except Exception as exc:
                self._report_inline(exc)
            return
        message = _new_message(Message)
        message._data = data
        message.is_binary = is_binary
        hook = self._on_message
        if hook is not None:
            try:
                hook(self, message)
            except Exception as exc:
                self._report_inline(exc)
            return
        if self._inbox is None:  # hooks run inline and there is no message hook
            return
        self._enqueue(_MESSAGE, message, None)
        if not self._reading_paused and len(self._inbox) >= self._app.limits.inbound_queue:
            self._reading_paused = True
            self._transport.pause_reading()

    def _closed(self, code: int, reason: str) -> None:
        """The connection is gone; ``code`` is the one received (1006 if none)."""
        if self.ready_state is ReadyState.CLOSED:
            return
        self.ready_state = ReadyState.CLOSED
        if self._close_sent is not None:
            code, reason = self._close_sent
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._app.hub.remove(self)
        self._user_id = None
        self._topics = _NO_TOPICS
        self._app.peer_closed(self)
        self._release_drain_waiters()
        if self._inbox is None:
            hook = self._hooks.close
            if hook is not None:
                self._call_inline(hook, self, code, reason)
            return
        self._enqueue(_CLOSE, code, reason)

    def _pause_writing(self) -> None:
        self._write_paused = True
        self._buffer_seen = self._largest_write = 0
        self.write_text = self._write_text_checked

    def _resume_writing(self) -> None:
        if not self._write_paused:
            return
        self._write_paused = False
        self.write_text = self._transport.send_text
        self._release_drain_waiters()
        hook = self._hooks.drain
        if hook is None or self.ready_state is ReadyState.CLOSED:
            return
        if self._inbox is None:
            self._call_inline(hook, self)
        else:
            self._enqueue(_DRAIN, None, None)

    @property
    def _task_done(self) -> Awaitable[None] | None:
        return self._task

    # -- hook running ----------------------------------------------------------------------

    def _release_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, None
        for fut in waiters or ():
            if not fut.done():
                fut.set_result(None)

    def _enqueue(self, kind: int, a: Any, b: Any) -> None:
        assert self._inbox is not None and self._wake is not None
        self._inbox.append((kind, a, b))
        self._wake.set()

    async def _run(self) -> None:
        """Run async hooks one at a time, in the order events happened."""
        assert self._inbox is not None and self._wake is not None
        inbox, wake, hooks = self._inbox, self._wake, self._hooks
        resume_at = self._app.limits.inbound_queue // 2
        try:
            while True:
                if not inbox:
                    wake.clear()
                    await wake.wait()
                    continue
                kind, a, b = inbox.popleft()
                if self._reading_paused and len(inbox) <= resume_at:
                    self._resume_reading()
                if kind == _MESSAGE:
                    await self._call(hooks.message, self, a)
                elif kind == _OPEN:
                    await self._call(hooks.open, self)
                elif kind == _DRAIN:
                    await self._call(hooks.drain, self)
                else:
                    await self._call(hooks.close, self, a, b)
                    return
        finally:
            # Cancelled (shutdown) or done: never leave the adapter waiting to read again.
            if self._reading_paused:
                self._resume_reading()

    def _resume_reading(self) -> None:
        self._reading_paused = False
        if self.ready_state is not ReadyState.CLOSED:
            self._transport.resume_reading()

    async def _call(self, hook: Callable[..., Any] | None, *args: Any) -> None:
        if hook is None:
            return
        try:
            result = hook(*args)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            await self._report(exc)

    async def _report(self, exc: Exception) -> None:
        hook = self._hooks.error
        if hook is None:
            logger.error("peer %s: unhandled error in a hook", self.id, exc_info=exc)
            return
        try:
            result = hook(self, exc)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("peer %s: the error hook raised", self.id)

    def _call_inline(self, hook: Callable[..., Any], *args: Any) -> None:
        try:
            hook(*args)
        except Exception as exc:
            self._report_inline(exc)

    def _report_inline(self, exc: Exception) -> None:
        hook = self._hooks.error
        if hook is None:
            logger.error("peer %s: unhandled error in a hook", self.id, exc_info=exc)
            return
        try:
            hook(self, exc)
        except Exception:
            logger.exception("peer %s: the error hook raised", self.id)


def receivable_close_code(code: int) -> bool:
    """Whether a client's close frame may carry ``code`` (RFC 6455 section 7.4 and IANA's
    registry: 1000-1003, 1007-1014, 3000-4999). Adapters whose library lets others through
    answer those with 1002."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _check_close(code: int, reason: str) -> None:
    if not (code == 1000 or 1001 <= code <= 1014 or 3000 <= code <= 4999) or code in (
        1004,
        1005,
        1006,
        1010,
    ):
        raise ValueError(f"close code {code} cannot be sent; use 1000, 1001-1014 or 3000-4999")
    if len(reason.encode()) > 123:
        raise ValueError("close reason must be at most 123 bytes of UTF-8")


def _ignore(peer: Peer, data: str | bytes, is_binary: bool) -> None:
    """Takes the messages of a terminated peer."""
