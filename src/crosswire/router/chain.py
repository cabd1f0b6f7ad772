"""Composing a route: the auth gate, middleware, payload validation and the handler, into one
callable that runs a context.

Middleware is ``(ctx, next)``; ``next()`` runs the rest of the chain and may be called once.
When every piece is a plain function, the chain is plain: ``next()`` runs the rest at once and
the chain runs inline. When any piece is ``async``, the chain is a coroutine (run in a task)
and ``next()`` returns the rest as a coroutine: an async middleware awaits it; a plain one
returns it (``return next()``). A plain middleware that calls ``next()`` without returning it
still works, but its code after ``next()`` then runs before the handler: crosswire logs a
warning once per route, as that code should be in an ``async`` middleware.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from msgspec import UNSET

from ..errors import ErrorCode, ValidationError, WsError
from ..hooks import is_async_callable
from ..schema import MessageSchema, within

__all__ = ["Middleware", "compose", "invalid", "payload_handler", "reply_when_done"]

logger = logging.getLogger("crosswire.router")

Middleware = Callable[[Any, Callable[[], Any]], Any]
Run = Callable[[Any], Any]


def compose(
    schema: MessageSchema[Any],
    handler: Callable[[Any], Any],
    middleware: list[Middleware],
    *,
    validated: bool = False,
) -> Run:
    """The callable running ``middleware`` (outermost first), validation of a message of
    ``schema``, then ``handler``; with ``validated`` (the fast lane checked the message
    already), no validation: the envelope's payload is set after the middleware, and without
    middleware the chain is the handler itself (the caller then sets the payload).

    It returns ``None`` (or the handler's value) when everything ran inline, or an awaitable
    that the caller must run in a task.
    """
    if validated:
        if not middleware:
            return handler  # (the dispatcher sets ctx.payload: nothing runs before this)

        def checked(ctx: Any) -> Any:
            ctx.payload = ctx._envelope.payload  # after the middleware, as on the usual path
            return handler(ctx)

        return _chain(handler, checked, middleware)
    codec = schema.payload
    load = codec.load if codec is not None and schema.meta is None else None
    allowed_meta = schema.allowed_meta

    def innermost(ctx: Any) -> Any:
        envelope = ctx._envelope
        try:
            # The common case of ctx._load() in line: a payload, and only standard meta keys.
            payload = envelope.payload
            if load is not None and payload is not UNSET and allowed_meta.issuperset(envelope.meta):
                try:
                    ctx.payload = load(payload)
                except ValidationError as exc:
                    raise within("payload", exc) from None
            else:
                ctx._load()
        except ValidationError as exc:
            raise invalid(exc) from None
        return handler(ctx)

    return _chain(handler, innermost, middleware)


def invalid(exc: ValidationError) -> WsError:
    """The ``INVALID_ARGUMENT`` answering a message that does not pass its schema."""
    return WsError(ErrorCode.INVALID_ARGUMENT, str(exc), {"issues": exc.issues})


def payload_handler(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """An RPC handler that takes the payload and returns the reply's payload
    (``router.rpc(schema, fn, takes="payload")``), as a handler of the context: what runs it
    when a context is made (middleware before it, an ``async`` ``fn``). Where nothing runs
    before a plain ``fn``, the dispatcher calls it without a context (``Dispatcher._answer``).
    A plain ``fn`` that returns an awaitable (an ``async`` function behind a decorator) is
    answered once it is done, in a task, as an ``async`` one."""
    if is_async_callable(fn):

        async def answer_async(ctx: Any) -> None:
            ctx.reply(await fn(ctx.payload))

        return answer_async

    def answer(ctx: Any) -> Any:
        value = fn(ctx.payload)
        if inspect.isawaitable(value):
            return reply_when_done(ctx, value)
        ctx.reply(value)
        return None

    return answer


async def reply_when_done(ctx: Any, value: Awaitable[Any]) -> None:
    """Reply with what ``value`` (a payload handler's awaitable) comes to."""
    ctx.reply(await value)


def _chain(handler: Callable[[Any], Any], innermost: Run, middleware: list[Middleware]) -> Run:
    """``middleware`` around ``innermost`` (which ends with ``handler``)."""
    if is_async_callable(handler) or any(is_async_callable(m) for m in middleware):
        chain = _as_coroutine(innermost)
        for mw in reversed(middleware):
            chain = _link_async(mw, chain)
        return chain
    run: Run = innermost
    for mw in reversed(middleware):
        run = _link_plain(mw, run)
    return run


def _link_plain(middleware: Middleware, downstream: Run) -> Run:
    """A plain middleware in a plain chain: ``next()`` runs the rest at once."""

    def link(ctx: Any) -> Any:
        called = False

        def next() -> Any:
            nonlocal called
            if called:
                raise RuntimeError(f"next() called twice by middleware {middleware!r}")
            called = True
            return downstream(ctx)

        return middleware(ctx, next)

    return link


def _as_coroutine(fn: Run) -> Callable[[Any], Coroutine[Any, Any, None]]:
    async def run(ctx: Any) -> None:
        result = fn(ctx)
        if result is not None and inspect.isawaitable(result):
            await result

    return run


def _link_async(
    middleware: Middleware, downstream: Callable[[Any], Coroutine[Any, Any, None]]
) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """A middleware in a chain with something async (see the module docstring)."""
    # Warned once per compiled route (not per id(middleware): ids of freed functions come
    # back, and a new middleware would then never be warned about).
    warned = False

    async def link(ctx: Any) -> None:
        nonlocal warned
        started: list[Coroutine[Any, Any, None]] = []

        def next() -> Coroutine[Any, Any, None]:
            if started:
                raise RuntimeError(f"next() called twice by middleware {middleware!r}")
            rest = downstream(ctx)
            started.append(rest)
            return rest

        result = middleware(ctx, next)
        if result is not None and inspect.isawaitable(result):
            await result
        for rest in started:
            if inspect.getcoroutinestate(rest) == inspect.CORO_CREATED:
                # A plain middleware called next() and did not return it.
                if not warned:
                    warned = True
                    logger.warning(
                        "middleware %r calls next() without returning it in a route with "
                        "async code: its code after next() ran before the handler; make it "
                        "`async def` and `await next()`, or `return next()`",
                        middleware,
                    )
                await rest

    return link
