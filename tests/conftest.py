"""Fixtures: real servers on port 0, one per adapter, driven over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

import crosswire
from crosswire.server import SERVERS

#: Every way crosswire can serve an App; the scenario tests run against each.
SERVER_KINDS = (*SERVERS, "starlette")
#: Servers that drop a client which stops answering pings. hypercorn sends pings but never
#: checks for pongs (docs/servers.md), so it is left out of the keepalive test.
KEEPALIVE_KINDS = tuple(k for k in SERVER_KINDS if k != "hypercorn")

StartFn = Callable[..., Awaitable["Served"]]


class Served:
    """A running server for one App; ``url`` is the WebSocket base URL."""

    def __init__(self, url: str, http_url: str, stop: Callable[[], Awaitable[None]]) -> None:
        self.url = url
        self.http_url = http_url
        self._stop = stop

    async def aclose(self) -> None:
        await self._stop()


async def _start_starlette(app: crosswire.App) -> Served:
    """The App mounted at /ws inside a Starlette application with an HTTP route, on uvicorn."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    async def health(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok from starlette")

    web = Starlette(routes=[Route("/health", health), Mount("/ws", app=crosswire.asgi(app))])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        web,
        lifespan="off",
        log_level="warning",
        ws_ping_interval=app.limits.ping_interval,  # ASGI has no ping: the server's setting
        ws_ping_timeout=app.limits.ping_timeout,
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    # The socket already listens: the kernel queues connections until uvicorn takes them.
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))

    async def stop() -> None:
        await app.shutdown()
        server.should_exit = True
        await task

    return Served(f"ws://127.0.0.1:{port}/ws/", f"http://127.0.0.1:{port}", stop)


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[[crosswire.App, str], Awaitable[Served]]]:
    """``await start_server(app, kind)`` starts ``app`` on server ``kind``; stopped at teardown."""
    running: list[Served] = []

    async def start(app: crosswire.App, kind: str) -> Served:
        if kind == "starlette":
            served = await _start_starlette(app)
        else:
            srv = await crosswire.start(app, server=kind)  # type: ignore[arg-type]
            served = Served(srv.url + "/ws", f"http://127.0.0.1:{srv.port}", srv.aclose)
        running.append(served)
        return served

    yield start
    for served in running:
        await asyncio.wait_for(served.aclose(), 15)


@pytest.fixture(params=SERVER_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)
