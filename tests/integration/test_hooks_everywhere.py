"""One behaviour on every server: each test runs against every adapter over real sockets.

The ``kind`` fixture (conftest) parametrizes: websockets, picows, aiohttp, uvicorn, hypercorn,
and the ASGI app mounted inside Starlette.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import os
import socket
from asyncio import selector_events
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import crosswire
from crosswire import Accept, App, Limits, Message, Peer, ReadyState, Response, define_hooks
from crosswire.adapters._reads import READ_SIZE
from tests.support import SERVER_KINDS, TIMEOUT, Log, RawClient, closed_with, eventually, recv

#: Servers that drop a client which stops answering pings. hypercorn sends pings but never
#: checks for pongs (docs/servers.md), so it is left out of the keepalive test.
KEEPALIVE_KINDS = tuple(k for k in SERVER_KINDS if k != "hypercorn")


def client_close(kind: str, code: int, reason: str) -> tuple[int, str]:
    """What the close hook reports when the client closes with ``code``: hypercorn does not
    pass the client's close frame to ASGI apps and always reports 1006."""
    return (1006, "") if kind == "hypercorn" else (code, reason)


def slow_socket(url: str) -> socket.socket:
    """A connected socket with a tiny receive buffer, so a paused client stops the server's
    writes quickly instead of the kernel absorbing tens of megabytes."""
    port = int(url.split(":")[2].split("/")[0])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.connect(("127.0.0.1", port))
    return sock


@contextlib.asynccontextmanager
async def stopped_reader(url: str, **options: Any) -> AsyncIterator[ClientConnection]:
    """A client on a :func:`slow_socket` that has stopped reading (its transport paused:
    ``ws.transport.resume_reading()`` reads again); ``options`` go to ``connect``."""
    async with connect(url, max_size=None, sock=slow_socket(url), **options) as ws:
        ws.transport.pause_reading()
        yield ws


async def wait_held_then_read(ws: ClientConnection, log: Log, *, drained_early: bool) -> None:
    """After ``ws`` (a :func:`stopped_reader`) asked for a flood: the hook logged
    ``buffered`` > 0 and then waits for the drain (``drained``), which it must not get while
    the client does not read, unless ``drained_early``; then the client reads again."""
    (buffered,) = await log.wait_for("buffered")
    assert buffered[1] > 0
    await asyncio.sleep(0.1)
    assert ("drained" in [e[0] for e in log.events]) is drained_early
    ws.transport.resume_reading()


def echo_app(**extra: Any) -> App:
    def message(peer: Peer, msg: Message) -> None:
        peer.send(msg.raw if not msg.is_binary else msg.data)

    return App(define_hooks(message=message), **extra)


async def test_echo_text_binary_and_json(start_server: Any, kind: str) -> None:
    def message(peer: Peer, msg: Message) -> None:
        if msg.is_binary:
            peer.send(msg.data[::-1])
        elif msg.text().startswith("{"):
            body = msg.json()
            peer.send({"echo": body, "repr": repr(msg)})
        else:
            peer.send(msg.text().upper())

    served = await start_server(App(define_hooks(message=message)), kind)
    async with connect(served.url) as ws:
        await ws.send("hello")
        assert await recv(ws) == "HELLO"
        await ws.send(b"\x01\x02\x03")
        assert await recv(ws) == b"\x03\x02\x01"
        await ws.send('{"a": [1, 2]}')
        reply = orjson.loads(await recv(ws))
        assert reply == {"echo": {"a": [1, 2]}, "repr": "<Message text 13 bytes>"}


async def test_upgrade_sees_request_and_accepts_with_headers_subprotocol_context(
    start_server: Any, kind: str
) -> None:
    log = Log()

    def upgrade(request: crosswire.Request) -> Accept | Response:
        log.add("upgrade", request.path, dict(request.query), request.headers.get("x-token"))
        if request.query.get("token") != "secret":
            return Response(401, "no token")
        return Accept(
            headers={"X-Crosswire": "yes"},
            subprotocol="chat.v1",
            context={"user": "ada"},
        )

    def open_(peer: Peer) -> None:
        log.add("open", peer.context["user"], peer.subprotocol, peer.remote_address)
        peer.send({"user": peer.context["user"], "query": dict(peer.request.query)})

    served = await start_server(App(define_hooks(upgrade=upgrade, open=open_)), kind)

    with pytest.raises(InvalidStatus) as refused:
        async with connect(served.url + "?token=wrong"):
            pass
    # Every server sends the upgrade hook's own status (the ASGI servers through the
    # websocket.http.response extension).
    assert refused.value.response.status_code == 401

    async with connect(
        served.url + "?token=secret&x=1",
        subprotocols=["other", "chat.v1"],  # type: ignore[list-item]
        additional_headers={"X-Token": "abc"},
    ) as ws:
        assert ws.subprotocol == "chat.v1"
        assert ws.response is not None
        assert ws.response.headers["X-Crosswire"] == "yes"
        assert orjson.loads(await recv(ws)) == {
            "user": "ada",
            "query": {"token": "secret", "x": "1"},
        }
    upgrades = await log.wait_for("upgrade", 2)
    assert upgrades[1][1] in ("/ws", "/ws/")
    assert upgrades[1][3] == "abc"
    (opened,) = await log.wait_for("open")
    assert opened[1:] == ("ada", "chat.v1", "127.0.0.1")


async def test_upgrade_hook_error_refuses_with_500_and_server_lives(
    start_server: Any, kind: str
) -> None:
    def upgrade(request: crosswire.Request) -> None:
        if "boom" in request.query:
            raise RuntimeError("bug in upgrade")

    served = await start_server(
        App(define_hooks(upgrade=upgrade, message=lambda p, m: p.send(m.text()))), kind
    )
    with pytest.raises(InvalidStatus) as refused:
        async with connect(served.url + "?boom=1"):
            pass
    assert refused.value.response.status_code == 500
    async with connect(served.url) as ws:
        await ws.send("still here")
        assert await recv(ws) == "still here"


async def test_peer_model(start_server: Any, kind: str) -> None:
    log = Log()

    def open_(peer: Peer) -> None:
        peer.context["n"] = 0
        log.add("open", peer.id, peer.ready_state, repr(peer))

    def message(peer: Peer, msg: Message) -> None:
        peer.context["n"] += 1
        peer.send(f"{peer.id}:{peer.context['n']}")

    def close(peer: Peer, code: int, reason: str) -> None:
        log.add("close", peer.id, peer.ready_state, code, reason, peer.send("too late"))

    served = await start_server(App(define_hooks(open=open_, message=message, close=close)), kind)
    async with (
        connect(served.url, additional_headers={"Authorization": "Bearer s3cret"}) as a,
        connect(served.url) as b,
    ):
        await a.send("x")
        await a.send("x")
        await b.send("x")
        id_a, n_a = str(await recv(a)).rsplit(":", 1)
        assert (await recv(a)) == f"{id_a}:2"
        id_b, _ = str(await recv(b)).rsplit(":", 1)
        assert n_a == "1" and id_a != id_b
    opens = await log.wait_for("open", 2)
    assert all(e[2] is ReadyState.OPEN for e in opens)
    assert "127.0.0.1" in opens[0][3] and "OPEN" in opens[0][3]
    assert "s3cret" not in opens[0][3]
    closes = await log.wait_for("close", 2)
    assert {c[1] for c in closes} == {id_a, id_b}
    for _, _, state, code, _, sent in closes:
        assert state is ReadyState.CLOSED and sent is False
        assert code == client_close(kind, 1000, "")[0]


async def test_only_defined_hooks_and_errors_reach_error_hook(start_server: Any, kind: str) -> None:
    log = Log()

    def message(peer: Peer, msg: Message) -> None:
        if msg.text() == "boom":
            raise ValueError("handler bug")
        peer.send("ok:" + msg.text())

    def error(peer: Peer, exc: BaseException) -> None:
        log.add("error", peer.id, type(exc).__name__, str(exc))
        peer.send("error:" + str(exc))

    served = await start_server(App(define_hooks(message=message, error=error)), kind)
    async with connect(served.url) as ws, connect(served.url) as other:
        await ws.send("boom")
        assert await recv(ws) == "error:handler bug"
        await ws.send("again")
        assert await recv(ws) == "ok:again"
        await other.send("fine")
        assert await recv(other) == "ok:fine"
    (err,) = await log.wait_for("error")
    assert err[2:] == ("ValueError", "handler bug")


async def test_async_hooks_run_in_order(start_server: Any, kind: str) -> None:
    log = Log()

    async def open_(peer: Peer) -> None:
        await asyncio.sleep(0.01)
        peer.send("welcome")

    async def message(peer: Peer, msg: Message) -> None:
        await asyncio.sleep(0.001 * (int(msg.text()) % 3))
        peer.send(msg.text())

    async def close(peer: Peer, code: int, reason: str) -> None:
        await asyncio.sleep(0)
        log.add("close", code, reason)

    async def error(peer: Peer, exc: BaseException) -> None:
        log.add("error", exc)

    app = App(define_hooks(open=open_, message=message, close=close, error=error))
    assert not app.inline_hooks
    served = await start_server(app, kind)
    async with connect(served.url) as ws:
        assert await recv(ws) == "welcome"
        for i in range(30):
            await ws.send(str(i))
        assert [await recv(ws) for _ in range(30)] == [str(i) for i in range(30)]
        await ws.close(4001, "bye")
    (closed,) = await log.wait_for("close")
    assert closed == ("close", *client_close(kind, 4001, "bye"))


async def test_pubsub_excludes_sender_and_publish_from_outside(
    start_server: Any, kind: str
) -> None:
    log = Log()

    def message(peer: Peer, msg: Message) -> None:
        command, _, arg = msg.text().partition(" ")
        if command == "sub":
            peer.subscribe(arg)
            peer.send(f"topics {sorted(peer.topics)}")
        elif command == "unsub":
            peer.unsubscribe(arg)
            peer.send(f"topics {sorted(peer.topics)}")
        elif command == "pub":
            topic, _, text = arg.partition(" ")
            log.add("published", peer.publish(topic, {"topic": topic, "text": text}))

    app = App(define_hooks(message=message))
    served = await start_server(app, kind)
    async with connect(served.url) as a, connect(served.url) as b, connect(served.url) as c:
        for ws in (a, b, c):
            await ws.send("sub room")
            assert await recv(ws) == "topics ['room']"
        await a.send("pub room hi")
        for ws in (b, c):
            assert orjson.loads(await recv(ws)) == {"topic": "room", "text": "hi"}
        assert (await log.wait_for("published"))[0] == ("published", 2)
        await c.send("unsub room")
        assert await recv(c) == "topics []"
        assert app.publish("room", "from outside") == 2
        assert await recv(a) == "from outside"
        assert await recv(b) == "from outside"
        await c.send("sub other")
        assert await recv(c) == "topics ['other']"  # c got nothing from 'room' in between


async def test_close_and_terminate_from_server(start_server: Any, kind: str) -> None:
    log = Log()

    def message(peer: Peer, msg: Message) -> None:
        if msg.text() == "close":
            peer.close(4000, "bye now")
        elif msg.text() == "terminate":
            peer.terminate()

    def close(peer: Peer, code: int, reason: str) -> None:
        log.add("close", code, reason)

    served = await start_server(App(define_hooks(message=message, close=close)), kind)
    async with connect(served.url) as ws:
        await ws.send("close")
        assert await closed_with(ws) == (4000, "bye now")
    assert (await log.wait_for("close"))[0] == ("close", 4000, "bye now")
    async with connect(served.url) as ws:
        await ws.send("terminate")
        with pytest.raises(ConnectionClosed):
            await recv(ws)
    await log.wait_for("close", 2)
    async with connect(served.url) as ws:  # the server is fine
        await ws.close(1000)


@pytest.mark.parametrize("hook", ["plain", "async"])
async def test_after_terminate_no_message_reaches_the_hook(
    start_server: Any, kind: str, hook: str
) -> None:
    """The frames read together with the one whose hook terminates, or still waiting for an
    async hook, are dropped with the connection."""
    log = Log()

    def on_message(peer: Peer, msg: Message) -> None:
        log.add("message", msg.text())
        if msg.text() == "terminate":
            peer.terminate()

    async def on_message_async(peer: Peer, msg: Message) -> None:
        on_message(peer, msg)

    hooks = define_hooks(
        message=on_message if hook == "plain" else on_message_async,
        close=lambda peer, code, reason: log.add("close", code),
    )
    served = await start_server(App(hooks), kind)
    client = await RawClient.connect(served.url)
    try:
        for text in ("a", "terminate", "b", "c"):
            client.protocol.send_text(text.encode())
        client.flush()  # one TCP write: the server reads the four together
        await log.wait_for("close")
        await asyncio.sleep(0.05)  # anything still to come would come now
    finally:
        client.close()
    assert [e[1] for e in log.events if e[0] == "message"] == ["a", "terminate"]


@pytest.mark.parametrize("reason", ["client leaving", ""])
async def test_client_close_code_reaches_close_hook(
    start_server: Any, kind: str, reason: str
) -> None:
    log = Log()
    served = await start_server(
        App(define_hooks(close=lambda peer, code, reason: log.add("close", code, reason))), kind
    )
    async with connect(served.url) as ws:
        await ws.close(4321, reason)
    # (a close frame without a reason reaches the hook as "", never None)
    assert (await log.wait_for("close"))[0] == ("close", *client_close(kind, 4321, reason))


async def test_oversize_message_closes_1009_and_others_carry_on(
    start_server: Any, kind: str
) -> None:
    log = Log()
    app = App(
        define_hooks(
            message=lambda peer, msg: peer.send(msg.text()),
            close=lambda peer, code, reason: log.add("close", code),
        ),
        limits=Limits(max_message_size=1000),
    )
    served = await start_server(app, kind)
    async with connect(served.url, max_size=None) as big, connect(served.url) as small:
        # Every server but picows negotiates permessage-deflate, so 1,001 "b"s cross the wire
        # as a dozen bytes: the limit holds on the decompressed size.
        assert bool(big.protocol.extensions) is (kind != "picows")
        await small.send("a" * 1000)
        assert await recv(small) == "a" * 1000
        await big.send("b" * 1001)
        code, _ = await closed_with(big)
        assert code == 1009
        await small.send("still fine")
        assert await recv(small) == "still fine"
    assert ("close", 1009) in await log.wait_for("close", 2)


async def test_fragmented_message_is_reassembled_and_limited(start_server: Any, kind: str) -> None:
    app = App(
        define_hooks(message=lambda peer, msg: peer.send(f"{len(msg)}:{msg.text()[:3]}")),
        limits=Limits(max_message_size=1000),
    )
    served = await start_server(app, kind)
    async with connect(served.url) as ws:
        await ws.send(["abc", "d" * 400, "e" * 400])
        assert await recv(ws) == "803:abc"
        await ws.send(["x" * 600, "y" * 600])
        code, _ = await closed_with(ws)
        assert code == 1009


@pytest.mark.parametrize(
    "limit",
    [
        256 * 1024,
        # Below every server's default high-water mark: the adapters lower theirs to it.
        16 * 1024,
    ],
)
async def test_slow_consumer_is_closed_1013_and_broadcast_never_waits(
    start_server: Any, kind: str, limit: int
) -> None:
    log = Log()
    # Fresh random bytes for every publish, so permessage-deflate cannot shrink them (a repeated
    # chunk compresses to a back-reference within the deflate window), and well under the
    # limit: only bytes piling up behind a client that stopped reading may close it.
    size = limit // 4

    def message(peer: Peer, msg: Message) -> None:
        if msg.text() == "sub":
            peer.subscribe("firehose")
            peer.send("subscribed")

    def close(peer: Peer, code: int, reason: str) -> None:
        log.add("close", code, reason)

    app = App(
        define_hooks(message=message, close=close),
        limits=Limits(send_buffer_limit=limit, close_timeout=1.0),
    )
    served = await start_server(app, kind)
    async with (
        # close_timeout: this client never reads again, so it would wait out its own close.
        connect(served.url, max_size=None, close_timeout=0.2, sock=slow_socket(served.url)) as slow,
        connect(served.url, max_size=None) as fast,
    ):
        for ws in (slow, fast):
            await ws.send("sub")
            assert await recv(ws) == "subscribed"
        slow.transport.pause_reading()  # the slow client stops reading
        published, reached = 0, 2
        while reached == 2 and published < 32 * 1024 * 1024:  # more than sockets buffer
            # publish() writes to both subscribers' buffers and returns at once; once the slow
            # one is closing, it reaches only the fast one.
            chunk = os.urandom(size)
            reached = app.publish("firehose", chunk)
            published += size
            # The fast client gets every message, however far behind the slow one is.
            assert await recv(fast) == chunk
        assert reached == 1
        closes = await log.wait_for("close")
        assert closes[0][1:] == (1013, "send buffer overflow")
        assert app.publish("firehose", "after") == 1
        assert await recv(fast) == "after"


async def test_drain_hook_buffered_amount_and_wait_for_drain(start_server: Any, kind: str) -> None:
    log = Log()

    chunk = os.urandom(65536)  # incompressible: permessage-deflate must not shrink it

    async def flood(peer: Peer) -> None:
        for _ in range(200):
            peer.send(chunk)
        log.add("buffered", peer.buffered_amount)
        await peer.wait_for_drain()
        log.add("drained", peer.buffered_amount)

    def message(peer: Peer, msg: Message) -> None:
        peer.context["flood"] = asyncio.ensure_future(flood(peer))

    app = App(
        define_hooks(message=message, drain=lambda peer: log.add("drain")),
        limits=Limits(send_buffer_limit=64 * 1024 * 1024),
    )
    served = await start_server(app, kind)
    async with stopped_reader(served.url, max_queue=None) as ws:
        await ws.send("flood")
        await wait_held_then_read(ws, log, drained_early=False)
        for _ in range(200):
            assert len(await recv(ws)) == 65536
        await log.wait_for("drain")
        await log.wait_for("drained")


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_sends_that_wait_and_sends_that_do_not_arrive_in_the_order_they_were_made(
    start_server: Any, kind: str, compression: str | None
) -> None:
    """Bursts to a client that stops reading, then reads again: the adapters write at once
    where the server need not wait (uvicorn's and hypercorn's without a coroutine) and queue
    the rest behind what waits; the client gets every message once, in order. With and
    without permessage-deflate (hypercorn makes uncompressed frames itself)."""
    bursts, size = 4, 1000
    # Incompressible, 16 MB in all: more than the server's socket buffer holds (4 MB here).
    fillers = [base64.b64encode(os.urandom(3000)).decode() for _ in range(size)]

    async def message(peer: Peer, msg: Message) -> None:
        for burst in range(bursts):
            for i in range(size):
                peer.send(f"{burst * size + i:06d}{fillers[i]}")
            await asyncio.sleep(0.02)  # (the queued part may drain meanwhile)
        peer.send("end")

    app = App(define_hooks(message=message), limits=Limits(send_buffer_limit=64 * 1024 * 1024))
    served = await start_server(app, kind)
    async with stopped_reader(served.url, max_queue=None, compression=compression) as ws:
        await ws.send("go")
        await eventually(lambda: any(p.buffered_amount > 0 for p in app.peers.values()))
        ws.transport.resume_reading()
        got = [await recv(ws) for _ in range(bursts * size + 1)]
    assert got[-1] == "end"
    assert [text[:6] for text in got[:-1]] == [f"{n:06d}" for n in range(bursts * size)]
    assert [text[6:] for text in got[:-1]] == fillers * bursts


@pytest.mark.parametrize("kind", ["websockets", "aiohttp", "uvicorn", "hypercorn"])
async def test_connections_read_64_kib_at_a_time_and_bigger_messages_arrive_whole(
    start_server: Any, kind: str
) -> None:
    """asyncio's socket transports read 256 KiB per ``recv`` (in many processes an ``mmap``
    per read); the connections crosswire serves on asyncio's servers read 64 KiB, and a
    message of several reads still arrives whole, both ways."""
    served = await start_server(echo_app(), kind)
    port = int(served.url.split(":")[2].split("/")[0])
    async with connect(served.url, max_size=None, compression=None) as ws:
        big = os.urandom(300_000)
        await ws.send(big)
        assert await recv(ws) == big
        gc.collect()
        server_side = [
            t
            for t in gc.get_objects()
            if isinstance(t, selector_events._SelectorSocketTransport)  # type: ignore[attr-defined]
            and not t.is_closing()
            and (t.get_extra_info("sockname") or ("", 0))[1] == port
        ]
        assert server_side
        assert [t.max_size for t in server_side] == [READ_SIZE] * len(server_side)


@pytest.mark.parametrize("kind", [k for k in SERVER_KINDS if k != "starlette"])
async def test_a_message_bigger_than_the_socket_takes_counts_until_the_client_reads_it(
    start_server: Any, kind: str
) -> None:
    """One 8 MiB message to a client that stopped reading (more than the kernel's buffers
    take): it counts in ``buffered_amount``, and ``wait_for_drain`` waits until the client
    reads again, on every server crosswire starts (a send written without a coroutine must
    not hide it). uvicorn's send waits for the socket before it writes, not after, so there
    the peer learns of the full buffer from its next send (docs/servers.md); mounted in a
    framework, the server's buffer cannot be seen at all."""
    log = Log()
    big = os.urandom(8 * 1024 * 1024)

    async def message(peer: Peer, msg: Message) -> None:
        peer.send(big)
        log.add("buffered", peer.buffered_amount)
        await peer.wait_for_drain()
        log.add("drained")

    app = App(define_hooks(message=message), limits=Limits(send_buffer_limit=64 * 1024 * 1024))
    served = await start_server(app, kind)
    async with stopped_reader(served.url, compression=None) as ws:
        await ws.send("go")
        await wait_held_then_read(ws, log, drained_early=kind == "uvicorn")
        assert await recv(ws) == big
        await log.wait_for("drained")


async def test_on_uvicorn_reading_goes_on_while_the_app_keeps_up(
    start_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn stops reading the socket after each message until the application has taken
    it (two ``epoll_ctl`` calls per message); crosswire's uvicorn protocol stops only once
    ``READ_AHEAD`` messages wait. (That reading still stops for an application that falls
    behind: ``test_slow_async_hook_pushes_back_on_the_client_and_loses_nothing``.)"""
    served = await start_server(echo_app(), "uvicorn")
    port = int(served.url.split(":")[2].split("/")[0])
    transport_class: Any = selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
    pause = transport_class.pause_reading
    paused: list[object] = []

    def counting(self: Any) -> None:
        if (self.get_extra_info("sockname") or ("", 0))[1] == port:  # (the server's side)
            paused.append(self)
        pause(self)

    monkeypatch.setattr(transport_class, "pause_reading", counting)
    async with connect(served.url) as ws:
        for i in range(50):
            await ws.send(str(i))
            assert await recv(ws) == str(i)
    assert paused == []


async def test_plain_http_request(start_server: Any, kind: str) -> None:
    import aiohttp

    def page(request: crosswire.Request) -> Response:
        return Response(200, "<h1>hi</h1>", content_type="text/html")

    served = await start_server(App(define_hooks(), http=page), kind)
    async with aiohttp.ClientSession() as session:
        if kind == "starlette":  # Starlette owns the HTTP routes; its own route answers
            async with session.get(served.http_url + "/health") as resp:
                assert (resp.status, await resp.text()) == (200, "ok from starlette")
        else:
            async with session.get(served.http_url + "/") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == "text/html"
                assert await resp.text() == "<h1>hi</h1>"


def echo_and_log_close(log: Log) -> App:
    return App(
        define_hooks(
            message=lambda peer, msg: peer.send(msg.raw),
            close=lambda peer, code, reason: log.add("close", code),
        )
    )


async def test_text_that_is_not_utf8_closes_1007_and_others_carry_on(
    start_server: Any, kind: str
) -> None:
    log = Log()
    served = await start_server(echo_and_log_close(log), kind)
    bad = await RawClient.connect(served.url)
    try:
        async with connect(served.url) as good:
            bad.protocol.send_text(b"caf\xe9")  # latin-1, not UTF-8
            bad.flush()
            assert await bad.close_code() == 1007
            await good.send("still fine")
            assert await recv(good) == "still fine"
    finally:
        bad.close()
    codes = sorted(e[1] for e in await log.wait_for("close", 2))
    # The bad connection's hook sees 1007, the good one's 1000 (hypercorn: 1006, as it does
    # not pass the client's close frame to ASGI applications).
    assert codes == ([1006, 1007] if kind == "hypercorn" else [1000, 1007])


async def test_reserved_opcode_closes_1002(start_server: Any, kind: str) -> None:
    log = Log()
    served = await start_server(echo_and_log_close(log), kind)
    bad = await RawClient.connect(served.url)
    try:
        # FIN + opcode 0x3 (reserved), masked, empty payload, mask key 0: RFC 6455 5.2 says
        # the receiver must fail the connection.
        bad.send_raw(bytes([0x83, 0x80, 0, 0, 0, 0]))
        assert await bad.close_code() == 1002
    finally:
        bad.close()
    (closed,) = await log.wait_for("close")
    assert closed[1] == 1002


async def test_connections_during_shutdown_are_refused_with_503(
    start_server: Any, kind: str
) -> None:
    release = asyncio.Event()

    async def close(peer: Peer, code: int, reason: str) -> None:
        await release.wait()  # keeps shutdown in progress

    app = App(define_hooks(close=close))
    served = await start_server(app, kind)
    async with connect(served.url) as ws:
        shutdown = asyncio.ensure_future(app.shutdown())
        assert (await closed_with(ws))[0] == 1001
        with pytest.raises(InvalidStatus) as refused:
            async with connect(served.url):
                pass
        assert refused.value.response.status_code == 503
        release.set()
        await asyncio.wait_for(shutdown, TIMEOUT)


#: What the close hook reports when a client stops answering pings, per server.
KEEPALIVE_CLOSE_CODE = {
    "websockets": 1011,  # the close frame websockets sent ("keepalive ping timeout")
    "picows": 1001,  # the close frame picows sent ("peer has not replied to ping ...")
    "aiohttp": 1006,
    "uvicorn": 1005,  # uvicorn reports 1005 for every connection lost after the handshake
    "starlette": 1005,  # uvicorn underneath
}


@pytest.mark.parametrize("kind", KEEPALIVE_KINDS)
async def test_keepalive_drops_a_client_that_never_answers_pings(
    start_server: Any, kind: str
) -> None:
    log = Log()
    app = App(
        define_hooks(close=lambda peer, code, reason: log.add("close", code)),
        limits=Limits(ping_interval=0.3, ping_timeout=0.2, close_timeout=0.5),
    )
    served = await start_server(app, kind)
    client = await RawClient.connect(served.url)  # it never answers pings
    try:
        (closed,) = await log.wait_for("close")
        # The code each server reports differs; docs/close-codes.md has the table.
        assert closed[1] == KEEPALIVE_CLOSE_CODE[kind]
    finally:
        client.close()


async def test_slow_async_hook_pushes_back_on_the_client_and_loses_nothing(
    start_server: Any, kind: str
) -> None:
    """While an async message hook is stuck, the server stops reading: the client's sends
    block (TCP backpressure) instead of the server buffering without bound. Once the hook
    moves again, every message arrives, in order."""
    release, all_seen = asyncio.Event(), asyncio.Event()
    seen: list[int] = []
    depth: list[int] = []
    count, size = 200, 64 * 1024  # 12.8 MB: more than the kernel buffers on both sides

    async def message(peer: Peer, msg: Message) -> None:
        depth.append(len(peer._inbox or ()))
        await release.wait()
        seen.append(int(msg.data[:8]))
        if len(seen) == count:
            all_seen.set()

    app = App(define_hooks(message=message), limits=Limits(inbound_queue=4))
    served = await start_server(app, kind)
    async with connect(served.url, compression=None, max_size=None) as ws:

        async def flood() -> None:
            for i in range(count):
                await ws.send(f"{i:08d}".encode() + os.urandom(size - 8))

        sending = asyncio.ensure_future(flood())
        done, _ = await asyncio.wait([sending], timeout=1.0)
        assert not done, "the server kept reading while its hook was stuck"
        release.set()
        await asyncio.wait_for(sending, TIMEOUT)
        await asyncio.wait_for(all_seen.wait(), TIMEOUT)
    assert seen == list(range(count))
    # Bounded: Limits.inbound_queue, plus the messages of the socket read that filled it
    # (picows hands over every frame of a read, up to about 4 MB, even after reading pauses);
    # never the whole flood.
    assert max(depth) < count // 2


async def test_sends_from_the_open_hook_are_limited_too(start_server: Any, kind: str) -> None:
    """The transport is wired to the peer before the open hook runs: a snapshot sent on open to
    a client that does not read is caught by the send buffer limit like any other send."""
    log = Log()

    def open_(peer: Peer) -> None:
        chunk = os.urandom(100_000)  # the client asks for no compression: it stays 100 kB
        for _ in range(200):  # 20 MB: more than the kernel buffers; the limit is 1 MiB
            peer.send(chunk)

    app = App(
        define_hooks(open=open_, close=lambda peer, code, reason: log.add("close", code, reason)),
        limits=Limits(send_buffer_limit=1024 * 1024, close_timeout=0.5),
    )
    served = await start_server(app, kind)
    async with stopped_reader(served.url, compression=None, close_timeout=0.2):
        (closed,) = await log.wait_for("close")
    assert closed[1:] == (1013, "send buffer overflow")


async def test_a_large_message_to_a_reading_client_is_delivered(
    start_server: Any, kind: str
) -> None:
    """A message bigger than half the send buffer limit, to a client that reads, arrives:
    only bytes left waiting behind a client that does not read count against the limit."""
    big = os.urandom(600_000)

    def message(peer: Peer, msg: Message) -> None:
        peer.send(big)
        peer.send("after")

    app = App(define_hooks(message=message), limits=Limits(send_buffer_limit=1024 * 1024))
    served = await start_server(app, kind)
    async with connect(served.url, max_size=None, compression=None) as ws:
        await ws.send("go")
        assert await recv(ws) == big
        assert await recv(ws) == "after"


async def test_close_from_a_timer_callback(start_server: Any, kind: str) -> None:
    """peer.close() outside any task (a timer) still sends the close frame."""

    def open_(peer: Peer) -> None:
        asyncio.get_running_loop().call_later(0.05, peer.close, 4001, "idle")

    served = await start_server(App(define_hooks(open=open_)), kind)
    async with connect(served.url) as ws:
        assert await closed_with(ws) == (4001, "idle")


async def test_shutdown_ends_with_a_stuck_hook_and_a_vanished_client(
    start_server: Any, kind: str
) -> None:
    """An async hook stuck forever, reading paused behind it, and then the client gone: the
    App still shuts down within its grace period, and the server stops."""
    entered = asyncio.Event()

    async def message(peer: Peer, msg: Message) -> None:
        entered.set()
        await asyncio.Event().wait()  # stuck forever

    app = App(define_hooks(message=message), limits=Limits(inbound_queue=2, close_timeout=0.5))
    served = await start_server(app, kind)
    ws = await connect(served.url)
    for i in range(10):
        await ws.send(f"m{i}")
    await asyncio.wait_for(entered.wait(), TIMEOUT)
    (peer,) = app.peers.values()
    await eventually(lambda: peer._reading_paused)  # queue full: the adapter stopped reading
    ws.transport.close()  # the client goes away
    await asyncio.wait_for(app.shutdown(grace_period=0.5), TIMEOUT)
    assert not app.peers
    await asyncio.wait_for(served.aclose(), TIMEOUT)  # the server stops too
