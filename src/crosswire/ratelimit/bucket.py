"""The token bucket, as values: a policy, a bucket's state, and what taking tokens decides.

No I/O and no clock: the caller passes ``now`` (milliseconds; any clock that moves forward,
a clock that steps back counts as no time passing). The memory limiter keeps buckets in a
dict; the Redis limiter runs the same arithmetic in a Lua script (``redis.py``), tested
against this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigurationError

__all__ = ["Bucket", "Decision", "Policy", "take"]


@dataclass(frozen=True, slots=True)
class Policy:
    """A bucket holds at most ``capacity`` tokens and refills ``tokens_per_second``.

    A full bucket allows a burst of ``capacity`` messages; after that, ``tokens_per_second``
    messages a second. ``prefix`` starts every key, so that limiters with different policies
    can share one Redis.
    """

    capacity: int
    tokens_per_second: float
    prefix: str = "rl:"

    def __post_init__(self) -> None:
        if type(self.capacity) is not int or self.capacity < 1:
            raise ConfigurationError(f"capacity must be a positive int, not {self.capacity!r}")
        if not self.tokens_per_second > 0 or math.isinf(self.tokens_per_second):
            raise ConfigurationError(
                f"tokens_per_second must be a positive number, not {self.tokens_per_second!r}"
            )

    @property
    def ms_to_fill(self) -> int:
        """How long an empty bucket takes to fill: after that, a bucket is as good as new."""
        return math.ceil(self.capacity * 1000 / self.tokens_per_second)


@dataclass(frozen=True, slots=True)
class Decision:
    """What taking tokens decided.

    ``remaining`` is the whole tokens left after it. When refused, ``retry_after_ms`` is how
    long until the bucket holds enough, or ``None`` when it never can (the cost is more than
    the capacity).
    """

    allowed: bool
    remaining: int
    retry_after_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Bucket:
    """A bucket's state: ``tokens`` (fractional) as of ``updated_ms``."""

    tokens: float
    updated_ms: float


def take(
    policy: Policy, bucket: Bucket | None, cost: int, now_ms: float
) -> tuple[Decision, Bucket]:
    """Refill ``bucket`` (``None``: a new, full one) up to ``now_ms`` and take ``cost`` tokens
    if it holds them. Returns the decision and the bucket to keep (unchanged tokens if refused).
    """
    if bucket is None:
        tokens = float(policy.capacity)
    else:
        elapsed = max(0.0, now_ms - bucket.updated_ms)
        tokens = min(policy.capacity, bucket.tokens + elapsed * policy.tokens_per_second / 1000)
    if cost > policy.capacity:
        return Decision(False, int(tokens), None), Bucket(tokens, now_ms)
    if tokens >= cost:
        tokens -= cost
        return Decision(True, int(tokens)), Bucket(tokens, now_ms)
    wait = math.ceil((cost - tokens) * 1000 / policy.tokens_per_second)
    return Decision(False, int(tokens), max(1, wait)), Bucket(tokens, now_ms)
