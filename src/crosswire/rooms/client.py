"""What the rooms layer knows of one connection, and what its callbacks return."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

    from ..peer import Peer

__all__ = ["ClientState", "Handshake", "Identity", "RoomClient"]


class ClientState(StrEnum):
    """Seed 003's client states."""

    UNAUTHORIZED = "unauthorized"
    AUTHENTICATING = "authenticating"
    AUTHENTICATED = "authenticated"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class Identity:
    """What ``authenticate`` returns to accept a client: its user (or None) and metadata."""

    user_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Handshake:
    """What ``handshake`` returns when the client's encryption is set up: sent to the client
    in ``connected`` (both base64)."""

    server_public_key: str
    salt: str


class RoomClient:
    """One connection of the rooms layer (seed 003's ``IWebSocketClient``).

    ``id`` is the peer's id; ``user_id`` and ``metadata`` come from ``authenticate``; ``data``
    is free for the application (and :class:`~crosswire.crypto.Encryption`); ``rooms`` are the
    rooms it is in, ``last_activity`` the loop time of its last frame.
    """

    __slots__ = (
        "_auth_task",
        "_auth_timer",
        "_handlers_running",
        "_reading_paused",
        "connected_at",
        "data",
        "encrypted",
        "last_activity",
        "metadata",
        "peer",
        "salt",
        "server_public_key",
        "state",
        "user_id",
    )

    def __init__(self, peer: Peer, now: float) -> None:
        self.peer = peer
        self.state = ClientState.UNAUTHORIZED
        self.user_id: str | None = None
        self.metadata: Mapping[str, Any] = {}
        self.data: dict[str, Any] = {}
        self.encrypted = False
        self.server_public_key: str | None = None
        self.salt: str | None = None
        self.connected_at = now
        self.last_activity = now
        self._auth_timer: asyncio.TimerHandle | None = None
        #: The authentication (and handshake) running for this client, if any.
        self._auth_task: asyncio.Task[None] | None = None
        self._handlers_running = 0
        self._reading_paused = False

    @property
    def id(self) -> str:
        return self.peer.id

    @property
    def rooms(self) -> frozenset[str]:
        return self.peer.topics

    def __repr__(self) -> str:
        return f"<RoomClient {self.id[:8]} {self.state.value} user={self.user_id!r}>"
