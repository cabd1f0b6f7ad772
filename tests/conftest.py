"""Fixtures: real servers on port 0, one per adapter, driven over real sockets."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, async_playwright

import crosswire
from crosswire.testing import DEFAULT_TIMEOUT, TestClient
from tests.browser import NoBrowser, chromium_executable
from tests.jsclient.browser import BrowserScenario, harness_app
from tests.redis_server import RedisServer
from tests.support import (
    BROWSER_CLIENT,
    CLIENT_KINDS,
    COMMAND,
    NODE_RUNNER,
    SERVER_KINDS,
    TIMEOUT,
    Command,
    MakeClient,
    NodeScenario,
    RunCommand,
    RunScenario,
    Scenario,
    Served,
    ServeRouter,
    SocketClient,
    node,
    reap,
    serve_on,
    skip_stage,
)


def _has_pidfd() -> bool:
    """Whether this kernel opens process file descriptors (``os.pidfd_open``)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True


#: Where the browser client's scenarios run: the ``run_scenario`` fixture runs each in both.
RUNTIMES = ("node", "browser")

# Python 3.11's asyncio waits for each subprocess (redis-server, node, chromium) in a thread
# of its own. A test that times out then prints one stack per such thread, and the stack that
# matters, the test's, may be cut from the end of the log CI keeps. Where the kernel has
# pidfds (Linux 5.3+), a subprocess's end is read from the event loop instead: no threads.
# (3.12 chooses pidfds itself; there the child watcher API is deprecated. In 3.11 this watcher
# serves the main thread's loops only: no test starts a subprocess from another thread.)
if sys.version_info < (3, 12) and hasattr(asyncio, "PidfdChildWatcher") and _has_pidfd():
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


@pytest.fixture
async def start_server() -> AsyncIterator[Callable[..., Awaitable[Served]]]:
    """``await start_server(app, kind, sock=None)`` starts ``app`` on server ``kind`` (on
    ``sock``, a listening socket, if given); stopped at teardown."""
    running: list[Served] = []

    async def start(app: crosswire.App, kind: str, *, sock: socket.socket | None = None) -> Served:
        served = await serve_on(app, kind, sock=sock)
        running.append(served)
        return served

    yield start
    for served in running:
        await asyncio.wait_for(served.aclose(), 15)


@pytest.fixture(params=SERVER_KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """Each server kind in turn: websockets, picows, aiohttp, uvicorn, hypercorn, starlette."""
    return str(request.param)


@pytest.fixture(params=CLIENT_KINDS)
async def make_client(request: pytest.FixtureRequest) -> AsyncIterator[MakeClient]:
    """``make_client(router_or_app, timeout=...)`` gives a TestClient: in memory, then over a
    real websockets server, then over picows (the test runs once for each); servers stop at
    teardown."""
    kind = str(request.param)
    made: list[SocketClient] = []

    def make(app: Any, *, timeout: float = DEFAULT_TIMEOUT) -> TestClient:
        if kind == "memory":
            return TestClient(app, timeout=timeout)
        client = SocketClient(app, kind, timeout=timeout)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def crosswire_cmd() -> AsyncIterator[RunCommand]:
    """``await crosswire_cmd(*args, cwd=..., env=...)`` starts the command (``env`` adds to the
    environment); killed at teardown if alive."""
    procs: list[asyncio.subprocess.Process] = []

    async def run(
        *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> Command:
        proc = await asyncio.create_subprocess_exec(
            str(COMMAND),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
        procs.append(proc)
        return Command(proc)

    yield run
    await reap(procs)


@pytest.fixture
async def serve_router() -> AsyncIterator[ServeRouter]:
    """``await serve_router(router_or_app, kind="websockets", port=0)``: a crosswire server
    that the test may stop, and start again on the same port; all are stopped at teardown."""
    running: list[crosswire.RunningServer] = []

    async def serve(app: Any, kind: str = "websockets", port: int = 0) -> crosswire.RunningServer:
        app = app if isinstance(app, crosswire.App) else crosswire.App(app)
        server = await crosswire.start(app, server=kind, port=port)  # type: ignore[arg-type]
        running.append(server)
        return server

    yield serve
    for server in running:
        await asyncio.wait_for(server.aclose(), 15)


@pytest.fixture(params=RUNTIMES)
def run_scenario(request: pytest.FixtureRequest) -> RunScenario:
    """``await run_scenario(url, name, *more)`` runs a scenario of tests/jsclient/scenarios.mjs
    with the browser client against ``url``: in Node.js, then in a headless Chromium (the test
    runs once in each; the browser one skips, loudly, without a Chromium)."""
    run: RunScenario = request.getfixturevalue(f"{request.param}_scenarios")
    return run


@pytest.fixture
async def node_scenarios() -> AsyncIterator[RunScenario]:
    """``run_scenario`` in Node.js (tests/jsclient/node.mjs); killed at teardown if still
    running."""
    procs: list[asyncio.subprocess.Process] = []

    async def run(url: str, name: str, *more: str) -> Scenario:
        proc = await asyncio.create_subprocess_exec(
            *node(),
            str(NODE_RUNNER),
            str(BROWSER_CLIENT),
            url,
            name,
            *more,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        return NodeScenario(proc)

    yield run
    await reap(procs)


@pytest.fixture
async def browser_scenarios(browser: Browser) -> AsyncIterator[RunScenario]:
    """``run_scenario`` in pages of a headless Chromium, which load the client from a crosswire
    App (tests/jsclient/browser.py); the pages and the App are closed at teardown."""
    harness = await crosswire.start(harness_app())
    running: list[BrowserScenario] = []

    async def run(url: str, name: str, *more: str) -> Scenario:
        scenario = BrowserScenario(await asyncio.wait_for(browser.new_page(), TIMEOUT))
        running.append(scenario)
        await scenario.start(f"http://127.0.0.1:{harness.port}/", url, name, more)
        return scenario

    yield run
    for scenario in running:
        await scenario.aclose()
    await asyncio.wait_for(harness.aclose(), TIMEOUT)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium's path; a loud skip of the browser stage when there is none."""
    try:
        return chromium_executable()
    except NoBrowser as missing:
        skip_stage("BROWSER", missing)


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    """A headless Chromium (Playwright's async API), closed at teardown."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A real redis-server on a free port, killed at teardown."""
    server = RedisServer(tmp_path)
    await server.start()
    yield server
    await server.kill()
