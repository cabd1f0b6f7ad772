"""Write coalescing: what a turn of the event loop writes to a socket leaves in one TCP write.

Every ``send()`` to a socket that is not held is its own system call and its own TCP segment;
on loopback or a virtual machine a segment costs more CPU, on both ends, than the Python that
produced the message. Two cases make many small writes in one turn of the loop:

* a client that pipelines: several of its messages arrive in one read, and each reply would
  leave on its own;
* a burst of publishes: several messages to the same room arrive together, and every member
  would get one segment per message.

So when a server adapter sees more messages of the same read waiting, it opens the Hub's
:class:`WriteBatch` for this turn of the loop before it handles the first of them. The reading
connection's first reply leaves at once (its client gets work); after it the connection's
socket is held (:class:`Cork`, Linux ``TCP_CORK``: the kernel queues what is written) until the
read's last message is handled; or, while the server reads from one connection at a time, every
few messages (see :class:`WriteBatch`). Every socket the Hub's fan-out writes to during the
batch is held from its first write. At the end of the turn (``loop.call_soon``) every held
socket is released, which sends what it queued at once. Nothing waits on a timer: a message
leaves at most one turn of the loop later than it would have. A read with one message, or a
publish outside a batch, is written at once, as before.

Holding a socket costs two ``setsockopt`` calls per batch; a recipient that gets two messages
in the batch saves a segment, which costs more. A fan-out recipient that gets one message in
a batch pays the calls for nothing (its message still leaves in one segment).

What holds a connection's writes is a :class:`Hold`. On websockets and aiohttp it is a
:class:`Cork`: their frames are written through asyncio's transport, and the kernel queues them.
picows writes each frame to the socket itself (a ``send()`` per frame, which ``TCP_CORK`` only
keeps from leaving), so its adapter holds the frames in user space and writes a batch's frames
to the connection in one call (``crosswire.adapters.picows``): a ``send()`` per connection and
batch instead of one per message, and no ``setsockopt``.

``Limits(coalesce_writes=False)`` turns it off. Where there is no ``TCP_CORK`` (systems
other than Linux, sockets that are not TCP) websockets and aiohttp hold nothing and their
writes leave at once; picows holds its frames everywhere.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Protocol

__all__ = ["Cork", "Hold", "WriteBatch"]

_CORK: int | None = getattr(socket, "TCP_CORK", None)
_TCP = socket.IPPROTO_TCP
_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class Hold(Protocol):
    """One connection's writes, which a :class:`WriteBatch` can hold: while ``held``, what is
    written to the connection waits; :meth:`release` sends it."""

    #: Whether writes are being held now.
    held: bool
    #: Messages of the current read queued since the writes were last held (counted by
    #: :class:`WriteBatch` while the server reads from one connection at a time).
    queued: int

    def hold(self) -> None:
        """Hold what is written from now on, until :meth:`release`."""

    def release(self) -> None:
        """Send everything held since :meth:`hold`, and stop holding."""

    def flush(self) -> None:
        """Send everything held so far, and go on holding."""


class Cork:
    """Holds one TCP socket's writes while a batch is open: the kernel queues them
    (``TCP_CORK``). A :class:`Hold`."""

    __slots__ = ("_setsockopt", "held", "queued")

    def __init__(self, sock: Any) -> None:
        # asyncio hands out its TransportSocket wrapper, whose setsockopt is a Python method
        # around the socket's: call the socket's own (twice per batch).
        self._setsockopt = getattr(sock, "_sock", sock).setsockopt
        #: Whether writes are being held now.
        self.held = False
        #: Messages of the current read queued since the socket was last held (counted only
        #: while the server reads from one connection at a time: :class:`WriteBatch`).
        self.queued = 0

    @classmethod
    def of(cls, transport: asyncio.BaseTransport | None, enabled: bool = True) -> Cork | None:
        """A cork for ``transport``'s socket, or None when coalescing is off or impossible
        (no ``TCP_CORK`` on this system, a Unix socket, a transport without a socket)."""
        if not enabled or _CORK is None or transport is None:
            return None
        sock = transport.get_extra_info("socket")
        if sock is None or sock.family not in _TCP_FAMILIES:
            return None
        return cls(sock)

    def hold(self) -> None:
        """Queue what is written from now on, until :meth:`release`."""
        if not self.held:
            self.held = True
            try:  # noqa: SIM105 (contextlib.suppress would cost three Python calls here)
                self._setsockopt(_TCP, _CORK, 1)
            except OSError:  # the connection is gone: nothing to hold
                pass

    def release(self) -> None:
        """Send everything queued since :meth:`hold`, and stop holding."""
        if self.held:
            self.held = False
            try:  # noqa: SIM105 (as in hold)
                self._setsockopt(_TCP, _CORK, 0)
            except OSError:  # the connection is gone: nothing to send
                pass

    def flush(self) -> None:
        """Send everything queued so far, and go on holding."""
        self.release()
        self.hold()


#: While the server reads from one connection at a time, a held read lets its replies go after
#: every this many (see :class:`WriteBatch`).
SOLO_FLUSH = 4
#: ... which it is taken to do once this many batches in a row held the read of one connection.
SOLO_AFTER = 16


class WriteBatch:
    """The sockets held during this turn of the event loop; released together at its end.

    ``held`` is None outside a batch. :meth:`hold` opens the batch (if it is not open) and
    holds a socket in it; writers that only join an open batch (the Hub's fan-out) check
    ``held`` and hold each socket before they write to it.

    ``solo`` says whether the last :data:`SOLO_AFTER` batches that held reads each held the
    read of one connection: the server is then serving one client, which waits for replies
    while the server works through its read. Holding the whole read would make the two take
    turns, so a solo read's replies leave every :data:`SOLO_FLUSH` messages instead, for
    adapters that call :meth:`after_message` for every message while ``solo`` (picows, which
    handles a read's frames in one callback; aiohttp and websockets hand messages to a task per
    connection and gained nothing from it when measured, see docs/performance.md). A single
    batch with one read is no such sign: with several busy clients, a server whose connections
    wake one by one (aiohttp's tasks) has many.
    """

    __slots__ = ("held", "readers", "solo", "solo_run")

    def __init__(self) -> None:
        #: The connections held in the open batch, or None when no batch is open.
        self.held: list[Hold] | None = None
        #: Connections whose read is held in the open batch.
        self.readers = 0
        #: Batches in a row that held the read of one connection, and whether there were
        #: enough of them (a batch holding several reads starts the count again).
        self.solo_run = 0
        self.solo = False

    def open(self) -> None:
        """Open the batch for this turn of the loop, if it is not open."""
        if self.held is None:
            asyncio.get_running_loop().call_soon(self.release)
            self.held = []

    def hold(self, cork: Hold) -> None:
        """Open the batch for this turn of the loop, if needed, and hold ``cork`` in it."""
        if self.held is None:
            self.open()
        if not cork.held:
            cork.hold()
            self.held.append(cork)  # type: ignore[union-attr]

    def after_message(self, cork: Hold, more: bool) -> None:
        """A server adapter handled a message of the connection ``cork`` belongs to; ``more``
        says whether further messages of the same read wait. The first of several is written
        at once (its client gets to work); after it the connection is held, and after the
        read's last message it is released. (Adapters call this only when ``more`` is not
        ``cork.held``, or while ``solo``: otherwise there is nothing to do, and a lone
        message, or a message in the middle of a read, costs nothing.)"""
        if more:
            if not cork.held:
                self.hold(cork)
                self.readers += 1
                cork.queued = 0
            elif self.solo:
                cork.queued += 1
                if cork.queued >= SOLO_FLUSH:
                    cork.queued = 0
                    cork.flush()
        elif cork.held:
            cork.release()

    def release(self) -> None:
        """Close the batch: send what every held socket queued."""
        held, self.held = self.held, None
        readers = self.readers
        if readers == 1:
            self.solo_run += 1
            self.solo = self.solo_run >= SOLO_AFTER
        elif readers:
            self.solo_run = 0
            self.solo = False
        self.readers = 0  # (a batch of the Hub's alone, a burst from the bus, says nothing)
        if held:
            for cork in held:
                cork.release()
