"""Serving a Router in one App: per-connection sessions, the per-frame pipeline, the RPC
lifecycle, error answers, control frames and heartbeat.

One :class:`Dispatcher` per App (``App(router)`` creates it through ``router.hooks_for``), so a
router can be served by several Apps, one after another (tests) or at once.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import orjson
from msgspec import UNSET

from ..errors import ConfigurationError, ErrorCode, ValidationError, WsError
from ..hooks import Hooks
from ..http import Request
from ..peer import CloseCode, Message, Peer, ReadyState
from ..schema import RESERVED_PREFIXES, MessageSchema, within
from ..wire import BadFrame, Control, Dialect, Envelope
from ..wire.dialect import TypedEnvelope
from ..wire.maps import MappedRender
from .chain import compose, invalid, reply_when_done
from .context import (
    CloseContext,
    ConnectionContext,
    EventContext,
    LimitExceeded,
    RpcContext,
    reply_frame,
)
from .inband import InBandDesk
from .lane import Lane
from .session import Compiled, Session
from .topics import TopicDesk

if TYPE_CHECKING:
    from ..app import App
    from .router import Router, _Route

__all__ = ["HEARTBEAT_TIMEOUT", "Dispatcher", "encode_error"]

logger = logging.getLogger("crosswire.router")

#: Close code for a connection that stopped answering heartbeats (as in seed 003).
HEARTBEAT_TIMEOUT = 4002

_OPEN = ReadyState.OPEN


class Dispatcher:
    """Serves one router in one App."""

    def __init__(self, router: Router, app: App) -> None:
        self.router = router
        self.app = app
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # on first open
        self.clock: Callable[[], float] = time.monotonic  # the loop's clock, set on first open
        # Options, read once: a router's options are fixed when it is served.
        self.rpc_timeout = router.rpc_timeout
        self.drop_progress_on_backpressure = router.drop_progress_on_backpressure
        self.max_payload_bytes = router.max_payload_bytes
        self.heartbeat = router.heartbeat
        self.max_events = router.max_inflight_events
        #: Frames bigger than this (in characters or bytes) are measured against the limit.
        self._unchecked_size = self.max_payload_bytes // 4
        #: Per dialect, each message type's route and the chain that runs it, compiled on
        #: first use (the router clears them when its routes or middleware change). Per
        #: dialect: a type that is a route for one (``join``) may be a control frame of
        #: another (Rover's ``join``), and only routes are kept here.
        self._runs: dict[Dialect, dict[str, Compiled]] = {}
        #: Per dialect, its fast lane (:mod:`.lane`; it takes nothing in a dialect without a
        #: typed decoder).
        self._lanes: dict[Dialect, Lane] = {}
        #: Joins and leaves of topics; the App's Hub keeps the history of those that have it.
        self.topics = TopicDesk(self, router._topics, router._on_auth)
        self.has_presence = False
        for route in router._topics:
            if route.history is not None:
                app.hub.keep_history(route.matches, route.history)
            if route.presence:
                app.hub.track_presence(route.matches)
                self.has_presence = True
        if self.has_presence and "presence" in router._routes:
            raise ConfigurationError(
                "the router has topics with presence, whose request is a 'presence' frame in "
                "the Rover and events dialects: its own 'presence' message cannot be routed"
            )
        #: In-band authentication, when the router has one.
        scheme = router._authenticate
        self.inband = (
            InBandDesk(self, scheme, router._on_authenticated) if scheme is not None else None
        )
        #: Per dialect, its render with the router's maps in front (one object per dialect:
        #: the Hub renders a publication once per render).
        self._renders: dict[Dialect, MappedRender] = {}

    def hooks(self) -> Hooks:
        return Hooks(
            upgrade=self._upgrade, open=self._open, message=self._message, close=self._close
        )

    # -- lifecycle -------------------------------------------------------------------------

    def _upgrade(self, request: Request) -> Any:
        handler = self.router._on_upgrade  # read now: it may be registered after App(router)
        return None if handler is None else handler(request)

    def _open(self, peer: Peer) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:  # the first open (or an App served again in a new loop)
            self.loop = loop
            # The loop's clock, read for every RPC: asyncio's own is time.monotonic, called
            # directly (no Python frame); another loop's (uvloop) is its own method.
            default = type(loop).time is asyncio.BaseEventLoop.time
            self.clock = time.monotonic if default else loop.time
        dialect = peer.dialect  # (chosen at the handshake, among the endpoint's)
        runs = self._runs.get(dialect)
        if runs is None:
            runs = self._runs[dialect] = {}
        lane = self._lanes.get(dialect)
        if lane is None:
            lane = self._lanes[dialect] = Lane(dialect, self.router._routes)
        session = Session(peer, self.router.max_inflight_rpcs, dialect, runs, lane)
        peer.attach(session, self._frame)
        if self.router._maps:  # the router's maps before the dialect, for every event
            render = self._renders.get(dialect)
            if render is None:
                render = self._renders[dialect] = MappedRender(dialect.render, self.router._maps)
            peer.render = session.render = render
        if self.inband is not None:
            session.authenticated = False
            self.inband.opened(session)
        else:
            self.start_heartbeat(session)
        if self.router._on_open:
            ctx = ConnectionContext(self, session)
            for handler in self.router._on_open:
                self.run_plain(handler, ctx)

    def _serves(self, control: Control) -> bool:
        """Whether this router serves ``control`` (not so in-band authentication without
        ``router.authenticate``, nor presence without presence topics)."""
        if control is Control.AUTHENTICATE:
            return self.inband is not None
        if control is Control.PRESENCE:
            return self.has_presence
        return True

    def start_heartbeat(self, session: Session) -> None:
        """Start watching the connection's silence (once it is authenticated)."""
        if self.heartbeat is not None:
            session.last_seen = self.loop.time()
            self._arm_heartbeat(session, self.heartbeat.interval)

    def routes_changed(self) -> None:
        """Forget the compiled routes (the router's routes or middleware changed)."""
        for runs in self._runs.values():
            runs.clear()
        for lane in self._lanes.values():
            lane.reset()

    def _close(self, peer: Peer, code: int, reason: str) -> None:
        session: Session | None = peer.session
        if session is None:
            return
        if session.heartbeat is not None:
            session.heartbeat.cancel()
        if self.inband is not None:
            self.inband.closed(session)
        if isinstance(session.auth, asyncio.Task):
            session.auth.cancel()
        for call in session.calls.drain():
            if not call.done:
                call._cancel()
            if call._timer is not None:
                call._timer.cancel()
        if self.router._on_close:
            ctx = CloseContext(self, session, code, reason)
            for handler in self.router._on_close:
                self.run_plain(handler, ctx)

    # -- frames ----------------------------------------------------------------------------

    def _message(self, peer: Peer, msg: Message) -> None:
        """The message hook (for a peer whose frames come as Messages)."""
        self._frame(peer, msg.raw, msg.is_binary)

    def _frame(self, peer: Peer, raw: str | bytes, is_binary: bool) -> None:
        """One frame from a client: the router's hot path."""
        if peer.ready_state is not _OPEN:  # closing: what is still in flight is not handled
            return
        session: Session = peer.session
        if self.heartbeat is not None:
            session.last_seen = self.loop.time()
        if len(raw) > self._unchecked_size:
            size = len(raw.encode()) if isinstance(raw, str) else len(raw)
            if size > self.max_payload_bytes:
                self._too_big(session, size)
                return
        if session.authenticated:
            # The fast lane: a routed type decoded and checked in one call (see .lane).
            lane = session.lane
            typed = lane.decode(raw)
            if typed is not None:
                compiled = lane.runs.get(typed.__class__)
                if compiled is None:
                    compiled = self._compile_lane(session, typed)
                run = compiled[1]
                if type(run) is Answers:  # a plain handler of the payload, nothing before it
                    self._answer(session, compiled[0], typed, run)
                elif compiled[0].is_rpc:
                    self._call(session, compiled[0], typed, run)
                else:
                    self._event(session, compiled[0], typed, compiled[1])
                return
        try:
            envelope = session.decode(raw)
        except BadFrame as exc:
            self.fail(session, None, exc, exc.correlation_id)
            return
        if not session.authenticated:  # in-band authentication first
            self.inband.before(session, envelope)  # type: ignore[union-attr]
            return
        compiled = session.runs.get(envelope.type)
        if compiled is None:
            compiled = self._compile(session, envelope)
            if compiled is None:  # answered: a control frame, or a type without a route
                return
        route, run = compiled
        if type(run) is Answers:
            self._answer(session, route, envelope, run)
        elif route.is_rpc:
            self._call(session, route, envelope, run)
        else:
            self._event(session, route, envelope, run)

    def _event(
        self,
        session: Session,
        route: _Route,
        envelope: Envelope | TypedEnvelope,
        run: Callable[[Any], Any],
    ) -> None:
        ctx: EventContext[Any] = EventContext(self, session, route.schema, envelope, time.time())
        if run is route.handler:  # the fast lane's checked payload, with nothing before it
            ctx.payload = envelope.payload
        try:
            result = run(ctx)
        except Exception as exc:
            self.fail(session, ctx, exc, None)
            return
        if result is not None and inspect.isawaitable(result):
            self._run_event(session, ctx, result)

    def _compile_lane(self, session: Session, envelope: TypedEnvelope) -> Compiled:
        """The route of a type the fast lane took, and the chain that runs it: without
        validation when the lane checked the payload (see :mod:`.lane`)."""
        if not envelope.validated:  # a payload left as JSON: the route's usual chain
            compiled = session.runs.get(envelope.type) or self._compile(session, envelope)  # type: ignore[arg-type]
            assert compiled is not None  # (the lane takes only routed types)
        else:
            route = self.router._routes[envelope.type]
            middleware = self._middleware(route)
            run = compose(route.schema, route.handler, middleware, validated=True)
            compiled = (route, _answers(route, middleware, run, validated=True))
        session.lane.runs[envelope.__class__] = compiled
        return compiled

    def _middleware(self, route: _Route) -> list[Any]:
        """What runs before ``route``'s handler: the auth gate, the router's middleware, the
        route's."""
        middleware: list[Any] = []
        if self.router._on_auth:
            middleware.append(self.auth_gate)
        middleware.extend(self.router._middleware)
        middleware.extend(route.middleware)
        return middleware

    def _compile(self, session: Session, envelope: Envelope) -> Compiled | None:
        """The route of a frame whose type has not been seen since the routes last changed,
        and the chain that runs it; None once a control frame, or a frame without a route,
        has been answered."""
        router = self.router
        control = session.dialect.controls.get(envelope.type)
        # (a router without in-band authentication routes Rover's "authenticate" as any type,
        # and one without presence topics its "presence")
        if control is not None and self._serves(control):
            self._control(session, envelope, control)
            return None
        route = router._routes.get(envelope.type)
        if route is None:
            if router._on_unhandled is not None and not envelope.type.startswith(RESERVED_PREFIXES):
                self._unhandled(session, envelope, router._on_unhandled)
            elif envelope.type.startswith(RESERVED_PREFIXES):
                reserved = WsError(
                    ErrorCode.INVALID_ARGUMENT,
                    f"message type {envelope.type!r} is reserved "
                    f"({' and '.join(RESERVED_PREFIXES)} prefixes are control frames)",
                )
                self.fail(session, None, reserved, envelope.correlation_id)
            else:
                unknown = WsError(
                    ErrorCode.UNIMPLEMENTED, f"no handler for message type {envelope.type!r}"
                )
                self.fail(session, None, unknown, envelope.correlation_id)
            return None
        middleware = self._middleware(route)
        run = compose(route.schema, route.handler, middleware)
        compiled = session.runs[route.schema.type] = (route, _answers(route, middleware, run))
        return compiled

    # -- RPC lifecycle ---------------------------------------------------------------------

    def _call(
        self,
        session: Session,
        route: _Route,
        envelope: Envelope | TypedEnvelope,
        run: Callable[[Any], Any],
    ) -> None:
        cid = envelope.meta.get("correlationId")  # (checked by the dialect's decode)
        if cid is None:
            session.next_id += 1
            cid = f"srv-{session.next_id}"
        ctx: RpcContext[Any] = RpcContext(
            self, session, route.schema, envelope, time.time(), cid, self.clock()
        )
        if run is route.handler:  # the fast lane's checked payload, with nothing before it
            ctx.payload = envelope.payload
        calls = session.calls
        if cid in calls or len(calls) >= calls.limit:
            try:
                calls.check_room(cid)
            except WsError as exc:
                self.answer(session, None, exc, cid)
                return
        calls[cid] = ctx
        try:
            result = run(ctx)
        except Exception as exc:
            self.fail(session, ctx, exc, cid)
            return
        if result is None or not inspect.isawaitable(result):
            if not ctx.done:
                self._incomplete(ctx)
            return
        if session.rpcs_running >= calls.limit:  # handlers of answered calls still running
            _discard(result)
            self.fail(session, ctx, calls.exhausted(), cid)
            return
        task = self.app.spawn(self._finish_call_task(session, ctx, result), eager=True)
        if not task.done():  # (an eager task may already have finished)
            session.rpcs_running += 1
            task.add_done_callback(lambda t: self._rpc_done(session, result))
            ctx._task = task
            if not ctx.done and ctx._timer is None:
                ctx._timer = self.loop.call_at(ctx.deadline, self._expire, ctx)

    def _answer(
        self,
        session: Session,
        route: _Route,
        envelope: Envelope | TypedEnvelope,
        answers: Answers,
    ) -> None:
        """A call to a plain handler of its payload, answered without a context. A call that
        is not admitted at once (its correlation id in use, the in-flight limit reached), or
        whose meta keys are not the standard ones, goes the usual way (:meth:`_call`, which
        says what is wrong) before the handler runs; so does a handler that returned an
        awaitable, after it. A call that fails (its payload, the handler, its reply) gets its
        context then, for ``on_error``: its ``received_at`` is when it failed (no clock is
        read for a call that succeeds)."""
        cid = envelope.meta.get("correlationId")
        calls = session.calls
        if cid is None or cid in calls or len(calls) >= calls.limit:
            self._call(session, route, envelope, answers.chain)
            return
        payload = envelope.payload
        load = answers.load
        if load is not None:  # a payload the fast lane did not check
            if payload is UNSET or not answers.allowed_meta.issuperset(envelope.meta):
                self._call(session, route, envelope, answers.chain)
                return
            try:
                payload = load(payload)
            except ValidationError as exc:  # answered as the usual way answers it
                ctx = self._failed_call(session, route, envelope, cid, None)
                self.fail(session, ctx, invalid(within("payload", exc)), cid)
                return
            except Exception:  # (not a codec's error) that way answers it
                self._call(session, route, envelope, answers.chain)
                return
        value = None
        try:
            value = answers.fn(payload)
            frame = reply_frame(session.dialect, answers.response, cid, value)
        except Exception as exc:  # the handler's, or its reply's validation: as any handler's
            if inspect.isawaitable(value):  # (an async function behind a decorator)

                def later(ctx: RpcContext[Any]) -> Any:
                    ctx.payload = payload
                    return reply_when_done(ctx, value)

                self._call(session, route, envelope, later)
                return
            self.fail(session, self._failed_call(session, route, envelope, cid, payload), exc, cid)
            return
        session.peer.send_frame(frame)

    def _failed_call(
        self,
        session: Session,
        route: _Route,
        envelope: Envelope | TypedEnvelope,
        cid: str,
        payload: Any,
    ) -> RpcContext[Any]:
        """The context of a call :meth:`_answer` could not answer, for ``on_error``."""
        ctx: RpcContext[Any] = RpcContext(
            self, session, route.schema, envelope, time.time(), cid, self.clock()
        )
        ctx.payload = payload
        return ctx

    def finish_call(self, ctx: RpcContext[Any]) -> None:
        """The call got its terminal reply or error."""
        ctx.done = True
        ctx._session.calls.pop(ctx.correlation_id, None)
        if ctx._timer is not None:
            ctx._timer.cancel()
            ctx._timer = None

    def _incomplete(self, ctx: RpcContext[Any]) -> None:
        """The handler returned without answering: say so, and keep the call open until its
        deadline in case something else replies."""
        # (Not the correlation id: the client chose it, and it may carry anything.)
        logger.warning(
            "RPC %s of peer %s: the handler returned without reply() or error(); "
            "the call stays open until its deadline",
            ctx.type,
            ctx.peer.id,
        )
        if ctx._timer is None:
            ctx._timer = self.loop.call_at(ctx.deadline, self._expire, ctx)

    def _expire(self, ctx: RpcContext[Any]) -> None:
        ctx._timer = None
        if not ctx.done:
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
        ctx._session.calls.pop(ctx.correlation_id, None)
        if ctx._timer is not None:
            ctx._timer.cancel()
            ctx._timer = None
        self.answer(ctx._session, ctx, error, ctx.correlation_id)

    async def _finish_call_task(
        self, session: Session, ctx: RpcContext[Any], running: Awaitable[Any]
    ) -> None:
        try:
            await running
        except asyncio.CancelledError:
            if ctx.cancelled:  # cancelled by the router: abort, deadline or disconnect
                return
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # cancelled from outside (shutdown)
                raise
            # Something the handler awaited was cancelled by someone else.
            cancelled = WsError(ErrorCode.CANCELLED, "the handler was cancelled")
            self.fail(session, ctx, cancelled, ctx.correlation_id)
            return
        except Exception as exc:
            self.fail(session, ctx, exc, ctx.correlation_id)
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
            self.fail(session, ctx, exc, None)

    # -- the auth gate ---------------------------------------------------------------------

    def auth_gate(self, ctx: ConnectionContext, next: Callable[[], Any]) -> Any:
        """Middleware in front of every route, and of topic requests, when there are
        ``on_auth`` handlers: their verdict is taken once per connection; frames that arrive
        while an async check runs wait for it."""
        session: Session = ctx._session
        verdict = session.auth
        if verdict is None:
            verdict = session.auth = self._check_auth(ctx, session)
        if verdict is True:
            return next()
        if verdict is False:
            return None
        return self._after_auth(verdict, next)

    def _check_auth(self, ctx: ConnectionContext, session: Session) -> bool | asyncio.Task[bool]:
        handlers = self.router._on_auth
        for i, handler in enumerate(handlers):
            try:
                verdict = handler(ctx)
            except Exception as exc:  # as when an async check raises: refused, and closed
                self._auth_failed(session, ctx, exc)
                return False
            if inspect.isawaitable(verdict):  # async, or a plain function returning one
                return self.loop.create_task(self._check_rest(ctx, session, verdict, i + 1))
            if verdict is False:
                self._refuse(session, ctx)
                return False
        return True

    async def _check_rest(
        self, ctx: ConnectionContext, session: Session, pending: Awaitable[Any], index: int
    ) -> bool:
        """Finish an auth check that went async: await the pending verdict, then run the
        remaining handlers (from ``index``) in order."""
        try:
            verdict = await pending
            if verdict is not False:
                for handler in self.router._on_auth[index:]:
                    verdict = handler(ctx)
                    if inspect.isawaitable(verdict):
                        verdict = await verdict
                    if verdict is False:
                        break
        except Exception as exc:
            session.auth = False
            self._auth_failed(session, ctx, exc)
            return False
        if verdict is False:
            session.auth = False
            self._refuse(session, ctx)
            return False
        session.auth = True
        return True

    async def _after_auth(self, check: asyncio.Task[bool], next: Callable[[], Any]) -> None:
        if await asyncio.shield(check):
            result = next()
            if result is not None and inspect.isawaitable(result):
                await result

    def _auth_failed(self, session: Session, ctx: ConnectionContext, exc: Exception) -> None:
        """An ``on_auth`` handler raised: answer its error (``INTERNAL`` unless a ``WsError``)
        and close with 1008."""
        self.fail(session, _message_of(ctx), exc, _cid(ctx))
        ctx.peer.close(CloseCode.POLICY_VIOLATION, "unauthenticated")

    def _refuse(self, session: Session, ctx: ConnectionContext) -> None:
        error = WsError(ErrorCode.UNAUTHENTICATED, "not authenticated")
        self.fail(session, _message_of(ctx), error, _cid(ctx))
        ctx.peer.close(CloseCode.POLICY_VIOLATION, "unauthenticated")

    # -- errors ----------------------------------------------------------------------------

    def fail(
        self,
        session: Session,
        ctx: EventContext[Any] | None,
        exc: Exception,
        correlation_id: str | None,
    ) -> None:
        """An exception from a handler, middleware or the protocol: answer it."""
        error = self.as_ws_error(exc, ctx)
        if isinstance(ctx, RpcContext):
            if ctx.done:  # already answered: only report it
                self.notify(error, ctx)
                return
            self.finish_call(ctx)
        self.answer(session, ctx, error, correlation_id)

    def answer(
        self,
        session: Session,
        ctx: EventContext[Any] | None,
        error: WsError,
        correlation_id: str | None,
    ) -> None:
        """Tell ``on_error`` handlers, then send the error unless one of them (or
        ``auto_send_error_on_throw=False``) suppresses it."""
        suppress = self.notify(error, ctx)
        if self.router.auto_send_error_on_throw and not suppress:
            session.peer.send_frame(encode_error(session.dialect, error, correlation_id))

    def notify(self, error: WsError, ctx: EventContext[Any] | None) -> bool:
        """Run the ``on_error`` handlers; True if one asked to suppress the reply."""
        suppress = False
        for handler in self.router._on_error:
            try:
                verdict = handler(error, ctx)
            except Exception:
                logger.exception("an on_error handler raised")
                continue
            if inspect.iscoroutine(verdict):
                verdict.close()
                logger.warning(
                    "on_error handler %r returned a coroutine; it must be plain", handler
                )
            elif verdict is False:
                suppress = True
        return suppress

    def as_ws_error(self, exc: Exception, ctx: EventContext[Any] | None) -> WsError:
        if isinstance(exc, WsError):
            return exc
        where = f" in {ctx.type} handler" if ctx is not None else ""
        logger.error("unhandled error%s", where, exc_info=exc)
        if self.router.expose_error_details:
            return WsError.wrap(
                exc,
                ErrorCode.INTERNAL,
                f"{type(exc).__name__}: {exc}",
                {"exception": type(exc).__name__},
            )
        return WsError.wrap(exc, ErrorCode.INTERNAL, "internal server error")

    def _too_big(self, session: Session, size: int) -> None:

        peer = session.peer
        self.report_limit(LimitExceeded("payload", peer.id, peer, size, self.max_payload_bytes))
        peer.close(CloseCode.MESSAGE_TOO_BIG, "message too big")

    def report_limit(self, info: LimitExceeded) -> None:
        """Run the router's ``on_limit_exceeded`` handlers (errors are logged)."""
        for handler in self.router._on_limit:
            self.run_plain(handler, info)

    # -- control frames and heartbeat ------------------------------------------------------

    def _control(self, session: Session, envelope: Envelope, control: Control) -> None:
        if control is Control.ABORT:
            self._abort(session, envelope.correlation_id)
        elif control is Control.HEARTBEAT:
            ack = session.dialect.heartbeat_ack(int(time.time() * 1000))
            if ack is not None:
                session.peer.send_frame(ack)
        elif control is Control.HEARTBEAT_ACK:
            session.waiting_ack = False
        elif control is Control.JOIN or control is Control.LEAVE:
            self.topics.request(session, envelope, control)
        elif control is Control.PRESENCE:
            self.topics.presence(session, envelope)
        elif control is Control.AUTHENTICATE and self.inband is not None:
            self.inband.credentials(session, envelope)  # (answers: already authenticated)
        else:
            unsupported = WsError(
                ErrorCode.UNIMPLEMENTED,
                f"{envelope.type!r} ({control.value}) is not served on this connection",
            )
            self.fail(session, None, unsupported, envelope.correlation_id)

    def _arm_heartbeat(self, session: Session, delay: float) -> None:
        session.heartbeat = self.loop.call_later(delay, self._check_heartbeat, session)

    def _check_heartbeat(self, session: Session) -> None:
        heartbeat = self.heartbeat
        assert heartbeat is not None
        idle = self.loop.time() - session.last_seen
        if idle < heartbeat.interval:  # a frame came: wait for the rest of the interval
            session.waiting_ack = False
            self._arm_heartbeat(session, heartbeat.interval - idle)
        elif not session.waiting_ack:
            session.waiting_ack = True
            ping = session.dialect.heartbeat()
            if ping is not None:  # (a dialect without one: the silence alone counts)
                session.peer.send_frame(ping)
            self._arm_heartbeat(session, heartbeat.timeout)
        else:
            session.heartbeat = None
            peer = session.peer
            stale = heartbeat.on_stale_connection
            if stale is not None:
                self.run_plain(lambda p: stale(p.id, p), peer)
            peer.close(HEARTBEAT_TIMEOUT, "Heartbeat timeout")

    # -- running user code -----------------------------------------------------------------

    def run_plain(self, handler: Callable[[Any], Any], arg: Any) -> None:
        """Run a lifecycle handler (in a task if it is async); errors are logged, never
        raised."""
        try:
            result = handler(arg)
        except Exception:
            logger.exception("%r raised", handler)
            return
        if result is not None and inspect.isawaitable(result):
            self.app.spawn(_log_errors(result, handler), eager=True)

    def _run_event(self, session: Session, ctx: EventContext[Any], running: Any) -> None:
        """Run an async event handler in a task (see :meth:`run_task`); what it raises is
        answered as the handler's error."""
        self.run_task(session, self._finish_event(session, ctx, running), ctx, running)

    def _unhandled(
        self, session: Session, envelope: Envelope, handler: Callable[[Any], Any]
    ) -> None:
        """A message without a route, to the router's ``on_unhandled`` handler (its payload
        as the client sent it). Not compiled: any type may come, and nothing is kept."""
        ctx: EventContext[Any] = EventContext(self, session, None, envelope, time.time())
        ctx.payload = envelope.payload if envelope.has_payload else None
        try:
            result = handler(ctx)
        except Exception as exc:
            self.fail(session, ctx, exc, envelope.correlation_id)
            return
        if result is not None and inspect.isawaitable(result):
            self._run_event(session, ctx, result)

    def run_task(
        self,
        session: Session,
        task_body: Coroutine[Any, Any, None],
        ctx: EventContext[Any] | None = None,
        running: Any = None,
    ) -> None:
        """Run async work of a connection (an async event handler, ``running`` inside
        ``task_body``; a join whose handler awaits) in a task. Past ``max_inflight_events``
        of them on one connection, it is refused with ``RESOURCE_EXHAUSTED``: the connection
        never stops reading, so that aborts, heartbeats and other calls still get through."""
        if session.events_running >= self.max_events:
            _discard(task_body)
            _discard(running)
            busy = WsError(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"too many handlers running on this connection (limit {self.max_events})",
                retry_after_ms=100,
            )
            self.answer(session, ctx, busy, None)
            return
        task = self.app.spawn(task_body, eager=True)
        if not task.done():
            session.events_running += 1
            task.add_done_callback(lambda t: self._event_done(session, running))

    def _event_done(self, session: Session, running: Any) -> None:
        _discard(running)
        session.events_running -= 1

    def _rpc_done(self, session: Session, running: Any) -> None:
        _discard(running)
        session.rpcs_running -= 1


class Answers:
    """The compiled run of an RPC route whose handler is a plain function of the payload
    (``takes="payload"``) with no middleware, auth gate included, before it: the dispatcher
    calls :attr:`fn` without a context (:meth:`Dispatcher._answer`), and runs :attr:`chain`
    (the usual compiled run, with a context) when it cannot."""

    __slots__ = ("allowed_meta", "chain", "fn", "load", "response")

    def __init__(
        self,
        chain: Callable[[Any], Any],
        fn: Callable[[Any], Any],
        schema: MessageSchema[Any],
        validated: bool,
    ) -> None:
        self.chain = chain
        self.fn = fn
        assert schema.response is not None
        self.response = schema.response
        #: None when the fast lane checked the payload; else the codec's load (with the
        #: meta keys that the schema allows).
        self.load = None if validated else schema.payload.load  # type: ignore[union-attr]
        self.allowed_meta = schema.allowed_meta

    def __call__(self, ctx: Any) -> Any:
        return self.chain(ctx)


def _answers(
    route: _Route, middleware: list[Any], run: Callable[[Any], Any], *, validated: bool = False
) -> Callable[[Any], Any]:
    """``run``, or an :class:`Answers` around it when the route can be answered without a
    context: a plain handler of the payload, nothing before it, a response without a meta
    schema and (unless the fast lane checked it) a payload codec and no meta schema."""
    schema = route.schema
    if (
        route.answers is None
        or middleware
        or schema.response is None
        or schema.response.meta is not None
        or (not validated and (schema.payload is None or schema.meta is not None))
    ):
        return run
    return Answers(run, route.answers, schema, validated)


def _discard(running: Any) -> None:
    """Close a handler's coroutine that will not run (or has run): no "never awaited"
    warning when its task was cancelled before it started."""
    if inspect.iscoroutine(running):
        running.close()


def encode_error(dialect: Dialect, error: WsError, correlation_id: str | None) -> bytes:
    """``error`` in ``dialect``; ``INTERNAL`` if its details cannot be sent as JSON."""
    try:
        return dialect.error(error, correlation_id)
    except (TypeError, orjson.JSONEncodeError):
        logger.exception("the details of %r cannot be sent as JSON; sending INTERNAL", error)
        return dialect.error(WsError(ErrorCode.INTERNAL, "internal server error"), correlation_id)


def _cid(ctx: ConnectionContext) -> str | None:
    return ctx.correlation_id if isinstance(ctx, RpcContext) else None


def _message_of(ctx: ConnectionContext) -> EventContext[Any] | None:
    """The message context of the gate's context (None for a topic request)."""
    return ctx if isinstance(ctx, EventContext) else None


async def _log_errors(running: Awaitable[Any], handler: Callable[..., Any]) -> None:
    try:
        await running
    except Exception:
        logger.exception("%r raised", handler)
