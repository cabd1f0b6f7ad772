"""How much asyncio's socket transports read at a time, on connections crosswire serves.

asyncio's selector transport reads with ``sock.recv(256 KiB)``: CPython allocates the whole
256 KiB for every read, then shrinks it to what arrived. glibc's malloc hands out blocks of
128 KiB and more with ``mmap`` until its adaptive threshold rises past them, which happens in
some processes and not in others: in the first kind every read costs ``mmap``, ``mremap`` and
``munmap`` (and a page fault), and a server's CPU per small message can be twice what it is
in the second (``docs/performance.md``, "Reads of 64 KiB"). Reads of :data:`READ_SIZE` come
from the heap whatever glibc's state: the only system call left is ``recv``. A message bigger
than that takes more reads, as on picows (64 KiB) and Node.

The websockets, aiohttp, uvicorn and hypercorn adapters call :func:`small_reads` on each
connection's transport. A transport of another event loop (uvloop's) is left as it is.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["READ_SIZE", "small_reads"]

#: Bytes read per ``recv`` on a connection's socket.
READ_SIZE = 64 * 1024


def small_reads(transport: asyncio.BaseTransport | None) -> None:
    """Read at most :data:`READ_SIZE` bytes at a time on ``transport``, if it is one of
    asyncio's selector transports (their ``max_size``, a class attribute, is the size of
    each ``recv``)."""
    default: Any = getattr(type(transport), "max_size", None)
    if type(default) is int and default > READ_SIZE:
        transport.max_size = READ_SIZE  # type: ignore[union-attr]
