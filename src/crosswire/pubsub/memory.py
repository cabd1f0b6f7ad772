"""The in-memory bus: several Hubs of one process share channels, as they would on Redis.

One process with one App needs no bus at all (``Hub()``). A :class:`MemoryBus` joins several
Apps of one process (two servers on two ports, tests of cluster behaviour) with the same
semantics as Redis: delivery is asynchronous (on a later turn of the event loop), in publish
order, and a publisher subscribed to its own channel receives its own messages.
"""

from __future__ import annotations

import asyncio

from ..errors import BusError
from .backend import BusStats, Deliver, Ledger, Report

__all__ = ["MemoryBackend", "MemoryBus"]


class MemoryBus:
    """Channels shared by the :class:`MemoryBackend` instances built on it."""

    __slots__ = ("_channels",)

    def __init__(self) -> None:
        self._channels: dict[str, dict[MemoryBackend, None]] = {}

    def subscribers(self, channel: str) -> int:
        """How many backends subscribe ``channel`` (``PUBSUB NUMSUB`` on Redis)."""
        return len(self._channels.get(channel, ()))

    def channels(self) -> list[str]:
        """Channels with at least one subscriber (``PUBSUB CHANNELS``)."""
        return list(self._channels)

    def _join(self, channel: str, backend: MemoryBackend) -> None:
        self._channels.setdefault(channel, {})[backend] = None

    def _leave(self, channel: str, backend: MemoryBackend) -> None:
        members = self._channels.get(channel)
        if members is not None:
            members.pop(backend, None)
            if not members:
                del self._channels[channel]

    def _carry(self, channel: str, message: bytes) -> None:
        for backend in tuple(self._channels.get(channel, ())):
            backend._receive(channel, message)


class MemoryBackend:
    """A :class:`~crosswire.pubsub.Backend` on a :class:`MemoryBus`.

    ``max_queue`` bounds the messages published and not yet carried (they are carried on the
    next turn of the event loop); past it, publishes are dropped and reported.
    """

    def __init__(self, bus: MemoryBus, *, max_queue: int = 100_000) -> None:
        self._bus = bus
        self._max_queue = max_queue
        self._channels: set[str] = set()
        self._deliver: Deliver | None = None
        self._report: Report | None = None
        self._ledger = Ledger()
        self._closed = False

    def bind(self, deliver: Deliver, report: Report) -> None:
        self._deliver = deliver
        self._report = report

    async def start(self) -> None:
        """Nothing to connect: the bus is in this process. After :meth:`aclose`, opens the
        backend again."""
        self._closed = False

    def subscribe(self, channel: str) -> None:
        if not self._closed and channel not in self._channels:
            self._channels.add(channel)
            self._bus._join(channel, self)

    def unsubscribe(self, channel: str) -> None:
        if channel in self._channels:
            self._channels.discard(channel)
            self._bus._leave(channel, self)

    def publish(self, channel: str, message: bytes) -> int:
        ledger = self._ledger
        number = ledger.accept()
        if self._closed or number - ledger.settled > self._max_queue:
            ledger.drop(number)
            self._fail(BusError("memory bus: closed or queue full; a message was dropped"))
            return number
        asyncio.get_running_loop().call_soon(self._carry, number, channel, message)
        return number

    async def flush(self, *, through: int | None = None) -> None:
        await self._ledger.flush(through=through)

    async def aclose(self) -> None:
        self._closed = True
        for channel in list(self._channels):
            self.unsubscribe(channel)

    def stats(self) -> BusStats:
        """Messages published, dropped and not carried yet; no reconnects (no connection)."""
        ledger = self._ledger
        return BusStats(ledger.published, ledger.dropped, ledger.waiting, 0)

    def _carry(self, number: int, channel: str, message: bytes) -> None:
        self._ledger.settle_through(number)
        self._bus._carry(channel, message)

    def _receive(self, channel: str, message: bytes) -> None:
        if self._deliver is not None:
            self._deliver(channel, message, False)

    def _fail(self, error: BusError) -> None:
        if self._report is not None:
            self._report(error)
