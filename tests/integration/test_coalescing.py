"""Write coalescing (``Limits.coalesce_writes``, ``crosswire/cork.py``): what one turn of the
event loop writes to a socket leaves together, and no socket is left held.

The websockets, picows, aiohttp, uvicorn and hypercorn servers know when more messages of the
same read wait; the tests send several frames in one TCP write and look at what the server did
while handling each one (whether the connection's writes were held: by the kernel's
``TCP_CORK`` on websockets, aiohttp, uvicorn and hypercorn, in user space on picows) and at
what the clients got.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from crosswire import App, Limits, Message, Peer, define_hooks
from crosswire.adapters import picows as picows_adapter
from crosswire.cork import SOLO_AFTER, SOLO_FLUSH, Cork
from tests.support import TIMEOUT, RawClient, serve_on

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_CORK"), reason="TCP_CORK is Linux-only; elsewhere nothing is held"
)

#: The servers that coalesce: each knows whether more messages of the current read wait.
COALESCING = ("websockets", "picows", "aiohttp", "uvicorn", "hypercorn")


@pytest.fixture
def sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """The server-side sockets that got a Cork, in connection order."""
    made: list[Any] = []
    original = Cork.of.__func__  # type: ignore[attr-defined]

    def of(cls: type[Cork], transport: asyncio.BaseTransport | None, enabled: bool = True) -> Any:
        cork = original(cls, transport, enabled)
        if cork is not None and transport is not None:
            made.append(transport.get_extra_info("socket"))
        return cork

    monkeypatch.setattr(Cork, "of", classmethod(of))
    yield made


def corked(sock: Any) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK))


def held(peer: Peer) -> bool:
    """Whether the peer's writes are held now (by TCP_CORK, or picows' held frames)."""
    hold = peer.cork
    return hold is not None and hold.held


def nothing_held(peers: list[Peer], sockets: list[Any]) -> bool:
    """No peer's writes held, and no socket left corked in the kernel."""
    return not any(held(p) for p in peers) and not any(corked(s) for s in sockets)


def join_room(peer: Peer, members: list[Peer]) -> None:
    """Subscribe ``peer`` to "room", note it, and tell its client."""
    peer.subscribe("room")
    members.append(peer)
    peer.send("subscribed")


def room_hooks(
    members: list[Peer], after_publish: Callable[[], object] | None = None
) -> Callable[[Peer, Message], None]:
    """A message hook: "sub" joins the room (:func:`join_room`), anything else is published
    to it, then ``after_publish()`` runs."""

    def message(peer: Peer, msg: Message) -> None:
        text = msg.text()
        if text == "sub":
            join_room(peer, members)
        else:
            peer.publish("room", text)
            if after_publish is not None:
                after_publish()

    return message


async def publisher_and_members(url: str) -> tuple[RawClient, list[RawClient]]:
    """A client, and three more that joined the room of :func:`room_hooks`."""
    publisher = await RawClient.connect(url)
    members = [await RawClient.connect(url) for _ in range(3)]
    for member in members:
        send_in_one_write(member, "sub")
        assert await member.messages(1) == ["subscribed"]
    return publisher, members


def recording_app(seen: list[tuple[str, bool]], peers: list[Peer], **options: Any) -> App:
    """Echoes text upper-cased, after noting whether the connection's writes were held at that
    moment; ``boom`` raises in the hook. ``peers`` gets each peer on its first message."""

    def message(peer: Peer, msg: Message) -> None:
        text = msg.text()
        if peer not in peers:
            peers.append(peer)
        seen.append((text, held(peer)))
        if text == "boom":
            raise RuntimeError("boom")
        peer.send(text.upper())

    return App(define_hooks(message=message, error=lambda peer, exc: None), **options)


@contextlib.asynccontextmanager
async def recording(
    kind: str, **options: Any
) -> AsyncIterator[tuple[list[tuple[str, bool]], RawClient, list[Peer]]]:
    """A server of :func:`recording_app` on ``kind`` and one raw client of it; yields what the
    server saw (message, held?), the client and the server's peer (once it got a message)."""
    seen: list[tuple[str, bool]] = []
    peers: list[Peer] = []
    served = await serve_on(recording_app(seen, peers, **options), kind)
    try:
        client = await RawClient.connect(served.url)
        try:
            yield seen, client, peers
        finally:
            client.close()
    finally:
        await served.aclose()


def hypercorn_chunk() -> int:
    """How many messages hypercorn queues for the application at most (its default)."""
    from hypercorn.config import Config

    return Config().max_app_queue_size


def send_in_one_write(client: RawClient, *texts: str) -> None:
    """Text frames in one TCP write: the server reads them at once."""
    for text in texts:
        client.protocol.send_text(text.encode())
    client.flush()


@pytest.mark.parametrize("kind", COALESCING)
async def test_replies_to_one_read_are_held_until_the_last_is_handled(
    kind: str, sockets: list[Any]
) -> None:
    async with recording(kind) as (seen, client, peers):
        batch = [f"m{i}" for i in range(20)]
        send_in_one_write(client, *batch)
        assert await client.messages(20) == [t.upper() for t in batch]
        # The first message's reply left at once (the client gets to work); the others were
        # handled with the connection held. hypercorn hands the application at most
        # max_app_queue_size messages at a time: each such chunk is one read to the adapter.
        chunk = hypercorn_chunk() if kind == "hypercorn" else len(batch)
        assert seen == [(t, i % chunk != 0) for i, t in enumerate(batch)]
        # ...and released after the last one.
        assert nothing_held(peers, sockets)

        send_in_one_write(client, "alone")  # a read with one message: nothing is held
        assert await client.messages(1) == ["ALONE"]
        assert seen[-1] == ("alone", False)


@pytest.mark.parametrize("kind", COALESCING)
async def test_an_error_in_the_middle_of_a_read_leaves_nothing_held(
    kind: str, sockets: list[Any]
) -> None:
    async with recording(kind) as (_, client, peers):
        send_in_one_write(client, "a", "b", "boom", "c", "d")
        assert await client.messages(4) == ["A", "B", "C", "D"]
        assert nothing_held(peers, sockets)


@pytest.mark.parametrize("kind", ["picows", "aiohttp"])  # websockets: docs/servers.md
async def test_a_close_frame_in_the_same_read_gets_every_reply_first(kind: str) -> None:
    async with recording(kind) as (_, client, _):
        for text in ("x", "y", "z"):
            client.protocol.send_text(text.encode())
        client.protocol.send_close(1000, "bye")
        client.flush()
        assert await client.messages(3) == ["X", "Y", "Z"]
        assert await client.close_code() == 1000


@pytest.mark.parametrize("kind", COALESCING)
async def test_a_read_that_ends_in_a_ping_does_not_hold_the_next_first_reply(
    kind: str, sockets: list[Any]
) -> None:
    """The server answers a ping itself and the adapter never sees it: the read's last data
    message is not its last frame. The next read still starts afresh."""
    async with recording(kind) as (seen, client, peers):
        client.protocol.send_text(b"a")
        client.protocol.send_text(b"b")
        client.protocol.send_ping(b"p")
        client.flush()
        assert await client.messages(2) == ["A", "B"]
        await asyncio.sleep(0.05)  # a turn of the server's loop
        assert nothing_held(peers, sockets)
        send_in_one_write(client, "n1", "n2", "n3")
        assert await client.messages(3) == ["N1", "N2", "N3"]
        assert seen[2:] == [("n1", False), ("n2", True), ("n3", True)]


@pytest.mark.parametrize("kind", COALESCING)
async def test_coalesce_writes_off_holds_nothing(kind: str, sockets: list[Any]) -> None:
    limits = Limits(coalesce_writes=False)
    async with recording(kind, limits=limits) as (seen, client, peers):
        send_in_one_write(client, "p", "q", "r")
        assert await client.messages(3) == ["P", "Q", "R"]
        assert sockets == []
        assert peers[0].cork is None
        assert seen == [("p", False), ("q", False), ("r", False)]


async def test_a_held_socket_sends_nothing_until_released() -> None:
    """What the kernel does with TCP_CORK, the mechanism the adapters rely on."""
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server_side, _ = listener.accept()
    server_side.setblocking(False)
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, server_side)
    try:
        cork = Cork.of(transport)
        assert cork is not None
        cork.hold()
        transport.write(b"held")
        readable, _, _ = select.select([client], [], [], 0.1)
        assert readable == []  # queued in the kernel, not sent
        cork.release()
        readable, _, _ = select.select([client], [], [], TIMEOUT)
        assert readable == [client]
        assert client.recv(100) == b"held"
    finally:
        transport.close()
        client.close()
        listener.close()


async def test_no_cork_where_it_cannot_work() -> None:
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()  # a Unix socket: not TCP
    a.setblocking(False)
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
    try:
        assert Cork.of(transport) is None
        assert Cork.of(None) is None
    finally:
        transport.close()
        b.close()


@pytest.mark.parametrize("kind", COALESCING)
async def test_a_burst_of_publishes_is_held_for_every_subscriber_until_the_turn_ends(
    kind: str, sockets: list[Any]
) -> None:
    """Publishes that arrive in one read hold each subscriber's connection as the fan-out
    writes to it; every subscriber gets every message, in order, and nothing stays held."""
    held_after_publish: list[list[bool]] = []
    members: list[Peer] = []
    message = room_hooks(members, lambda: held_after_publish.append([held(p) for p in members]))
    served = await serve_on(App(define_hooks(message=message)), kind)
    try:
        publisher, subscribers = await publisher_and_members(served.url)
        burst = [f"news {i}" for i in range(10)]
        send_in_one_write(publisher, *burst)
        for sub in subscribers:
            assert await sub.messages(10) == burst
        # More messages wait in the publisher's read from the first on: the batch is open
        # before the first publish, and every subscriber's socket is held from its first
        # write until the turn ends (each subscriber gets the burst in one segment).
        assert held_after_publish == [[True, True, True]] * 10
        assert nothing_held(members, sockets)

        send_in_one_write(publisher, "alone")  # one publish in its read: written at once
        for sub in subscribers:
            assert await sub.messages(1) == ["alone"]
        assert held_after_publish[-1] == [False, False, False]
        for client in (publisher, *subscribers):
            client.close()
    finally:
        await served.aclose()


async def test_while_one_client_is_served_alone_a_long_read_leaves_every_few_replies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """picows: once the server has read from one connection at a time for a while, a long read
    no longer waits for its last message: its replies leave every ``SOLO_FLUSH``, so that the
    client (waiting for them) and the server work at the same time."""
    log: list[str] = []
    frames = picows_adapter._Frames
    hold, release, flush = frames.hold, frames.release, frames.flush

    def logged_hold(self: Any) -> None:
        if not self.held:
            log.append("hold")
        hold(self)

    def logged_release(self: Any) -> None:
        if self.held:
            log.append("release")
        release(self)

    def logged_flush(self: Any) -> None:
        log.append("flush")
        flush(self)

    monkeypatch.setattr(frames, "hold", logged_hold)
    monkeypatch.setattr(frames, "release", logged_release)
    monkeypatch.setattr(frames, "flush", logged_flush)

    def message(peer: Peer, msg: Message) -> None:
        log.append(msg.text())
        peer.send(msg.text().upper())

    served = await serve_on(App(define_hooks(message=message)), "picows")
    try:
        client = await RawClient.connect(served.url)
        for i in range(SOLO_AFTER):  # reads of two messages, one client: the server is "solo"
            send_in_one_write(client, f"w{i}a", f"w{i}b")
            assert await client.messages(2) == [f"W{i}A", f"W{i}B"]
        log.clear()
        batch = [f"m{i}" for i in range(20)]
        send_in_one_write(client, *batch)
        assert await client.messages(20) == [t.upper() for t in batch]
        assert log == [
            "m0", "hold",  # the first reply leaves at once, then the connection is held
            "m1", "m2", "m3", "m4", "flush",  # ...and what it holds is written every SOLO_FLUSH
            "m5", "m6", "m7", "m8", "flush",
            "m9", "m10", "m11", "m12", "flush",
            "m13", "m14", "m15", "m16", "flush",
            "m17", "m18", "m19", "release",
        ]  # fmt: skip
        assert SOLO_FLUSH == 4
        client.close()
    finally:
        await served.aclose()


# -- picows: frames held in user space -------------------------------------------------------


@contextlib.contextmanager
def counting_writes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many frames each write of held picows frames carried."""
    writes: list[int] = []
    write = picows_adapter._Frames._write

    def counted(self: Any) -> None:
        writes.append(len(self._frames))
        write(self)

    monkeypatch.setattr(picows_adapter._Frames, "_write", counted)
    yield writes


async def test_picows_writes_a_reads_held_replies_in_one_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """picows sends each frame with its own send(); while a batch holds the connection, the
    adapter builds the frames itself and writes them together when the read ends. Frame sizes
    around each header length (RFC 6455: 7-bit, 16-bit, 64-bit), text and binary, reach the
    client (websockets' parser) intact and in order."""
    sizes = [0, 1, 125, 126, 127, 65535, 65536, 70000]

    def message(peer: Peer, msg: Message) -> None:
        size = int(msg.text())
        peer.send("t" * size)
        peer.send(bytes([size % 251]) * size)

    with counting_writes(monkeypatch) as writes:
        served = await serve_on(App(define_hooks(message=message)), "picows")
        try:
            client = await RawClient.connect(served.url)
            send_in_one_write(client, "0", *[str(size) for size in sizes])
            expected: list[str | bytes] = ["", b""]
            for size in sizes:
                expected += ["t" * size, bytes([size % 251]) * size]
            assert await client.messages(len(expected)) == expected
            # The first message's two replies went through picows; the rest was held, and
            # written once more than FRAMES_FLUSH_AT bytes were held, and at the end.
            assert sum(writes) == len(expected) - 2
            assert len(writes) < len(expected) - 2

            writes.clear()
            send_in_one_write(client, *["1"] * 10)  # small replies: one write for the read
            assert await client.messages(20) == ["t", b"\x01"] * 10
            assert writes == [18]
            client.close()
        finally:
            await served.aclose()


async def test_picows_a_close_from_the_server_follows_the_held_replies() -> None:
    def message(peer: Peer, msg: Message) -> None:
        if msg.text() == "bye":
            peer.close(4000, "done")
        else:
            peer.send(msg.text().upper())

    served = await serve_on(App(define_hooks(message=message)), "picows")
    try:
        client = await RawClient.connect(served.url)
        send_in_one_write(client, "x", "y", "z", "bye", "lost")
        assert await client.messages(3) == ["X", "Y", "Z"]
        assert await client.close_code() == 4000
    finally:
        await served.aclose()


async def test_picows_held_frames_count_in_the_buffered_amount() -> None:
    """What a batch holds counts as buffered: a slow-consumer check sees it."""
    amounts: list[int] = []

    def message(peer: Peer, msg: Message) -> None:
        peer.send("x" * 1000)
        amounts.append(peer.buffered_amount)

    served = await serve_on(App(define_hooks(message=message)), "picows")
    try:
        client = await RawClient.connect(served.url)
        send_in_one_write(client, "a", "b", "c")
        assert await client.messages(3) == ["x" * 1000] * 3
        assert amounts[1:] == [1000, 2000]  # held after the first reply; sent at the end
        client.close()
    finally:
        await served.aclose()


async def test_picows_holds_no_more_than_a_small_send_buffer_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a send buffer limit under 64 KiB, held frames are written once they pass it, so a
    slow consumer is noticed as early as without holding."""

    def message(peer: Peer, msg: Message) -> None:
        peer.send("r" * 6000)

    limits = Limits(send_buffer_limit=16 * 1024)
    with counting_writes(monkeypatch) as writes:
        served = await serve_on(App(define_hooks(message=message), limits=limits), "picows")
        try:
            client = await RawClient.connect(served.url)
            send_in_one_write(client, *["m"] * 10)
            assert await client.messages(10) == ["r" * 6000] * 10
            # 9 held replies of 6,000 bytes: written each time more than 16 KiB are held.
            assert writes == [3, 3, 3]
            client.close()
        finally:
            await served.aclose()


async def test_picows_a_connection_dropped_while_held_leaves_the_others_alone() -> None:
    """``terminate()`` in the middle of a read forgets what that connection held; the batch
    still releases everyone else's frames."""
    members: list[Peer] = []

    def message(peer: Peer, msg: Message) -> None:
        text = msg.text()
        if text == "sub":
            join_room(peer, members)
        elif text == "kill":
            peer.terminate()
        else:
            peer.publish("room", text)
            peer.send(text.upper())

    served = await serve_on(App(define_hooks(message=message)), "picows")
    try:
        doomed = await RawClient.connect(served.url)
        subscriber = await RawClient.connect(served.url)
        send_in_one_write(subscriber, "sub")
        assert await subscriber.messages(1) == ["subscribed"]
        send_in_one_write(doomed, "a", "b", "kill")
        assert await subscriber.messages(2) == ["a", "b"]
        assert await doomed.close_code() is None  # dropped: no closing handshake
        assert not any(held(p) for p in members)
        send_in_one_write(subscriber, "after")  # (a publish skips its sender)
        assert await subscriber.messages(1) == ["AFTER"]
        subscriber.close()
    finally:
        await served.aclose()


async def test_picows_a_burst_of_publishes_reaches_each_subscriber_in_one_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Hub's fan-out writes through each member's ``write_text``: on picows, while the
    batch holds a subscriber, its frames are built and written together when the turn ends
    (not sent one by one through picows under a hold that then has nothing to write)."""
    members: list[Peer] = []
    message = room_hooks(members)

    with counting_writes(monkeypatch) as writes:
        served = await serve_on(App(define_hooks(message=message)), "picows")
        try:
            publisher, subscribers = await publisher_and_members(served.url)
            writes.clear()
            burst = [f"news {i}" for i in range(10)]
            send_in_one_write(publisher, *burst)
            for sub in subscribers:
                assert await sub.messages(10) == burst
            assert writes == [10, 10, 10]  # one write of the ten frames per subscriber

            writes.clear()
            send_in_one_write(publisher, "alone")  # nothing held: sent through picows
            for sub in subscribers:
                assert await sub.messages(1) == ["alone"]
            assert writes == []
            assert not any(held(p) for p in members)
            for client in (publisher, *subscribers):
                client.close()
        finally:
            await served.aclose()
