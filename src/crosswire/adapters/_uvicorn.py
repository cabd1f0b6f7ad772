"""What ``crosswire.start(server="uvicorn")`` adds to uvicorn: an open timeout.

uvicorn arms no timer until it has answered a first request, so a client that sends half a
request and then nothing holds its connection, and a file descriptor, for ever. The HTTP
protocol made here drops such a connection once ``Limits.open_timeout`` runs out, unless
by then a request is being answered or the connection has become a WebSocket (uvicorn then
hands the socket to another protocol).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

__all__ = ["http_protocol"]


def http_protocol(open_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's own HTTP protocol class (httptools or h11), with an open timeout."""
    base: Any = AutoHTTPProtocol

    class OpenTimeoutProtocol(base):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._open_timer = self.loop.call_later(open_timeout, self._open_timed_out)

        def connection_lost(self, exc: Exception | None) -> None:
            self._open_timer.cancel()
            super().connection_lost(exc)

        def _open_timed_out(self) -> None:
            transport = self.transport
            if self.cycle is None and transport.get_protocol() is self:
                transport.close()  # no request came whole, and it is no WebSocket either

    return OpenTimeoutProtocol
