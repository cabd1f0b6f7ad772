"""The protocol at its edges, on every server crosswire starts: messages at and past the size
limit, messages larger than the send buffer, and frames no well-behaved client sends
(written by hand from a plain asyncio client, as Autobahn|Testsuite's fuzzing client does).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from websockets.asyncio.client import connect

from crosswire import App, Limits, Message, Peer, define_hooks
from crosswire.server import SERVERS
from tests.rawws import close_frame, masked, open_websocket, server_close
from tests.support import TIMEOUT, Log, recv


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    """Each server crosswire starts itself (their sizes and timeouts are crosswire's)."""
    return str(request.param)


def echo_app(log: Log | None = None, **limits: Any) -> App:
    def message(peer: Peer, msg: Message) -> None:
        peer.send(msg.raw)

    def close(peer: Peer, code: int, reason: str) -> None:
        if log is not None:
            log.add("close", code, reason)

    return App(define_hooks(message=message, close=close), limits=Limits(**limits))


async def test_an_echo_larger_than_the_send_buffer_limit_reaches_a_reading_client(
    start_server: Any, server: str
) -> None:
    """An 8 MiB echo with a 64 KiB ``send_buffer_limit``, then more: the client reads, so it
    gets all of it and stays open (only bytes queued behind the largest write count)."""
    log = Log()
    served = await start_server(
        echo_app(log, max_message_size=16 * 1024 * 1024, send_buffer_limit=64 * 1024), server
    )
    big = os.urandom(8 * 1024 * 1024)
    async with connect(served.url, max_size=None, compression=None) as ws:
        for _ in range(2):
            await ws.send(big)
            assert await asyncio.wait_for(ws.recv(), 4 * TIMEOUT) == big
            await ws.send("after")
            assert await recv(ws) == "after"
    assert (await log.wait_for("close"))[0][1] in (1000, 1006)  # hypercorn: 1006


async def test_a_message_past_the_size_limit_closes_1009_and_ends_the_connection(
    start_server: Any, server: str
) -> None:
    """256 KiB in 64 fragments against a 64 KiB limit (past hypercorn's own bound too): the
    client gets 1009, the server ends the TCP connection after the closing handshake, and the
    close hook reports 1009 at once, not when the client gives up."""
    log = Log()
    served = await start_server(echo_app(log, max_message_size=64 * 1024), server)
    async with connect(served.url) as other:
        ws = await connect(served.url, compression=None, max_size=None, close_timeout=60)
        await ws.send([os.urandom(4096) for _ in range(64)])
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)  # the server ended it
        assert ws.close_code == 1009
        assert (await log.wait_for("close"))[0][1] == 1009
        await other.send("still here")
        assert await recv(other) == "still here"


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_a_message_of_exactly_max_message_size_is_accepted(
    start_server: Any, server: str, compression: str | None
) -> None:
    """The limit is inclusive on every server, compressed or not: ``max_message_size`` bytes
    are echoed, one more closes with 1009."""
    served = await start_server(echo_app(max_message_size=1000), server)
    async with connect(served.url, compression=compression) as ws:
        await ws.send(b"x" * 1000)
        assert await recv(ws) == b"x" * 1000
        await ws.send("é" * 500)  # 1,000 bytes of UTF-8
        assert await recv(ws) == "é" * 500
        await ws.send(b"y" * 1001)
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert ws.close_code == 1009


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10], ids=["rsv1", "rsv2", "rsv3"])
async def test_reserved_bits_without_an_extension_close_1002(
    start_server: Any, server: str, rsv: int
) -> None:
    """A text frame with a reserved bit set, no extension negotiated (Autobahn 3.x): the
    connection fails with 1002 and the frame, and those after it, reach no hook."""
    log = Log()
    served = await start_server(echo_app(log), server)
    reader, writer = await open_websocket(served.url)
    try:
        writer.write(masked(0x81, b"before") + masked(0x81 | rsv, b"bad") + masked(0x81, b"after"))
        code, echoed = await server_close(reader)
        assert code == 1002
        # websockets, uvicorn and hypercorn fail the connection as they parse the read, so
        # the echo of the frame before may not leave; nothing after it ever does.
        assert echoed in ([], [b"before"])
    finally:
        writer.close()
    assert (await log.wait_for("close"))[0][1] == 1002
    async with connect(served.url) as ws:
        await ws.send("still here")
        assert await recv(ws) == "still here"


async def test_a_close_frame_without_a_code_is_answered_without_code_0(
    start_server: Any, server: str
) -> None:
    """An empty close frame (Autobahn 7.3.1) is answered with no code or 1000, never with a
    code 0; the close hook reports 1005 (hypercorn: 1006, it passes no close code)."""
    log = Log()
    served = await start_server(echo_app(log), server)
    reader, writer = await open_websocket(served.url)
    try:
        writer.write(close_frame(None))
        assert (await server_close(reader))[0] in (1000, 1005)
    finally:
        writer.close()
    assert (await log.wait_for("close"))[0][1] == (1006 if server == "hypercorn" else 1005)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2999, 5000])
async def test_a_close_code_no_client_may_send_is_answered_with_1002(
    start_server: Any, server: str, code: int
) -> None:
    """Close codes outside 1000-1003, 1007-1014 and 3000-4999 (Autobahn 7.9.x) fail the
    connection with 1002, and the close hook reports 1002, not the code received."""
    log = Log()
    served = await start_server(echo_app(log), server)
    reader, writer = await open_websocket(served.url)
    try:
        writer.write(close_frame(code))
        assert (await server_close(reader))[0] == 1002
    finally:
        writer.close()
    assert (await log.wait_for("close"))[0][1] == 1002


async def test_an_unmasked_client_frame_closes_1002_except_on_aiohttp(
    start_server: Any, server: str
) -> None:
    """RFC 6455 5.1: a server must fail a client frame that is not masked. aiohttp accepts
    it, and crosswire cannot tell without parsing frames itself (docs/servers.md)."""
    served = await start_server(echo_app(), server)
    reader, writer = await open_websocket(served.url)
    try:
        writer.write(bytes((0x81, 5)) + b"plain")
        writer.write(close_frame(1000))
        code, echoed = await server_close(reader)
    finally:
        writer.close()
    assert (code, echoed) == ((1000, [b"plain"]) if server == "aiohttp" else (1002, []))


async def test_a_message_of_5000_fragments(start_server: Any, server: str) -> None:
    """Past 4,096 fragments websockets closes with 1009 "too many fragments" (its own cap,
    docs/servers.md), and the close hook follows at once; the other servers reassemble the
    message."""
    log = Log()
    served = await start_server(echo_app(log), server)
    async with connect(served.url, compression=None) as ws:
        await ws.send([b"x"] * 5000)
        if server == "websockets":
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            assert ws.close_code == 1009
            assert (await log.wait_for("close"))[0][1] == 1009
        else:
            assert await recv(ws) == b"x" * 5000
