"""The Backend contract (``crosswire.pubsub.backend``), run against every backend.

Each test builds backends on one bus (one MemoryBus, one real redis-server, or a real Redis
Cluster of three masters and three replicas) and checks what the Hub relies on: channels carry
bytes exactly, in order (on a cluster: in order per channel), only to subscribers; subscriptions
follow subscribe/unsubscribe; flush means "on the bus, in effect"; errors are reported; start
connects and stats count.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from crosswire import BusError
from crosswire.pubsub import Backend, BusStats, MemoryBackend, MemoryBus
from crosswire.pubsub.redis import RedisBackend
from crosswire.pubsub.redis_cluster import RedisClusterBackend
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer
from tests.support import TIMEOUT, eventually


class Endpoint:
    """One backend and what it received and reported."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.received: list[tuple[str, bytes]] = []
        self.errors: list[BusError] = []
        backend.bind(
            lambda channel, message, more: self.received.append((channel, message)),
            self.errors.append,
        )

    def messages(self, channel: str) -> list[bytes]:
        return [m for c, m in self.received if c == channel]


MakeEndpoint = Callable[[], Endpoint]


@pytest.fixture(params=["memory", "redis", "cluster"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeEndpoint]:
    """``make()`` is a new backend on the bus shared by the test."""
    made: list[Endpoint] = []
    server: RedisServer | RedisCluster | None = None
    if request.param == "memory":
        bus = MemoryBus()

        def factory() -> Backend:
            return MemoryBackend(bus)
    elif request.param == "cluster":
        server = RedisCluster(tmp_path)
        await server.start()
        url = server.url

        def factory() -> Backend:
            return RedisClusterBackend(url, health_check_interval=0.5)
    else:
        server = RedisServer(tmp_path)
        await server.start()
        url = server.url

        def factory() -> Backend:
            return RedisBackend(url, health_check_interval=0.5)

    def make_endpoint() -> Endpoint:
        endpoint = Endpoint(factory())
        made.append(endpoint)
        return endpoint

    yield make_endpoint
    for endpoint in made:
        await asyncio.wait_for(endpoint.backend.aclose(), TIMEOUT)
    if isinstance(server, RedisServer):
        await server.kill()
    elif server is not None:
        await server.aclose()


async def flushed(*endpoints: Endpoint) -> None:
    for endpoint in endpoints:
        await asyncio.wait_for(endpoint.backend.flush(), TIMEOUT)


async def test_a_message_reaches_every_subscriber_of_its_channel_as_the_same_bytes(
    make: MakeEndpoint,
) -> None:
    a, b, c = make(), make(), make()
    b.backend.subscribe("ws:room:r")
    c.backend.subscribe("ws:room:r")
    await flushed(b, c)
    body = bytes(range(256)) * 4  # any bytes, not only UTF-8
    a.backend.publish("ws:room:r", body)
    await flushed(a)
    await eventually(lambda: bool(b.received and c.received))
    assert b.received == [("ws:room:r", body)]
    assert c.received == [("ws:room:r", body)]
    assert a.received == []  # not subscribed


async def test_channels_are_separate_and_a_publisher_hears_its_own_channel(
    make: MakeEndpoint,
) -> None:
    a, b = make(), make()
    a.backend.subscribe("ws:room:x")
    b.backend.subscribe("ws:room:y")
    await flushed(a, b)
    a.backend.publish("ws:room:x", b"to x")
    a.backend.publish("ws:room:y", b"to y")
    await flushed(a)
    await eventually(lambda: bool(a.received and b.received))
    assert a.received == [("ws:room:x", b"to x")]  # the Hub drops its own by serverId
    assert b.received == [("ws:room:y", b"to y")]


async def test_messages_of_one_publisher_arrive_in_order(make: MakeEndpoint) -> None:
    """In order per channel; across channels too, but on a cluster, whose channels on
    different masters travel on different connections."""
    a, b = make(), make()
    b.backend.subscribe("ws:room:one")
    b.backend.subscribe("ws:room:two")
    await flushed(b)
    for i in range(3000):
        a.backend.publish("ws:room:one" if i % 3 else "ws:room:two", str(i).encode())
    await flushed(a)
    await eventually(lambda: len(b.received) == 3000)
    assert [int(m) for m in b.messages("ws:room:one")] == [i for i in range(3000) if i % 3]
    assert [int(m) for m in b.messages("ws:room:two")] == list(range(0, 3000, 3))
    if not isinstance(b.backend, RedisClusterBackend):
        assert [int(m) for _, m in b.received] == list(range(3000))


async def test_after_unsubscribe_and_flush_nothing_more_arrives(make: MakeEndpoint) -> None:
    a, b = make(), make()
    b.backend.subscribe("ws:user:u")
    b.backend.subscribe("ws:user:u")  # idempotent
    await flushed(b)
    a.backend.publish("ws:user:u", b"1")
    await flushed(a)
    await eventually(lambda: len(b.received) == 1)
    b.backend.unsubscribe("ws:user:u")
    b.backend.unsubscribe("ws:user:u")
    await flushed(b)
    a.backend.publish("ws:user:u", b"2")
    b.backend.subscribe("ws:user:other")  # a later message on another channel: a marker
    await flushed(b)
    a.backend.publish("ws:user:other", b"marker")
    await flushed(a)
    await eventually(lambda: len(b.received) == 2)
    assert b.received == [("ws:user:u", b"1"), ("ws:user:other", b"marker")]


async def test_many_channels_subscribe_at_once(make: MakeEndpoint) -> None:
    a, b = make(), make()
    channels = [f"ws:client:{i}" for i in range(1200)]  # more than one SUBSCRIBE command
    for channel in channels:
        b.backend.subscribe(channel)
    await flushed(b)
    for channel in channels:
        a.backend.publish(channel, channel.encode())
    await flushed(a)
    await eventually(lambda: len(b.received) == len(channels))
    assert sorted(m.decode() for _, m in b.received) == sorted(channels)


async def test_after_aclose_publishes_are_dropped_and_reported(make: MakeEndpoint) -> None:
    a = make()
    a.backend.subscribe("ws:broadcast")
    await flushed(a)
    await a.backend.aclose()
    await a.backend.aclose()  # idempotent
    a.backend.publish("ws:broadcast", b"late")
    assert a.errors and isinstance(a.errors[-1], BusError)
    with pytest.raises(BusError, match="dropped"):
        await asyncio.wait_for(a.backend.flush(), TIMEOUT)


async def test_start_after_aclose_opens_the_backend_again(make: MakeEndpoint) -> None:
    """An App's lifespan may stop and start it again: the same backend carries messages."""
    a, b = make(), make()
    b.backend.subscribe("ws:room:x")
    await flushed(b)
    await a.backend.aclose()
    await asyncio.wait_for(a.backend.start(), TIMEOUT)
    a.backend.subscribe("ws:room:y")
    await flushed(a)
    a.backend.publish("ws:room:x", b"after the restart")
    b.backend.publish("ws:room:y", b"to the restarted one")
    await flushed(a, b)
    await eventually(lambda: b.messages("ws:room:x") == [b"after the restart"])
    await eventually(lambda: a.messages("ws:room:y") == [b"to the restarted one"])


async def test_flush_reports_a_drop_once(make: MakeEndpoint) -> None:
    a = make()
    await a.backend.aclose()
    a.backend.publish("ws:broadcast", b"dropped")
    with pytest.raises(BusError):
        await asyncio.wait_for(a.backend.flush(), TIMEOUT)
    await asyncio.wait_for(a.backend.flush(), TIMEOUT)  # nothing new was dropped


async def test_flush_through_a_number_answers_for_that_message_only(make: MakeEndpoint) -> None:
    a = make()
    a.backend.subscribe("ws:room:x")
    await flushed(a)
    first = a.backend.publish("ws:room:x", b"one")
    second = a.backend.publish("ws:room:x", b"two")
    assert second == first + 1
    await asyncio.wait_for(a.backend.flush(through=second), TIMEOUT)
    await eventually(lambda: a.messages("ws:room:x") == [b"one", b"two"])
    await a.backend.aclose()
    dropped = a.backend.publish("ws:room:x", b"late")
    with pytest.raises(BusError, match="dropped"):
        await asyncio.wait_for(a.backend.flush(through=dropped), TIMEOUT)
    # An earlier message that went out is still reported as sent.
    await asyncio.wait_for(a.backend.flush(through=first), TIMEOUT)


async def test_a_channel_left_and_joined_again_is_in_effect_after_flush(
    make: MakeEndpoint,
) -> None:
    a, b = make(), make()
    a.backend.subscribe("ws:room:again")
    await flushed(a)
    for _ in range(20):  # leave and join at once: flush waits for both answers
        a.backend.unsubscribe("ws:room:again")
        await asyncio.sleep(0)
        a.backend.subscribe("ws:room:again")
        await flushed(a)
        b.backend.publish("ws:room:again", b"still here")
        await flushed(b)
    await eventually(lambda: len(a.messages("ws:room:again")) == 20)


async def test_start_is_idempotent_and_stats_count_published_queued_and_dropped(
    make: MakeEndpoint,
) -> None:
    a, b = make(), make()
    await asyncio.wait_for(a.backend.start(), TIMEOUT)
    await asyncio.wait_for(a.backend.start(), TIMEOUT)
    assert a.backend.stats() == BusStats(published=0, dropped=0, queued=0, reconnects=0)
    b.backend.subscribe("ws:room:s")
    await flushed(b)
    for i in range(3):
        a.backend.publish("ws:room:s", b"%d" % i)
    assert a.backend.stats() == BusStats(published=3, dropped=0, queued=3, reconnects=0)
    await flushed(a)
    await eventually(lambda: len(b.received) == 3)
    assert a.backend.stats() == BusStats(published=3, dropped=0, queued=0, reconnects=0)
    await a.backend.aclose()
    a.backend.publish("ws:room:s", b"late")
    assert a.backend.stats() == BusStats(published=4, dropped=1, queued=0, reconnects=0)
    assert b.errors == []
