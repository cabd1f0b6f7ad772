"""Redis done right: what a Redis operator would check with ``redis-cli`` while crosswire
instances run, and what happens when redis-server dies and comes back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import redis.asyncio as aioredis
from redis._parsers import _AsyncRESP3Parser
from redis.asyncio import ConnectionPool
from websockets.asyncio.client import connect

import crosswire
from crosswire import BusError
from crosswire.pubsub.redis import _NO_REPLY, RedisBackend, _read_buffered
from tests.integration.test_hub_across_instances import Cluster
from tests.redis_server import RedisServer
from tests.support import TIMEOUT, eventually


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    redis = RedisServer(tmp_path)
    await redis.start()
    url = redis.url
    made = Cluster(
        lambda: RedisBackend(url, health_check_interval=0.3, reconnect_delay=(0.05, 0.3)), redis
    )
    yield made
    for ws in made.clients:
        await ws.close()
    for inst in made.instances:
        await asyncio.wait_for(inst.server.aclose(), TIMEOUT)
    await redis.kill()


async def numsub(redis: RedisServer, channel: str) -> int:
    client = redis.client()
    try:
        [(_, count)] = await client.pubsub_numsub(channel)
        return int(count)
    finally:
        await client.aclose()


async def pubsub_connections(redis: RedisServer) -> int:
    client = redis.client()
    try:
        return len(await client.client_list(_type="pubsub"))
    finally:
        await client.aclose()


async def test_a_room_channel_lives_from_the_first_local_member_to_the_last(
    cluster: Cluster,
) -> None:
    assert cluster.redis is not None
    a, b = await cluster.instance(), await cluster.instance()
    assert await numsub(cluster.redis, "ws:room:lobby") == 0
    first = await cluster.client(a, rooms=("lobby",))
    await cluster.settled()
    assert await numsub(cluster.redis, "ws:room:lobby") == 1
    second = await cluster.client(a, rooms=("lobby",))
    other = await cluster.client(b, rooms=("lobby",))
    await cluster.settled()
    assert await numsub(cluster.redis, "ws:room:lobby") == 2  # one per instance, not per client

    await first.send({"op": "leave", "room": "lobby"})
    await other.send({"op": "leave", "room": "lobby"})
    await eventually(lambda: b.hub.subscriber_count("lobby") == 0)
    await cluster.settled()
    assert await numsub(cluster.redis, "ws:room:lobby") == 1  # a still has `second`
    await second.ws.close()  # the last member leaves by disconnecting
    await eventually(lambda: a.hub.subscriber_count("lobby") == 0)
    await cluster.settled()
    assert await numsub(cluster.redis, "ws:room:lobby") == 0


async def test_each_instance_keeps_one_subscriber_connection(cluster: Cluster) -> None:
    assert cluster.redis is not None
    instances = [await cluster.instance() for _ in range(3)]
    for i, inst in enumerate(instances):
        for j in range(5):
            await cluster.client(inst, rooms=(f"room-{i}-{j}", "shared"), user=f"u{j}")
    await cluster.settled()
    assert await pubsub_connections(cluster.redis) == 3
    assert await numsub(cluster.redis, "ws:room:shared") == 3
    assert await numsub(cluster.redis, "ws:user:u1") == 3
    assert await numsub(cluster.redis, "ws:broadcast") == 3


async def test_after_redis_restarts_every_instance_resubscribes_and_delivery_resumes(
    cluster: Cluster,
) -> None:
    redis = cluster.redis
    assert redis is not None
    a, b = await cluster.instance(), await cluster.instance()
    alice = await cluster.client(a, rooms=("lobby",), user="alice")
    bob = await cluster.client(b, rooms=("lobby",), user="bob")
    await cluster.settled()
    await alice.send({"op": "to_room", "room": "lobby", "event": "before", "data": 1})
    assert await bob.receive() == {"event": "before", "data": 1}
    assert await alice.receive() == {"event": "before", "data": 1}

    await redis.kill()
    # Both instances notice (their subscriber connections break) and report it; their
    # clients stay connected.
    await eventually(lambda: bool(a.errors) and bool(b.errors))
    assert all(isinstance(e, BusError) for e in a.errors + b.errors)
    await redis.start()

    # Nothing is resent by hand: each instance reconnects and subscribes what it needs.
    async def resubscribed() -> None:
        while (  # noqa: ASYNC110 - Redis announces no subscription: poll it
            await numsub(redis, "ws:room:lobby") != 2 or await numsub(redis, "ws:user:alice") != 1
        ):
            await asyncio.sleep(0.05)

    await asyncio.wait_for(resubscribed(), TIMEOUT)
    await bob.send({"op": "to_room", "room": "lobby", "event": "after", "data": 2})
    assert await alice.receive() == {"event": "after", "data": 2}
    assert await bob.receive() == {"event": "after", "data": 2}
    await bob.send({"op": "to_user", "user": "alice", "event": "dm", "data": 3})
    assert await alice.receive() == {"event": "dm", "data": 3}


async def test_a_server_starts_while_redis_is_down_and_catches_up(cluster: Cluster) -> None:
    redis = cluster.redis
    assert redis is not None
    await redis.kill()
    a, b = await cluster.instance(), await cluster.instance()
    alice = await cluster.client(a, rooms=("lobby",))  # local delivery needs no Redis
    carol = await cluster.client(a, rooms=("lobby",))
    bob = await cluster.client(b, rooms=("lobby",))
    await carol.send({"op": "to_room", "room": "lobby", "event": "local", "data": 0})
    assert await alice.receive() == {"event": "local", "data": 0}
    await eventually(lambda: bool(a.errors))
    await redis.start()
    await cluster.settled()  # the queued publish went out; subscriptions are in effect
    await alice.send({"op": "to_room", "room": "lobby", "event": "later", "data": 1})
    # "local" waited in a's queue and went out once Redis was back: bob gets it if b had
    # resubscribed by then (at most once), and "later" in any case, after it.
    seen = [await bob.receive()]
    if seen[0]["event"] == "local":
        seen.append(await bob.receive())
    assert seen[-1] == {"event": "later", "data": 1}
    await bob.nothing_more()


async def test_close_hooks_publish_during_shutdown_and_shutdown_returns(
    redis_server: RedisServer,
) -> None:
    """Each of 20 peers' close hook sends to a room as the server shuts down: shutdown returns
    (a cancellation lost inside redis-py once hung it) and every message reaches Redis."""
    listener = redis_server.client()
    pubsub = listener.pubsub()
    await pubsub.subscribe("ws:room:audit")
    errors: list[BusError] = []

    hub = crosswire.Hub(RedisBackend(redis_server.url), on_error=errors.append)

    def close(peer: crosswire.Peer, code: int, reason: str) -> None:
        hub.to_room("audit", "left", peer.id)

    app = crosswire.App(crosswire.define_hooks(close=close), hub=hub)
    server = await crosswire.start(app)
    clients = [await connect(server.url + "/") for _ in range(20)]
    try:
        await asyncio.wait_for(server.aclose(), 3 * TIMEOUT)
        left: set[str] = set()

        async def read() -> None:
            while len(left) < 20:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    left.add(orjson.loads(message["data"])["data"])

        await asyncio.wait_for(read(), TIMEOUT)
        assert errors == []
    finally:
        for ws in clients:
            await ws.close()
        await pubsub.aclose()
        await listener.aclose()


async def test_aclose_while_a_batch_waits_for_redis_reports_it_dropped(
    redis_server: RedisServer,
) -> None:
    backend = RedisBackend(redis_server.url)
    errors: list[BusError] = []
    backend.bind(lambda channel, message, more: None, errors.append)
    backend.publish("ws:room:a", b"{}")
    await asyncio.wait_for(backend.flush(), TIMEOUT)
    admin = redis_server.client()
    # Redis stops answering for 3 s.
    await admin.execute_command("CLIENT", "PAUSE", "3000", "ALL")  # type: ignore[no-untyped-call]
    try:
        number = backend.publish("ws:room:a", b"{}")
        await asyncio.sleep(0.2)  # the batch is written, its answer due
        waiting = asyncio.create_task(backend.flush())
        await asyncio.wait_for(backend.aclose(), TIMEOUT)
        with pytest.raises(BusError, match="dropped"):
            await asyncio.wait_for(waiting, TIMEOUT)
        with pytest.raises(BusError, match="dropped"):
            await asyncio.wait_for(backend.flush(through=number), TIMEOUT)
        assert any("not on Redis yet" in str(e) for e in errors)
        late = backend.publish("ws:room:a", b"{}")
        with pytest.raises(BusError, match="dropped"):
            await asyncio.wait_for(backend.flush(through=late), TIMEOUT)
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
        await admin.aclose()


async def test_a_burst_from_redis_is_delivered_with_the_more_hint(
    redis_server: RedisServer,
) -> None:
    """Messages that reach the subscriber connection together are delivered saying that more
    follow (so that the Hub holds its writes for the burst); the last one says none do."""
    hints: list[bool] = []
    receiver = RedisBackend(redis_server.url)
    receiver.bind(lambda channel, message, more: hints.append(more), lambda error: None)
    receiver.subscribe("ws:room:burst")
    await asyncio.wait_for(receiver.flush(), TIMEOUT)
    sender = RedisBackend(redis_server.url)
    sender.bind(lambda channel, message, more: None, lambda error: None)
    try:
        for i in range(200):
            sender.publish("ws:room:burst", b"%d" % i)  # one pipelined batch
        await asyncio.wait_for(sender.flush(), TIMEOUT)
        await eventually(lambda: len(hints) == 200)
        assert any(hints)
        assert hints[-1] is False
    finally:
        await sender.aclose()
        await receiver.aclose()


async def test_a_burst_is_taken_from_the_parser_without_a_read_per_message(
    redis_server: RedisServer,
) -> None:
    """What the subscriber does with a burst (crosswire.pubsub.redis._read_buffered): once
    one reply is read, the others already whole in hiredis' buffer come out one by one, in
    order, without a read each; then it says there is none."""
    pool = ConnectionPool.from_url(redis_server.url)
    conn = pool.make_connection()  # type: ignore[no-untyped-call]
    publisher = redis_server.client()
    try:
        await conn.connect()
        await conn.send_command("SUBSCRIBE", "ws:room:burst")
        confirmed = await conn.read_response(timeout=TIMEOUT, push_request=True)
        assert confirmed[0] == b"subscribe"
        async with publisher.pipeline(transaction=False) as pipe:
            for i in range(200):
                pipe.publish("ws:room:burst", str(i).encode())
            await pipe.execute()
        got: list[bytes] = []
        reads = 0
        while len(got) < 200:
            reply = await conn.read_response(timeout=TIMEOUT, push_request=True)
            reads += 1
            while reply is not _NO_REPLY:
                assert reply[:2] == [b"message", b"ws:room:burst"]
                got.append(reply[2])
                reply = await _read_buffered(conn)
        assert got == [str(i).encode() for i in range(200)]
        assert reads < 200  # most came from the buffer
        assert await _read_buffered(conn) is _NO_REPLY
    finally:
        await publisher.aclose()
        await conn.disconnect()
        await pool.disconnect()


@pytest.mark.parametrize("parser", [None, _AsyncRESP3Parser], ids=["hiredis", "python-resp3"])
async def test_a_push_that_is_not_pub_sub_is_no_outage(
    redis_server: RedisServer, parser: type[_AsyncRESP3Parser] | None
) -> None:
    """Client-side caching sends the subscriber connection RESP3 pushes that are not pub/sub:
    another connection tracks keys with ``CLIENT TRACKING ON REDIRECT <the subscriber's id>``,
    so each write to a key it read sends the subscriber an ``invalidate`` push. redis-py hands
    such a push (like a maintenance notification) to its own handler, and ``read_response``
    then returns None, as it does when its timeout expires. That is no silence: no outage is
    reported, the subscriber keeps its connection and its channels, and what is published
    afterwards is delivered, whether the push comes alone or amid a burst of messages."""
    admin = redis_server.client()
    tracker = aioredis.Redis.from_url(redis_server.url, single_connection_client=True)
    got: list[bytes] = []
    errors: list[BusError] = []
    # Health checks every 0.3 s: 1.6 s of silence would be a loss.
    receiver = RedisBackend(redis_server.url, health_check_interval=0.3)
    if parser is not None:  # the parser redis-py uses without hiredis
        receiver._pool.connection_kwargs["parser_class"] = parser
    receiver.bind(lambda channel, message, more: got.append(message), errors.append)
    try:
        receiver.subscribe("ws:room:p")
        await asyncio.wait_for(receiver.flush(), TIMEOUT)
        [subscriber] = await admin.client_list(_type="pubsub")
        await tracker.execute_command("CLIENT", "TRACKING", "ON", "REDIRECT", subscriber["id"])  # type: ignore[no-untyped-call]

        await tracker.get("k")  # tracked: the next write to k is sent as an invalidation
        await admin.set("k", "1")  # the push, alone
        await admin.publish("ws:room:p", b"after the push")
        await eventually(lambda: bool(got or errors))
        assert errors == []
        assert got == [b"after the push"]

        await tracker.get("k")
        async with admin.pipeline(transaction=True) as pipe:  # the push amid a burst
            pipe.publish("ws:room:p", b"before")
            pipe.set("k", "2")
            pipe.publish("ws:room:p", b"after")
            await pipe.execute()
        await eventually(lambda: len(got) == 3 or bool(errors))
        assert errors == []
        assert got == [b"after the push", b"before", b"after"]
        assert [c["id"] for c in await admin.client_list(_type="pubsub")] == [subscriber["id"]]
        assert receiver.stats().reconnects == 0
    finally:
        await receiver.aclose()
        await tracker.aclose()
        await admin.aclose()
