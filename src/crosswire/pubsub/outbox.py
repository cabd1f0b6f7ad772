"""What a bus backend has accepted and not yet put on the bus: the publish queue (bounded, in
publish order), the batch being written, and the :class:`~crosswire.pubsub.backend.Ledger`
that numbers and settles them. No I/O: a backend's publisher takes batches from it and says
how each one ended; what to report goes to the backend's ``fail``.

Shared by :class:`~crosswire.pubsub.RedisBackend` and
:class:`~crosswire.pubsub.RedisClusterBackend`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence

from .backend import BusStats, Ledger

__all__ = ["Item", "Outbox"]

logger = logging.getLogger("crosswire.pubsub")

#: A queued message: (its number in the ledger, channel, message).
Item = tuple[int, str, bytes]


class Outbox:
    """One backend's messages on their way to the bus (see the module docstring).

    ``bus`` names the bus in what is reported (``"Redis"``, ``"the cluster"``).
    """

    def __init__(
        self, max_queue: int, max_batch: int, fail: Callable[[str], None], bus: str
    ) -> None:
        self.max_queue = max_queue
        self._max_batch = max_batch
        self._fail = fail
        self._bus = bus
        #: Numbers every publish, across runs (aclose then start again).
        self.ledger = Ledger()
        self.open()

    def open(self) -> None:
        """Empty, for a run (made anew after a close: maybe in another event loop, and an
        asyncio event belongs to the loop that first waited on it)."""
        self.queue: deque[Item] = deque()
        #: The batch being written, until the bus answered it.
        self.in_flight: list[Item] = []
        #: Set when a message is queued (the publisher waits on it while the queue is empty).
        self.filled = asyncio.Event()
        self._overflowing = False  # the queue is full: publishes are being dropped
        self._overflowed = 0  # how many, since it filled up

    def put(self, channel: str, message: bytes, *, closed: bool) -> int:
        """Queue a message; its number. Dropped and reported (still numbered) when the
        backend is ``closed`` or the queue is full (one report for a run of drops)."""
        number = self.ledger.accept()
        if closed:
            self.ledger.drop(number)
            self._fail("closed: a message published after aclose() was dropped")
        elif len(self.queue) >= self.max_queue:
            self.ledger.drop(number)
            self._overflowed += 1
            if not self._overflowing:
                self._overflowing = True
                self._fail(
                    f"the publish queue is full ({self.max_queue} messages): "
                    f"new messages are dropped until {self._bus} takes some"
                )
        else:
            self.queue.append((number, channel, message))
            self.filled.set()
        return number

    def take(self) -> list[Item]:
        """The next batch (at most ``max_batch``, in order), in flight until :meth:`settle`."""
        count = min(len(self.queue), self._max_batch)
        batch = self.in_flight = [self.queue.popleft() for _ in range(count)]
        if self._overflowing and len(self.queue) < self.max_queue:
            logger.warning(
                "the publish queue has room again; %d messages were dropped while it was full",
                self._overflowed,
            )
            self._overflowing = False
            self._overflowed = 0
        return batch

    def settle(
        self, batch: list[Item], *, dropped: Sequence[int] = (), again: Sequence[Item] = ()
    ) -> bool:
        """``batch`` ended: on the bus, but ``dropped`` (numbers) and ``again`` (items put
        back at the head of the queue, in order, to be sent again). False if :meth:`close`
        settled it first."""
        if self.in_flight is not batch:
            return False
        self.in_flight = []
        if again:
            self.queue.extendleft(reversed(again))
        # Settled: everything before the first message that goes again.
        self.ledger.settle_through(again[0][0] - 1 if again else batch[-1][0], dropped=dropped)
        return True

    def close(self) -> int:
        """Drop what is queued or in flight (the backend is closing: the bus may have got
        some of it); every message accepted so far is settled. How many were dropped."""
        lost = [number for number, _, _ in (*self.in_flight, *self.queue)]
        self.in_flight = []
        self.queue.clear()
        self.ledger.settle_through(self.ledger.published, dropped=lost)
        return len(lost)

    def stats(self, reconnects: int) -> BusStats:
        """Messages published, dropped and queued so far, and ``reconnects``."""
        ledger = self.ledger
        return BusStats(ledger.published, ledger.dropped, ledger.waiting, reconnects)
