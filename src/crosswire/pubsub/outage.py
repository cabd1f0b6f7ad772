"""What a backend's log says about the bus being there or not: sans-I/O, the times are passed
in (the event loop's).

An outage begins with the first failure to reach the bus (at start, or a connection lost):
reported once, as a :class:`~crosswire.BusError` that the Hub logs at ERROR (or gives to its
``on_error``). Each later failed attempt is logged at DEBUG, with a WARNING summary every
:attr:`Outage.SUMMARY_EVERY` seconds while it lasts, and it ends with one INFO line when a
connection is made again. The first connection ever says ``bus reachable at host:port``.
Nothing here names more than the bus and its ``host:port``: never a password.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["Outage"]

logger = logging.getLogger("crosswire.pubsub")


class Outage:
    """Whether the bus ``bus`` (a name: ``"Redis"``) at ``where`` (``host:port``) is reachable,
    as a backend's connections find it; ``report(what, exc)`` reports the start of an outage.
    ``reconnects`` counts the outages that ended."""

    #: Seconds between two WARNING summaries of an outage.
    SUMMARY_EVERY = 60.0

    def __init__(self, bus: str, where: str, report: Callable[[str, BaseException], None]) -> None:
        self.bus = bus
        self.where = where
        self.reconnects = 0
        self._report = report
        self._reached = False  # a connection was made once
        self._since: float | None = None  # when the current outage began
        self._attempts = 0
        self._summary_at = 0.0
        self._dropped_before = 0

    def failed(
        self, now: float, what: str, exc: BaseException, *, queued: int, dropped: int
    ) -> None:
        """An attempt to connect failed, or a connection that mattered was lost; ``what``
        says so if this begins an outage. ``queued`` and ``dropped`` count messages (dropped:
        since the backend was made)."""
        if self._since is None:
            self._since = now
            self._attempts = 1
            self._summary_at = now + self.SUMMARY_EVERY
            self._dropped_before = dropped
            self._report(what, exc)
            return
        self._attempts += 1
        logger.debug(
            "attempt %d to reach %s at %s failed (%s)", self._attempts, self.bus, self.where, exc
        )
        if now >= self._summary_at:
            self._summary_at = now + self.SUMMARY_EVERY
            logger.warning(
                "%s at %s is still not reachable after %.0f s (%d attempts); "
                "%d messages queued, %d dropped",
                *(self.bus, self.where, now - self._since, self._attempts),
                *(queued, dropped - self._dropped_before),
            )

    def connected(self, now: float, *, queued: int, dropped: int) -> None:
        """A connection was made: the first one, or the end of an outage."""
        since, self._since = self._since, None
        if since is None:
            if not self._reached:
                logger.info("bus reachable at %s", self.where)
        else:
            self.reconnects += 1
            lost = dropped - self._dropped_before
            tail = f", {lost} dropped" if lost else ""
            if self._reached:
                logger.info(
                    "reconnected to %s at %s after %.1f s; %d messages were queued%s",
                    *(self.bus, self.where, now - since, queued, tail),
                )
            else:
                logger.info(
                    "bus reachable at %s after %.1f s unreachable; %d messages were queued%s",
                    *(self.where, now - since, queued, tail),
                )
        self._reached = True
