"""Clients that try to use up a server's resources, on every server crosswire starts.

Each attack comes from a plain asyncio TCP client that writes what it likes (half a request,
pings it never reads the answers to); after each one, another client checks that the server
still serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import pytest
from websockets.asyncio.client import connect

from crosswire import App, Limits, Message, Peer, define_hooks
from crosswire.server import SERVERS
from tests.support import TIMEOUT, Log, recv


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


HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def open_websocket(
    url: str, *, receive_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket opened by hand; ``receive_buffer`` shrinks the socket's receive buffer,
    so that a client that stops reading stops the server's writes quickly."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port_of(url)))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(HANDSHAKE)
    response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert response.startswith(b"HTTP/1.1 101"), response
    return reader, writer


def masked(first: int, payload: bytes) -> bytes:
    """A client frame of under 126 bytes, masked with the key 0 (payload unchanged)."""
    assert len(payload) < 126
    return bytes((first, 0x80 | len(payload))) + b"\0\0\0\0" + payload


#: 125-byte pings, 1,000 to a write.
PINGS = masked(0x89, b"p" * 125) * 1000

#: Servers that answer every ping as they read it: past the send buffer limit they close the
#: client with 1013. aiohttp and hypercorn wait for the socket to drain before each pong, so
#: they stop reading from a client that does not read (TCP pushes back on its pings).
CLOSE_ON_PONGS = ("websockets", "picows", "uvicorn")


async def test_pongs_to_a_client_that_never_reads_are_bounded(
    start_server: Any, server: str
) -> None:
    """80,000 pings (10 MB of pongs, more than the kernel buffers) from a client that never
    reads: the pongs waiting count against ``send_buffer_limit``."""
    log = Log()
    app = App(
        define_hooks(
            message=lambda peer, msg: peer.send(msg.raw),
            close=lambda peer, code, reason: log.add("close", code, reason),
        ),
        limits=Limits(send_buffer_limit=64 * 1024, close_timeout=0.5),
    )
    served = await start_server(app, server)
    _, writer = await open_websocket(served.url, receive_buffer=8192)

    async def flood() -> None:
        for _ in range(80):
            writer.write(PINGS)
            await writer.drain()

    pinging = asyncio.ensure_future(flood())
    try:
        if server in CLOSE_ON_PONGS:
            (closed,) = await log.wait_for("close")
            assert closed[1:] == (1013, "send buffer overflow")
        else:
            done, _ = await asyncio.wait([pinging], timeout=2.0)
            assert not done, "the server kept reading pings it could not answer"
            (peer,) = app.peers.values()
            assert peer.buffered_amount <= 64 * 1024 * 2
        async with connect(served.url) as ws:  # others are served
            await ws.send("hello")
            assert await recv(ws) == "hello"
    finally:
        pinging.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await asyncio.wait_for(pinging, TIMEOUT)
        writer.close()
