"""``Limits.max_topics``: one bound on the topics (rooms) of a connection, whichever layer
subscribes it, and what each layer's client sees past it (issue 14: one client joined 100,000
rooms in 0.2 s, +42 MB). Over real sockets: the hooks layer on every server, the router in
memory and over websockets and picows, the rooms server on websockets."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

import crosswire
from crosswire import App, ConfigurationError, Limits, Message, Peer, Router, WsError, rpc
from crosswire.rooms import Identity, RoomClient, RoomServer
from tests.support import TIMEOUT, MakeClient, eventually, recv

DEFAULT = Limits().max_topics


async def test_hooks_subscribe_raises_past_the_limit_and_the_peer_carries_on(
    start_server: Any, kind: str
) -> None:
    """A message hook subscribing to as many topics as asked: the one past the limit raises
    WsError RESOURCE_EXHAUSTED in the hook, the topics that fit stay, and publishing to them
    still works."""

    def message(peer: Peer, msg: Message) -> None:
        asked = int(msg.text())
        try:
            for n in range(asked):
                peer.subscribe(f"t{n}")
        except WsError as exc:
            peer.send({"code": exc.code, "retryable": exc.retryable, "topics": len(peer.topics)})
            return
        peer.send({"topics": len(peer.topics)})

    app = App(crosswire.define_hooks(message=message))
    served = await start_server(app, kind)
    async with connect(served.url) as ws, connect(served.url) as other:
        await ws.send(str(DEFAULT + 100))
        assert orjson.loads(await recv(ws)) == {
            "code": "RESOURCE_EXHAUSTED",
            "retryable": False,
            "topics": DEFAULT,
        }
        assert app.publish(f"t{DEFAULT - 1}", "still here") == 1  # the topics that fit stay
        assert await recv(ws) == "still here"
        await other.send("3")  # another connection is not affected
        assert orjson.loads(await recv(other)) == {"topics": 3}


Join = rpc("JOIN", {"first": int, "count": int}, "JOINED", {"topics": int})


def joining_router() -> Router:
    def join(ctx: Any) -> None:
        for n in range(ctx.payload.first, ctx.payload.first + ctx.payload.count):
            ctx.subscribe(f"t{n}")
        ctx.reply({"topics": len(ctx.peer.topics)})

    return Router().rpc(Join, join)


async def test_router_ctx_subscribe_past_the_limit_answers_resource_exhausted(
    make_client: MakeClient,
) -> None:
    async with make_client(joining_router()).connect() as conn:
        with pytest.raises(WsError) as refused:
            await conn.request(Join, {"first": 0, "count": DEFAULT + 1}, correlation_id="j")
        assert refused.value.code == "RESOURCE_EXHAUSTED"
        assert refused.value.retryable is False and refused.value.details == {"limit": DEFAULT}
        assert len(conn.peer.topics) == DEFAULT  # the topics that fit stay
        reply = await conn.request(Join, {"first": 0, "count": 10})  # already in: no new topic
        assert reply.payload.topics == DEFAULT


def everything(client: RoomClient, rooms: list[str]) -> list[str]:
    return rooms


async def serve_rooms(
    limits: Limits | None = None, **options: Any
) -> tuple[RoomServer, crosswire.RunningServer]:
    options.setdefault("validate_rooms", everything)
    rooms = RoomServer(authenticate=lambda client, data: Identity(user_id="ann"), **options)
    return rooms, await crosswire.start(App(rooms, limits=limits), port=0)


async def test_a_rooms_join_past_the_limit_is_refused_whole_and_the_client_carries_on() -> None:
    rooms, server = await serve_rooms()
    try:
        async with connect(server.url + "/ws", max_size=None) as ws:

            async def send(event: str, data: Any) -> None:
                await ws.send(orjson.dumps({"event": event, "data": data}).decode())

            await send("authenticate", {})
            connected = orjson.loads(await recv(ws))
            client = rooms.client(connected["data"]["id"])
            assert client is not None and len(client.rooms) == 3  # own room + 2 default rooms

            await send("join", {"rooms": [f"r{n}" for n in range(100_000)]})
            assert orjson.loads(await recv(ws)) == {
                "event": "error",
                "data": {"message": "too many topics", "limit": DEFAULT},
            }
            assert len(client.rooms) == 3  # nothing of that join

            fits = DEFAULT - 3
            await send("join", {"rooms": [f"r{n}" for n in range(fits)]})
            await eventually(lambda: len(client.rooms) == DEFAULT)
            await send("join", {"rooms": ["r0", "one-more"]})  # r0 is in already: 1 new
            assert orjson.loads(await recv(ws))["data"]["message"] == "too many topics"
            await send("leave", {"rooms": ["r0"]})
            await send("join", {"rooms": ["one-more"]})  # now it fits
            await eventually(lambda: "one-more" in client.rooms)
            assert rooms.to_room("one-more", "news", 1) == 1
            assert orjson.loads(await recv(ws)) == {"event": "news", "data": 1}
    finally:
        await asyncio.wait_for(server.aclose(), TIMEOUT)


async def test_a_join_that_waits_for_the_one_before_it_is_checked_after_it() -> None:
    """Two joins that each fit, the first validated asynchronously: the second waits for the
    first (a connection's topic frames are served in order), then is refused whole."""
    gate = asyncio.Event()
    validating: list[list[str]] = []

    async def later(client: RoomClient, asked: list[str]) -> list[str]:
        validating.append(asked)
        await gate.wait()
        return asked

    rooms, server = await serve_rooms(validate_rooms=later, limits=Limits(max_topics=10))
    try:
        async with connect(server.url + "/ws") as ws:
            await ws.send('{"event":"authenticate"}')
            client = rooms.client(orjson.loads(await recv(ws))["data"]["id"])
            assert client is not None
            await ws.send('{"event":"join","data":{"rooms":["a","b","c","d","e"]}}')
            await ws.send('{"event":"join","data":{"rooms":["f","g","h"]}}')  # 3 + 5 + 3 > 10
            await eventually(lambda: len(validating) == 1)  # one room at a time, in order
            gate.set()
            assert orjson.loads(await recv(ws)) == {
                "event": "error",
                "data": {"message": "too many topics", "limit": 10},
            }
            assert len(client.rooms) == 8 and "f" not in client.rooms
    finally:
        await asyncio.wait_for(server.aclose(), TIMEOUT)


def test_a_limit_below_the_default_rooms_is_refused_at_startup() -> None:
    rooms = RoomServer(authenticate=lambda client, data: Identity())
    with pytest.raises(ConfigurationError, match="max_topics"):
        App(rooms, limits=Limits(max_topics=2))  # own room + ws-default + ws-notification
