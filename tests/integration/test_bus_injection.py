"""Hostile bytes published into crosswire's Redis channels (issue 17, point 4): not JSON, a
wrong envelope, a huge one. Each is dropped, counted and reported, never delivered; the
connections go on receiving what is well-formed."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from websockets.asyncio.client import connect

from crosswire import App, BusError, Hub, Peer, define_hooks
from crosswire.pubsub.redis import RedisBackend
from tests.redis_server import RedisServer
from tests.support import TIMEOUT, eventually, recv


async def test_hostile_bytes_on_the_bus_are_dropped_counted_and_never_delivered(
    serve_router: Any, redis_server: RedisServer
) -> None:
    errors: list[BusError] = []
    hub = Hub(RedisBackend(redis_server.url), on_error=errors.append, max_bus_message=64 * 1024)

    def open_(peer: Peer) -> None:
        peer.subscribe("lobby")

    served = await serve_router(App(define_hooks(open=open_), hub=hub))
    ws = await asyncio.wait_for(connect(served.url + "/"), TIMEOUT)
    redis = redis_server.client()
    try:
        await eventually(lambda: hub.subscriber_count("lobby") == 1)
        await hub.flush()  # the channel is subscribed on Redis
        hostile = [
            b"not json at all",
            b"\xff\xfe\x00 binary",
            b'{"serverId": "x", "type": "room"}',  # no target, no event
            b'{"serverId": "x", "type": "nope", "target": "lobby", "event": "e"}',
            b'{"serverId": "x", "type": "room", "target": "lobby", "event": "e", "offset": -1,'
            b' "epoch": "e"}',  # a position that is not one
            orjson.dumps(
                {
                    "serverId": "x",
                    "type": "room",
                    "target": "lobby",
                    "event": "e",
                    "data": "x" * 100_000,
                }
            ),  # past max_bus_message
        ]
        for message in hostile:
            await redis.publish("ws:room:lobby", message)
        good = {"serverId": "x", "type": "room", "target": "lobby", "event": "hello", "data": 1}
        await redis.publish("ws:room:lobby", orjson.dumps(good))
        assert orjson.loads(await recv(ws)) == {"event": "hello", "data": 1}  # and nothing else
        await eventually(lambda: hub.rejected == len(hostile))
        assert len(errors) == len(hostile)
        assert all("x" * 100 not in str(error) for error in errors)  # bodies never reported
    finally:
        await redis.aclose()
        await ws.close()
