"""Write coalescing: the replies to the messages of one socket read leave in one TCP write.

A client that pipelines (several messages in flight) often has several of them arrive in one
read. Without coalescing, every reply is its own ``send()`` system call and its own TCP
segment, and on loopback or a virtual machine a segment costs more CPU than the Python that
produced the reply. An adapter that knows more messages of the same read are waiting
:meth:`Cork.hold`\\s the socket (Linux ``TCP_CORK``: the kernel queues what is written) and
:meth:`Cork.release`\\s it after the last one, which sends everything queued at once.

Nothing waits on a timer: the socket is held only while the server handles messages it has
already read, so a reply leaves at most one read's worth of handling later than it would
have. Replies sent later (from ``async`` handlers that suspend, timers, other connections) are
not held. ``Limits(coalesce_writes=False)`` turns it off; on systems without ``TCP_CORK``, and
on sockets that are not TCP, it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

__all__ = ["Cork"]

_CORK: int | None = getattr(socket, "TCP_CORK", None)
_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class Cork:
    """Holds one TCP socket's writes while a batch of messages is handled."""

    __slots__ = ("_setsockopt", "held")

    def __init__(self, sock: Any) -> None:
        self._setsockopt = sock.setsockopt
        #: Whether writes are being held now.
        self.held = False

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
            with contextlib.suppress(OSError):  # the connection is gone: nothing to hold
                self._setsockopt(socket.IPPROTO_TCP, _CORK, 1)

    def release(self) -> None:
        """Send everything queued since :meth:`hold`, and stop holding."""
        if self.held:
            self.held = False
            with contextlib.suppress(OSError):
                self._setsockopt(socket.IPPROTO_TCP, _CORK, 0)
