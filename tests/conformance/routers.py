"""Routers the fixtures name besides examples.echo: the same handlers, other options."""

from __future__ import annotations

import crosswire
from examples import echo


def heartbeat_router() -> crosswire.Router:
    """examples/echo.py with a fast heartbeat (50 ms idle, 50 ms to answer)."""
    router = crosswire.Router(heartbeat=crosswire.Heartbeat(interval=0.05, timeout=0.05))
    return router.merge(echo.create_router())


def one_call_router() -> crosswire.Router:
    """examples/echo.py with one RPC in flight per connection."""
    return crosswire.Router(max_inflight_rpcs=1).merge(echo.create_router())


def rate_limited_router() -> crosswire.Router:
    """examples/echo.py with two messages per type in a burst, then one every 1000 s (a clock
    that stands still, so that ``retryAfterMs`` is exact)."""
    from crosswire.ratelimit import MemoryRateLimiter, rate_limit

    limiter = MemoryRateLimiter(capacity=2, tokens_per_second=0.001, clock=lambda: 0.0)
    return crosswire.Router().use(rate_limit(limiter)).merge(echo.create_router())
