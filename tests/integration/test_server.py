"""crosswire.start / serve: the listening socket and the connections it accepts."""

from __future__ import annotations

import asyncio
import socket

import pytest
from websockets.asyncio.client import connect

import crosswire
from crosswire.pubsub.redis import RedisBackend
from crosswire.server import SERVERS
from tests.redis_server import RedisServer
from tests.support import TIMEOUT, closed_with, recv


@pytest.mark.parametrize("server", SERVERS)
async def test_accepted_connections_have_nagle_off(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection crosswire accepts sends small frames at once (TCP_NODELAY): with
    Nagle's algorithm on, each message waited for the client's delayed ACK."""
    accepted: asyncio.Queue[socket.socket] = asyncio.Queue()
    real_accept = socket.socket.accept

    def accept(sock: socket.socket) -> tuple[socket.socket, object]:
        conn, address = real_accept(sock)
        accepted.put_nowait(conn)
        return conn, address

    running = await crosswire.start(crosswire.App(crosswire.define_hooks()), server=server)  # type: ignore[arg-type]
    try:
        with monkeypatch.context() as patch:
            patch.setattr(socket.socket, "accept", accept)
            _, writer = await asyncio.open_connection("127.0.0.1", running.port)
            conn = await asyncio.wait_for(accepted.get(), TIMEOUT)
        await asyncio.sleep(0)  # the server sets up its transport for the connection
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        writer.close()
    finally:
        await running.aclose()


#: A WebSocket handshake request, sent raw (the connection below is made while the server
#: stops, so no client library's retries or timeouts stand in between).
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize("server", SERVERS)
async def test_a_connection_that_arrives_as_the_server_stops_is_answered_or_refused(
    server: str,
) -> None:
    """A client that connects while ``aclose()`` runs gets an answer (503), a reset or a
    refusal, whenever in the shutdown it comes, never a connection that stays open unanswered.

    asyncio leaves unserved a connection it accepted one turn of the loop before its server
    closed (CPython gh-109564): the client's reconnect after a 1001 could then wait out its
    whole connect timeout. The client connects here after each number of turns of the loop from
    the start of ``aclose()``, to land in that turn whichever it is on each server; each
    server first serves one WebSocket (some start accepting a few turns after ``start``)."""
    outcomes: list[str] = []
    for turns in range(21):
        running = await crosswire.start(crosswire.App(crosswire.define_hooks()), server=server)  # type: ignore[arg-type]
        try:
            async with connect(running.url):
                pass
            closing = asyncio.ensure_future(running.aclose())
            for _ in range(turns):
                await asyncio.sleep(0)
            outcomes.append(await _answer_to_upgrade(running.port))
            await asyncio.wait_for(closing, TIMEOUT)
        finally:
            await running.aclose()  # (if the test failed before; a no-op once closing)
    assert "no answer" not in outcomes, outcomes
    assert set(outcomes) <= {"503", "reset", "refused"}, outcomes
    assert outcomes[0] != "refused", outcomes  # the sweep began inside the shutdown


async def _answer_to_upgrade(port: int) -> str:
    """What a raw handshake request to ``port`` gets, within 2 s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
        await loop.sock_sendall(sock, UPGRADE)
        data = await asyncio.wait_for(loop.sock_recv(sock, 100), 2)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "no answer"
    finally:
        sock.close()
    if not data:
        return "reset"  # (closed without a response: the client sees it at once too)
    return data.split(b" ")[1].decode()


async def test_running_server_reports_its_address() -> None:
    running = await crosswire.start(crosswire.App(crosswire.define_hooks()), port=0)
    try:
        assert running.host == "127.0.0.1" and running.port > 0
        assert running.url == f"ws://127.0.0.1:{running.port}"
    finally:
        await running.aclose()
        await running.aclose()  # closing twice is harmless


async def test_unknown_server_is_refused() -> None:
    with pytest.raises(crosswire.ConfigurationError, match="unknown server 'nginx'"):
        await crosswire.start(crosswire.App(crosswire.define_hooks()), server="nginx")  # type: ignore[arg-type]


@pytest.mark.parametrize("server", SERVERS)
async def test_an_app_serves_again_after_shutdown_in_a_new_event_loop(
    server: str, redis_server: RedisServer
) -> None:
    """Stopped with a client still connected (1001), then started in another event loop, the
    same App serves again, its Redis bus included: what a lifespan that restarts needs."""

    def message(peer: crosswire.Peer, msg: crosswire.Message) -> None:
        peer.publish("room", msg.text())
        peer.send("published")

    hub = crosswire.Hub(RedisBackend(redis_server.url))
    app = crosswire.App(crosswire.define_hooks(message=message), hub=hub)

    async def session() -> None:
        running = await crosswire.start(app, server=server)  # type: ignore[arg-type]
        async with connect(running.url + "/ws") as ws:
            await ws.send("hi")
            assert await recv(ws) == "published"
            await asyncio.wait_for(app.hub.flush(), TIMEOUT)  # on Redis: raises if dropped
            await asyncio.wait_for(running.aclose(), TIMEOUT * 2)
            assert (await closed_with(ws))[0] == 1001

    for _ in range(2):  # (asyncio.run in a thread: a new event loop each time)
        await asyncio.wait_for(asyncio.to_thread(asyncio.run, session()), TIMEOUT * 4)
    assert app.hub.bus_stats().dropped == 0
