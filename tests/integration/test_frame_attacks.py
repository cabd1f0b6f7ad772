"""Frames no client library would send, on every server (issue 17, point 4): control frames
that are fragmented or too long, frame headers that declare far more bytes than the limit
(and than exist), and fragments out of order. Each must fail the connection with the close
code RFC 6455 gives it, promptly, without the server allocating what a header declares, and
the server must keep serving the other connections.

The frames are written with :func:`tests.rawws.masked` (websockets' ``Frame.serialize``
refuses to write invalid ones); the server's answer is read with websockets' sans-I/O client
(:class:`tests.support.RawClient`).
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import tracemalloc
import weakref
from typing import Any

import pytest
from websockets.asyncio.client import connect

from crosswire import App, Limits, Message, Peer, define_hooks
from crosswire.adapters import _hypercorn
from tests.rawws import masked
from tests.support import TIMEOUT, Log, RawClient, closed_with, eventually, recv

#: The limit the servers run with in these tests.
LIMIT = 64 * 1024


def echo_app(log: Log, max_message_size: int = LIMIT) -> App:
    def message(peer: Peer, msg: Message) -> None:
        log.add("message", msg.raw)
        peer.send(msg.raw)

    def close(peer: Peer, code: int, reason: str) -> None:
        log.add("close", code)

    return App(
        define_hooks(message=message, close=close),
        limits=Limits(max_message_size=max_message_size),
    )


def declaring(length: int, sent: bytes = b"abc", first: int = 0x81) -> bytes:
    """A masked client frame header that declares ``length`` bytes of payload (64-bit length,
    mask key 0), followed by only ``sent``."""
    return bytes((first, 0x80 | 127)) + length.to_bytes(8, "big") + b"\0\0\0\0" + sent


async def attack(served_url: str, data: bytes) -> tuple[int | None, list[str | bytes]]:
    """Send ``data`` on a fresh connection after one good message (echoed); the server's
    close code, and what it echoed after the good message."""
    bad = await RawClient.connect(served_url)
    try:
        bad.send_raw(masked(0x81, b"before"))
        assert await bad.messages(1) == ["before"]
        bad.send_raw(data)
        return await bad.close_code(), bad._inbox
    finally:
        bad.close()


async def still_serving(url: str) -> None:
    async with connect(url) as ws:
        await ws.send("still here")
        assert await recv(ws) == "still here"


CONTROL = {
    "ping-without-fin": masked(0x09, b"ping"),
    "pong-without-fin": masked(0x0A, b"pong"),
    "close-without-fin": masked(0x08, (1000).to_bytes(2, "big")),
    "ping-of-126-bytes": masked(0x89, b"p" * 126),
    "close-of-126-bytes": masked(0x88, (1000).to_bytes(2, "big") + b"r" * 124),
}


@pytest.mark.parametrize("frame", CONTROL.values(), ids=CONTROL.keys())
async def test_a_fragmented_or_long_control_frame_closes_1002(
    start_server: Any, kind: str, frame: bytes
) -> None:
    """RFC 6455 5.5: control frames must not be fragmented and carry at most 125 bytes."""
    log = Log()
    served = await start_server(echo_app(log), kind)
    code, echoed = await attack(served.url, frame)
    assert (code, echoed) == (1002, [])
    assert (await log.wait_for("close"))[0][1] == 1002
    await still_serving(served.url)


ORDER = {
    "continuation-first": masked(0x80, b"orphan"),
    "continuation-first-not-fin": masked(0x00, b"orphan"),
    "text-inside-a-text": masked(0x01, b"half") + masked(0x81, b"new"),
    "binary-inside-a-text": masked(0x01, b"half") + masked(0x82, b"new"),
    "text-inside-a-binary": masked(0x02, b"half") + masked(0x81, b"new"),
}


@pytest.mark.parametrize("frames", ORDER.values(), ids=ORDER.keys())
async def test_fragments_out_of_order_close_1002(
    start_server: Any, kind: str, frames: bytes
) -> None:
    """RFC 6455 5.4: a continuation with no message started, or a new data frame before the
    last fragment of a message, fails the connection; no hook sees a message of it."""
    log = Log()
    served = await start_server(echo_app(log), kind)
    code, echoed = await attack(served.url, frames)
    assert (code, echoed) == (1002, [])
    assert (await log.wait_for("close"))[0][1] == 1002
    await still_serving(served.url)


#: The limit of the servers that are sent frame headers declaring more: large enough that
#: allocating it would show in the peak of traced memory.
BIG_LIMIT = 8 * 1024 * 1024

DECLARED = {
    "2**62": 2**62,
    "2**63-1": 2**63 - 1,
    "limit+1": BIG_LIMIT + 1,
    "2**63": 2**63,  # the most significant bit must be 0 (RFC 6455 5.2)
    "2**64-1": 2**64 - 1,
}


@pytest.mark.parametrize("length", DECLARED.values(), ids=DECLARED.keys())
async def test_a_declared_length_past_the_limit_closes_1009_at_once(
    start_server: Any, kind: str, length: int
) -> None:
    """A header declaring more than ``max_message_size`` bytes, then 16 bytes: 1009 as soon as
    the header is read, without the declared size allocated; picows and hypercorn answer a
    length with its most significant bit set with 1002 (RFC 6455 5.2 forbids it).

    Under a uvicorn the user runs (here the Starlette app), a frame within uvicorn's own
    ``ws_max_size`` (16 MiB by default) is read whole before crosswire sees it: uvicorn
    waits for the declared bytes, and crosswire closes with 1009 once they are there
    (docs/servers.md)."""
    log = Log()
    served = await start_server(echo_app(log, BIG_LIMIT), kind)
    expected = 1002 if length >> 63 and kind in ("picows", "hypercorn") else 1009
    waits = kind == "starlette" and length == BIG_LIMIT + 1  # for the declared bytes
    bad = await RawClient.connect(served.url)
    bad.send_raw(masked(0x81, b"before"))
    assert await bad.messages(1) == ["before"]
    tracemalloc.start()
    closing = None
    try:
        bad.send_raw(declaring(length, b"a" * 16))
        started = time.monotonic()
        closing = asyncio.ensure_future(bad.close_code())
        if waits:
            done, _ = await asyncio.wait({closing}, timeout=0.5)
            assert not done  # uvicorn waits for the rest of the frame
            peak = tracemalloc.get_traced_memory()[1]
            bad.send_raw(b"a" * (length - 16))
            started = time.monotonic()
        code = await closing
        took = time.monotonic() - started
        if not waits:
            peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        if closing is not None:
            closing.cancel()
        bad.close()
    assert (code, bad._inbox) == (expected, [])
    assert took < TIMEOUT / 2  # at once: not after a ping timeout
    assert peak < BIG_LIMIT // 2, f"{peak:,} bytes allocated"
    assert (await log.wait_for("close"))[0][1] == expected
    await still_serving(served.url)


async def test_a_compressed_frame_past_the_limit_is_refused_even_if_it_inflates_within(
    start_server: Any, kind: str
) -> None:
    """Random bytes of exactly ``max_message_size`` grow under permessage-deflate: the frame
    is refused with 1009 where the server's bound applies to frames as they arrive
    (websockets, aiohttp, uvicorn, and crosswire's hypercorn stream, to match). picows
    negotiates no compression, and the Starlette app's uvicorn has its own, larger bound:
    there the message is echoed (docs/servers.md)."""
    served = await start_server(echo_app(Log(), 100_000), kind)
    data = os.urandom(100_000)
    async with connect(served.url, compression="deflate", max_size=None) as ws:
        await ws.send(data)
        if kind in ("picows", "starlette"):
            assert await recv(ws) == data
        else:
            assert (await closed_with(ws))[0] == 1009


async def test_on_hypercorn_messages_after_one_too_big_do_not_hold_the_connection(
    start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fragmented message past the limit (each fragment within it), then more messages
    than hypercorn queues for the application, in one write: 1009, and the server lets go of
    the connection. The application was told the connection ended and stops receiving, so
    the messages after it are dropped, not queued (hypercorn would wait on its full queue
    for ever, keeping the connection and what it queued)."""
    streams: list[weakref.ref[Any]] = []
    made = _hypercorn.WSStream.__init__

    def recording(self: Any, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        streams.append(weakref.ref(self))

    monkeypatch.setattr(_hypercorn.WSStream, "__init__", recording)
    log = Log()
    served = await start_server(echo_app(log), "hypercorn")
    bad = await RawClient.connect(served.url)
    part = b"x" * (LIMIT // 2 + 1)  # three fragments: past the limit from the second
    bad.send_raw(
        masked(0x01, part) + masked(0x00, part) + masked(0x80, part) + masked(0x81, b"next") * 15
    )
    try:
        assert await bad.close_code() == 1009
    finally:
        bad.close()
    await log.wait_for("close")
    assert "message" not in [e[0] for e in log.events]

    def released() -> bool:
        gc.collect()
        return all(ref() is None for ref in streams)

    await eventually(released)
    async with connect(served.url) as ws:  # the server carries on
        await ws.send("still here")
        assert await recv(ws) == "still here"
