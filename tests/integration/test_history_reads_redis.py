"""Reading a topic's history (``Hub.history``) when two instances share it on a real
redis-server: what one publishes the other reads, in the one order with the one numbering;
what this instance just published is in it; the ttl holds on Redis's clock; a read leaves no
key behind; Redis away is a ``BusError`` that says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from crosswire import App, BusError, History, HistoryEntry, Hub, Position, Router, message
from crosswire.pubsub.redis import RedisBackend
from tests.redis_server import RedisServer
from tests.support import TIMEOUT

Said = message("SAID", {"text": str})


@dataclass
class Instance:
    app: App
    router: Router

    def say(self, topic: str, *texts: str) -> None:
        for text in texts:
            self.router.publish(topic, Said, {"text": text})

    async def history(self, topic: str, limit: int | None = None) -> list[HistoryEntry]:
        return await asyncio.wait_for(self.app.hub.history(topic, limit), TIMEOUT)

    async def texts(self, topic: str, limit: int | None = None) -> list[str]:
        return [entry.data["text"] for entry in await self.history(topic, limit)]


Start = Callable[[], Awaitable[Instance]]


@pytest.fixture
async def instances(serve_router: Any, redis_server: RedisServer) -> AsyncIterator[Start]:
    async def start() -> Instance:
        router = Router()
        router.topic("room:{id}", history=History(size=5, ttl=None))
        router.topic("brief:{id}", history=History(size=100, ttl=1.0))
        router.topic("plain")
        hub = Hub(RedisBackend(redis_server.url, reconnect_delay=(0.02, 0.2)))
        app = App(router, hub=hub)
        await serve_router(app)
        return Instance(app, router)

    yield start


async def test_what_one_instance_publishes_the_other_reads_in_one_order(
    instances: Start,
) -> None:
    one, two = await instances(), await instances()
    one.say("room:1", "a", "b")
    one.app.hub.to_room("room:1", "notice", {"n": 3}, exclude=["someone"])
    mine = await one.history("room:1")  # what this instance published is kept by now
    epoch = mine[0].position.epoch
    assert mine == [
        HistoryEntry("SAID", {"text": "a"}, None, Position(1, epoch)),
        HistoryEntry("SAID", {"text": "b"}, None, Position(2, epoch)),
        HistoryEntry("notice", {"n": 3}, None, Position(3, epoch)),
    ]
    assert await two.history("room:1") == mine
    two.say("room:1", "c")
    theirs = await two.history("room:1")
    assert theirs[-1] == HistoryEntry("SAID", {"text": "c"}, None, Position(4, epoch))
    assert await one.history("room:1") == theirs
    assert await one.history("room:1", limit=2) == theirs[-2:]
    assert await one.history("room:1", limit=0) == []


async def test_the_size_bounds_it_and_limit_gives_the_last_ones(instances: Start) -> None:
    one, two = await instances(), await instances()
    one.say("room:2", *"12345678")
    assert await one.texts("room:2") == list("45678")
    assert await two.texts("room:2", limit=3) == list("678")


async def test_events_older_than_the_ttl_are_not_in_it(instances: Start) -> None:
    one, two = await instances(), await instances()
    one.say("brief:1", "old")
    await one.history("brief:1")  # kept
    await asyncio.sleep(0.5)
    one.say("brief:1", "new")
    assert await one.texts("brief:1") == ["old", "new"]

    async def until_changed() -> list[str]:
        while len(texts := await two.texts("brief:1")) == 2:  # noqa: ASYNC110 - expiry is announced by nothing
            await asyncio.sleep(0.02)
        return texts

    assert await asyncio.wait_for(until_changed(), TIMEOUT) == ["new"]


async def test_reading_a_topic_never_published_to_leaves_no_key(
    instances: Start, redis_server: RedisServer
) -> None:
    one = await instances()
    assert await one.history("room:never") == []
    client = redis_server.client()
    try:
        keys = await asyncio.wait_for(client.keys("*room:never*"), TIMEOUT)
    finally:
        await client.aclose()
    assert keys == []


async def test_a_topic_without_history_is_refused_clearly(instances: Start) -> None:
    one = await instances()
    with pytest.raises(ValueError, match="topic 'plain' keeps no history"):
        await one.history("plain")


async def test_redis_away_is_a_bus_error(instances: Start, redis_server: RedisServer) -> None:
    one = await instances()
    one.say("room:3", "a")
    assert await one.texts("room:3") == ["a"]
    await redis_server.kill()
    with pytest.raises(BusError, match="redis history: reading the history of topic 'room:3'"):
        await one.history("room:3")
