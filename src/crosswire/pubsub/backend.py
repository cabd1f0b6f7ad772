"""The Backend protocol: what the Hub needs from a bus between processes. It moves bytes.

A backend knows channels and messages, never peers, rooms or dialects: the Hub above it owns
local subscriptions and fan-out, and subscribes a channel only while some local peer wants
it. The contract, which ``tests/contract/test_backends.py`` runs against every backend:

* ``bind`` is called once, before anything else, with the function that takes each message
  (``deliver(channel, message, more)``, called in the event loop, never concurrently) and the
  one that takes errors (``report(BusError)``). ``more`` is a hint: True when the backend
  already holds further messages that it delivers right after this one (the Hub then holds
  its writes for the burst, see :mod:`crosswire.cork`); False when it does not know.
* ``subscribe``/``unsubscribe`` are idempotent and do not block: they say which channels are
  wanted, and the backend brings the bus in line in the background, again after every
  reconnect.
* ``start()`` makes the backend's connections now (the servers call it as they start, through
  ``App.startup()``): it returns once the bus answered or refused (or after a few seconds
  without an answer), and never raises for a bus that is not there: that is reported, and the
  backend keeps trying. Idempotent, and optional: the first ``subscribe`` or ``publish``
  starts the backend too.
* ``publish`` does not block either: the message joins a bounded queue, sent in order, and
  ``publish`` returns its number (increasing by one with each publish). A message published
  on a channel this backend subscribes comes back to it (the Hub drops its own by
  ``serverId``). Delivery is at most once; what is lost is reported, never silent: counted in
  ``stats().dropped``, and reported (a run of drops for one reason, such as a full queue, may
  be reported once).
* ``stats()`` counts what happened since the backend was made (:class:`BusStats`).
* ``flush()`` waits until what was published before it is on the bus and what was subscribed
  before it is in effect; it raises :class:`~crosswire.BusError` if a message published since
  the previous flush was dropped. ``flush(through=n)`` waits for the messages up to number
  ``n`` and raises only if message ``n`` was dropped. Safe to cancel.
* ``aclose()`` stops the background work and closes connections; it is idempotent and
  bounded in time. Messages not yet on the bus then are dropped and reported; afterwards
  ``publish`` drops and reports, until ``start()`` opens the backend again, in the same event
  loop or another (an App's lifespan that restarts: ``with TestClient(app):`` blocks).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import NamedTuple, Protocol, runtime_checkable

from ..errors import BusError

__all__ = ["Backend", "BusStats", "Deliver", "Ledger", "Report"]

#: Takes one message from the bus: ``(channel, message, more)``, ``more`` saying whether
#: others are ready to follow at once.
Deliver = Callable[[str, bytes, bool], None]
#: Takes an error of the bus.
Report = Callable[[BusError], None]


class BusStats(NamedTuple):
    """What a backend did since it was made."""

    #: Messages published (accepted by ``publish``).
    published: int
    #: Of those, how many were dropped (a full queue, a closed backend, a connection lost
    #: while they were being written).
    dropped: int
    #: Of those, how many wait to go on the bus now.
    queued: int
    #: How many times the bus came back after it was lost or could not be reached (a
    #: connection the bus closed while idle and that was made again at once is not counted).
    reconnects: int


@runtime_checkable
class Backend(Protocol):
    """A bus between processes; see the module docstring for the contract."""

    def bind(self, deliver: Deliver, report: Report) -> None: ...

    async def start(self) -> None: ...

    def subscribe(self, channel: str) -> None: ...

    def unsubscribe(self, channel: str) -> None: ...

    def publish(self, channel: str, message: bytes) -> int: ...

    async def flush(self, *, through: int | None = None) -> None: ...

    async def aclose(self) -> None: ...

    def stats(self) -> BusStats: ...


class Ledger:
    """Numbers a backend's publishes, so that ``flush()`` can wait for them and say what was
    dropped. Messages are numbered from 1 in publish order; a backend settles them (sent to
    the bus, or dropped) in order with :meth:`settle_through`, or drops one at once with
    :meth:`drop`. The numbers of dropped messages are kept (the last :data:`KEEP` of them),
    so that a caller can ask about its own message."""

    #: Dropped message numbers remembered; older ones count as dropped when asked about.
    KEEP = 10_000

    __slots__ = (
        "_ahead",
        "_dropped",
        "_flushed",
        "_forgotten",
        "_last_dropped",
        "_waiters",
        "dropped",
        "published",
        "settled",
    )

    def __init__(self) -> None:
        self.published = 0  #: number of the last message accepted
        self.settled = 0  #: every message up to this number is settled
        self.dropped = 0  #: how many were dropped, in all
        self._ahead: set[int] = set()  # dropped at once while older ones were still queued
        self._dropped: dict[int, None] = {}  # numbers of dropped messages, oldest first
        self._forgotten = 0  # dropped numbers up to this one are no longer in _dropped
        self._last_dropped = 0
        self._flushed = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def waiting(self) -> int:
        """How many accepted messages are not settled yet (neither on the bus nor dropped)."""
        return self.published - self.settled - len(self._ahead)

    def accept(self) -> int:
        """Number the next message."""
        self.published += 1
        return self.published

    def settle_through(self, number: int, *, dropped: Iterable[int] = ()) -> None:
        """Every message up to ``number`` is settled; those numbered in ``dropped`` (newly
        settled ones) were lost."""
        for lost in dropped:
            self._record(lost)
        settled = max(self.settled, number)
        while settled + 1 in self._ahead:
            self._ahead.discard(settled + 1)
            settled += 1
        self.settled = settled
        self.wake()

    def drop(self, number: int) -> None:
        """Message ``number`` was dropped before it was queued."""
        self._record(number)
        if number == self.settled + 1:
            self.settle_through(number)
        else:
            self._ahead.add(number)

    def was_dropped(self, number: int) -> bool:
        """Whether message ``number`` (settled) was dropped."""
        return number in self._dropped or number <= self._forgotten

    def _record(self, number: int) -> None:
        self.dropped += 1
        self._last_dropped = max(self._last_dropped, number)
        self._dropped[number] = None
        if len(self._dropped) > self.KEEP:
            oldest = next(iter(self._dropped))
            del self._dropped[oldest]
            self._forgotten = max(self._forgotten, oldest)

    def wake(self) -> None:
        """Something changed: waiters check their condition again."""
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, checked after each :meth:`wake`. Safe to cancel."""
        while not condition():
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut

    async def flush(
        self, ready: Callable[[], bool] = lambda: True, *, through: int | None = None
    ) -> None:
        """Wait until every message published so far is settled and ``ready()`` holds; raise
        :class:`BusError` if one published since the previous flush was dropped.

        With ``through``, wait for the messages up to that number only, and raise only if
        message ``through`` itself was dropped (what one publisher asks about its own
        message, whatever others publish meanwhile).
        """
        if through is not None:
            await self.wait_until(lambda: self.settled >= through and ready())
            if self.was_dropped(through):
                raise BusError(f"the message was dropped ({self.dropped} dropped in all)")
            return
        target = self.published
        since = self._flushed
        await self.wait_until(lambda: self.settled >= target and ready())
        self._flushed = max(self._flushed, target)
        if self._last_dropped > since:
            raise BusError(
                f"messages published before this flush were dropped ({self.dropped} in all)"
            )
