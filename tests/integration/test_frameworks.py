"""crosswire inside FastAPI and Starlette, as docs/servers.md shows it, on a real uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import crosswire
from tests.support import TIMEOUT, closed_with, recv


def path_echo() -> crosswire.App:
    """Answers every message with the path the hooks saw."""

    def message(peer: crosswire.Peer, msg: crosswire.Message) -> None:
        peer.send(f"{peer.request.path} {msg.text()}")

    return crosswire.App(crosswire.define_hooks(message=message))


@contextlib.asynccontextmanager
async def uvicorn_serving(asgi_app: Any) -> AsyncIterator[str]:
    """``asgi_app`` on a real uvicorn on a free port; yields ``127.0.0.1:port``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(asgi_app, log_config=None, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT * 2)


async def test_fastapi_websocket_route_serves_the_exact_path() -> None:
    app = path_echo()
    api = FastAPI(routes=[WebSocketRoute("/ws", crosswire.asgi(app))])

    @api.get("/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    async with uvicorn_serving(api) as where:
        async with connect(f"ws://{where}/ws") as ws:
            await ws.send("hi")
            assert await recv(ws) == "/ws hi"
        async with aiohttp.ClientSession() as http, http.get(f"http://{where}/health") as resp:
            assert await resp.json() == {"ok": True}


async def test_starlette_mount_serves_the_paths_below_it() -> None:
    """A Mount serves ``/ws/`` and below, not ``/ws`` itself (Starlette's routing): the docs
    say to use a WebSocket route for an exact path."""
    app = path_echo()

    async def health(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    web = Starlette(routes=[Route("/health", health), Mount("/ws", app=crosswire.asgi(app))])
    async with uvicorn_serving(web) as where:
        for path in ("/ws/", "/ws/lobby"):
            async with connect(f"ws://{where}{path}") as ws:
                await ws.send("hi")
                assert await recv(ws) == f"{path} hi"
        with pytest.raises(InvalidStatus):
            await asyncio.wait_for(connect(f"ws://{where}/ws"), TIMEOUT)


async def test_starlette_websocket_route_serves_the_exact_path() -> None:
    app = path_echo()
    web = Starlette(routes=[WebSocketRoute("/ws", crosswire.asgi(app))])
    async with uvicorn_serving(web) as where, connect(f"ws://{where}/ws") as ws:
        await ws.send("hi")
        assert await recv(ws) == "/ws hi"


PLAIN_APP = """
import crosswire

app = crosswire.App(crosswire.define_hooks(message=lambda peer, msg: peer.send(msg.raw)))
asgi = crosswire.asgi(app)
"""


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (["uvicorn", "plain:asgi", "--fd", "{fd}"], 1012),
        (["hypercorn", "plain:asgi", "--bind", "fd://{fd}"], 1011),
    ],
)
async def test_a_server_run_by_the_user_closes_its_websockets_itself_on_shutdown(
    tmp_path: Path, command: list[str], code: int
) -> None:
    """docs/close-codes.md: uvicorn and hypercorn, run as the user runs them, close the
    WebSockets with their own code before the App hears of the shutdown."""
    (tmp_path / "plain.py").write_text(PLAIN_APP)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    fd = sock.fileno()
    argv = [str(Path(sys.executable).with_name(command[0])), *command[1:]]
    proc = await asyncio.create_subprocess_exec(
        *(arg.format(fd=fd) for arg in argv),
        cwd=tmp_path,
        pass_fds=[fd],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with connect(f"ws://127.0.0.1:{sock.getsockname()[1]}/") as ws:
            await ws.send("hi")
            assert await recv(ws) == "hi"
            proc.send_signal(signal.SIGTERM)
            assert (await closed_with(ws))[0] == code
        await asyncio.wait_for(proc.wait(), TIMEOUT * 2)
    finally:
        sock.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


ADD = {"type": "ADD", "meta": {"correlationId": "c1"}, "payload": {"a": 1, "b": 2}}


def test_the_fastapi_example_serves_again_after_each_lifespan_restart() -> None:
    """Each ``with TestClient(api):`` block runs the lifespan (startup, then shutdown) in an
    event loop of its own: the App serves in every block, not only the first."""
    from fastapi.testclient import TestClient

    from examples.fastapi_app import api

    for _ in range(3):
        with TestClient(api) as client:
            assert client.get("/health").json() == {"status": "ok"}
            with client.websocket_connect("/ws") as ws:
                ws.send_json(ADD)
                assert ws.receive_json()["payload"] == {"sum": 3}


async def test_uvicorn_workers_without_a_bus_are_warned_about(tmp_path: Path) -> None:
    """``uvicorn --workers 2`` on an App without a bus splits its rooms between the workers;
    crosswire cannot refuse another server's workers, so each of them says so at startup."""
    (tmp_path / "plain.py").write_text(PLAIN_APP)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    fd = sock.fileno()
    uvicorn_cmd = str(Path(sys.executable).with_name("uvicorn"))
    proc = await asyncio.create_subprocess_exec(
        *[uvicorn_cmd, "plain:asgi", "--workers", "2", "--fd", str(fd)],
        cwd=tmp_path,
        pass_fds=[fd],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        warned = 0
        while warned < 2:  # one line from each worker
            line = (await asyncio.wait_for(proc.stderr.readline(), TIMEOUT * 2)).decode()
            assert line, "uvicorn stopped before both workers warned"
            warned += "one of 2 workers: they need a bus between them" in line
    finally:
        sock.close()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), TIMEOUT * 2)


async def test_an_app_that_cannot_start_fails_the_asgi_lifespan_startup() -> None:
    """uvicorn is told (``lifespan.startup.failed``) and does not serve."""
    from crosswire.pubsub import MemoryBackend, MemoryBus

    class Unstartable(MemoryBackend):
        async def start(self) -> None:
            raise RuntimeError("no bus here")

    app = crosswire.App(crosswire.define_hooks(), hub=crosswire.Hub(Unstartable(MemoryBus())))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(crosswire.asgi(app), log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]

    async def serve() -> int | str | None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exited:  # (caught here: it must not reach the event loop)
            return exited.code
        return None

    try:
        assert await asyncio.wait_for(serve(), TIMEOUT) == 3  # uvicorn's "startup failed"
    finally:
        sock.close()
    assert not server.started
