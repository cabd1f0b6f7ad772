"""``rate_limit()``: middleware that takes tokens for each message before it is handled.

It runs where it is added: ``router.use(rate_limit(...))`` for every message (before payload
validation: a flood of invalid frames is limited too), or ``router.route(Schema).use(...)``
for one type. A refused message is answered with ``RESOURCE_EXHAUSTED`` and ``retryAfterMs``
(or ``FAILED_PRECONDITION`` when it costs more than the bucket can ever hold), the router's
``on_limit_exceeded`` handlers get a ``LimitExceeded(type="rate")``, and the connection
carries on. Control frames (heartbeat, abort) are never limited.

A limiter whose ``consume`` returns a :class:`~crosswire.ratelimit.Decision` (in memory)
decides inline, so the route stays inline; one that returns an awaitable (Redis) makes the
route run in a task. Its answers may come back in any order, but a connection's limited
messages are handed on in the order they arrived (a message of cost 0 does not wait).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ..errors import ConfigurationError, ErrorCode
from ..router import LimitExceeded
from ..router.context import EventContext
from .bucket import Decision, Policy

__all__ = ["RateLimiter", "per_user", "per_user_per_type", "rate_limit"]

Key = Callable[[EventContext[Any]], str]
Cost = Callable[[EventContext[Any]], int]


class RateLimiter(Protocol):
    """What :func:`rate_limit` needs: a policy, and taking tokens from a key's bucket."""

    policy: Policy

    def consume(self, key: str, cost: int) -> Decision | Awaitable[Decision]: ...

    async def aclose(self) -> None: ...


def _who(ctx: EventContext[Any]) -> str:
    peer = ctx.peer
    if peer.user_id is not None:
        return f"user:{peer.user_id}"
    if peer.remote_address:
        return f"ip:{peer.remote_address}"
    return f"conn:{peer.id}"


def per_user_per_type(ctx: EventContext[Any]) -> str:
    """One bucket per user and message type (the default): ``user:<id>:<TYPE>`` once the
    connection is identified (``peer.identify``), else ``ip:<address>:<TYPE>``. One type
    cannot use up the budget of the others."""
    return f"{_who(ctx)}:{ctx.type}"


def per_user(ctx: EventContext[Any]) -> str:
    """One bucket per user (or address) for every type: weigh types with ``cost``."""
    return _who(ctx)


def rate_limit(
    limiter: RateLimiter, *, key: Key = per_user_per_type, cost: Cost | None = None
) -> Callable[[EventContext[Any], Callable[[], Any]], Any]:
    """Middleware taking ``cost(ctx)`` tokens (1 if not given; 0 lets the message through
    untouched) from the bucket ``key(ctx)`` of ``limiter``. ``key`` and ``cost`` run before
    the payload is validated: they see ``ctx.type``, ``ctx.meta``, ``ctx.data`` and
    ``ctx.peer``, not ``ctx.payload``."""
    policy = limiter.policy
    #: Per connection, the last message still waiting for an awaitable decision: the next
    #: one waits for it before it is handled, so a connection's messages keep their order
    #: even when the limiter's answers (Redis round trips) come back out of order.
    tails: dict[str, asyncio.Future[None]] = {}

    def limited(ctx: EventContext[Any], next: Callable[[], Any]) -> Any:
        n = 1 if cost is None else cost(ctx)
        if type(n) is not int or n < 0:
            raise ConfigurationError(f"a rate_limit cost must be an int >= 0, not {n!r}")
        if n == 0:
            return next()
        bucket = key(ctx)
        if asks_redis:  # asked from the task, so that a task that never starts asks nothing
            return _decide_later(ctx, next, lambda: consume(bucket, n), n, policy, tails)
        decision = consume(bucket, n)
        if isinstance(decision, Decision):
            return next() if decision.allowed else _refuse(ctx, decision, n, policy)
        return _decide_later(ctx, next, lambda: decision, n, policy, tails)

    consume = limiter.consume
    asks_redis = inspect.iscoroutinefunction(consume)
    return limited


async def _decide_later(
    ctx: EventContext[Any],
    next: Callable[[], Any],
    ask: Callable[[], Decision | Awaitable[Decision]],
    cost: int,
    policy: Policy,
    tails: dict[str, asyncio.Future[None]],
) -> None:
    # Taken in the first step, before any await: tasks start in the order they were made, so
    # this is the order the messages arrived. A message whose task never starts (cancelled
    # first, as an abort in the same read does) takes no place, so none waits for it.
    peer_id = ctx.peer.id
    before = tails.get(peer_id)
    mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    tails[peer_id] = mine
    rest = None
    try:
        answer = ask()
        decision = answer if isinstance(answer, Decision) else await answer
        if before is not None:
            await asyncio.shield(before)  # the previous message is handed on first
        if not decision.allowed:
            _refuse(ctx, decision, cost, policy)
        else:
            rest = next()
    finally:
        _release(mine, before, tails, peer_id)
    if rest is not None and inspect.isawaitable(rest):
        await rest


def _release(
    mine: asyncio.Future[None],
    before: asyncio.Future[None] | None,
    tails: dict[str, asyncio.Future[None]],
    peer_id: str,
) -> None:
    """Let the next message go, but never before the previous one (this message may have
    ended early: an error from the limiter, or a cancellation)."""

    def done(_: object = None) -> None:
        if not mine.done():
            mine.set_result(None)
        if tails.get(peer_id) is mine:
            del tails[peer_id]

    if before is None or before.done():
        done()
    else:
        before.add_done_callback(done)


def _refuse(ctx: EventContext[Any], decision: Decision, cost: int, policy: Policy) -> None:
    wait = decision.retry_after_ms
    info = LimitExceeded("rate", ctx.client_id, ctx.peer, cost, policy.capacity, wait)
    ctx._dispatch.report_limit(info)
    if wait is None:
        ctx.error(
            ErrorCode.FAILED_PRECONDITION,
            f"this message costs {cost} tokens, more than the rate limit's capacity "
            f"({policy.capacity})",
            {"cost": cost, "capacity": policy.capacity},
        )
    else:
        ctx.error(
            ErrorCode.RESOURCE_EXHAUSTED,
            "rate limit exceeded",
            {"cost": cost, "capacity": policy.capacity, "remaining": decision.remaining},
            retry_after_ms=wait,
        )
