"""Rate-limit buckets in Redis, shared by every instance (``pip install crosswire[redis]``).

Each bucket is a hash (``tokens``, ``updated``) under ``prefix + key``; one Lua script refills
and takes atomically, on Redis's own clock (``TIME``), so instances with skewed clocks agree.
A bucket expires once it would be full again. The arithmetic is ``bucket.take``'s, and the
tests check the two agree.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..errors import ErrorCode, WsError
from .bucket import Decision, Policy

__all__ = ["RedisRateLimiter"]

logger = logging.getLogger("crosswire.ratelimit")

#: KEYS[1] the bucket; ARGV capacity, tokens per second, cost.
#: Returns {allowed (0/1), whole tokens left, retry after ms (-1: never)}.
_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + tonumber(clock[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
if tokens == nil then
  tokens = capacity
else
  local elapsed = math.max(0, now - tonumber(state[2]))
  tokens = math.min(capacity, tokens + elapsed * rate / 1000)
end
local allowed, retry = 0, -1
if cost <= capacity then
  if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
    retry = 0
  else
    retry = math.max(1, math.ceil((cost - tokens) * 1000 / rate))
  end
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'updated', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 1000)
return {allowed, math.floor(tokens), retry}
"""

#: What a lost, refused or slow connection raises.
_LOST = (RedisError, OSError, asyncio.TimeoutError)


class RedisRateLimiter:
    """Token buckets in Redis (see :class:`~crosswire.ratelimit.Policy`), shared by every
    instance that uses the same Redis and ``prefix``.

    ``url`` is a redis-py URL. Each :meth:`consume` is one round trip (``EVALSHA``). When
    Redis cannot answer within ``timeout`` seconds, the message is refused with
    ``UNAVAILABLE`` (retryable), or let through if ``fail_open`` is set; either way it is
    logged. Call :meth:`aclose` when done.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        capacity: int,
        tokens_per_second: float,
        prefix: str = "rl:",
        fail_open: bool = False,
        timeout: float = 1.0,
    ) -> None:
        self.policy = Policy(capacity, tokens_per_second, prefix)
        self._fail_open = fail_open
        self._redis = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry_on_timeout=False
        )
        self._take = self._redis.register_script(_TAKE)
        self._args = (capacity, repr(float(tokens_per_second)))

    async def consume(self, key: str, cost: int) -> Decision:
        """Take ``cost`` tokens from ``key``'s bucket if it holds them (one round trip).
        Raises :class:`~crosswire.WsError` ``UNAVAILABLE`` if Redis does not answer (unless
        ``fail_open``). Safe to cancel."""
        try:
            allowed, remaining, retry = await self._take(
                keys=[self.policy.prefix + key], args=[*self._args, cost]
            )
        except _LOST as exc:
            if self._fail_open:
                logger.warning(
                    "rate limiter: Redis unavailable (%s); letting a message through", exc
                )
                return Decision(True, 0)
            logger.warning("rate limiter: Redis unavailable (%s); refusing a message", exc)
            raise WsError(ErrorCode.UNAVAILABLE, "the rate limiter is unavailable") from exc
        if allowed:
            return Decision(True, int(remaining))
        return Decision(False, int(remaining), None if retry < 0 else int(retry))

    async def aclose(self) -> None:
        """Close the connections to Redis."""
        await self._redis.aclose()
