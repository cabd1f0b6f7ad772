"""The typed router (WS-Kit's, in Python): schemas in, handlers, middleware, RPC, errors.

A router is served by an App, ``crosswire.App(router)``, on any server. For each text frame:

    size limit -> decode (wire) -> control frames ($ws:abort, __heartbeat) -> route lookup
    -> [RPC admission: in-flight limit, deadline] -> on_auth gate -> global middleware
    -> route middleware -> payload validation -> handler -> reply / error / progress / send

(In the canonical dialect, a frame of a routed type whose payload is a msgspec Struct is
decoded and its payload checked in one call, the fast lane of :mod:`crosswire.router.lane`;
the order above, and every answer, stay the same. An RPC handler that takes the payload,
``rpc(schema, fn, takes="payload")``, returns the reply; a plain one with no middleware
before it is called without a context, and answers the same.)

Handlers and middleware may be plain or ``async`` functions. A route whose middleware and
handler are all plain functions runs inline, in the message hook, with no task; a route with
anything ``async`` runs in a task of its own (started eagerly on Python 3.12+), so that it can
await. RPC handlers running in a task are cancelled when the client sends ``$ws:abort``, when
their deadline passes and when the connection ends. Tasks are bounded per connection, and a
connection never stops reading because of them (so that an abort reaches its call): past
``max_inflight_rpcs`` RPC handlers, or ``max_inflight_events`` async event handlers, still
running, the next message of that kind is answered ``RESOURCE_EXHAUSTED`` and not run.

``on_open`` handlers that await do not hold back the connection's messages: per-connection setup
that message handlers rely on belongs in ``on_upgrade`` (``Accept(context=...)`` becomes
``ctx.data``) or in a plain ``on_open``. Frames that arrive after the router has started closing
a connection (1008, 1009, 4002) are not handled.

Every failure is answered: a frame that breaks the protocol or fails validation gets
``INVALID_ARGUMENT``, an unknown type ``UNIMPLEMENTED``, an exception in a handler ``INTERNAL``
(its text only with ``expose_error_details``), a ``WsError`` raised by a handler its own code.
RPCs get ``RPC_ERROR`` with their ``correlationId``, everything else ``ERROR``. ``on_error``
handlers see every error first and may suppress the reply by returning ``False``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from ..auth import InBand
from ..errors import ConfigurationError, WsError
from ..hooks import Hooks, check_callable, is_async_callable
from ..http import Request
from ..peer import Peer
from ..pubsub.envelope import Publication
from ..pubsub.history import History
from ..schema import MessageSchema
from ..topics import TopicRoute, TopicTable
from ..wire import CANONICAL, Dialect
from ..wire.maps import Map
from .chain import Middleware, payload_handler
from .context import EventContext, LimitExceeded, PublishResult, RpcContext, _publication
from .dispatch import Dispatcher

if TYPE_CHECKING:
    from ..app import App

__all__ = ["Heartbeat", "LimitExceeded", "RouteBuilder", "Router"]

P = TypeVar("P")
Handler = Callable[[Any], Any]
#: What an RPC handler takes: the context (``ctx``, WS-Kit's handlers), or the payload alone,
#: returning the reply's payload (``payload``).
Takes = Literal["ctx", "payload"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    """Opt-in heartbeat: after ``interval`` seconds without a frame from a client, send it
    ``__heartbeat``; if nothing arrives within ``timeout`` more, call
    ``on_stale_connection(client_id, peer)`` and close it with 4002."""

    interval: float = 30.0
    timeout: float = 5.0
    on_stale_connection: Callable[[str, Peer], Any] | None = None

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.timeout <= 0:
            raise ConfigurationError("Heartbeat.interval and .timeout must be > 0")
        if self.on_stale_connection is not None:
            check_callable(
                "Heartbeat.on_stale_connection", self.on_stale_connection, 2, "client_id, peer"
            )


class _Route:
    __slots__ = ("answers", "handler", "is_rpc", "middleware", "schema")

    def __init__(
        self,
        schema: MessageSchema[Any],
        handler: Handler,
        middleware: tuple[Middleware, ...],
        is_rpc: bool,
        answers: Handler | None = None,
    ) -> None:
        self.schema = schema
        #: What runs a context (for ``takes="payload"``, :func:`.chain.payload_handler`'s).
        self.handler = handler
        self.middleware = middleware
        self.is_rpc = is_rpc
        #: A plain handler of RPC payloads (``takes="payload"``): the dispatcher calls it
        #: without a context where nothing runs before it. None otherwise.
        self.answers = answers


class RouteBuilder:
    """``router.route(schema).use(mw).on(handler)``: middleware for one route."""

    def __init__(self, router: Router, schema: MessageSchema[Any]) -> None:
        self._router = router
        self._schema = schema
        self._middleware: list[Middleware] = []

    def use(self, middleware: Middleware) -> RouteBuilder:
        _check_middleware(middleware)
        self._middleware.append(middleware)
        return self

    def on(self, handler: Handler) -> Router:
        return self._router._add(self._schema, handler, tuple(self._middleware), is_rpc=False)

    def rpc(self, handler: Handler, *, takes: Takes = "ctx") -> Router:
        return self._router._add(
            self._schema, handler, tuple(self._middleware), is_rpc=True, takes=takes
        )


class Router:
    """Routes typed messages to handlers; serve it with ``crosswire.App(router)``.

    ``publish``, ``send_to_client``, ``send_to_user`` and ``broadcast`` reach connections on
    every instance that shares the App's bus (:class:`~crosswire.Hub`), from handlers or from
    anywhere else. A router served by several Apps of one process sends through each App's
    Hub: give those Apps one bus only if they share one Hub.

    Options (keyword-only): ``heartbeat`` (a :class:`Heartbeat`, off by default),
    ``max_payload_bytes`` (larger frames call ``on_limit_exceeded`` and close with 1009),
    ``rpc_timeout`` (seconds, when the client sends no ``meta.timeoutMs``),
    ``max_inflight_rpcs`` (per connection: calls awaiting their answer, and RPC handlers still
    running; more get ``RESOURCE_EXHAUSTED``), ``max_inflight_events`` (per connection: async
    event handlers still running; more get ``RESOURCE_EXHAUSTED``),
    ``drop_progress_on_backpressure``, ``auto_send_error_on_throw``, ``expose_error_details``.
    """

    #: A router's endpoint speaks the canonical dialect unless it says otherwise.
    dialects: Sequence[Dialect] = (CANONICAL,)

    def __init__(
        self,
        *,
        heartbeat: Heartbeat | None = None,
        max_payload_bytes: int = 1_000_000,
        rpc_timeout: float = 30.0,
        max_inflight_rpcs: int = 1000,
        max_inflight_events: int = 256,
        drop_progress_on_backpressure: bool = True,
        auto_send_error_on_throw: bool = True,
        expose_error_details: bool = False,
    ) -> None:
        if min(max_payload_bytes, rpc_timeout, max_inflight_rpcs, max_inflight_events) <= 0:
            raise ConfigurationError(
                "max_payload_bytes, rpc_timeout, max_inflight_rpcs and max_inflight_events "
                "must be > 0"
            )
        self.heartbeat = heartbeat
        self.max_payload_bytes = max_payload_bytes
        self.rpc_timeout = rpc_timeout
        self.max_inflight_rpcs = max_inflight_rpcs
        self.max_inflight_events = max_inflight_events
        self.drop_progress_on_backpressure = drop_progress_on_backpressure
        self.auto_send_error_on_throw = auto_send_error_on_throw
        self.expose_error_details = expose_error_details
        #: The dispatchers serving this router, one per App (weak: they live with their App).
        self._dispatchers: weakref.WeakSet[Dispatcher] = weakref.WeakSet()
        self._on_upgrade: Callable[[Request], Any] | None = None
        self._routes: dict[str, _Route] = {}
        self._middleware: list[Middleware] = []
        self._on_open: list[Handler] = []
        self._on_close: list[Handler] = []
        self._on_auth: list[Handler] = []
        self._on_error: list[Callable[[WsError, Any], Any]] = []
        self._on_limit: list[Handler] = []
        self._topics = TopicTable()
        self._maps: dict[str, Map] = {}
        self._authenticate: InBand | None = None
        self._on_authenticated: list[Handler] = []
        self._on_unhandled: Handler | None = None

    @property
    def admits_on_open(self) -> bool:
        """Whether the App admits each connection to its Hub as it opens (addressable by
        id, in the broadcast group); with in-band authentication, once it authenticated."""
        return self._authenticate is None

    @property
    def schemas(self) -> tuple[MessageSchema[Any], ...]:
        """The schemas this router handles, and the responses of its RPCs (for docs and
        conformance tests)."""
        found: list[MessageSchema[Any]] = []
        for route in self._routes.values():
            found.append(route.schema)
            if route.schema.response is not None:
                found.append(route.schema.response)
        return tuple(found)

    # -- registration ----------------------------------------------------------------------

    def on(self, schema: MessageSchema[P], handler: Callable[[EventContext[P]], Any]) -> Router:
        """Handle messages of ``schema`` with ``handler(ctx: EventContext)``."""
        return self._add(schema, handler, (), is_rpc=False)

    @overload
    def rpc(
        self,
        schema: MessageSchema[P],
        handler: Callable[[RpcContext[P]], Any],
        *,
        takes: Literal["ctx"] = ...,
    ) -> Router: ...

    @overload
    def rpc(
        self, schema: MessageSchema[P], handler: Callable[[P], Any], *, takes: Literal["payload"]
    ) -> Router: ...

    def rpc(self, schema: MessageSchema[P], handler: Handler, *, takes: Takes = "ctx") -> Router:
        """Handle RPC requests of ``schema`` (which needs a ``response``) with
        ``handler(ctx: RpcContext)``, which answers with ``ctx.reply``.

        With ``takes="payload"``, ``handler(payload)`` gets the validated payload alone and
        returns the reply's payload (``async`` or not); what it raises is answered as from any
        handler. A plain function of the payload, with no middleware before it, runs without
        a context: the quickest way to answer a call (``docs/performance.md``). It cannot send
        progress, read meta or see the connection: those need the context. The context that
        ``on_error`` handlers get for such a call is made when it fails: its ``received_at``
        and deadline count from then."""
        return self._add(schema, handler, (), is_rpc=True, takes=takes)

    def topic(
        self,
        name: str,
        *,
        data: Any = None,
        history: History | None = None,
        presence: bool = False,
    ) -> TopicRoute:
        """Let clients join and leave ``name``: one topic, or a pattern such as
        ``room:{id}`` whose parameters reach the handlers as ``ctx.params``. Returns the
        route, for ``.on_join(handler)`` and ``.on_leave(handler)``; ``data`` is the schema
        of what a join carries. A client can join only a topic some route matches; the
        server itself joins connections to any topic (``ctx.subscribe``).

        ``history`` keeps the topics' recent events (``History(size=100, ttl=300)``), so
        that a client that joins again with the last position it saw gets what it missed
        (``docs/delivery.md``). ``presence=True`` keeps who is in each topic, on every
        instance, with what the join handler attached (``ctx.accept(presence=...)``), and
        sends joins and leaves to the members that ask for them (``docs/presence.md``).
        Declare such topics before the router is served."""
        route = TopicRoute(name, data=data, history=history, presence=presence)
        self._topics.add(route)
        return route

    def map(self, schema: MessageSchema[Any], fn: Map) -> Router:
        """Transform every ``schema`` event on its way to one of this router's connections
        (Rover's ``ws.map.{event}``): ``fn(payload)`` gets the event's JSON value and returns
        the value to send, or None to drop it for that connection. It runs before encoding,
        on direct sends (``ctx.send``, ``send_to_client``) and on publications alike, once
        per publication and dialect, whoever published it. One per type; register it before
        the router is served."""
        _check_schema(schema)
        check_callable(f"router.map({schema.type})", fn, 1, "payload")
        if schema.type in self._maps:
            raise ConfigurationError(f"{schema.type} already has a map")
        self._maps[schema.type] = fn
        return self

    @property
    def topics(self) -> tuple[TopicRoute, ...]:
        """The topic routes, exact names first (for docs and type generation)."""
        return tuple(self._topics)

    def route(self, schema: MessageSchema[Any]) -> RouteBuilder:
        """Start registering ``schema`` with its own middleware."""
        _check_schema(schema)
        return RouteBuilder(self, schema)

    def use(self, middleware: Middleware) -> Router:
        """Add global middleware ``(ctx, next)``: runs for every message before validation;
        ``await next()`` (or ``return next()``) to go on, return without it to stop."""
        _check_middleware(middleware)
        self._middleware.append(middleware)
        self._changed()
        return self

    def off(self, schema: MessageSchema[Any]) -> Router:
        """Stop handling ``schema``'s type."""
        self._routes.pop(schema.type, None)
        self._changed()
        return self

    def reset(self) -> Router:
        """Forget every route, middleware and lifecycle handler (options stay)."""
        self._routes.clear()
        self._middleware.clear()
        for handlers in (self._on_open, self._on_close, self._on_auth, self._on_error):
            handlers.clear()
        self._on_limit.clear()
        self._topics.clear()
        self._maps.clear()
        self._authenticate = None
        self._on_authenticated.clear()
        self._on_unhandled = None
        self._on_upgrade = None
        self._changed()
        return self

    def merge(self, other: Router) -> Router:
        """Take ``other``'s routes and lifecycle handlers. ``other``'s global middleware keeps
        applying to its own routes only. A type both routers handle is refused."""
        clash = set(self._routes) & set(other._routes)
        clash |= {t.name for t in self._topics} & {t.name for t in other._topics}
        clash |= set(self._maps) & set(other._maps)
        if clash:
            raise ConfigurationError(f"both routers handle {sorted(clash)}")
        if other._on_upgrade is not None:
            if self._on_upgrade is not None:
                raise ConfigurationError("both routers have an on_upgrade handler")
            self._on_upgrade = other._on_upgrade
        for kind, route in other._routes.items():
            middleware = (*other._middleware, *route.middleware)
            self._routes[kind] = _Route(
                route.schema, route.handler, middleware, route.is_rpc, route.answers
            )
        self._on_open.extend(other._on_open)
        self._on_close.extend(other._on_close)
        self._on_auth.extend(other._on_auth)
        self._on_error.extend(other._on_error)
        self._on_limit.extend(other._on_limit)
        for topic in other._topics:
            self._topics.add(topic)
        self._maps.update(other._maps)
        self._changed()
        return self

    def on_upgrade(self, handler: Callable[[Request], Any]) -> Router:
        """The ``upgrade`` hook for this router's connections: ``handler(request)`` returns
        ``None`` or ``Accept(context=...)`` to open (the context becomes ``ctx.data``) or a
        ``Response`` to refuse. One per router."""
        check_callable("on_upgrade handler", handler, 1, "request")
        if self._on_upgrade is not None:
            raise ConfigurationError("the router already has an on_upgrade handler")
        self._on_upgrade = handler
        return self

    def upgrade_is_async(self) -> bool:
        """Whether the ``on_upgrade`` handler registered now is ``async`` (the picows server
        refuses to start with one: its handshake cannot await)."""
        return self._on_upgrade is not None and is_async_callable(self._on_upgrade)

    def on_open(self, handler: Handler) -> Router:
        """``handler(ctx: ConnectionContext)`` when a connection opens."""
        check_callable("on_open handler", handler, 1, "ctx")
        self._on_open.append(handler)
        return self

    def on_close(self, handler: Handler) -> Router:
        """``handler(ctx: CloseContext)`` when a connection ends."""
        check_callable("on_close handler", handler, 1, "ctx")
        self._on_close.append(handler)
        return self

    def on_auth(self, handler: Handler) -> Router:
        """``handler(ctx) -> bool`` before a connection's first message is handled; ``False``
        answers ``UNAUTHENTICATED`` and closes the connection with 1008. A handler that raises
        refuses too: its error is answered (``INTERNAL`` unless it is a ``WsError``) and the
        connection is closed with 1008. The verdict is taken once per connection."""
        check_callable("on_auth handler", handler, 1, "ctx")
        self._on_auth.append(handler)
        self._changed()
        return self

    def on_error(self, handler: Callable[[WsError, Any], Any]) -> Router:
        """``handler(error: WsError, ctx | None) -> bool | None`` for every error; returning
        ``False`` suppresses the error reply. Must be a plain function."""
        check_callable("on_error handler", handler, 2, "error, ctx")
        if is_async_callable(handler):
            raise ConfigurationError("on_error handlers must be plain functions (not async)")
        self._on_error.append(handler)
        return self

    def authenticate(self, check: Handler, *, timeout: float = 5.0) -> Router:
        """In-band authentication (seed 003's scheme, in any dialect). A connection has
        ``timeout`` seconds to send its credentials in its dialect's ``authenticate`` frame
        (``{"event": "authenticate", "data": ...}``, Rover's ``{"type": "authenticate",
        ...}``, the canonical ``{"type": "$ws:authenticate", "payload": ...}``), else it is
        closed with 4001 ``Authentication timeout``. ``check(ctx: AuthContext)`` reads
        ``ctx.payload`` and returns an :class:`~crosswire.auth.Identity` to accept, or None
        (False) to refuse: an error ``Authentication failed``, then 4003. It may be async
        and take up to three times ``timeout`` (then 4001); one that raises refuses with
        ``Authentication error``, 4003; one that closed the connection itself leaves it so.

        Until accepted, a connection is not in the Hub (not addressable by id or user, not
        in the broadcast group), its heartbeat has not started, and every frame but the
        credentials and heartbeats is answered ``UNAUTHENTICATED`` ``Not authenticated``.
        Accepted, it is identified as the identity's user and admitted, its heartbeat
        starts, the dialect's ``authenticated`` answer is sent (canonical and Rover; seed
        003's dialect leaves it to the app, whose ``connected`` answers) and the
        ``on_authenticated`` handlers run. One per router.

        An identity with ``expires_at`` ends the session then (1008 ``Session expired``);
        the client refreshes it by sending its ``authenticate`` frame again: ``check`` runs
        with ``ctx.refreshing`` and an Identity of the same user sets the new expiry,
        answered ``authenticated`` in every dialect; a refusal is answered ``Refresh
        refused`` and the session keeps its old expiry (see :mod:`crosswire.router.inband`).
        """
        check_callable("authenticate check", check, 1, "ctx")
        if timeout <= 0:
            raise ConfigurationError("authenticate: timeout must be > 0")
        if self._authenticate is not None:
            raise ConfigurationError("the router already authenticates in band")
        self._authenticate = InBand(check, timeout)
        return self

    def on_authenticated(self, handler: Handler) -> Router:
        """``handler(ctx: AuthContext)`` once a connection's in-band authentication accepted
        it (``ctx.identity``), before anything else reaches it when it is a plain function:
        the place to put it in its rooms, greet it, or set its ``peer.transform``."""
        check_callable("on_authenticated handler", handler, 1, "ctx")
        self._on_authenticated.append(handler)
        return self

    def on_unhandled(self, handler: Handler) -> Router:
        """``handler(ctx: EventContext)`` for a message whose type has no route, instead of
        ``UNIMPLEMENTED``: ``ctx.type``, and ``ctx.payload`` as the client sent it (no
        schema). One per router."""
        check_callable("on_unhandled handler", handler, 1, "ctx")
        if self._on_unhandled is not None:
            raise ConfigurationError("the router already has an on_unhandled handler")
        self._on_unhandled = handler
        self._changed()
        return self

    def on_limit_exceeded(self, handler: Handler) -> Router:
        """``handler(info: LimitExceeded)`` when a client passes a limit."""
        check_callable("on_limit_exceeded handler", handler, 1, "info")
        self._on_limit.append(handler)
        return self

    def _add(
        self,
        schema: MessageSchema[Any],
        handler: Handler,
        middleware: tuple[Middleware, ...],
        *,
        is_rpc: bool,
        takes: Takes = "ctx",
    ) -> Router:
        _check_schema(schema)
        what = "rpc" if is_rpc else "on"
        if takes not in ("ctx", "payload"):
            raise ConfigurationError(
                f'router.rpc({schema.type}): takes is "ctx" or "payload", not {takes!r}'
            )
        if is_rpc and schema.response is None:
            raise ConfigurationError(
                f"router.rpc({schema.type}): the schema has no response; use "
                f"rpc(...) or message(..., response=...), or router.on for events"
            )
        if not is_rpc and schema.response is not None:
            raise ConfigurationError(
                f"router.on({schema.type}): the schema is an RPC (it has a response); "
                "use router.rpc"
            )
        check_callable(f"router.{what}({schema.type}) handler", handler, 1, takes)
        if schema.type in self._routes:
            raise ConfigurationError(
                f"{schema.type} already has a handler; router.off(schema) first"
            )
        answers = None
        if takes == "payload":
            answers = None if is_async_callable(handler) else handler
            handler = payload_handler(handler)
        self._routes[schema.type] = _Route(schema, handler, middleware, is_rpc, answers)
        self._changed()
        return self

    # -- publishing ------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
        exclude: Collection[str] = (),
    ) -> PublishResult:
        """Send a message of ``schema`` to every subscriber of ``topic`` on every instance,
        but the client ids in ``exclude``; usable from anywhere."""
        return self._send(_publication("room", topic, schema, payload, meta, exclude))

    def send_to_client(
        self,
        client_id: str,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> PublishResult:
        """Send a message of ``schema`` to one connection, on whichever instance it is."""
        return self._send(_publication("client", client_id, schema, payload, meta, ()))

    def send_to_user(
        self,
        user_id: str,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
        exclude: Collection[str] = (),
    ) -> PublishResult:
        """Send a message of ``schema`` to every connection identified as ``user_id``
        (:meth:`~crosswire.Peer.identify`) on every instance."""
        return self._send(_publication("user", user_id, schema, payload, meta, exclude))

    def broadcast(
        self,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
        exclude: Collection[str] = (),
    ) -> PublishResult:
        """Send a message of ``schema`` to every connection on every instance."""
        return self._send(_publication("broadcast", None, schema, payload, meta, exclude))

    def _send(self, pub: Publication) -> PublishResult:
        hubs = {id(d.app.hub): d.app.hub for d in self._dispatchers}
        if not hubs:
            raise ConfigurationError("the router is not served yet: crosswire.App(router)")
        return PublishResult(sum(hub.send(pub) for hub in hubs.values()))

    # -- serving ---------------------------------------------------------------------------

    def _changed(self) -> None:
        """Routes, middleware or auth handlers changed: every dispatcher serving this router
        compiles its chains again, on each type's next frame."""
        for dispatcher in self._dispatchers:
            dispatcher.routes_changed()

    def hooks_for(self, app: App) -> Hooks:
        """The hooks that serve this router in ``app`` (called by ``App(router)``). A router
        may be served by several Apps; options are read at this point."""
        if app.limits.max_message_size < self.max_payload_bytes:
            raise ConfigurationError(
                f"Limits.max_message_size ({app.limits.max_message_size}) is below the "
                f"router's max_payload_bytes ({self.max_payload_bytes})"
            )
        dispatcher = Dispatcher(self, app)
        self._dispatchers.add(dispatcher)
        return dispatcher.hooks()


def _check_schema(schema: object) -> None:
    if not isinstance(schema, MessageSchema):
        raise ConfigurationError(f"expected a schema from message() or rpc(), got {schema!r}")


def _check_middleware(middleware: object) -> None:
    check_callable("middleware", middleware, 2, "ctx, next")
