"""The token bucket, as values: a policy, a bucket's state, and what taking tokens decides.

No I/O and no clock: the caller passes ``now`` (milliseconds; any clock that moves forward,
a clock that steps back counts as no time passing). A bucket is two numbers, its tokens and
when they were counted: the memory limiter keeps them in a dict; the Redis limiter runs the
same arithmetic in a Lua script (``redis.py``), tested against this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from ..errors import ConfigurationError

__all__ = ["Decision", "Policy", "take"]


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


class Decision(NamedTuple):
    """What taking tokens decided.

    ``remaining`` is the whole tokens left after it. When refused, ``retry_after_ms`` is how
    long until the bucket holds enough, or ``None`` when it never can (the cost is more than
    the capacity). (A named tuple: one is made for every message.)
    """

    allowed: bool
    remaining: int
    retry_after_ms: int | None = None


def take(
    policy: Policy, tokens: float | None, updated_ms: float, cost: int, now_ms: float
) -> tuple[Decision, float]:
    """Refill a bucket holding ``tokens`` as of ``updated_ms`` (``None``: a new, full one) up
    to ``now_ms``, and take ``cost`` tokens if it holds them. Returns the decision and the
    tokens the bucket holds as of ``now_ms`` (unchanged by a refusal)."""
    capacity = policy.capacity
    if tokens is None:
        tokens = float(capacity)
    elif now_ms > updated_ms:
        tokens = min(capacity, tokens + (now_ms - updated_ms) * policy.tokens_per_second / 1000)
    if cost > capacity:
        return Decision(False, int(tokens), None), tokens
    if tokens >= cost:
        tokens -= cost
        return Decision(True, int(tokens)), tokens
    wait = math.ceil((cost - tokens) * 1000 / policy.tokens_per_second)
    return Decision(False, int(tokens), max(1, wait)), tokens
