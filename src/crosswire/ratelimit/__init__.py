"""Rate limits: token buckets per key, taken by the :func:`rate_limit` middleware.

::

    from crosswire.ratelimit import MemoryRateLimiter, rate_limit

    limiter = MemoryRateLimiter(capacity=20, tokens_per_second=5)
    router.use(rate_limit(limiter))  # per user (or address) and message type

Limiters: :class:`MemoryRateLimiter` (this process) and :class:`RedisRateLimiter` (shared by
every instance; ``crosswire[redis]``, imported on first use). See ``docs/rate-limits.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .bucket import Decision, Policy
from .memory import MemoryRateLimiter
from .middleware import RateLimiter, per_user, per_user_per_type, rate_limit

if TYPE_CHECKING:
    from .redis import RedisRateLimiter

__all__ = [
    "Decision",
    "MemoryRateLimiter",
    "Policy",
    "RateLimiter",
    "RedisRateLimiter",
    "per_user",
    "per_user_per_type",
    "rate_limit",
]


def __getattr__(name: str) -> Any:
    if name == "RedisRateLimiter":  # needs the redis extra: imported only when asked for
        from .redis import RedisRateLimiter

        return RedisRateLimiter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
