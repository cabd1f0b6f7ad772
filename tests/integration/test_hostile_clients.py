"""Clients that try to use up a server's resources, on every server crosswire starts.

Each attack comes from a plain asyncio TCP client that writes what it likes (half a request,
pings it never reads the answers to); after each one, another client checks that the server
still serves.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect

from crosswire import App, Limits, Message, Peer, define_hooks
from crosswire.server import SERVERS
from tests.support import TIMEOUT, recv


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    """Each server crosswire starts itself (their timeouts and sizes are crosswire's)."""
    return str(request.param)


def echo_app(**limits: Any) -> App:
    def message(peer: Peer, msg: Message) -> None:
        peer.send(msg.raw)

    return App(define_hooks(message=message), limits=Limits(**limits))


def port_of(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


async def dropped(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes this connection (reads until the end, at most TIMEOUT)."""
    try:
        while await asyncio.wait_for(reader.read(65536), TIMEOUT):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return False
    return True


async def test_half_finished_handshakes_are_dropped_after_the_open_timeout(
    start_server: Any, server: str
) -> None:
    """A request line and one header, then silence: every server drops the connection once
    ``Limits.open_timeout`` runs out, and other clients are served all along."""
    served = await start_server(echo_app(open_timeout=0.5), server)
    port = port_of(served.url)
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    try:
        for _, writer in streams:
            writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        async with connect(served.url) as ws:  # served while they hang
            await ws.send("hello")
            assert await recv(ws) == "hello"
        results = await asyncio.gather(*(dropped(reader) for reader, _ in streams))
        assert results == [True] * len(streams)
    finally:
        for _, writer in streams:
            writer.close()
    async with connect(served.url) as ws:
        await ws.send("still here")
        assert await recv(ws) == "still here"
