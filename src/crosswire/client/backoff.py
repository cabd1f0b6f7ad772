"""When to try reconnecting again: exponential backoff with optional full jitter.

No I/O and no randomness of its own: the caller passes a number in [0, 1) (``random.random()``
in the client, fixed values in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import ConfigurationError

__all__ = ["Reconnect"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Reconnect:
    """How the client reconnects after a connection it did not close is lost.

    The n-th attempt (from 1) waits ``initial_delay * 2**(n-1)``, at most ``max_delay``
    seconds; with ``jitter="full"`` a random part of that (so that many clients dropped at
    once do not come back at once). ``max_attempts`` is how many times in a row the client
    tries again after a failure (3: four tries in all; ``None``: no end); a connection that
    lasts (a second) starts the count again, one that the server ends at once counts as a
    failure. ``enabled=False`` never reconnects.
    """

    enabled: bool = True
    max_attempts: int | None = None
    initial_delay: float = 0.3
    max_delay: float = 10.0
    jitter: Literal["full", "none"] = "full"

    def __post_init__(self) -> None:
        if not 0 < self.initial_delay <= self.max_delay:
            raise ConfigurationError("Reconnect needs 0 < initial_delay <= max_delay")
        if self.max_attempts is not None and self.max_attempts < 0:
            raise ConfigurationError("Reconnect.max_attempts must be >= 0 or None")
        if self.jitter not in ("full", "none"):
            raise ConfigurationError(f"Reconnect.jitter is 'full' or 'none', not {self.jitter!r}")

    def allows(self, attempt: int) -> bool:
        """Whether attempt number ``attempt`` (from 1) may be made."""
        return self.enabled and (self.max_attempts is None or attempt <= self.max_attempts)

    def delay(self, attempt: int, random: float) -> float:
        """Seconds to wait before attempt ``attempt`` (from 1); ``random`` is in [0, 1)."""
        ceiling = min(self.max_delay, self.initial_delay * 2.0 ** min(attempt - 1, 62))
        return ceiling * random if self.jitter == "full" else ceiling
