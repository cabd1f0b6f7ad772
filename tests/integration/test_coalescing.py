"""Write coalescing (``Limits.coalesce_writes``, ``crosswire/adapters/_cork.py``): the replies
to the messages of one socket read leave together, and the socket is never left held.

The websockets, picows and aiohttp servers know when more messages of the same read wait; the
tests send several frames in one TCP write and look at what the server did while handling
each one (the kernel's ``TCP_CORK`` state of the server's socket) and at what the client got.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from crosswire import App, Limits, Message, Peer, define_hooks
from crosswire.adapters._cork import Cork
from tests.support import TIMEOUT, RawClient, serve_on

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_CORK"), reason="TCP_CORK is Linux-only; elsewhere nothing is held"
)

#: The servers that coalesce: each knows whether more messages of the current read wait.
COALESCING = ("websockets", "picows", "aiohttp")


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


def recording_app(seen: list[tuple[str, bool]], sockets: list[Any], **options: Any) -> App:
    """Echoes text upper-cased, after noting whether the socket was held at that moment;
    ``boom`` raises in the hook."""

    def message(peer: Peer, msg: Message) -> None:
        text = msg.text()
        seen.append((text, corked(sockets[-1]) if sockets else False))
        if text == "boom":
            raise RuntimeError("boom")
        peer.send(text.upper())

    return App(define_hooks(message=message, error=lambda peer, exc: None), **options)


@pytest.mark.parametrize("kind", COALESCING)
async def test_replies_to_one_read_are_held_until_the_last_is_handled(
    kind: str, sockets: list[Any]
) -> None:
    seen: list[tuple[str, bool]] = []
    served = await serve_on(recording_app(seen, sockets), kind)
    try:
        client = await RawClient.connect(served.url)
        batch = [f"m{i}" for i in range(20)]
        for text in batch:
            client.protocol.send_text(text.encode())
        client.flush()  # one TCP write: the server reads the 20 frames at once
        assert await client.messages(20) == [t.upper() for t in batch]
        # Every message of the read was handled with the socket held...
        assert seen == [(t, True) for t in batch]
        # ...and released after the last one.
        assert not corked(sockets[0])

        client.protocol.send_text(b"alone")  # a read with one message: nothing is held
        client.flush()
        assert await client.messages(1) == ["ALONE"]
        assert seen[-1] == ("alone", False)
        client.close()
    finally:
        await served.aclose()


@pytest.mark.parametrize("kind", COALESCING)
async def test_an_error_in_the_middle_of_a_read_leaves_nothing_held(
    kind: str, sockets: list[Any]
) -> None:
    seen: list[tuple[str, bool]] = []
    served = await serve_on(recording_app(seen, sockets), kind)
    try:
        client = await RawClient.connect(served.url)
        for text in ("a", "b", "boom", "c", "d"):
            client.protocol.send_text(text.encode())
        client.flush()
        assert await client.messages(4) == ["A", "B", "C", "D"]
        assert not corked(sockets[0])
        client.close()
    finally:
        await served.aclose()


@pytest.mark.parametrize("kind", ["picows", "aiohttp"])  # websockets: docs/servers.md
async def test_a_close_frame_in_the_same_read_gets_every_reply_first(
    kind: str, sockets: list[Any]
) -> None:
    seen: list[tuple[str, bool]] = []
    served = await serve_on(recording_app(seen, sockets), kind)
    try:
        client = await RawClient.connect(served.url)
        for text in ("x", "y", "z"):
            client.protocol.send_text(text.encode())
        client.protocol.send_close(1000, "bye")
        client.flush()
        assert await client.messages(3) == ["X", "Y", "Z"]
        assert await client.close_code() == 1000
        client.close()
    finally:
        await served.aclose()


@pytest.mark.parametrize("kind", COALESCING)
async def test_coalesce_writes_off_holds_nothing(kind: str, sockets: list[Any]) -> None:
    seen: list[tuple[str, bool]] = []
    app = recording_app(seen, sockets, limits=Limits(coalesce_writes=False))
    served = await serve_on(app, kind)
    try:
        client = await RawClient.connect(served.url)
        for text in ("p", "q", "r"):
            client.protocol.send_text(text.encode())
        client.flush()
        assert await client.messages(3) == ["P", "Q", "R"]
        assert sockets == []
        assert seen == [("p", False), ("q", False), ("r", False)]
        client.close()
    finally:
        await served.aclose()


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
