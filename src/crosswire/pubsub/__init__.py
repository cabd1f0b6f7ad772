"""Pub/sub: the :class:`Hub` (local subscriptions, fan-out, addressing) over a
:class:`Backend` that moves bytes between processes, and the :class:`Emitter` that publishes
from processes without a server.

Backends: none (this process only), :class:`MemoryBackend` (several Apps of one process on a
:class:`MemoryBus`), :class:`RedisBackend` and :class:`RedisClusterBackend` (``crosswire[redis]``;
imported on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .backend import Backend, BusStats
from .emitter import Emitter
from .envelope import Publication
from .history import History, HistoryEntry, MemoryHistory, Position, Recovery
from .hub import Hub, Transform
from .memory import MemoryBackend, MemoryBus

if TYPE_CHECKING:
    from .redis import RedisBackend
    from .redis_cluster import RedisClusterBackend

__all__ = [
    "Backend",
    "BusStats",
    "Emitter",
    "History",
    "HistoryEntry",
    "Hub",
    "MemoryBackend",
    "MemoryBus",
    "MemoryHistory",
    "Position",
    "Publication",
    "Recovery",
    "RedisBackend",
    "RedisClusterBackend",
    "Transform",
]


def __getattr__(name: str) -> Any:
    if name == "RedisBackend":  # needs the redis extra: imported only when asked for
        from .redis import RedisBackend

        return RedisBackend
    if name == "RedisClusterBackend":
        from .redis_cluster import RedisClusterBackend

        return RedisClusterBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
