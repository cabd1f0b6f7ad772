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
