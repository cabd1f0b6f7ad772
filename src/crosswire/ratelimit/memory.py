"""Rate-limit buckets in this process: one server, or tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..errors import ConfigurationError
from .bucket import Decision, Policy, take

__all__ = ["MemoryRateLimiter"]


class MemoryRateLimiter:
    """Token buckets kept in a dict of this process (see :class:`~crosswire.ratelimit.Policy`).

    Every instance of a server has its own buckets: behind a load balancer, use
    :class:`~crosswire.ratelimit.RedisRateLimiter` so that a client's budget is shared.

    At most ``max_keys`` buckets are kept; past that, the least recently used one is
    forgotten (its key starts again with a full bucket). ``clock`` returns seconds
    (``time.monotonic`` by default; tests pass their own).
    """

    def __init__(
        self,
        *,
        capacity: int,
        tokens_per_second: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = Policy(capacity, tokens_per_second)
        if type(max_keys) is not int or max_keys < 1:
            raise ConfigurationError(f"max_keys must be an int >= 1, not {max_keys!r}")
        self._max_keys = max_keys
        self._clock = clock
        #: ``(tokens, as of ms)`` by key, in order of last use, least recent first.
        self._buckets: dict[str, tuple[float, float]] = {}

    def consume(self, key: str, cost: int) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket if it holds them (never waits)."""
        buckets = self._buckets
        now = self._clock() * 1000
        bucket = buckets.pop(key, None)
        if bucket is None:
            decision, tokens = take(self.policy, None, now, cost, now)
            if len(buckets) >= self._max_keys:
                del buckets[next(iter(buckets))]
        else:
            decision, tokens = take(self.policy, bucket[0], bucket[1], cost, now)
        buckets[key] = (tokens, now)
        return decision

    async def aclose(self) -> None:
        """Nothing to release; here so that every limiter closes the same way."""

    def __len__(self) -> int:
        """How many buckets are kept."""
        return len(self._buckets)
