"""The typed client (WS-Kit's ``wsClient``, in Python): requests with progress, deadlines and
cancellation, typed handlers, topics joined and left (and joined again after a reconnect,
recovering the events missed meanwhile when asked), a bounded queue while offline,
reconnection with backoff, and a token attached to every attempt. See ``docs/client.md``.
The same client for browsers is one ES module, served with :func:`browser_module`.

::

    from crosswire.client import Client

    async with Client("ws://127.0.0.1:8000/") as client:
        reply = await client.request(Add, {"a": 1, "b": 2})
"""

from __future__ import annotations

from ..errors import JoinRefused
from ..wire.dialect import Position
from .backoff import Reconnect
from .browser import browser_module
from .client import Auth, Authenticated, Client, ClientState, ErrorContext
from .frames import Frame
from .topics import Resync

__all__ = [
    "Auth",
    "Authenticated",
    "Client",
    "ClientState",
    "ErrorContext",
    "Frame",
    "JoinRefused",
    "Position",
    "Reconnect",
    "Resync",
    "browser_module",
]
