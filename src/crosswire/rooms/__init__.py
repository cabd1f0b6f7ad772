"""The rooms layer: seed 003's multi-instance WebSocket helper on crosswire.

:class:`RoomServer` serves the events dialect (``{"event", "data", "id"?}``) with in-band
authentication, rooms, users, heartbeat and per-client encryption; with a Redis-backed
:class:`~crosswire.Hub` its rooms, users and clients span every instance, and an
:class:`~crosswire.Emitter` reaches them from any process.
"""

from .client import ClientState, Handshake, Identity, RoomClient
from .server import DEFAULT_ROOMS, RoomServer

__all__ = ["DEFAULT_ROOMS", "ClientState", "Handshake", "Identity", "RoomClient", "RoomServer"]
