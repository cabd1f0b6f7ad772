"""RedisHistory against real redis-server processes: what only Redis shows (the contract is in
tests/contract/test_history.py). The publication on the channel carries its offset and epoch
and is byte for byte the kept one; instances on one Redis share one sequence; an idle topic
leaves nothing behind; Redis killed (SIGKILL) and restarted without persistence changes the
epoch, and with an fsynced append-only file keeps every acknowledged publication.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from crosswire import BusError
from crosswire.pubsub.history import History, Position
from crosswire.pubsub.redis_history import RedisHistory
from tests.redis_server import AOF, RedisServer, free_port
from tests.support import TIMEOUT, eventually

KEEP = History(size=1000, ttl=None)


@pytest.fixture
async def histories() -> AsyncIterator[list[RedisHistory]]:
    """RedisHistory objects made by the test, closed at teardown."""
    made: list[RedisHistory] = []
    yield made
    for history in made:
        await asyncio.wait_for(history.aclose(), TIMEOUT)


@pytest.fixture
async def aof_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server that fsyncs every write to its append-only file; killed at teardown."""
    server = RedisServer(tmp_path)
    await server.start(*AOF)
    yield server
    await server.kill()


def on(server: RedisServer, made: list[RedisHistory], **options: Any) -> RedisHistory:
    history = RedisHistory.from_url(server.url, **options)
    made.append(history)
    return history


async def publish(history: RedisHistory, topic: str, n: int, policy: History = KEEP) -> Position:
    envelope = orjson.dumps({"serverId": "s1", "type": "room", "target": topic, "data": n})
    return await asyncio.wait_for(
        history.append_and_publish(topic, f"ws:room:{topic}", envelope, policy), TIMEOUT
    )


async def recover(history: RedisHistory, topic: str, since: Position) -> list[dict[str, Any]]:
    """The publications recovered after ``since`` (failing if not recovered)."""
    recovery = await asyncio.wait_for(history.since(topic, since, KEEP), TIMEOUT)
    assert recovery.recovered
    return [orjson.loads(item) for item in recovery.missed]


async def subscribed(server: RedisServer, channel: str) -> aioredis.client.PubSub:
    """A redis-py subscription to ``channel``, confirmed by Redis."""
    pubsub = server.client().pubsub()
    await asyncio.wait_for(pubsub.subscribe(channel), TIMEOUT)
    await next_message(pubsub, "subscribe")
    return pubsub


async def next_message(pubsub: aioredis.client.PubSub, kind: str = "message") -> Any:
    async def read() -> Any:
        while True:
            message = await pubsub.get_message(timeout=TIMEOUT)
            if message is not None and message["type"] == kind:
                return message["data"]

    return await asyncio.wait_for(read(), TIMEOUT)


async def test_the_publication_carries_its_offset_and_epoch_and_is_the_kept_one(
    redis_server: RedisServer, histories: list[RedisHistory]
) -> None:
    history = on(redis_server, histories)
    pubsub = await subscribed(redis_server, "ws:room:news")
    try:
        # Data that a cjson round trip would change: a long integer, [], an escaped slash.
        data = {"id": 12345678901234567, "tags": [], "url": "a\\/b", "ts": 1.5}
        envelope = orjson.dumps({"serverId": "s1", "type": "room", "target": "news", "data": data})
        at = await asyncio.wait_for(
            history.append_and_publish("news", "ws:room:news", envelope, KEEP), TIMEOUT
        )
        published = await next_message(pubsub)
    finally:
        await asyncio.wait_for(pubsub.aclose(), TIMEOUT)
    assert at.offset == 1
    assert orjson.loads(published) == {
        **orjson.loads(envelope),
        "offset": 1,
        "epoch": at.epoch,
    }
    assert published.startswith(envelope[:-1])  # the application's bytes, untouched
    recovery = await asyncio.wait_for(history.since("news", Position(0, at.epoch), KEEP), TIMEOUT)
    assert recovery.missed == [published]


async def test_instances_on_one_redis_share_one_sequence(
    redis_server: RedisServer, histories: list[RedisHistory]
) -> None:
    one, two = on(redis_server, histories), on(redis_server, histories)
    told = await asyncio.wait_for(two.position("news", KEEP), TIMEOUT)
    sends = [publish(one if n % 2 else two, "news", n) for n in range(100)]
    positions = await asyncio.gather(*sends)
    assert sorted(p.offset for p in positions) == list(range(1, 101))
    assert {p.epoch for p in positions} == {told.epoch}
    kept = await recover(one, "news", told)
    assert [d["offset"] for d in kept] == list(range(1, 101))
    assert [d["data"] for d in kept] == [
        n for _, n in sorted((p.offset, n) for n, p in enumerate(positions))
    ]


async def test_keys_follow_the_namespace(
    redis_server: RedisServer, histories: list[RedisHistory]
) -> None:
    await publish(on(redis_server, histories, namespace="chat"), "news", 1)
    client = redis_server.client()
    try:
        keys = await asyncio.wait_for(client.keys("*"), TIMEOUT)
    finally:
        await client.aclose()
    assert sorted(keys) == [b"chat:epoch:news", b"chat:history:news", b"chat:offset:news"]


async def test_an_idle_topic_leaves_nothing_in_redis(
    redis_server: RedisServer, histories: list[RedisHistory]
) -> None:
    history = on(redis_server, histories)
    brief = History(size=10, ttl=0.2)
    first = await publish(history, "news", 1, brief)
    client = redis_server.client()
    try:
        left = 3
        while left:
            left = await asyncio.wait_for(client.exists(*history.keys("news")), TIMEOUT)
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    again = await publish(history, "news", 2, brief)
    assert again.offset == 1
    assert again.epoch != first.epoch


async def test_redis_away_is_a_bus_error_and_its_return_is_a_new_epoch(
    redis_server: RedisServer, histories: list[RedisHistory]
) -> None:
    history = on(redis_server, histories)
    for n in range(3):
        old = await publish(history, "news", n)
    await redis_server.kill()
    with pytest.raises(BusError, match="redis history: appending to topic 'news' failed"):
        await publish(history, "news", 3)
    await redis_server.start()  # without persistence: the history is gone
    now = await asyncio.wait_for(history.position("news", KEEP), TIMEOUT)
    assert now.offset == 0
    assert now.epoch != old.epoch
    recovery = await asyncio.wait_for(history.since("news", old, KEEP), TIMEOUT)
    assert not recovery.recovered
    assert recovery.position == now
    assert await publish(history, "news", 4) == Position(1, now.epoch)


async def test_a_redis_that_is_not_there_is_a_bus_error(histories: list[RedisHistory]) -> None:
    history = RedisHistory.from_url(f"redis://127.0.0.1:{free_port()}/0")
    histories.append(history)
    with pytest.raises(BusError, match="reading the position of topic 'news'"):
        await asyncio.wait_for(history.position("news", KEEP), TIMEOUT)


async def test_a_redis_that_hangs_is_a_bus_error_after_the_timeout(
    redis_server: RedisServer, histories: list[RedisHistory]
) -> None:
    history = on(redis_server, histories, timeout=0.3)
    await publish(history, "news", 1)
    redis_server.pause()
    try:
        with pytest.raises(BusError, match="TimeoutError"):
            await publish(history, "news", 2)
    finally:
        redis_server.resume()
    assert (await publish(history, "news", 3)).offset in (2, 3)  # (2 may have gone through)


async def test_an_envelope_that_is_not_a_json_object_is_refused(
    redis_server: RedisServer, histories: list[RedisHistory]
) -> None:
    history = on(redis_server, histories)
    with pytest.raises(ValueError, match="JSON object"):
        await asyncio.wait_for(history.append_and_publish("news", "c", b"[1]", KEEP), TIMEOUT)
    assert (await asyncio.wait_for(history.position("news", KEEP), TIMEOUT)).offset == 0


async def test_a_given_client_is_used_and_left_open(redis_server: RedisServer) -> None:
    client = redis_server.client()
    try:
        history = RedisHistory(client, namespace="app")
        at = await asyncio.wait_for(history.position("news", KEEP), TIMEOUT)
        await asyncio.wait_for(history.aclose(), TIMEOUT)
        assert await asyncio.wait_for(client.get("app:epoch:news"), TIMEOUT) == at.epoch.encode()
    finally:
        await client.aclose()


async def test_with_an_fsynced_aof_every_acknowledged_publication_survives_sigkill(
    aof_server: RedisServer, histories: list[RedisHistory]
) -> None:
    history = on(aof_server, histories)
    start = await asyncio.wait_for(history.position("news", KEEP), TIMEOUT)
    acknowledged: list[int] = []

    async def stream() -> None:  # publishes until Redis dies under it
        n = 0
        while True:
            try:
                await publish(history, "news", n)
            except BusError:
                return
            acknowledged.append(n)
            n += 1

    streaming = asyncio.create_task(stream())
    try:
        await eventually(lambda: len(acknowledged) >= 50)
        await aof_server.kill()
        await asyncio.wait_for(streaming, TIMEOUT)
    finally:
        streaming.cancel()
        await asyncio.wait({streaming}, timeout=TIMEOUT)
    await aof_server.start(*AOF)
    kept = await recover(history, "news", start)
    # Every acknowledged one, in order, once; and maybe the one Redis died answering.
    assert [d["data"] for d in kept[: len(acknowledged)]] == acknowledged
    assert len(kept) - len(acknowledged) in (0, 1)
    assert [d["offset"] for d in kept] == list(range(1, len(kept) + 1))
    now = await asyncio.wait_for(history.position("news", KEEP), TIMEOUT)
    assert now == Position(len(kept), start.epoch)
