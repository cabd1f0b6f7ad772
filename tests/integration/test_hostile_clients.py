"""Clients that try to use up a server's resources, on every server crosswire starts.

Each attack comes from a plain asyncio TCP client that writes what it likes (half a request,
pings it never reads the answers to); after each one, another client checks that the server
still serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import sys
import zlib
from asyncio import selector_events
from typing import Any

import orjson
import pytest
from aiofastnet.selector_transport import SelectorSocketTransport  # type: ignore[import-not-found]  # (picows')
from websockets.asyncio.client import connect

from crosswire import App, Limits, Message, Peer, define_hooks
from crosswire.http import Request
from crosswire.server import SERVERS
from tests.rawws import masked, open_websocket, port_of, server_close
from tests.support import ROOT, TIMEOUT, Log, eventually, recv


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    """Each server crosswire starts itself (their timeouts and sizes are crosswire's)."""
    return str(request.param)


def echo_app(**limits: Any) -> App:
    def message(peer: Peer, msg: Message) -> None:
        peer.send(msg.raw)

    return App(define_hooks(message=message), limits=Limits(**limits))


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
    loop = asyncio.get_running_loop()
    began = loop.time()
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
    try:
        for _, writer in streams:
            writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        async with connect(served.url) as ws:  # served while they hang
            await ws.send("hello")
            assert await recv(ws) == "hello"
        results = await asyncio.gather(*(dropped(reader) for reader, _ in streams))
        assert results == [True] * len(streams)
        # Dropped on crosswire's timeout, not on a library's own (picows and hypercorn drop
        # half-sent requests after 5 s by themselves, websockets after 10 s).
        assert loop.time() - began < 3.5
    finally:
        for _, writer in streams:
            writer.close()
    async with connect(served.url) as ws:
        await ws.send("still here")
        assert await recv(ws) == "still here"


async def test_on_uvicorn_an_open_websocket_keeps_no_http_protocol(start_server: Any) -> None:
    """The open timeout's timer is cancelled when the connection becomes a WebSocket: it
    does not keep uvicorn's HTTP protocol (the request's headers, the parser) alive for
    ``open_timeout`` after every handshake."""
    served = await start_server(echo_app(open_timeout=60), "uvicorn")
    clients = [await connect(served.url) for _ in range(5)]
    try:
        for ws in clients:
            await ws.send("hi")
            assert await recv(ws) == "hi"
        gc.collect()
        alive = [o for o in gc.get_objects() if type(o).__name__ == "OpenTimeoutProtocol"]
        assert alive == []
    finally:
        for ws in clients:
            await ws.close()


async def test_an_open_connection_keeps_no_handshake_headers(start_server: Any, kind: str) -> None:
    """On every server, once a connection is open nothing keeps the handshake's request with
    the headers only the handshake reads (``peer.request`` keeps the rest): the adapter's
    coroutine or listener lives as long as the connection."""

    def handshakes() -> list[Request]:
        gc.collect()
        requests = [o for o in gc.get_objects() if type(o) is Request]
        return [r for r in requests if "sec-websocket-key" in r.headers]

    before = {id(r) for r in handshakes()}  # (whatever earlier tests left)
    app = echo_app()
    served = await start_server(app, kind)
    clients = [await connect(served.url) for _ in range(3)]
    try:
        for ws in clients:
            await ws.send("hi")
            assert await recv(ws) == "hi"
        assert len(app.peers) == 3
        assert [r for r in handshakes() if id(r) not in before] == []
    finally:
        for ws in clients:
            await ws.close()


#: In a fresh interpreter: 60 connections to crosswire on hypercorn, opened at once (every
#: stream made before any gets its first frame), then one echo each; prints how many of
#: hypercorn's WebSocket streams have a ``__dict__`` of their own, before and after.
OWN_DICTS = """
import asyncio, gc, json
from websockets.asyncio.client import connect
import crosswire
from crosswire import App, define_hooks
from hypercorn.protocol.ws_stream import WSStream

def own_dicts():
    streams = [o for o in gc.get_objects() if isinstance(o, WSStream)]
    return len(streams), sum(
        any(type(r) is dict and "app_put" in r for r in gc.get_referents(s)) for s in streams
    )

async def main():
    app = App(define_hooks(message=lambda peer, msg: peer.send(msg.raw)))
    server = await crosswire.start(app, port=0, server="hypercorn")
    clients = await asyncio.gather(*(connect(server.url) for _ in range(60)))
    opened = own_dicts()
    for ws in clients:
        await ws.send("hi")
        assert await ws.recv() == "hi"
    echoed = own_dicts()
    for ws in clients:
        await ws.close()
    await server.aclose()
    print(json.dumps({"opened": opened, "echoed": echoed}))

asyncio.run(main())
"""


async def test_on_hypercorn_a_websocket_stream_keeps_no_dict_of_its_own() -> None:
    """crosswire's hypercorn stream sets its own attributes with hypercorn's, when it is made:
    CPython 3.11 then keeps them all without a dict per instance (0.8 KiB per connection).
    An attribute first set later, after the first few dozen streams were made, gives every
    stream a dict of its own. In a fresh interpreter, where no stream came before."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWN_DICTS, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    counts = orjson.loads(out.splitlines()[-1])
    assert counts == {"opened": [60, 0], "echoed": [60, 0]}


#: The socket transports under the servers: asyncio's, and aiofastnet's (picows').
SOCKET_TRANSPORTS: tuple[type, ...] = (
    selector_events._SelectorSocketTransport,  # type: ignore[attr-defined]
    SelectorSocketTransport,
)


async def test_a_client_that_never_reads_is_dropped_after_its_1013(
    start_server: Any, server: str
) -> None:
    """A client that never reads passes the send buffer limit: the peer is closed with 1013,
    and once ``close_timeout`` has passed without its close frame, the server drops the
    connection, although it still has bytes for a client that will not take them."""
    log = Log()
    chunk = os.urandom(64 * 1024)  # (incompressible)

    def message(peer: Peer, msg: Message) -> None:
        for _ in range(400):  # 25 MB: more than the kernel buffers on both sides
            if not peer.send(chunk):
                break

    app = App(
        define_hooks(message=message, close=lambda peer, code, reason: log.add("close", code)),
        limits=Limits(send_buffer_limit=256 * 1024, close_timeout=0.5),
    )
    served = await start_server(app, server)
    port = port_of(served.url)
    _, writer = await open_websocket(served.url, receive_buffer=8192)
    try:
        writer.write(masked(0x81, b"flood"))  # and never read again
        (closed,) = await log.wait_for("close")
        assert closed[1] == 1013

        def server_side() -> list[Any]:
            return [
                t
                for t in gc.get_objects()
                if type(t) in SOCKET_TRANSPORTS  # (type(): isinstance fails on dead proxies)
                and (t.get_extra_info("sockname") or ("", 0))[1:2] == (port,)
                and (t.get_extra_info("peername") or ("", 0))[1:2]
                == writer.get_extra_info("sockname")[1:2]
            ]

        assert server_side()  # (found while the server still holds it)
        await eventually(lambda: all(t.is_closing() for t in server_side()))
    finally:
        writer.close()


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


#: Servers that negotiate permessage-deflate (picows does not).
DEFLATE_SERVERS = tuple(s for s in SERVERS if s != "picows")


def deflate_bomb(inflated: int) -> bytes:
    """One masked, compressed text frame (RSV1) that inflates to ``inflated`` zero bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = bytes(1024 * 1024)
    parts = [compressor.compress(chunk) for _ in range(inflated // len(chunk))]
    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    payload = b"".join(parts).removesuffix(b"\x00\x00\xff\xff")
    return masked(0xC1, payload)


async def server_process(
    server: str, max_message_size: int
) -> tuple[asyncio.subprocess.Process, str, int]:
    """``tests.apps.echo`` on ``server`` in a process of its own: (process, url, maxrss KB)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.apps.echo",
        server,
        str(max_message_size),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 3 * TIMEOUT)).decode().split()
    assert line[0] == "url", line
    return proc, line[1], int(line[3])


async def peak_rss_kb(proc: asyncio.subprocess.Process) -> int:
    """Stop ``tests.apps.echo``; the peak resident size of its whole run."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    out = (await asyncio.wait_for(proc.stdout.read(), 3 * TIMEOUT)).decode().split()
    await asyncio.wait_for(proc.wait(), TIMEOUT)
    assert out[0] == "maxrss", out
    return int(out[1])


@pytest.mark.parametrize("server", DEFLATE_SERVERS)
async def test_a_deflate_bomb_is_refused_before_it_is_inflated(server: str) -> None:
    """A 256 KB compressed frame that inflates to 256 MiB, against a 1 MiB limit: the server
    closes with 1009 and its memory grows by far less than the frame would inflate to."""
    bomb = deflate_bomb(256 * 1024 * 1024)
    proc, url, started_kb = await server_process(server, 1024 * 1024)
    try:
        reader, writer = await open_websocket(url + "/ws", extensions=b"permessage-deflate")
        writer.write(bomb)
        assert (await server_close(reader))[0] == 1009
        writer.close()
        async with connect(url + "/ws") as ws:  # the server carries on
            await ws.send("still here")
            assert await recv(ws) == "still here"
    finally:
        peak_kb = await peak_rss_kb(proc)
    assert peak_kb - started_kb < 64 * 1024, f"the server grew by {peak_kb - started_kb} KB"


async def test_a_deflate_bomb_over_http2_is_refused_too() -> None:
    """hypercorn also serves WebSockets over HTTP/2 (RFC 8441) on a cleartext socket, to a
    client that opens with the HTTP/2 preface: the same bomb is bounded there."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings

    bomb = deflate_bomb(256 * 1024 * 1024)
    proc, url, started_kb = await server_process("hypercorn", 1024 * 1024)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(url))
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        received: list[h2.events.Event] = []

        async def exchange() -> bool:
            """Send what is due, read once; False at the end of the connection."""
            writer.write(conn.data_to_send())
            data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
            received.extend(conn.receive_data(data) if data else [])
            return bool(data)

        connect_protocol = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
        while not conn.remote_settings.get(connect_protocol):
            assert await exchange(), "hypercorn offers no extended CONNECT"
        stream = conn.get_next_available_stream_id()
        conn.send_headers(
            stream,
            [
                (":method", "CONNECT"),
                (":protocol", "websocket"),
                (":scheme", "http"),
                (":path", "/ws"),
                (":authority", "127.0.0.1"),
                ("sec-websocket-version", "13"),
                ("sec-websocket-extensions", "permessage-deflate"),
            ],
        )
        while not any(isinstance(e, h2.events.ResponseReceived) for e in received):
            assert await exchange(), "no answer to the extended CONNECT"  # (data goes after)
        assert (b":status", b"200") in next(
            e.headers for e in received if isinstance(e, h2.events.ResponseReceived)
        )
        received.clear()
        sent = 0
        frames = b""
        while not frames.startswith(b"\x88"):  # until the server's close frame
            while sent < len(bomb) and conn.local_flow_control_window(stream) > 0:
                size = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
                conn.send_data(stream, bomb[sent : sent + size])
                sent += size
            assert await exchange(), "the connection ended without a close frame"
            frames += b"".join(e.data for e in received if isinstance(e, h2.events.DataReceived))
            received.clear()
        assert int.from_bytes(frames[2:4], "big") == 1009
        assert sent < len(bomb)  # refused before the whole bomb was even read
        writer.close()
    finally:
        peak_kb = await peak_rss_kb(proc)
    assert peak_kb - started_kb < 64 * 1024, f"the server grew by {peak_kb - started_kb} KB"
