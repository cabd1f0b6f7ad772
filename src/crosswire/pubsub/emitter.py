"""The Emitter: publish to connections of crosswire servers from any process, no server needed.

It writes seed 003's envelope (``serverId`` ``"emitter"``) on seed 003's channels, so it
drives crosswire servers and the seed's own servers alike::

    async with Emitter(RedisBackend("redis://127.0.0.1:6379/0")) as emitter:
        await emitter.to_room("lobby", "news", {"text": "hello"})
        await emitter.to_user("alice", "notification", {"unread": 3})
"""

from __future__ import annotations

from collections.abc import Collection
from types import TracebackType
from typing import Any

from ..errors import BusError
from .backend import Backend
from .envelope import Publication, channel_for, encode_envelope

__all__ = ["EMITTER_ID", "Emitter"]

#: The ``serverId`` of what an Emitter publishes (seed 003's).
EMITTER_ID = "emitter"


class Emitter:
    """Publishes events to clients, users, rooms or everyone, through ``backend``.

    Each method returns once the message is on the bus, and raises
    :class:`~crosswire.BusError` if it was dropped; while the bus is away it waits (wrap it in
    ``asyncio.timeout`` to bound that). ``namespace`` must be the servers' (default ``ws``).
    """

    def __init__(self, backend: Backend, *, namespace: str = "ws") -> None:
        self._backend = backend
        self._namespace = namespace
        self._last_error: BusError | None = None
        backend.bind(_ignore, self._remember)

    async def to_client(self, client_id: str, event: str, data: Any = None) -> None:
        """Send ``event`` with ``data`` to the connection ``client_id``, on any instance."""
        await self._emit(Publication.of_event("client", client_id, event, data))

    async def to_user(self, user_id: str, event: str, data: Any = None) -> None:
        """Send to every connection of ``user_id``, on every instance."""
        await self._emit(Publication.of_event("user", user_id, event, data))

    async def to_room(
        self, room: str, event: str, data: Any = None, *, exclude: Collection[str] = ()
    ) -> None:
        """Send to every member of ``room`` but the client ids in ``exclude``."""
        await self._emit(Publication.of_event("room", room, event, data, exclude=exclude))

    async def broadcast(
        self, event: str, data: Any = None, *, exclude: Collection[str] = ()
    ) -> None:
        """Send to every connection of every instance but the client ids in ``exclude``."""
        await self._emit(Publication.of_event("broadcast", None, event, data, exclude=exclude))

    async def aclose(self) -> None:
        """Close the bus connection."""
        await self._backend.aclose()

    async def __aenter__(self) -> Emitter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _emit(self, pub: Publication) -> None:
        number = self._backend.publish(
            channel_for(self._namespace, pub.kind, pub.target), encode_envelope(EMITTER_ID, pub)
        )
        try:
            # Only this message: concurrent calls each learn the fate of their own.
            await self._backend.flush(through=number)
        except BusError as exc:
            cause, self._last_error = self._last_error, None
            if cause is not None:
                raise BusError(f"{exc}: {cause}") from cause
            raise

    def _remember(self, error: BusError) -> None:
        self._last_error = error


def _ignore(channel: str, message: bytes, more: bool) -> None:
    """An Emitter subscribes nothing; nothing arrives."""
