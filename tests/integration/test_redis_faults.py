"""No message lost on the Redis bus (issue 14): real redis-server processes killed with SIGKILL
and restarted on the same port, or closing idle connections (``--timeout``), with every message
counted: which arrive, none twice, each sender's in order.

Messages published while Redis is down wait in the publisher's queue and go out after the
reconnect; whether an instance receives them depends on whether it has resubscribed by then
(Redis pub/sub keeps nothing). To know exactly which must arrive, the tests hold the publisher
out of the restarted Redis until the receiver is back: the publisher logs in as the ACL user
``b``, disabled at the restart and enabled once the receiver has resubscribed (a connection
Redis refuses is a failed attempt, like one to a Redis that is down).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crosswire import BusError, Emitter
from crosswire.pubsub.redis import RedisBackend
from tests.integration.test_hub_across_instances import Client, Cluster
from tests.redis_server import RedisServer
from tests.support import TIMEOUT, eventually

PASSWORD = "b-secret-1234"


def user_b(state: str) -> tuple[str, ...]:
    """redis-server options making the ACL user ``b``, enabled (``on``) or not (``off``)."""
    return ("--user", "b", state, f">{PASSWORD}", "~*", "&*", "+@all")


def as_b(redis: RedisServer) -> str:
    return f"redis://b:{PASSWORD}@127.0.0.1:{redis.port}/0"


async def let_b_in(redis: RedisServer) -> None:
    admin = redis.client()
    try:
        await admin.execute_command("ACL", "SETUSER", "b", "on")  # type: ignore[no-untyped-call]
    finally:
        await admin.aclose()


def fast(url: str, **options: Any) -> RedisBackend:
    """A backend that notices a loss and retries quickly (the tests' Redis is local)."""
    return RedisBackend(url, health_check_interval=0.3, reconnect_delay=(0.05, 0.3), **options)


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server with the ACL user ``b`` enabled; killed at teardown."""
    server = RedisServer(tmp_path)
    await server.start(*user_b("on"))
    yield server
    await server.kill()


@pytest.fixture
async def cluster(redis: RedisServer) -> AsyncIterator[Cluster]:
    made = Cluster(lambda: fast(redis.url), redis)
    yield made
    for ws in made.clients:
        await ws.close()
    for inst in made.instances:
        await asyncio.wait_for(inst.server.aclose(), TIMEOUT)


def events(phase: str, count: int) -> list[dict[str, Any]]:
    return [{"event": phase, "data": i} for i in range(count)]


async def say(sender: Client, phase: str, count: int) -> None:
    """``sender`` sends ``count`` room events; returns once its server has published them all
    (the sender, a member, got each back from its own server, in order)."""
    for i in range(count):
        await sender.send({"op": "to_room", "room": "lobby", "event": phase, "data": i})
    assert [await sender.receive() for _ in range(count)] == events(phase, count)


async def test_messages_before_during_and_after_a_redis_restart_each_arrive_once_in_order(
    redis: RedisServer, cluster: Cluster
) -> None:
    a = await cluster.instance()
    b = await cluster.instance(backend=fast(as_b(redis)))
    alice = await cluster.client(a, rooms=("lobby",))
    bob = await cluster.client(b, rooms=("lobby",))
    await cluster.settled()

    await say(bob, "before", 10)
    assert [await alice.receive() for _ in range(10)] == events("before", 10)

    await redis.kill()
    await eventually(lambda: bool(a.errors) and bool(b.errors))  # both noticed
    await say(bob, "during", 10)  # queued on b: Redis is down
    await redis.start(*user_b("off"))
    await asyncio.wait_for(a.hub.flush(), TIMEOUT)  # a is back and has resubscribed
    queued = b.hub.bus_stats()
    await let_b_in(redis)
    assert [await alice.receive() for _ in range(10)] == events("during", 10)

    await say(bob, "after", 10)
    assert [await alice.receive() for _ in range(10)] == events("after", 10)
    await asyncio.wait_for(b.hub.flush(), TIMEOUT)  # nothing was dropped (it would raise)
    await alice.nothing_more()  # none twice
    assert (queued.queued, queued.dropped) == (10, 0)
    stats = b.hub.bus_stats()
    assert (stats.published, stats.dropped, stats.queued) == (30, 0, 0)
    assert stats.reconnects == 1


async def test_past_max_queue_publishes_while_redis_is_down_are_reported_dropped(
    redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "crosswire.pubsub")
    received: list[bytes] = []
    receiver = fast(redis.url)
    receiver.bind(lambda channel, message, more: received.append(message), lambda error: None)
    receiver.subscribe("ws:room:q")
    errors: list[BusError] = []
    sender = fast(as_b(redis), max_queue=5)
    sender.bind(lambda channel, message, more: None, errors.append)
    try:
        await asyncio.wait_for(receiver.flush(), TIMEOUT)
        for i in range(3):
            sender.publish("ws:room:q", b"before-%d" % i)
        await asyncio.wait_for(sender.flush(), TIMEOUT)
        await eventually(lambda: len(received) == 3)

        await redis.kill()
        during = [sender.publish("ws:room:q", b"during-0")]
        await eventually(lambda: bool(errors))  # the sender found Redis gone
        assert "is not reachable" in str(errors[0])
        during += [sender.publish("ws:room:q", b"during-%d" % i) for i in range(1, 8)]
        assert (sender.stats().queued, sender.stats().dropped) == (5, 3)
        assert [str(e) for e in errors if "dropped" in str(e)] == [
            "redis: the publish queue is full (5 messages): new messages are dropped until "
            "Redis takes some"
        ]  # one report for the three

        await redis.start(*user_b("off"))
        await asyncio.wait_for(receiver.flush(), TIMEOUT)  # resubscribed
        await let_b_in(redis)
        await asyncio.wait_for(sender.flush(through=during[4]), TIMEOUT)
        for number in during[5:]:
            with pytest.raises(BusError, match="dropped"):
                await asyncio.wait_for(sender.flush(through=number), TIMEOUT)
        for i in range(3):
            sender.publish("ws:room:q", b"after-%d" % i)
        with pytest.raises(BusError, match="dropped"):  # the three, since the last flush
            await asyncio.wait_for(sender.flush(), TIMEOUT)
        await eventually(lambda: len(received) == 11)
        assert received == [
            *(b"before-%d" % i for i in range(3)),
            *(b"during-%d" % i for i in range(5)),
            *(b"after-%d" % i for i in range(3)),
        ]
        assert sender.stats() == (14, 3, 0, 1)  # published, dropped, queued, reconnects
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        where = f"127.0.0.1:{redis.port}"
        assert any(
            line.startswith(f"reconnected to Redis at {where} after ")
            and line.endswith("; 5 messages were queued, 3 dropped")
            for line in logged
        ), logged
        assert "the publish queue has room again; 3 messages were dropped while it was full" in (
            logged
        )
    finally:
        await sender.aclose()
        await receiver.aclose()


async def messages(pubsub: Any, count: int) -> list[bytes]:
    """The next ``count`` messages that a plain redis-py subscriber gets."""
    received: list[bytes] = []

    async def read() -> None:
        while len(received) < count:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if message is not None:
                received.append(message["data"])

    await asyncio.wait_for(read(), TIMEOUT)
    return received


async def idle_connections_closed(redis: RedisServer) -> None:
    """Wait until Redis has closed every connection that is not subscribed (its ``timeout``),
    but the one asking."""
    admin = redis.client()
    try:
        while len(await admin.client_list(_type="normal")) > 1:  # noqa: ASYNC110 - polled
            await asyncio.sleep(0.05)
    finally:
        await admin.aclose()


async def test_an_emitter_publishes_after_redis_closed_its_idle_connection(
    tmp_path: Path,
) -> None:
    redis = RedisServer(tmp_path)
    await redis.start("--timeout", "1")  # closes connections idle for a second
    listener = redis.client()
    pubsub = listener.pubsub()  # a subscribed connection is never closed as idle
    await pubsub.subscribe("ws:room:r")
    try:
        async with Emitter(RedisBackend(redis.url)) as emitter:
            await asyncio.wait_for(emitter.to_room("r", "tick", 0), TIMEOUT)
            for i in (1, 2):  # each after Redis closed the emitter's connection
                await asyncio.wait_for(idle_connections_closed(redis), TIMEOUT)
                await asyncio.wait_for(emitter.to_room("r", "tick", i), TIMEOUT)
        assert await messages(pubsub, 3) == [
            b'{"serverId":"emitter","type":"room","target":"r","event":"tick","data":%d}' % i
            for i in range(3)
        ]
    finally:
        await pubsub.aclose()
        await listener.aclose()
        await redis.kill()


async def publisher_idle(admin: Any) -> None:
    """Wait until Redis counts every other connection that is not subscribed as idle for a
    second (Redis counts whole seconds)."""
    me = await admin.client_id()
    while any(  # noqa: ASYNC110 - polled
        int(c["idle"]) < 1 for c in await admin.client_list(_type="normal") if int(c["id"]) != me
    ):
        await asyncio.sleep(0.05)


async def test_a_publisher_idle_for_a_while_pings_first_and_waits_out_a_redis_that_hangs(
    tmp_path: Path,
) -> None:
    """An idle publisher connection is checked with a PING before it carries a batch: on a
    Redis that answers, nothing else changes (the same connection, one PING); on a Redis that
    hangs (SIGSTOP), the batch waits for a connection that answers instead of going where no
    answer comes (it would time out and be reported dropped, and yet arrive)."""
    redis = RedisServer(tmp_path)
    await redis.start()
    listener = redis.client()
    pubsub = listener.pubsub()
    await pubsub.subscribe("ws:room:h")
    admin = redis.client()
    errors: list[BusError] = []
    # Answers are awaited for a second: a batch written to the hung Redis would be dropped.
    sender = fast(redis.url + "?socket_timeout=1")
    sender.bind(lambda channel, message, more: None, errors.append)
    try:
        await asyncio.wait_for(sender.start(), TIMEOUT)
        connections = (await admin.info("stats"))["total_connections_received"]
        pings = (await admin.info("commandstats"))["cmdstat_ping"]["calls"]
        await asyncio.wait_for(publisher_idle(admin), TIMEOUT)
        await asyncio.wait_for(sender.flush(through=sender.publish("ws:room:h", b"1")), TIMEOUT)
        assert (await admin.info("commandstats"))["cmdstat_ping"]["calls"] == pings + 1
        assert (await admin.info("stats"))["total_connections_received"] == connections

        await asyncio.wait_for(publisher_idle(admin), TIMEOUT)
        redis.pause()
        number = sender.publish("ws:room:h", b"2")
        await eventually(lambda: bool(errors), timeout=3 * TIMEOUT)  # no PONG, no new connection
        assert "is not reachable" in str(errors[0])
        redis.resume()
        await asyncio.wait_for(sender.flush(through=number), TIMEOUT)  # on Redis, not dropped
        assert await messages(pubsub, 2) == [b"1", b"2"]
        assert sender.stats().dropped == 0
        assert not [e for e in errors if "dropped" in str(e)]
    finally:
        redis.resume()
        await sender.aclose()
        await pubsub.aclose()
        await listener.aclose()
        await admin.aclose()
        await redis.kill()


async def test_two_instances_carry_every_message_across_redis_closing_idle_connections(
    tmp_path: Path,
) -> None:
    """``redis-server --timeout 1``: each time, both instances' publisher connections were
    closed as idle before the next message; every message still arrives, once, in order."""
    redis = RedisServer(tmp_path)
    await redis.start("--timeout", "1")
    made = Cluster(lambda: fast(redis.url), redis)
    try:
        a, b = await made.instance(), await made.instance()
        alice = await made.client(a, rooms=("lobby",))
        bob = await made.client(b, rooms=("lobby",))
        await made.settled()
        for i in range(3):
            await asyncio.wait_for(idle_connections_closed(redis), TIMEOUT)
            await say(bob, f"from bob {i}", 2)
            await say(alice, f"from alice {i}", 2)
            assert [await alice.receive() for _ in range(2)] == events(f"from bob {i}", 2)
            assert [await bob.receive() for _ in range(2)] == events(f"from alice {i}", 2)
        await alice.nothing_more()
        await bob.nothing_more()
        for inst in (a, b):
            assert inst.hub.bus_stats().dropped == 0
    finally:
        for ws in made.clients:
            await ws.close()
        for inst in made.instances:
            await asyncio.wait_for(inst.server.aclose(), TIMEOUT)
        await redis.kill()


async def test_a_subscriber_on_a_redis_that_hangs_notices_the_silence_and_comes_back(
    tmp_path: Path,
) -> None:
    """A Redis that stops answering (SIGSTOP) keeps the subscriber's connection open: the
    subscriber notices the silence (its health check PINGs get no PONG) within a few health
    check intervals, says so, and once Redis answers again it subscribes again and delivers
    what is published from then on. Messages that arrive in a burst (many in one read) are
    delivered whole in between."""
    redis = RedisServer(tmp_path)
    await redis.start()
    publisher = redis.client()
    got: list[bytes] = []
    errors: list[BusError] = []
    receiver = fast(redis.url)  # health checks every 0.3 s: silence past 1.6 s is a loss
    receiver.bind(lambda channel, message, more: got.append(message), errors.append)
    try:
        await asyncio.wait_for(receiver.start(), TIMEOUT)
        receiver.subscribe("ws:room:s")
        await asyncio.wait_for(receiver.flush(), TIMEOUT)
        async with publisher.pipeline(transaction=False) as pipe:
            for i in range(500):  # a burst: the subscriber reads many per read
                pipe.publish("ws:room:s", str(i).encode())
            await pipe.execute()
        await eventually(lambda: len(got) == 500)
        assert got == [str(i).encode() for i in range(500)]

        redis.pause()
        await eventually(lambda: any("lost the connection" in str(e) for e in errors), 3 * TIMEOUT)
        assert any("no answer from Redis" in str(e) for e in errors), errors
        redis.resume()
        await asyncio.wait_for(receiver.flush(), 3 * TIMEOUT)  # subscribed again
        await publisher.publish("ws:room:s", b"after")
        await eventually(lambda: got[-1:] == [b"after"])
    finally:
        redis.resume()
        await receiver.aclose()
        await publisher.aclose()
        await redis.kill()
