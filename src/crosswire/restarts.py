"""When a worker that died may be replaced: at once the first time, then after a growing
delay, and not at all once it has died too often (a crash loop).

No I/O: the caller passes the time (``time.monotonic()`` in :mod:`crosswire.workers`, fixed
values in tests).
"""

from __future__ import annotations

from collections import deque

__all__ = ["RestartBudget"]


class RestartBudget:
    """The restarts of one worker (one place in the pool).

    Of the restarts made in the last ``window`` seconds, at most ``limit``; the first of them
    is made at once, each further one waits twice as long as the one before, from
    ``first_delay`` up to ``max_delay`` seconds. A worker that stays up for ``window``
    seconds starts the count again.
    """

    __slots__ = ("_made", "first_delay", "limit", "max_delay", "window")

    def __init__(
        self,
        *,
        limit: int = 5,
        window: float = 60.0,
        first_delay: float = 0.1,
        max_delay: float = 2.0,
    ) -> None:
        self.limit = limit
        self.window = window
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._made: deque[float] = deque()

    def next_delay(self, now: float) -> float | None:
        """The worker died at ``now``: seconds to wait before starting another, or None if
        it may not be restarted (``limit`` restarts in the last ``window`` seconds). A
        delay returned is a restart counted."""
        while self._made and self._made[0] <= now - self.window:
            self._made.popleft()
        recent = len(self._made)
        if recent >= self.limit:
            return None
        delay = 0.0 if recent == 0 else min(self.max_delay, self.first_delay * 2.0 ** (recent - 1))
        self._made.append(now + delay)
        return delay
