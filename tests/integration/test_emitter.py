"""The Emitter and seed 003's envelope on Redis, both ways: what any Redis client publishes in
that envelope reaches crosswire's clients, and what crosswire's Emitter publishes is exactly
what the seed's servers read."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from crosswire import BusError, Emitter
from crosswire.pubsub.redis import RedisBackend
from tests.integration.test_hub_across_instances import Cluster
from tests.redis_server import RedisServer
from tests.support import TIMEOUT


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    redis = RedisServer(tmp_path)
    await redis.start()
    url = redis.url
    made = Cluster(lambda: RedisBackend(url), redis)
    yield made
    for ws in made.clients:
        await ws.close()
    for inst in made.instances:
        await asyncio.wait_for(inst.server.aclose(), TIMEOUT)
    await redis.kill()


async def publish_raw(redis: RedisServer, channel: str, envelope: dict[str, Any]) -> None:
    """What another system (the seed's emitter, a script) does: a plain PUBLISH."""
    client = redis.client()
    try:
        await client.publish(channel, orjson.dumps(envelope))
    finally:
        await client.aclose()


async def test_raw_seed_envelopes_from_a_plain_redis_client_reach_crosswire_clients(
    cluster: Cluster,
) -> None:
    redis = cluster.redis
    assert redis is not None
    a, b = await cluster.instance(), await cluster.instance()
    ann = await cluster.client(a, rooms=("lobby",), user="ann")
    ben = await cluster.client(b, rooms=("lobby",), user="ben")
    await cluster.settled()

    await publish_raw(
        redis,
        "ws:room:lobby",
        {"serverId": "emitter", "type": "room", "target": "lobby", "event": "news", "data": 1},
    )
    assert await ann.receive() == {"event": "news", "data": 1}
    assert await ben.receive() == {"event": "news", "data": 1}

    await publish_raw(
        redis,
        "ws:client:" + ben.id,
        {"serverId": "node-7", "type": "client", "target": ben.id, "event": "dm", "data": "hi"},
    )
    assert await ben.receive() == {"event": "dm", "data": "hi"}

    await publish_raw(
        redis,
        "ws:user:ann",
        {"serverId": "emitter", "type": "user", "target": "ann", "event": "note", "data": {}},
    )
    assert await ann.receive() == {"event": "note", "data": {}}

    await publish_raw(
        redis,
        "ws:broadcast",
        {
            "serverId": "emitter",
            "type": "broadcast",
            "event": "all",
            "data": [2],
            "exclude": [ann.id],
        },
    )
    assert await ben.receive() == {"event": "all", "data": [2]}
    await publish_raw(
        redis,
        "ws:room:lobby",
        {"serverId": "emitter", "type": "room", "target": "lobby", "event": "end"},
    )
    assert await ann.receive() == {"event": "end"}  # no data: the key is left out
    assert await ben.receive() == {"event": "end"}
    await ann.nothing_more()


async def test_the_emitter_writes_seed_003s_envelopes(redis_server: RedisServer) -> None:
    listener = redis_server.client()
    pubsub = listener.pubsub()
    await pubsub.psubscribe("ws:*")
    await asyncio.wait_for(pubsub.get_message(timeout=TIMEOUT), TIMEOUT)  # the confirmation
    async with Emitter(RedisBackend(redis_server.url)) as emitter:
        await emitter.to_client("c1", "e1", {"k": "v"})
        await emitter.to_user("u1", "e2", 2)
        await emitter.to_room("r1", "e3", [3], exclude=["c1", "c2"])
        await emitter.to_room("r1", "e4", None)
        await emitter.broadcast("e5", "five")

    seen: list[tuple[str, dict[str, Any]]] = []
    while len(seen) < 5:
        message = await asyncio.wait_for(pubsub.get_message(timeout=TIMEOUT), TIMEOUT)
        if message and message["type"] == "pmessage":
            seen.append((message["channel"].decode(), orjson.loads(message["data"])))
    await pubsub.aclose()
    await listener.aclose()
    assert seen == [
        (
            "ws:client:c1",
            {
                "serverId": "emitter",
                "type": "client",
                "target": "c1",
                "event": "e1",
                "data": {"k": "v"},
            },
        ),
        (
            "ws:user:u1",
            {"serverId": "emitter", "type": "user", "target": "u1", "event": "e2", "data": 2},
        ),
        (
            "ws:room:r1",
            {
                "serverId": "emitter",
                "type": "room",
                "target": "r1",
                "event": "e3",
                "data": [3],
                "exclude": ["c1", "c2"],
            },
        ),
        (
            "ws:room:r1",
            {"serverId": "emitter", "type": "room", "target": "r1", "event": "e4"},
        ),
        (
            "ws:broadcast",
            {"serverId": "emitter", "type": "broadcast", "event": "e5", "data": "five"},
        ),
    ]


EMITTER_SCRIPT = """
import asyncio, sys
from crosswire import Emitter
from crosswire.pubsub.redis import RedisBackend

async def main():
    async with Emitter(RedisBackend(sys.argv[1])) as emitter:
        await emitter.to_user(sys.argv[2], "invoice", {"paid": True})

asyncio.run(main())
"""


async def test_an_emitter_in_another_process_reaches_a_user_connected_anywhere(
    cluster: Cluster,
) -> None:
    assert cluster.redis is not None
    a, b = await cluster.instance(), await cluster.instance()
    phone = await cluster.client(a, user="zoe")
    laptop = await cluster.client(b, user="zoe")
    await cluster.settled()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", EMITTER_SCRIPT, cluster.redis.url, "zoe"
    )
    assert await asyncio.wait_for(proc.wait(), TIMEOUT * 2) == 0
    assert await phone.receive() == {"event": "invoice", "data": {"paid": True}}
    assert await laptop.receive() == {"event": "invoice", "data": {"paid": True}}


async def test_an_emitter_that_cannot_publish_raises_bus_error(redis_server: RedisServer) -> None:
    emitter = Emitter(RedisBackend(redis_server.url))
    await emitter.to_room("r", "e", 1)
    await emitter.aclose()
    with pytest.raises(BusError, match="dropped"):
        await asyncio.wait_for(emitter.to_room("r", "e", 2), TIMEOUT)


async def test_concurrent_emits_each_learn_the_fate_of_their_own_message(
    redis_server: RedisServer,
) -> None:
    """With room for one queued message, of two emits at once the second is dropped: only it
    raises, and the first (delivered) does not, so that a caller retrying on BusError sends
    nothing twice."""
    listener = redis_server.client()
    pubsub = listener.pubsub()
    await pubsub.subscribe("ws:room:a", "ws:room:b")
    emitter = Emitter(RedisBackend(redis_server.url, max_queue=1))
    try:
        first, second = await asyncio.wait_for(
            asyncio.gather(
                emitter.to_room("a", "news", 1),
                emitter.to_room("b", "news", 2),
                return_exceptions=True,
            ),
            TIMEOUT,
        )
        assert first is None
        assert isinstance(second, BusError)
        received: list[bytes] = []

        async def read() -> None:
            while not received:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    received.append(message["channel"])

        await asyncio.wait_for(read(), TIMEOUT)
        assert received == [b"ws:room:a"]
        await emitter.to_room("b", "news", 3)  # the next one goes out, and says nothing
    finally:
        await emitter.aclose()
        await pubsub.aclose()
        await listener.aclose()
