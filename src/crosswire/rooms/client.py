"""What the rooms layer knows of one connection, and what its callbacks return."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..auth import Identity

if TYPE_CHECKING:
    from ..peer import Peer

__all__ = ["ClientState", "Handshake", "Identity", "RoomClient"]


class ClientState(StrEnum):
    """Seed 003's client states."""

    UNAUTHORIZED = "unauthorized"
    AUTHENTICATING = "authenticating"
    AUTHENTICATED = "authenticated"
    DISCONNECTED = "disconnected"


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
    rooms it is in, ``connected_at`` the loop time it opened.
    """

    __slots__ = (
        "connected_at",
        "data",
        "encrypted",
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

    @property
    def id(self) -> str:
        return self.peer.id

    @property
    def rooms(self) -> frozenset[str]:
        return self.peer.topics

    def __repr__(self) -> str:
        return f"<RoomClient {self.id[:8]} {self.state.value} user={self.user_id!r}>"
