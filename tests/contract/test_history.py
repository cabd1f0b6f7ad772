"""The history contract (``crosswire.pubsub.history``), run against every store: the memory
one (one process) and RedisHistory (a real redis-server).

What recovery and ``Hub.history`` rely on: offsets 1, 2, 3, ... per topic in one epoch;
``since`` gives exactly the publications after a position, in order, or says ``recovered:
false`` (another epoch, a position the stream never had, trimmed past ``size``, older than
``ttl``); an epoch given out by ``position`` is the one the first publication then uses;
``latest`` gives the last ones kept, oldest first, none older than ``ttl``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson
import pytest

from crosswire.pubsub.history import History, MemoryHistory, Position, Recovery
from crosswire.pubsub.redis_history import RedisHistory
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer
from tests.support import TIMEOUT

T = TypeVar("T")

KEEP = History(size=100, ttl=None)


class Store(Protocol):
    """What the Hub calls on a history store (RedisHistory's methods)."""

    async def append_and_publish(
        self, topic: str, channel: str, envelope: bytes, policy: History
    ) -> Position: ...

    async def since(self, topic: str, since: Position, policy: History) -> Recovery[bytes]: ...

    async def position(self, topic: str, policy: History) -> Position: ...

    async def latest(self, topic: str, policy: History, limit: int) -> list[bytes]: ...

    async def forget(self, topic: str) -> None: ...


class MemoryStore:
    """MemoryHistory behind RedisHistory's async methods, keeping what the Hub will keep in
    one process: the envelope with its offset and epoch in it (nothing is published)."""

    def __init__(self) -> None:
        self.memory: MemoryHistory[bytes] = MemoryHistory()

    async def append_and_publish(
        self, topic: str, channel: str, envelope: bytes, policy: History
    ) -> Position:
        now = self.memory.position(topic, policy)
        kept = {**orjson.loads(envelope), "offset": now.offset + 1, "epoch": now.epoch}
        return self.memory.append(topic, orjson.dumps(kept), policy)

    async def since(self, topic: str, since: Position, policy: History) -> Recovery[bytes]:
        return self.memory.since(topic, since, policy)

    async def position(self, topic: str, policy: History) -> Position:
        return self.memory.position(topic, policy)

    async def latest(self, topic: str, policy: History, limit: int) -> list[bytes]:
        return [item for _, item in self.memory.latest(topic, policy, limit)]

    async def forget(self, topic: str) -> None:
        self.memory.forget(topic)


class Bounded:
    """A store whose every call is bounded by the tests' timeout."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def publish(self, topic: str, n: int, policy: History = KEEP) -> Position:
        """Publish ``{"n": n}`` to ``topic``."""
        envelope = orjson.dumps({"n": n})
        return await _bounded(
            self.store.append_and_publish(topic, f"ws:room:{topic}", envelope, policy)
        )

    async def since(self, topic: str, since: Position, policy: History = KEEP) -> Recovery[bytes]:
        return await _bounded(self.store.since(topic, since, policy))

    async def position(self, topic: str, policy: History = KEEP) -> Position:
        return await _bounded(self.store.position(topic, policy))

    async def latest(self, topic: str, limit: int = 100, policy: History = KEEP) -> list[bytes]:
        return await _bounded(self.store.latest(topic, policy, limit))

    async def forget(self, topic: str) -> None:
        await _bounded(self.store.forget(topic))

    async def until_lost(self, topic: str, since: Position, policy: History) -> None:
        """Wait (bounded) until the history no longer covers what follows ``since``."""

        async def poll() -> None:
            while (await self.since(topic, since, policy)).recovered:  # noqa: ASYNC110 - expiry is announced by nothing
                await asyncio.sleep(0.02)

        await _bounded(poll())


async def _bounded(call: Awaitable[T]) -> T:
    return await asyncio.wait_for(call, TIMEOUT)


def numbers(recovery: Recovery[bytes]) -> list[int]:
    """The ``n`` of each recovered publication."""
    return [orjson.loads(item)["n"] for item in recovery.missed]


def stamps(recovery: Recovery[bytes]) -> list[tuple[Any, Any]]:
    """The (offset, epoch) written into each recovered publication."""
    return [(d["offset"], d["epoch"]) for d in map(orjson.loads, recovery.missed)]


@pytest.fixture(params=["memory", "redis", "cluster"])
async def history(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bounded]:
    """A history store: in memory, on a real redis-server of its own, then on a Redis Cluster
    of its own (three masters, three replicas)."""
    if request.param == "memory":
        yield Bounded(MemoryStore())
        return
    if request.param == "cluster":
        cluster = RedisCluster(tmp_path)
        await cluster.start()
        sharded = RedisHistory.from_cluster_url(cluster.url)
        try:
            yield Bounded(sharded)
        finally:
            await asyncio.wait_for(sharded.aclose(), TIMEOUT)
            await cluster.aclose()
        return
    server = RedisServer(tmp_path)
    await server.start()
    store = RedisHistory.from_url(server.url)
    try:
        yield Bounded(store)
    finally:
        await asyncio.wait_for(store.aclose(), TIMEOUT)
        await server.kill()


async def test_publications_get_offsets_one_to_n_in_one_epoch(history: Bounded) -> None:
    positions = [await history.publish("news", n) for n in range(1, 6)]
    epoch = positions[0].epoch
    assert positions == [Position(n, epoch) for n in range(1, 6)]
    assert await history.position("news") == Position(5, epoch)


async def test_each_topic_counts_on_its_own(history: Bounded) -> None:
    await history.publish("a", 1)
    await history.publish("a", 2)
    assert (await history.publish("b", 1)).offset == 1
    assert (await history.position("a")).offset == 2


async def test_since_gives_exactly_the_missed_publications_in_order(history: Bounded) -> None:
    for n in range(1, 6):
        seen = await history.publish("news", n)
    recovery = await history.since("news", Position(2, seen.epoch))
    assert recovery.recovered
    assert numbers(recovery) == [3, 4, 5]
    assert stamps(recovery) == [(3, seen.epoch), (4, seen.epoch), (5, seen.epoch)]
    assert recovery.position == Position(5, seen.epoch)


async def test_since_the_current_position_recovers_nothing_missed(history: Bounded) -> None:
    await history.publish("news", 1)
    now = await history.publish("news", 2)
    assert await history.since("news", now) == Recovery(True, [], now)


async def test_another_epoch_is_not_recovered(history: Bounded) -> None:
    now = await history.publish("news", 1)
    assert await history.since("news", Position(0, "not-the-epoch")) == Recovery(False, [], now)


async def test_a_position_the_stream_never_had_is_not_recovered(history: Bounded) -> None:
    now = await history.publish("news", 1)
    for offset in (2, -1):
        recovery = await history.since("news", Position(offset, now.epoch))
        assert recovery == Recovery(False, [], now)


async def test_publications_trimmed_past_size_are_not_recovered(history: Bounded) -> None:
    small = History(size=3, ttl=None)
    for n in range(1, 6):
        now = await history.publish("news", n, small)
    assert await history.since("news", Position(1, now.epoch), small) == Recovery(False, [], now)
    recovery = await history.since("news", Position(2, now.epoch), small)
    assert recovery.recovered
    assert numbers(recovery) == [3, 4, 5]


async def test_publications_older_than_ttl_are_not_recovered(history: Bounded) -> None:
    brief = History(size=100, ttl=0.3)
    first = await history.publish("news", 1, brief)
    before = Position(0, first.epoch)
    assert numbers(await history.since("news", before, brief)) == [1]
    await history.until_lost("news", before, brief)
    recovery = await history.since("news", before, brief)
    assert not recovery.recovered
    assert recovery.missed == []


async def test_an_expired_publication_spoils_only_recovery_from_before_it(
    history: Bounded,
) -> None:
    ttl = History(size=100, ttl=1.0)
    first = await history.publish("news", 1, ttl)
    await asyncio.sleep(0.5)
    await history.publish("news", 2, ttl)
    await history.until_lost("news", Position(0, first.epoch), ttl)  # the first has expired
    recovery = await history.since("news", first, ttl)  # the second has not
    assert recovery.recovered
    assert numbers(recovery) == [2]


async def test_the_epoch_given_before_any_publication_is_the_first_ones(
    history: Bounded,
) -> None:
    told = await history.position("news")
    assert told.offset == 0
    assert await history.publish("news", 1) == Position(1, told.epoch)
    recovery = await history.since("news", told)
    assert recovery.recovered
    assert numbers(recovery) == [1]


async def test_a_forgotten_topic_starts_a_new_epoch(history: Bounded) -> None:
    old = await history.publish("news", 1)
    await history.forget("news")
    now = await history.position("news")
    assert now.offset == 0
    assert now.epoch != old.epoch
    assert await history.since("news", old) == Recovery(False, [], now)


def kept(envelopes: list[bytes]) -> list[tuple[Any, Any, Any]]:
    """The (n, offset, epoch) of each envelope."""
    return [(d["n"], d["offset"], d["epoch"]) for d in map(orjson.loads, envelopes)]


async def test_latest_gives_the_last_kept_oldest_first(history: Bounded) -> None:
    small = History(size=3, ttl=None)
    for n in range(1, 6):
        now = await history.publish("news", n, small)
    epoch = now.epoch
    assert kept(await history.latest("news", 10, small)) == [
        (3, 3, epoch),
        (4, 4, epoch),
        (5, 5, epoch),
    ]
    assert kept(await history.latest("news", 2, small)) == [(4, 4, epoch), (5, 5, epoch)]
    assert await history.latest("news", 0, small) == []


async def test_latest_leaves_out_what_is_older_than_ttl(history: Bounded) -> None:
    ttl = History(size=100, ttl=1.0)
    await history.publish("news", 1, ttl)
    await asyncio.sleep(0.5)
    await history.publish("news", 2, ttl)
    assert [n for n, _, _ in kept(await history.latest("news", policy=ttl))] == [1, 2]

    async def until_changed() -> list[bytes]:
        while len(found := await history.latest("news", policy=ttl)) == 2:  # noqa: ASYNC110 - expiry is announced by nothing
            await asyncio.sleep(0.02)
        return found

    assert [n for n, _, _ in kept(await _bounded(until_changed()))] == [2]


async def test_latest_of_a_topic_with_nothing_kept_is_empty(history: Bounded) -> None:
    assert await history.latest("news") == []
    told = await history.position("news")
    assert await history.latest("news") == []
    assert (await history.publish("news", 1)).epoch == told.epoch
    await history.forget("news")
    assert await history.latest("news") == []
