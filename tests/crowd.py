"""Thousands of WebSocket clients in one process, for the load tests.

A websockets client (``connect``) costs a task, a stream and its buffers per connection, and
opening thousands of them takes longer than the test they serve. A :class:`Member` is an
:class:`asyncio.Protocol` around websockets' sans-I/O ``ClientProtocol``: no task, no stream;
the library writes the handshake, checks the server's answer, parses the frames and answers
pings and close frames. The sockets and the server are real.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Callable

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from tests.support import TIMEOUT

#: What a crowd does with each message a member receives: ``(member, data)``.
OnMessage = Callable[["Member", "str | bytes"], None]


class Member(asyncio.Protocol):
    """One client of a :class:`Crowd`. ``response`` is the server's answer to the handshake
    (a 101, or a refusal) once it arrived; ``ended`` once the TCP connection is gone."""

    def __init__(self, crowd: Crowd) -> None:
        self.crowd = crowd
        self.protocol = ClientProtocol(crowd.uri, max_size=None)
        self.transport: asyncio.Transport | None = None
        self.response: Response | None = None
        self.answered: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.inbox: list[str | bytes] = []
        self.ended = False

    @property
    def open(self) -> bool:
        return self.protocol.state is State.OPEN and not self.ended

    def send(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        self._flush()

    def pause_reading(self) -> None:
        """Stop reading from the socket: this client stops reading, as a slow consumer does."""
        assert self.transport is not None
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        assert self.transport is not None
        self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        self._take_events()

    def eof_received(self) -> bool | None:
        self.protocol.receive_eof()
        self._take_events()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        if not self.answered.done():
            self.answered.set_exception(ConnectionError("closed before the handshake's answer"))
        self.crowd._changed.set()

    # -------------------------------------------------------------------------------------

    def _take_events(self) -> None:
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                self.response = event
                if not self.answered.done():
                    self.answered.set_result(event)
            elif isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
                # The servers under test never fragment what they send: a fragment would be
                # a message cut in parts, which these tests do not reassemble.
                assert event.fin, "a fragmented message"
                data = bytes(event.data)
                self.crowd.received += 1
                self.crowd.on_message(self, data.decode() if event.opcode is Opcode.TEXT else data)
        self._flush()  # pongs, the answer to a close frame
        self.crowd._changed.set()

    def _flush(self) -> None:
        assert self.transport is not None
        chunks = self.protocol.data_to_send()
        data = b"".join(chunks)
        if data and not self.transport.is_closing():
            self.transport.write(data)
        if chunks and chunks[-1] == b"":  # the protocol ends its side of the connection
            self.transport.close()


def keep(member: Member, data: str | bytes) -> None:
    """The default :data:`OnMessage`: each member keeps its messages in ``inbox``."""
    member.inbox.append(data)


class Crowd:
    """Clients of one WebSocket URL. ``received`` counts the messages all members received;
    ``on_message`` gets each of them (by default, the member's ``inbox`` keeps it)."""

    def __init__(self, url: str, on_message: OnMessage = keep) -> None:
        self.uri = parse_uri(url)
        self.on_message = on_message
        self.members: list[Member] = []
        self.received = 0
        self._changed = asyncio.Event()

    async def connect(self, *, receive_buffer: int | None = None) -> Member:
        """One more member, once the server answered its handshake (whatever the answer:
        look at ``member.response``). ``receive_buffer`` shrinks its socket's receive buffer,
        so that the server's writes stop quickly once it stops reading."""
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        try:
            if receive_buffer is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, (self.uri.host, self.uri.port)), TIMEOUT)
        except BaseException:
            sock.close()
            raise
        member = Member(self)
        self.members.append(member)
        await loop.create_connection(lambda: member, sock=sock)
        await asyncio.wait_for(asyncio.shield(member.answered), TIMEOUT)
        return member

    async def join(self, count: int, *, at_once: int = 64) -> list[Member]:
        """``count`` more members, each open (its handshake answered with 101); at most
        ``at_once`` handshakes in flight, so that the server's listen backlog never overflows
        (a dropped SYN is retried a second later)."""
        gate = asyncio.Semaphore(at_once)

        async def one() -> Member:
            async with gate:
                member = await self.connect()
            assert member.open, member.response
            return member

        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def until(self, condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:  # noqa: ASYNC109
        """Wait until ``condition()`` holds, checked whenever a member received something or
        lost its connection; at most ``timeout`` seconds."""

        async def wait() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    def abort(self) -> None:
        """Drop every member's connection (no closing handshake: the tests are done)."""
        for member in self.members:
            member.abort()


async def readers(url: str, count: int) -> None:
    """``python -m tests.crowd URL COUNT``: the readers of a broadcast, and one client that
    stops reading, in a process of their own (so that the server's memory can be measured
    in the test's process without theirs).

    It connects the slow client first (a small receive buffer; it never reads after its
    handshake) and prints ``slow``; on ``go`` from standard input, it connects COUNT - 1
    readers and prints ``ready``. The server then publishes binary messages that start with
    their sequence number (8 bytes, big-endian, from 0), one at a time: once every reader
    has received message N it prints ``N`` (1-based), and counts a message out of order in
    ``wrong``. On ``resume``, the slow client reads again; once its connection is gone it
    prints ``slow ended RECEIVED WRONG`` (its messages, and the readers' messages out of
    order). It exits when its standard input closes.
    """
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    seen: dict[Member, int] = {}  # messages per member
    delivered = wrong = 0  # messages the readers received; those out of order (any member)
    slow: Member | None = None

    def check(member: Member, data: str | bytes) -> None:
        nonlocal delivered, wrong
        n = seen.get(member, 0)
        if not isinstance(data, bytes) or int.from_bytes(data[:8], "big") != n:
            wrong += 1
        seen[member] = n + 1
        if member is not slow:
            delivered += 1
            if delivered % (count - 1) == 0:
                print(delivered // (count - 1), flush=True)

    crowd = Crowd(url, check)
    try:
        slow = await crowd.connect(receive_buffer=8192)
        assert slow.open, slow.response
        slow.pause_reading()
        print("slow", flush=True)
        assert await stdin.readline() == b"go\n"
        await crowd.join(count - 1)
        print("ready", flush=True)
        assert await stdin.readline() == b"resume\n"
        slow.resume_reading()
        await crowd.until(lambda: slow.ended)
        print(f"slow ended {seen.get(slow, 0)} {wrong}", flush=True)
        await stdin.read()
    finally:
        crowd.abort()


if __name__ == "__main__":
    asyncio.run(readers(sys.argv[1], int(sys.argv[2])))
