"""What handlers receive: a context for the connection, the message, or the RPC call.

============================  =================================================================
context                       given to
============================  =================================================================
:class:`ConnectionContext`    ``on_open`` and ``on_close`` handlers (``on_close`` also gets
                              ``code`` and ``reason``)
:class:`EventContext`         ``router.on`` handlers, middleware, ``on_auth``, ``on_error``
:class:`RpcContext`           ``router.rpc`` handlers: adds ``reply``, ``progress``,
                              ``deadline``, ``time_remaining()``, ``on_cancel``
:class:`JoinContext`          a topic's join handler: ``topic``, ``params``, ``payload``,
                              ``accept(data)``, ``reject(reason)``
:class:`LeaveContext`         a topic's leave handler: ``topic``, ``params``, ``payload``
:class:`AuthContext`          ``router.authenticate``'s check: ``payload`` (the credentials),
                              then ``identity``; and ``on_authenticated`` handlers
============================  =================================================================

All sends go through the message's schema first: a payload that does not match raises
:class:`~crosswire.ValidationError` in the handler (nothing is sent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

import orjson

from ..errors import ErrorCode, ValidationError, WsError
from ..pubsub.envelope import Kind, Publication
from ..rpc import deadline_for
from ..schema import MessageSchema, within
from ..wire import Dialect, Envelope
from ..wire.dialect import TypedEnvelope

if TYPE_CHECKING:
    from ..app import App
    from ..auth import Identity
    from ..peer import Peer
    from ..wire.dialect import Render
    from .session import Session

__all__ = [
    "AuthContext",
    "CloseContext",
    "ConnectionContext",
    "Desk",
    "EventContext",
    "JoinContext",
    "LeaveContext",
    "LimitExceeded",
    "PublishResult",
    "RpcContext",
    "Serving",
]

logger = logging.getLogger("crosswire.router")

P = TypeVar("P")

_OUT_META: dict[str, type | tuple[type, ...]] = {
    "correlationId": str,
    "timestamp": (int, float),
}


@dataclass(frozen=True, slots=True)
class LimitExceeded:
    """What ``on_limit_exceeded`` handlers receive."""

    type: Literal["payload", "rate"]
    client_id: str
    peer: Peer
    observed: int
    limit: int
    retry_after_ms: int | None = None


class Desk(Protocol):
    """What contexts ask of the dispatcher serving their connection."""

    app: App
    rpc_timeout: float
    drop_progress_on_backpressure: bool

    def finish_call(self, ctx: RpcContext[Any]) -> None:
        """The call of ``ctx`` is answered: forget it, stop its deadline."""

    def report_limit(self, info: LimitExceeded) -> None:
        """A client passed a limit: to the router's ``on_limit_exceeded`` handlers."""


class Serving(Desk, Protocol):
    """What the dispatcher's desks (topics, in-band authentication) call on it."""

    loop: asyncio.AbstractEventLoop
    max_events: int

    def answer(
        self,
        session: Session,
        ctx: EventContext[Any] | None,
        error: WsError,
        correlation_id: str | None,
    ) -> None: ...

    def fail(
        self,
        session: Session,
        ctx: EventContext[Any] | None,
        exc: Exception,
        correlation_id: str | None,
    ) -> None: ...

    def as_ws_error(self, exc: Exception, ctx: EventContext[Any] | None) -> WsError: ...

    def notify(self, error: WsError, ctx: EventContext[Any] | None) -> bool: ...

    def auth_gate(self, ctx: ConnectionContext, next: Callable[[], Any]) -> Any: ...

    def run_plain(self, handler: Callable[[Any], Any], arg: Any) -> None: ...

    def run_task(
        self,
        session: Session,
        task_body: Coroutine[Any, Any, None],
        ctx: EventContext[Any] | None = None,
        running: Any = None,
    ) -> None: ...

    def start_heartbeat(self, session: Session) -> None:
        """Start watching the connection's silence (once it is authenticated)."""


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What a publish did: ``matched_local`` is how many peers of this process it reached."""

    matched_local: int

    @property
    def ok(self) -> bool:
        """Always True once the message was encoded and handed to the hub."""
        return True


class ConnectionContext:
    """One connection, as seen by the router: its data, and what can be done with it."""

    __slots__ = ("_dispatch", "_session", "peer")

    def __init__(self, dispatch: Desk, session: Session) -> None:
        self._dispatch = dispatch
        self._session = session
        self.peer: Peer = session.peer

    @property
    def client_id(self) -> str:
        """The connection's id (the peer's id); stable for its lifetime."""
        return self.peer.id

    @property
    def data(self) -> dict[str, Any]:
        """Per-connection data: seeded by the ``upgrade`` hook's ``Accept(context=...)``."""
        return self.peer.context

    def assign_data(self, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into :attr:`data`."""
        self.peer.context.update(values)

    def get_data(self, key: str, default: Any = None) -> Any:
        """One key of :attr:`data`."""
        return self.peer.context.get(key, default)

    def send(
        self,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> bool:
        """Send a message of ``schema`` to this connection; False if it is closed (or a map
        of the router dropped it)."""
        frame = _frame(self._session.render, schema, payload, meta)
        return frame is not None and self.peer.send_frame(frame)

    def send_to_client(
        self,
        client_id: str,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> PublishResult:
        """Send a message of ``schema`` to the connection ``client_id``, on whichever
        instance it is (Rover's ``ws.send_to(id)``)."""
        pub = _publication("client", client_id, schema, payload, meta, ())
        return PublishResult(self._dispatch.app.hub.send(pub))

    def subscribe(self, topic: str) -> None:
        """Subscribe this connection to ``topic`` (see :meth:`publish`). Past
        ``Limits.max_topics`` it raises :class:`~crosswire.WsError` ``RESOURCE_EXHAUSTED``:
        left unhandled, the client gets that error (``ERROR``, or ``RPC_ERROR`` for a call)."""
        self.peer.subscribe(topic)

    def unsubscribe(self, topic: str) -> None:
        """Unsubscribe this connection from ``topic`` (nothing happens if it was not in it)."""
        self.peer.unsubscribe(topic)

    def publish(
        self,
        topic: str,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
        exclude: Collection[str] = (),
        exclude_self: bool = False,
    ) -> PublishResult:
        """Send a message of ``schema`` to every subscriber of ``topic``, on every instance
        sharing the App's bus (validated and encoded once): this connection too, when it is
        one (Rover's ``ws.emit``), unless ``exclude_self``; never the connection ids in
        ``exclude``."""
        if exclude_self:
            exclude = (*exclude, self.peer.id)
        pub = _publication("room", topic, schema, payload, meta, exclude)
        return PublishResult(self._dispatch.app.hub.send(pub))

    def error(
        self,
        code: ErrorCode | str,
        message: str = "",
        details: Mapping[str, Any] | None = None,
        *,
        retryable: bool | None = None,
        retry_after_ms: int | None = None,
    ) -> bool:
        """Send an error frame to this connection (``ERROR`` in the canonical dialect, an
        ``error`` event in seed 003's, ``{"type": "error"}`` in Rover's)."""
        error = WsError(code, message, details, retryable=retryable, retry_after_ms=retry_after_ms)
        return self.peer.send_frame(self._session.dialect.error(error, None))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection."""
        self.peer.close(code, reason)


class CloseContext(ConnectionContext):
    """Given to ``on_close`` handlers: the connection has ended with ``code`` and ``reason``."""

    __slots__ = ("code", "reason")

    def __init__(self, dispatch: Desk, session: Session, code: int, reason: str) -> None:
        super().__init__(dispatch, session)
        self.code = code
        self.reason = reason


class AuthContext(ConnectionContext):
    """In-band authentication (``router.authenticate``): ``payload`` holds the credentials
    the client sent; ``identity`` is what the check returned, once it accepted them.
    ``refreshing`` is True when an authenticated client whose session expires sends new
    credentials to extend it (the check then decides the new expiry)."""

    __slots__ = ("identity", "payload", "refreshing")

    def __init__(
        self, dispatch: Desk, session: Session, payload: Any, *, refreshing: bool = False
    ) -> None:
        super().__init__(dispatch, session)
        self.payload = payload
        self.identity: Identity | None = None
        self.refreshing = refreshing

    def __repr__(self) -> str:
        return f"<AuthContext client={self.peer.id[:8]}>"  # never the credentials


class LeaveContext(ConnectionContext):
    """A client leaves ``topic`` (its name; ``params`` are what the route's pattern took from
    it, ``payload`` what the leave request carried). The handler runs while the connection is
    still a member; the leave is then done, and answered, whatever the handler does."""

    __slots__ = ("params", "payload", "topic")

    def __init__(
        self,
        dispatch: Desk,
        session: Session,
        topic: str,
        params: Mapping[str, str],
        payload: Any,
    ) -> None:
        super().__init__(dispatch, session)
        self.topic = topic
        self.params = dict(params)
        self.payload = payload

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.topic!r} client={self.peer.id[:8]}>"


class JoinContext(LeaveContext):
    """A client asks to join ``topic``. ``payload`` is what the request carried (validated
    against the route's ``data`` schema when it has one). Answer with :meth:`accept` (the
    default when the handler returns without answering) or :meth:`reject`; raising a
    :class:`~crosswire.WsError` rejects with its code and message, raising anything else
    rejects with ``INTERNAL``. A rejected join never subscribes."""

    __slots__ = ("_ack", "_error", "_presence")

    def __init__(
        self,
        dispatch: Desk,
        session: Session,
        topic: str,
        params: Mapping[str, str],
        payload: Any,
    ) -> None:
        super().__init__(dispatch, session, topic, params, payload)
        self._ack: Any = None
        self._error: WsError | None = None
        self._presence: Any = None

    def accept(self, data: Any = None, *, presence: Any = None) -> None:
        """Accept the join; ``data`` (any JSON-able value) goes in the acknowledgement, and
        ``presence`` (JSON) in the connection's presence entry, when the topic keeps
        presence (``router.topic(..., presence=True)``): what other members see of it."""
        if presence is not None:
            try:
                orjson.dumps(presence)
            except TypeError as exc:
                raise TypeError(f"ctx.accept(presence=...) takes JSON: {exc}") from None
        self._ack = data
        self._presence = presence
        self._error = None

    def reject(
        self,
        reason: str,
        *,
        code: ErrorCode | str = ErrorCode.PERMISSION_DENIED,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Reject the join with ``reason`` (the client's ``join_error``)."""
        self._error = WsError(code, reason, details)


class EventContext(ConnectionContext, Generic[P]):
    """A received message: ``type``, ``payload`` (validated, typed), ``meta``, ``received_at``.

    ``payload`` is ``None`` in middleware (it runs before validation) and for schemas without a
    payload. ``meta`` holds what the client sent plus the server's ``clientId`` and
    ``receivedAt`` (ms since the epoch).
    """

    __slots__ = ("_envelope", "_meta", "payload", "received_at", "schema", "type")

    is_rpc = False

    def __init__(
        self,
        dispatch: Desk,
        session: Session,
        schema: MessageSchema[P] | None,
        envelope: Envelope | TypedEnvelope,
        received_at: float,
    ) -> None:
        # Every slot set here, without super().__init__: this runs for every message.
        self._dispatch = dispatch
        self._session = session
        self.peer = session.peer
        self.schema = schema
        self.type = envelope.type
        self._envelope = envelope
        #: The validated payload; ``None`` in middleware (before validation) and for schemas
        #: without a payload. Typed as the schema's payload type for handlers.
        self.payload: P = None  # type: ignore[assignment]
        #: When the message arrived, in seconds since the epoch.
        self.received_at = received_at
        self._meta: dict[str, Any] | None = None

    @property
    def meta(self) -> dict[str, Any]:
        """The client's meta, plus the server's ``clientId`` and ``receivedAt`` (ms)."""
        meta = self._meta
        if meta is None:
            meta = self._meta = self._envelope.meta
            meta["clientId"] = self.peer.id
            meta["receivedAt"] = int(self.received_at * 1000)
        return meta

    def _load(self) -> None:
        """Validate the payload and custom meta against the schema (after middleware)."""
        schema = self.schema
        assert schema is not None
        envelope = self._envelope
        if schema.payload is not None:
            if not envelope.has_payload:
                raise ValidationError(
                    f"{self.type} needs a payload",
                    [{"path": ["payload"], "message": "required"}],
                )
            try:
                self.payload = schema.payload.load(envelope.payload)
            except ValidationError as exc:
                raise within("payload", exc) from None
        elif envelope.has_payload:
            raise ValidationError(
                f"{self.type} takes no payload",
                [{"path": ["payload"], "message": "not allowed"}],
            )
        meta = envelope.meta
        if meta and not schema.allowed_meta.issuperset(meta):
            unknown = [k for k in meta if k not in schema.allowed_meta]
            raise ValidationError(
                f"{self.type}: unknown meta key {unknown[0]!r}",
                [{"path": ["meta", k], "message": "unknown key"} for k in unknown],
            )
        if schema.meta is not None:
            try:
                schema.meta.load({k: v for k, v in meta.items() if k in schema.meta_keys})
            except ValidationError as exc:
                raise within("meta", exc) from None

    def time_remaining(self) -> float:
        """Seconds left to answer: infinite for events."""
        return float("inf")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.type} client={self.peer.id[:8]}>"


class RpcContext(EventContext[P]):
    """A received RPC request. Answer once with :meth:`reply` or :meth:`error`; send
    :meth:`progress` before that. The handler is cancelled (``asyncio.CancelledError`` at its
    next ``await``) when the client aborts, the deadline passes or the connection ends; the
    callbacks given to :meth:`on_cancel` run first."""

    __slots__ = (
        "_cancel_callbacks",
        "_deadline",
        "_received_loop_time",
        "_response",
        "_task",
        "_timer",
        "cancelled",
        "correlation_id",
        "done",
    )

    is_rpc = True

    def __init__(
        self,
        dispatch: Desk,
        session: Session,
        schema: MessageSchema[P],
        envelope: Envelope | TypedEnvelope,
        received_at: float,
        correlation_id: str,
        received_loop_time: float,
    ) -> None:
        # Every slot set here, without super().__init__: this runs for every call.
        self._dispatch = dispatch
        self._session = session
        self.peer = session.peer
        self.schema = schema
        self.type = envelope.type
        self._envelope = envelope
        self.payload: P = None  # type: ignore[assignment]
        self.received_at = received_at
        self._meta: dict[str, Any] | None = None
        self.correlation_id = correlation_id
        self._response: MessageSchema[Any] = schema.response  # type: ignore[assignment]
        self._received_loop_time = received_loop_time
        self._deadline: float | None = None
        #: Whether a terminal reply or error has been sent (or the call was cancelled).
        self.done = False
        #: Whether the call was cancelled (abort, deadline or disconnect).
        self.cancelled = False
        self._cancel_callbacks: list[Callable[[], Any]] | None = None  # made on first use
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def deadline(self) -> float:
        """When the reply is due, in seconds of the event loop's clock: ``meta.timeoutMs`` from
        receipt, or the router's ``rpc_timeout``."""
        deadline = self._deadline
        if deadline is None:
            deadline = self._deadline = deadline_for(
                self._received_loop_time,
                self._envelope.meta.get("timeoutMs"),
                self._dispatch.rpc_timeout,
            )
        return deadline

    def time_remaining(self) -> float:
        """Seconds left before the deadline (never negative)."""
        return max(0.0, self.deadline - asyncio.get_running_loop().time())

    def reply(self, payload: Any = None, *, meta: Mapping[str, Any] | None = None) -> bool:
        """Send the terminal response (validated against ``schema.response``).

        One-shot: returns False, and sends nothing, once the call has been answered.
        """
        if self.done:
            logger.debug(
                "RPC %s of peer %s: reply after the call ended, ignored", self.type, self.peer.id
            )
            return False
        response = self._response
        dialect = self._session.dialect
        if meta or response.meta is not None:
            out_meta = {
                **_check_out_meta(response, meta or {}),
                "correlationId": self.correlation_id,
            }
            frame = dialect.message(
                response.type, orjson.dumps(out_meta), response.dump_payload_json(payload)
            )
        else:
            frame = reply_frame(dialect, response, self.correlation_id, payload)
        self._dispatch.finish_call(self)
        return self.peer.send_frame(frame)

    def error(
        self,
        code: ErrorCode | str,
        message: str = "",
        details: Mapping[str, Any] | None = None,
        *,
        retryable: bool | None = None,
        retry_after_ms: int | None = None,
    ) -> bool:
        """Answer the call with an ``RPC_ERROR`` (terminal, one-shot like :meth:`reply`)."""
        error = WsError(code, message, details, retryable=retryable, retry_after_ms=retry_after_ms)
        if self.done:
            return False
        frame = self._session.dialect.error(error, self.correlation_id)  # before the call ends
        self._dispatch.finish_call(self)
        return self.peer.send_frame(frame)

    def progress(self, data: Any = None) -> bool:
        """Send a non-terminal progress frame (any JSON value). Dropped (False) after the
        terminal reply, and while the client is behind on reading if the router drops
        progress under backpressure."""
        if self.done:
            return False
        if self._dispatch.drop_progress_on_backpressure and self.peer.backpressured:
            return False
        return self.peer.send_frame(self._session.dialect.progress(self.correlation_id, data))

    def on_cancel(self, callback: Callable[[], Any]) -> Callable[[], None]:
        """Run ``callback`` if the call is cancelled; returns a function that unregisters it."""
        if self._cancel_callbacks is None:
            self._cancel_callbacks = []
        self._cancel_callbacks.append(callback)

        def unregister() -> None:
            # The list of now: once the call is cancelled, the callbacks being run are
            # another list, so unregistering during cancellation skips none of them.
            callbacks = self._cancel_callbacks
            if callbacks is not None and callback in callbacks:
                callbacks.remove(callback)

        return unregister

    def _cancel(self) -> None:
        """Cancel the call: callbacks, then the handler's task."""
        self.cancelled = True
        self.done = True
        callbacks, self._cancel_callbacks = self._cancel_callbacks or [], []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception(
                    "RPC %s of peer %s: an on_cancel callback raised", self.type, self.peer.id
                )
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def __repr__(self) -> str:
        # Without the correlation id, which the client chose (it may carry anything).
        return f"<RpcContext {self.type} client={self.peer.id[:8]}>"


def _frame(
    render: Render,
    schema: MessageSchema[Any],
    payload: Any,
    meta: Mapping[str, Any] | None,
) -> bytes | None:
    """A message of ``schema`` through ``render`` (the connection's): validated (payload and
    meta) and encoded; None when a map dropped it."""
    if not isinstance(schema, MessageSchema):
        raise TypeError(f"expected a message schema, got {schema!r}")
    out_meta = _check_out_meta(schema, meta or {}) if meta or schema.meta is not None else None
    return render(
        schema.type,
        orjson.dumps(out_meta) if out_meta else None,
        schema.dump_payload_json(payload),
    )


def _publication(
    kind: Kind,
    target: str | None,
    schema: MessageSchema[Any],
    payload: Any,
    meta: Mapping[str, Any] | None,
    exclude: Collection[str],
) -> Publication:
    """A typed message to publish: validated (payload and meta) and encoded once, here."""
    if not isinstance(schema, MessageSchema):
        raise TypeError(f"expected a message schema, got {schema!r}")
    out_meta = _check_out_meta(schema, meta or {}) if meta or schema.meta is not None else None
    return Publication(
        kind,
        target,
        event=schema.type,
        data=schema.dump_payload_json(payload),
        meta=orjson.dumps(out_meta) if out_meta else None,
        exclude=frozenset(exclude),
    )


def _check_out_meta(schema: MessageSchema[Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the meta of a message to send: standard keys, and the schema's custom ones."""
    out = dict(meta)
    custom = {}
    for key, value in out.items():
        kind = _OUT_META.get(key)
        if kind is not None:
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValidationError(
                    f"meta.{key} has the wrong type",
                    [{"path": ["meta", key], "message": "wrong type"}],
                )
        elif key in schema.meta_keys:
            custom[key] = value
        else:
            raise ValidationError(
                f"{schema.type}: unknown meta key {key!r}",
                [{"path": ["meta", key], "message": "unknown key"}],
            )
    if schema.meta is not None:
        try:
            schema.meta.load(custom)  # even empty: required custom keys must be there
        except ValidationError as exc:
            raise within("meta", exc) from None
    return out


def reply_frame(
    dialect: Dialect, response: MessageSchema[Any], correlation_id: str, payload: Any
) -> bytes:
    """The frame answering call ``correlation_id`` with ``payload``, validated against
    ``response`` (a schema without a meta schema): :meth:`RpcContext.reply`'s, and the
    dispatcher's for a handler that takes the payload (``router.rpc(..., takes="payload")``)."""
    codec = response.payload
    data: bytes | None
    if codec is not None and payload is not None:  # the common case, in line
        trusted = codec.dump_trusted
        if trusted is not None and type(payload) is codec.target:
            data = trusted(payload)
        else:
            data = codec.dump_json(payload)
    else:
        data = response.dump_payload_json(payload)  # None, or the right error
    return dialect.reply(response.type, correlation_id, data)
