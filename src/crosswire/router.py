"""The typed router (WS-Kit's, in Python): schemas in, handlers, middleware, RPC, errors.

A router is served by an App, ``crosswire.App(router)``, on any server. For each text frame:

    size limit -> decode (wire) -> control frames ($ws:abort, __heartbeat) -> route lookup
    -> [RPC admission: in-flight limit, deadline] -> on_auth gate -> global middleware
    -> route middleware -> payload validation -> handler -> reply / error / progress / send

Handlers and middleware may be plain or ``async`` functions. A route whose middleware and
handler are all plain functions runs inline, in the message hook, with no task; a route with
anything ``async`` runs in a task of its own (started eagerly on Python 3.12+), so that it can
await. RPC handlers running in a task are cancelled when the client sends ``$ws:abort``, when
their deadline passes and when the connection ends.

Every failure is answered: a frame that breaks the protocol or fails validation gets
``INVALID_ARGUMENT``, an unknown type ``UNIMPLEMENTED``, an exception in a handler ``INTERNAL``
(its text only with ``expose_error_details``), a ``WsError`` raised by a handler its own code.
RPCs get ``RPC_ERROR`` with their ``correlationId``, everything else ``ERROR``. ``on_error``
handlers see every error first and may suppress the reply by returning ``False``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .context import CloseContext, ConnectionContext, EventContext, PublishResult, RpcContext
from .errors import ConfigurationError, ErrorCode, ValidationError, WsError
from .hooks import Hooks, check_callable, is_async_callable
from .http import Request
from .peer import CloseCode, Message, Peer
from .rpc import CallTable
from .schema import RESERVED_PREFIXES, MessageSchema
from .wire import canonical

if TYPE_CHECKING:
    from .app import App

__all__ = ["Heartbeat", "LimitExceeded", "RouteBuilder", "Router", "Session"]

logger = logging.getLogger("crosswire.router")

P = TypeVar("P")
Handler = Callable[[Any], Any]
Middleware = Callable[[Any, Callable[[], Awaitable[None]]], Any]

#: Close code for a connection that stopped answering heartbeats (as in seed 003).
HEARTBEAT_TIMEOUT = 4002


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


@dataclass(frozen=True, slots=True)
class LimitExceeded:
    """What ``on_limit_exceeded`` handlers receive."""

    type: Literal["payload", "rate"]
    client_id: str
    peer: Peer
    observed: int
    limit: int
    retry_after_ms: int | None = None


class Session:
    """The router's state for one connection."""

    __slots__ = ("authed", "calls", "heartbeat", "next_id", "peer", "seen", "waiting_ack")

    def __init__(self, peer: Peer, max_inflight: int) -> None:
        self.peer = peer
        self.calls: CallTable[RpcContext[Any]] = CallTable(max_inflight)
        self.authed = False
        self.next_id = 0
        self.seen = True
        self.waiting_ack = False
        self.heartbeat: asyncio.TimerHandle | None = None


class _Route:
    __slots__ = ("handler", "is_rpc", "middleware", "schema")

    def __init__(
        self,
        schema: MessageSchema[Any],
        handler: Handler,
        middleware: tuple[Middleware, ...],
        is_rpc: bool,
    ) -> None:
        self.schema = schema
        self.handler = handler
        self.middleware = middleware
        self.is_rpc = is_rpc


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

    def rpc(self, handler: Handler) -> Router:
        return self._router._add(self._schema, handler, tuple(self._middleware), is_rpc=True)


class Router:
    """Routes typed messages to handlers; serve it with ``crosswire.App(router)``.

    Options (keyword-only): ``heartbeat`` (a :class:`Heartbeat`, off by default),
    ``max_payload_bytes`` (larger frames call ``on_limit_exceeded`` and close with 1009),
    ``rpc_timeout`` (seconds, when the client sends no ``meta.timeoutMs``),
    ``max_inflight_rpcs`` (per connection; more get ``RESOURCE_EXHAUSTED``),
    ``drop_progress_on_backpressure``, ``auto_send_error_on_throw``, ``expose_error_details``.
    """

    def __init__(
        self,
        *,
        heartbeat: Heartbeat | None = None,
        max_payload_bytes: int = 1_000_000,
        rpc_timeout: float = 30.0,
        max_inflight_rpcs: int = 1000,
        drop_progress_on_backpressure: bool = True,
        auto_send_error_on_throw: bool = True,
        expose_error_details: bool = False,
    ) -> None:
        if max_payload_bytes <= 0 or rpc_timeout <= 0 or max_inflight_rpcs <= 0:
            raise ConfigurationError(
                "max_payload_bytes, rpc_timeout and max_inflight_rpcs must be > 0"
            )
        self.heartbeat = heartbeat
        self.max_payload_bytes = max_payload_bytes
        self.rpc_timeout = rpc_timeout
        self.max_inflight_rpcs = max_inflight_rpcs
        self.drop_progress_on_backpressure = drop_progress_on_backpressure
        self.auto_send_error_on_throw = auto_send_error_on_throw
        self.expose_error_details = expose_error_details
        self._app: App | None = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set on open
        self._on_upgrade: Callable[[Request], Any] | None = None
        self._routes: dict[str, _Route] = {}
        self._middleware: list[Middleware] = []
        self._on_open: list[Handler] = []
        self._on_close: list[Handler] = []
        self._on_auth: list[Handler] = []
        self._on_error: list[Callable[[WsError, Any], Any]] = []
        self._on_limit: list[Handler] = []
        self._runs: dict[str, Callable[[Any], Any]] = {}

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

    def rpc(self, schema: MessageSchema[P], handler: Callable[[RpcContext[P]], Any]) -> Router:
        """Handle RPC requests of ``schema`` (which needs a ``response``) with
        ``handler(ctx: RpcContext)``."""
        return self._add(schema, handler, (), is_rpc=True)

    def route(self, schema: MessageSchema[Any]) -> RouteBuilder:
        """Start registering ``schema`` with its own middleware."""
        _check_schema(schema)
        return RouteBuilder(self, schema)

    def use(self, middleware: Middleware) -> Router:
        """Add global middleware ``(ctx, next)``: runs for every message before validation;
        ``await next()`` (or ``return next()``) to go on, return without it to stop."""
        _check_middleware(middleware)
        self._middleware.append(middleware)
        self._runs.clear()
        return self

    def off(self, schema: MessageSchema[Any]) -> Router:
        """Stop handling ``schema``'s type."""
        self._routes.pop(schema.type, None)
        self._runs.clear()
        return self

    def reset(self) -> Router:
        """Forget every route, middleware and lifecycle handler (options stay)."""
        self._routes.clear()
        self._middleware.clear()
        for handlers in (self._on_open, self._on_close, self._on_auth, self._on_error):
            handlers.clear()
        self._on_limit.clear()
        self._runs.clear()
        return self

    def merge(self, other: Router) -> Router:
        """Take ``other``'s routes and lifecycle handlers. ``other``'s global middleware keeps
        applying to its own routes only. A type both routers handle is refused."""
        clash = set(self._routes) & set(other._routes)
        if clash:
            raise ConfigurationError(f"both routers handle {sorted(clash)}")
        for kind, route in other._routes.items():
            middleware = (*other._middleware, *route.middleware)
            self._routes[kind] = _Route(route.schema, route.handler, middleware, route.is_rpc)
        self._on_open.extend(other._on_open)
        self._on_close.extend(other._on_close)
        self._on_auth.extend(other._on_auth)
        self._on_error.extend(other._on_error)
        self._on_limit.extend(other._on_limit)
        self._runs.clear()
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
        answers ``UNAUTHENTICATED`` and closes the connection with 1008."""
        check_callable("on_auth handler", handler, 1, "ctx")
        self._on_auth.append(handler)
        self._runs.clear()
        return self

    def on_error(self, handler: Callable[[WsError, Any], Any]) -> Router:
        """``handler(error: WsError, ctx | None) -> bool | None`` for every error; returning
        ``False`` suppresses the error reply. Must be a plain function."""
        check_callable("on_error handler", handler, 2, "error, ctx")
        if is_async_callable(handler):
            raise ConfigurationError("on_error handlers must be plain functions (not async)")
        self._on_error.append(handler)
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
    ) -> Router:
        _check_schema(schema)
        what = "rpc" if is_rpc else "on"
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
        check_callable(f"router.{what}({schema.type}) handler", handler, 1, "ctx")
        if schema.type in self._routes:
            raise ConfigurationError(
                f"{schema.type} already has a handler; router.off(schema) first"
            )
        self._routes[schema.type] = _Route(schema, handler, middleware, is_rpc)
        self._runs.clear()
        return self

    # -- publishing ------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        schema: MessageSchema[Any],
        payload: Any = None,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> PublishResult:
        """Send a message of ``schema`` to every subscriber of ``topic``, from anywhere."""
        from .context import _frame

        return self._publish(topic, _frame(schema, payload, meta), None)

    def _publish(self, topic: str, frame: bytes, exclude: Peer | None) -> PublishResult:
        if self._app is None:
            raise ConfigurationError("the router is not served yet: crosswire.App(router)")
        return PublishResult(self._app.hub.publish_frame(topic, frame, text=True, exclude=exclude))

    # -- serving: the hooks ----------------------------------------------------------------

    def hooks_for(self, app: App) -> Hooks:
        """The hooks that serve this router in ``app`` (called by ``App(router)``)."""
        if self._app is not None and self._app is not app:
            raise ConfigurationError("a router serves one App")
        if app.limits.max_message_size < self.max_payload_bytes:
            raise ConfigurationError(
                f"Limits.max_message_size ({app.limits.max_message_size}) is below the "
                f"router's max_payload_bytes ({self.max_payload_bytes})"
            )
        self._app = app
        return Hooks(
            upgrade=self._on_upgrade, open=self._open, message=self._message, close=self._close
        )

    def _open(self, peer: Peer) -> None:
        self._loop = asyncio.get_running_loop()
        session = Session(peer, self.max_inflight_rpcs)
        peer._session = session
        peer._on_data = self._frame
        if self.heartbeat is not None:
            self._arm_heartbeat(session, self.heartbeat.interval)
        if self._on_open:
            ctx = ConnectionContext(self, session)
            for handler in self._on_open:
                self._run_plain(handler, ctx)

    def _close(self, peer: Peer, code: int, reason: str) -> None:
        session: Session | None = peer._session
        if session is None:
            return
        if session.heartbeat is not None:
            session.heartbeat.cancel()
        for call in session.calls.drain():
            if not call.done:
                call._cancel()
            if call._timer is not None:
                call._timer.cancel()
        if self._on_close:
            ctx = CloseContext(self, session, code, reason)
            for handler in self._on_close:
                self._run_plain(handler, ctx)

    def _message(self, peer: Peer, msg: Message) -> None:
        """The message hook (for a peer whose frames come as Messages)."""
        self._frame(peer, msg.raw, msg.is_binary)

    def _frame(self, peer: Peer, raw: str | bytes, is_binary: bool) -> None:
        """One frame from a client: the router's hot path."""
        session: Session = peer._session
        session.seen = True
        if len(raw) > self.max_payload_bytes // 4:
            size = len(raw.encode()) if isinstance(raw, str) else len(raw)
            if size > self.max_payload_bytes:
                self._too_big(session, size)
                return
        try:
            envelope = canonical.decode(raw)
        except canonical.BadFrame as exc:
            self._fail(session, None, exc, exc.correlation_id)
            return
        route = self._routes.get(envelope.type)
        if route is None:
            if envelope.type.startswith(RESERVED_PREFIXES):
                self._control(session, envelope)
            else:
                unknown = WsError(
                    ErrorCode.UNIMPLEMENTED, f"no handler for message type {envelope.type!r}"
                )
                self._fail(session, None, unknown, envelope.correlation_id)
            return
        run = self._runs.get(envelope.type) or self._compile(route)
        if route.is_rpc:
            self._call(session, route, envelope, run)
            return
        ctx: EventContext[Any] = EventContext(self, session, route.schema, envelope, time.time())
        try:
            result = run(ctx)
        except Exception as exc:
            self._fail(session, ctx, exc, None)
            return
        if result is not None and inspect.isawaitable(result):
            self._spawn(self._finish_event(session, ctx, result))

    def _call(
        self,
        session: Session,
        route: _Route,
        envelope: canonical.Envelope,
        run: Callable[[Any], Any],
    ) -> None:
        cid = envelope.correlation_id
        if cid is None:
            session.next_id += 1
            cid = f"srv-{session.next_id}"
        loop = self._loop
        ctx: RpcContext[Any] = RpcContext(
            self, session, route.schema, envelope, time.time(), cid, loop.time()
        )
        try:
            session.calls.admit(cid, ctx)
        except WsError as exc:
            self._fail(session, None, exc, cid)
            return
        try:
            result = run(ctx)
        except Exception as exc:
            self._fail(session, ctx, exc, cid)
            return
        if result is None or not inspect.isawaitable(result):
            if not ctx.done:
                self._incomplete(ctx)
            return
        task = self._spawn(self._finish_call_task(session, ctx, result))
        if not task.done():  # (an eager task may already have finished)
            ctx._task = task
            if not ctx.done and ctx._timer is None:
                ctx._timer = loop.call_at(ctx.deadline, self._expire, ctx)

    def _compile(self, route: _Route) -> Callable[[Any], Any]:
        """The callable that runs a route: (auth gate,) middleware, validation, handler.

        Plain functions all the way: a plain chain, run inline. Anything ``async``: a
        coroutine chain, run in a task. Either way a plain middleware just calls ``next()``.
        """
        handler = route.handler
        middleware: list[Middleware] = []
        if self._on_auth:
            gate = self._auth_gate_async if self._async_auth() else self._auth_gate
            middleware.append(gate)
        middleware.extend(self._middleware)
        middleware.extend(route.middleware)
        is_async = is_async_callable(handler) or any(is_async_callable(m) for m in middleware)

        def innermost(ctx: EventContext[Any]) -> Any:
            try:
                ctx._load()
            except ValidationError as exc:
                raise WsError(
                    ErrorCode.INVALID_ARGUMENT, str(exc), {"issues": exc.issues}
                ) from None
            return handler(ctx)

        run: Callable[[Any], Any] = innermost
        if is_async:
            chain = _as_coroutine(innermost)
            for mw in reversed(middleware):
                chain = _link_async(mw, chain)
            run = chain
        else:
            for mw in reversed(middleware):
                run = _link_plain(mw, run)
        self._runs[route.schema.type] = run
        return run

    def _async_auth(self) -> bool:
        return any(is_async_callable(h) for h in self._on_auth)

    def _auth_gate(self, ctx: EventContext[Any], next: Callable[[], Any]) -> Any:
        session: Session = ctx.peer._session
        if not session.authed:
            for handler in self._on_auth:
                if handler(ctx) is False:
                    self._refuse(session, ctx)
                    return None
            session.authed = True
        return next()

    async def _auth_gate_async(
        self, ctx: EventContext[Any], next: Callable[[], Awaitable[None]]
    ) -> None:
        session: Session = ctx.peer._session
        if not session.authed:
            for handler in self._on_auth:
                verdict = handler(ctx)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
                if verdict is False:
                    self._refuse(session, ctx)
                    return
            session.authed = True
        await next()

    def _refuse(self, session: Session, ctx: EventContext[Any]) -> None:
        error = WsError(ErrorCode.UNAUTHENTICATED, "not authenticated")
        self._fail(session, ctx, error, _cid(ctx))
        ctx.peer.close(CloseCode.POLICY_VIOLATION, "unauthenticated")

    def _finish_call(self, ctx: RpcContext[Any]) -> None:
        """The call got its terminal reply or error."""
        ctx.done = True
        ctx._session.calls.pop(ctx.correlation_id)
        if ctx._timer is not None:
            ctx._timer.cancel()
            ctx._timer = None

    def _incomplete(self, ctx: RpcContext[Any]) -> None:
        """The handler returned without answering: say so, and keep the call open until its
        deadline in case something else replies."""
        logger.warning(
            "RPC %s (correlationId %s) handler returned without reply() or error(); "
            "the call stays open until its deadline",
            ctx.type,
            ctx.correlation_id,
        )
        if ctx._timer is None:
            ctx._timer = asyncio.get_running_loop().call_at(ctx.deadline, self._expire, ctx)

    def _expire(self, ctx: RpcContext[Any]) -> None:
        ctx._timer = None
        if ctx.done:
            return
        self._end_call(ctx, WsError(ErrorCode.DEADLINE_EXCEEDED, "the RPC's deadline passed"))

    def _abort(self, session: Session, correlation_id: str | None) -> None:
        if correlation_id is None:
            return
        ctx = session.calls.get(correlation_id)
        if ctx is not None and not ctx.done:
            self._end_call(ctx, WsError(ErrorCode.CANCELLED, "cancelled by the client"))

    def _end_call(self, ctx: RpcContext[Any], error: WsError) -> None:
        """Cancel a call in flight and answer it with ``error``."""
        ctx._cancel()
        ctx.peer._session.calls.pop(ctx.correlation_id)
        if ctx._timer is not None:
            ctx._timer.cancel()
            ctx._timer = None
        ctx.peer._send_json(canonical.encode_error(error, ctx.correlation_id))

    async def _finish_call_task(
        self, session: Session, ctx: RpcContext[Any], running: Awaitable[Any]
    ) -> None:
        try:
            await running
        except asyncio.CancelledError:
            if ctx.cancelled:  # cancelled by the router: abort, deadline or disconnect
                return
            raise
        except Exception as exc:
            self._fail(session, ctx, exc, ctx.correlation_id)
            return
        ctx._task = None
        if not ctx.done:
            self._incomplete(ctx)

    async def _finish_event(
        self, session: Session, ctx: EventContext[Any], running: Awaitable[Any]
    ) -> None:
        try:
            await running
        except Exception as exc:
            self._fail(session, ctx, exc, None)

    def _fail(
        self,
        session: Session,
        ctx: EventContext[Any] | None,
        exc: Exception,
        correlation_id: str | None,
    ) -> None:
        """Turn ``exc`` into an error reply (unless suppressed) and report it."""
        error = self._as_ws_error(exc, ctx)
        suppress = False
        for handler in self._on_error:
            try:
                if handler(error, ctx) is False:
                    suppress = True
            except Exception:
                logger.exception("an on_error handler raised")
        if isinstance(ctx, RpcContext):
            if ctx.done:
                return
            self._finish_call(ctx)
        if self.auto_send_error_on_throw and not suppress:
            session.peer._send_json(canonical.encode_error(error, correlation_id))

    def _as_ws_error(self, exc: Exception, ctx: EventContext[Any] | None) -> WsError:
        if isinstance(exc, WsError):
            return exc
        where = f" in {ctx.type} handler" if ctx is not None else ""
        logger.error("unhandled error%s", where, exc_info=exc)
        if self.expose_error_details:
            return WsError.wrap(
                exc,
                ErrorCode.INTERNAL,
                f"{type(exc).__name__}: {exc}",
                {"exception": type(exc).__name__},
            )
        return WsError.wrap(exc, ErrorCode.INTERNAL, "internal server error")

    def _too_big(self, session: Session, size: int) -> None:
        peer = session.peer
        info = LimitExceeded("payload", peer.id, peer, size, self.max_payload_bytes)
        for handler in self._on_limit:
            self._run_plain(handler, info)
        peer.close(CloseCode.MESSAGE_TOO_BIG, "message too big")

    # -- control frames --------------------------------------------------------------------

    def _control(self, session: Session, envelope: canonical.Envelope) -> None:
        kind = envelope.type
        if kind == canonical.ABORT:
            self._abort(session, envelope.correlation_id)
        elif kind == canonical.HEARTBEAT:
            session.peer._send_json(canonical.encode_heartbeat_ack(int(time.time() * 1000)))
        elif kind == canonical.HEARTBEAT_ACK:
            session.waiting_ack = False
        else:
            error = WsError(
                ErrorCode.INVALID_ARGUMENT,
                f"message type {kind!r} is reserved ({' and '.join(RESERVED_PREFIXES)} "
                "prefixes are control frames)",
            )
            self._fail(session, None, error, envelope.correlation_id)

    def _arm_heartbeat(self, session: Session, delay: float) -> None:
        session.heartbeat = asyncio.get_running_loop().call_later(
            delay, self._check_heartbeat, session
        )

    def _check_heartbeat(self, session: Session) -> None:
        heartbeat = self.heartbeat
        assert heartbeat is not None
        if session.seen:
            session.seen = False
            session.waiting_ack = False
            self._arm_heartbeat(session, heartbeat.interval)
        elif not session.waiting_ack:
            session.waiting_ack = True
            session.peer._send_json(canonical.encode_heartbeat())
            self._arm_heartbeat(session, heartbeat.timeout)
        else:
            session.heartbeat = None
            peer = session.peer
            stale = heartbeat.on_stale_connection
            if stale is not None:
                self._run_plain(lambda p: stale(p.id, p), peer)
            peer.close(HEARTBEAT_TIMEOUT, "heartbeat timeout")

    # -- running user code -----------------------------------------------------------------

    def _run_plain(self, handler: Callable[[Any], Any], arg: Any) -> None:
        """Run a lifecycle handler (in a task if it is async); errors are logged, never
        raised."""
        try:
            result = handler(arg)
        except Exception:
            logger.exception("%r raised", handler)
            return
        if result is not None and inspect.isawaitable(result):
            self._spawn(_log_errors(result, handler))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        assert self._app is not None
        return self._app._spawn(coro, eager=True)


def _cid(ctx: EventContext[Any]) -> str | None:
    return ctx.correlation_id if isinstance(ctx, RpcContext) else None


def _link_plain(middleware: Middleware, downstream: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A plain middleware in a plain chain: ``next()`` runs the rest at once."""

    def link(ctx: Any) -> Any:
        return middleware(ctx, lambda: downstream(ctx))

    return link


def _as_coroutine(fn: Callable[[Any], Any]) -> Callable[[Any], Coroutine[Any, Any, None]]:
    async def run(ctx: Any) -> None:
        result = fn(ctx)
        if result is not None and inspect.isawaitable(result):
            await result

    return run


def _link_async(
    middleware: Middleware, downstream: Callable[[Any], Coroutine[Any, Any, None]]
) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """A middleware in a chain with something async. ``next()`` returns the rest as a
    coroutine: an async middleware awaits it; a plain one may return it or just call it, and
    crosswire runs it either way."""

    async def link(ctx: Any) -> None:
        started: list[Coroutine[Any, Any, None]] = []

        def next() -> Coroutine[Any, Any, None]:
            rest = downstream(ctx)
            started.append(rest)
            return rest

        result = middleware(ctx, next)
        if result is not None and inspect.isawaitable(result):
            await result
        for rest in started:  # called by a plain middleware and not returned
            if inspect.getcoroutinestate(rest) == inspect.CORO_CREATED:
                await rest

    return link


async def _log_errors(running: Awaitable[Any], handler: Callable[..., Any]) -> None:
    try:
        await running
    except Exception:
        logger.exception("%r raised", handler)


def _check_schema(schema: object) -> None:
    if not isinstance(schema, MessageSchema):
        raise ConfigurationError(f"expected a schema from message() or rpc(), got {schema!r}")


def _check_middleware(middleware: object) -> None:
    check_callable("middleware", middleware, 2, "ctx, next")
