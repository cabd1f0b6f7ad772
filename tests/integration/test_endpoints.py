"""One App, several endpoints by path, each with its router and dialects; on every server."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

import crosswire
from crosswire import App, Endpoint, EventContext, Router, message
from crosswire.server import SERVERS
from crosswire.wire import CANONICAL, ROVER
from tests.support import TIMEOUT, recv

Say = message("say", {"text": str})
Said = message("said", {"text": str, "path": str})


def saying_router() -> Router:
    def say(ctx: EventContext[Any]) -> None:
        ctx.send(Said, {"text": ctx.payload.text, "path": ctx.peer.request.path})

    return Router().on(Say, say)


def two_endpoint_app(opened: list[str]) -> App:
    def upgrade(request: crosswire.Request) -> None:
        opened.append(request.path)

    chat = saying_router()
    chat.on_upgrade(upgrade)
    return App(
        endpoints=[
            Endpoint("/chat", chat, dialects=[ROVER]),
            Endpoint("/api", saying_router(), dialects=[CANONICAL, ROVER]),
        ]
    )


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_each_path_speaks_its_endpoints_dialect(serve_router: Any, server: str) -> None:
    opened: list[str] = []
    running = await serve_router(two_endpoint_app(opened), server)
    async with connect(running.url + "/chat") as chat, connect(running.url + "/api") as api:
        await chat.send('{"type":"say","text":"hi"}')
        assert orjson.loads(await recv(chat)) == {"type": "said", "text": "hi", "path": "/chat"}
        await api.send('{"type":"say","payload":{"text":"yo"}}')
        assert orjson.loads(await recv(api)) == {
            "type": "said",
            "meta": {},
            "payload": {"text": "yo", "path": "/api"},
        }
        assert chat.subprotocol is None and api.subprotocol is None
    assert opened == ["/chat"]  # each endpoint runs its own upgrade hook


async def test_a_path_no_endpoint_serves_is_refused_with_404_before_any_hook(
    serve_router: Any, server: str
) -> None:
    opened: list[str] = []
    running = await serve_router(two_endpoint_app(opened), server)
    for path in ("/", "/chat/", "/nope"):
        with pytest.raises(InvalidStatus) as refused:
            await asyncio.wait_for(connect(running.url + path), TIMEOUT)
        assert refused.value.response.status_code == 404
    assert opened == []


async def test_the_dialect_is_chosen_by_query_or_subprotocol(
    serve_router: Any, server: str
) -> None:
    running = await serve_router(two_endpoint_app([]), server)
    url = running.url + "/api"
    rover_frame = '{"type":"say","text":"hi"}'
    async with connect(url + "?dialect=rover") as by_query:
        await by_query.send(rover_frame)
        assert orjson.loads(await recv(by_query))["type"] == "said"
        assert by_query.subprotocol is None
    offered = [Subprotocol("x-other"), Subprotocol("crosswire.rover")]
    async with connect(url, subprotocols=offered) as by_subprotocol:
        assert by_subprotocol.subprotocol == "crosswire.rover"  # answered with it
        await by_subprotocol.send(rover_frame)
        assert orjson.loads(await recv(by_subprotocol))["text"] == "hi"
    with pytest.raises(InvalidStatus) as refused:
        await asyncio.wait_for(connect(url + "?dialect=events"), TIMEOUT)
    assert refused.value.response.status_code == 400


def test_endpoints_are_checked_when_the_app_is_made() -> None:
    router = saying_router()
    with pytest.raises(crosswire.ConfigurationError, match="two endpoints"):
        App(endpoints=[Endpoint("/a", router), Endpoint("/a", saying_router())])
    with pytest.raises(crosswire.ConfigurationError, match="not both"):
        App(router, endpoints=[Endpoint("/a", saying_router())])
    with pytest.raises(crosswire.ConfigurationError, match="starts with '/'"):
        Endpoint("a", router)
    with pytest.raises(crosswire.ConfigurationError, match="at least one dialect"):
        Endpoint("/a", router, dialects=[])
