"""picows runs the handshake synchronously: an ``async`` upgrade or http handler is refused at
startup, and a plain one that returns an awaitable anyway is answered 500 at once, with a log
that says what to do, while the server carries on (issue 14)."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Coroutine
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

import crosswire
from crosswire import Accept, App, ConfigurationError, Request, Response, Router, message
from tests.support import TIMEOUT

Ping = message("PING")
Pong = message("PONG")


def pinging_router() -> Router:
    return Router().on(Ping, lambda ctx: ctx.send(Pong))


async def test_an_async_on_upgrade_of_a_router_is_refused_at_startup() -> None:
    """The router's own upgrade hook is plain (it calls on_upgrade when a handshake comes):
    the check used to miss an async on_upgrade, and every handshake got 500."""

    async def upgrade(request: Request) -> Accept:
        return Accept()

    router = pinging_router()
    app = App(router)
    router.on_upgrade(upgrade)  # registered after the App is made: still checked
    with pytest.raises(ConfigurationError, match="plain function"):
        await crosswire.start(app, server="picows", port=0)

    class AsyncCall:
        async def __call__(self, request: Request) -> Response:
            return Response(200, "never")

    with pytest.raises(ConfigurationError, match="plain"):
        await crosswire.start(App(crosswire.define_hooks(), http=AsyncCall()), server="picows")


async def test_a_plain_handler_returning_an_awaitable_gets_500_and_the_server_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    made: list[Coroutine[Any, Any, Any]] = []

    async def later() -> Response:
        return Response(200, "never")

    def sneaky(request: Request) -> Any:  # plain, yet returns a coroutine
        if request.path == "/ok":
            return None if request.is_websocket else Response(200, "fine")
        made.append(later())
        return made[-1]

    router = pinging_router().on_upgrade(sneaky)
    server = await crosswire.start(App(router, http=sneaky), server="picows", port=0)
    base = f"127.0.0.1:{server.port}"
    try:
        with caplog.at_level(logging.ERROR, logger="crosswire.app"):
            with pytest.raises(InvalidStatus) as refused:
                await asyncio.wait_for(connect(f"ws://{base}/bad"), TIMEOUT)
            assert refused.value.response.status_code == 500
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://{base}/bad") as resp:
                    assert resp.status == 500
                async with http.get(f"http://{base}/ok") as resp:
                    assert (resp.status, await resp.text()) == (200, "fine")
            async with connect(f"ws://{base}/ok") as ws:
                await ws.send('{"type": "PING"}')
                assert '"PONG"' in str(await asyncio.wait_for(ws.recv(), TIMEOUT))
        assert len(made) == 2
        # Closed, not left to the garbage collector ("coroutine ... was never awaited").
        assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in made)
        said = [r.getMessage() for r in caplog.records]
        assert sum("make it a plain function" in line for line in said) == 2, said
    finally:
        await asyncio.wait_for(server.aclose(), TIMEOUT)


async def test_an_http_handler_that_raises_or_returns_no_response_gets_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def page(request: Request) -> Any:
        if request.path == "/raise":
            raise RuntimeError("boom")
        if request.path == "/none":
            return None
        return Response(200, "fine")

    server = await crosswire.start(App(pinging_router(), http=page), server="picows", port=0)
    try:
        with caplog.at_level(logging.ERROR, logger="crosswire.app"):
            async with aiohttp.ClientSession() as http:
                for path in ("/raise", "/none"):
                    async with http.get(f"http://127.0.0.1:{server.port}{path}") as resp:
                        assert resp.status == 500, path
                async with http.get(f"http://127.0.0.1:{server.port}/") as resp:
                    assert (resp.status, await resp.text()) == (200, "fine")
        assert len([r for r in caplog.records if r.name == "crosswire.app"]) == 2
    finally:
        await asyncio.wait_for(server.aclose(), TIMEOUT)
