"""RedisClusterBackend on a real Redis Cluster (three masters, three replicas, started by the
test): instances exchange events on channels of every master, the Emitter publishes through
it, topic history lives beside its channel, and after a master is killed its replica takes
over and delivery resumes, with the outage reported.

(The Backend contract, the history contract and the cross-instance suite run on a cluster too:
tests/contract/, tests/integration/test_hub_across_instances.py.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from crosswire import BusError, Emitter
from crosswire.pubsub.history import History
from crosswire.pubsub.presence import PresenceEntry
from crosswire.pubsub.redis_cluster import RedisClusterBackend
from crosswire.pubsub.redis_history import RedisHistory
from crosswire.pubsub.redis_presence import RedisPresence
from crosswire.pubsub.redis_slots import slot_of
from tests.contract.test_backends import Endpoint
from tests.integration.test_hub_across_instances import Cluster
from tests.redis_cluster import RedisCluster
from tests.redis_server import free_port
from tests.support import TIMEOUT, eventually

#: Seconds delivery may take to resume after a master is killed (the failover included).
RESUME_WITHIN = 15.0

# Every wait of these tests is bounded, and a slow one fails saying which: forming the
# cluster (tests/redis_cluster.py, 2 x 20 s), a failover (20 s), the resumes (15 s each),
# each call to a node (5 s to connect, 5 s per reply). Together they may pass the suite's
# 60 s; this backstop is well above what a slow run takes, so that on a loaded machine the
# failure names the wait that ran out rather than the suite's timeout.
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def redis_cluster(tmp_path: Path) -> AsyncIterator[RedisCluster]:
    cluster = RedisCluster(tmp_path)
    await cluster.start()
    yield cluster
    await cluster.aclose()


@pytest.fixture
async def instances(redis_cluster: RedisCluster) -> AsyncIterator[Cluster]:
    url = redis_cluster.url
    made = Cluster(lambda: RedisClusterBackend(url, health_check_interval=0.5), None)
    yield made
    for ws in made.clients:
        await ws.close()
    for inst in made.instances:
        await asyncio.wait_for(inst.server.aclose(), TIMEOUT)


async def one_room_per_master(cluster: RedisCluster) -> list[str]:
    """Room names whose channels (``ws:room:<name>``) are served by three different masters."""
    rooms: dict[int, str] = {}
    i = 0
    while len(rooms) < 3:
        room = f"room{i}"
        rooms.setdefault(await cluster.master_of(f"ws:room:{room}"), room)
        i += 1
    return list(rooms.values())


async def test_instances_exchange_room_and_user_events_on_every_master(
    redis_cluster: RedisCluster, instances: Cluster
) -> None:
    rooms = await one_room_per_master(redis_cluster)
    a, b = await instances.instance(), await instances.instance()
    members = [await instances.client(b, rooms=(room,)) for room in rooms]
    ann = await instances.client(b, user="ann")
    sender = await instances.client(a)
    await instances.settled()

    for n, room in enumerate(rooms):
        await sender.send({"op": "to_room", "room": room, "event": "news", "data": n})
    await sender.send({"op": "to_user", "user": "ann", "event": "note", "data": "hi"})
    for n, member in enumerate(members):
        assert await member.receive() == {"event": "news", "data": n}
        await member.nothing_more()  # its own room only
    assert await ann.receive() == {"event": "note", "data": "hi"}
    assert a.errors == b.errors == []


async def test_the_emitter_publishes_through_the_cluster(
    redis_cluster: RedisCluster, instances: Cluster
) -> None:
    rooms = await one_room_per_master(redis_cluster)
    a, b = await instances.instance(), await instances.instance()
    members = [
        await instances.client(inst, rooms=(room,))
        for inst, room in zip((a, b, a), rooms, strict=True)
    ]
    ben = await instances.client(b, user="ben")
    await instances.settled()

    async with Emitter(RedisClusterBackend(redis_cluster.url)) as emitter:
        for room in rooms:
            await asyncio.wait_for(emitter.to_room(room, "news", room), TIMEOUT)
        await asyncio.wait_for(emitter.to_user("ben", "note", 1), TIMEOUT)
        await asyncio.wait_for(emitter.broadcast("all", None), TIMEOUT)
    for member, room in zip(members, rooms, strict=True):
        assert await member.receive() == {"event": "news", "data": room}
    assert await ben.receive() == {"event": "note", "data": 1}
    for client in (*members, ben):
        assert await client.receive() == {"event": "all"}


async def test_topic_history_is_kept_beside_its_channel_and_shared(
    redis_cluster: RedisCluster, instances: Cluster
) -> None:
    a, b = await instances.instance(), await instances.instance()
    for inst in (a, b):
        inst.hub.keep_history(lambda topic: True, History(size=10, ttl=None))
    rooms = ["lobby", "odd{tag}name", "a}b"]  # a name with a hash tag, one with a stray brace
    members = [await instances.client(b, rooms=(room,)) for room in rooms]
    sender = await instances.client(a)
    await instances.settled()

    for room in rooms:
        await sender.send({"op": "to_room", "room": room, "event": "kept", "data": room})
    for member, room in zip(members, rooms, strict=True):
        got = await member.receive()
        assert (got["event"], got["data"]) == ("kept", room)
    store = RedisHistory.from_cluster_url(redis_cluster.url)
    for room in rooms:
        assert {slot_of(key) for key in store.keys(room)} == {slot_of(f"ws:room:{room}")}
        entries = await asyncio.wait_for(b.hub.history(room), TIMEOUT)
        assert [(e.event, e.data, e.position.offset) for e in entries] == [("kept", room, 1)]
    await store.aclose()
    assert a.errors == b.errors == []


async def test_presence_lives_in_one_slot_and_comes_back_after_its_master_fails_over(
    redis_cluster: RedisCluster,
) -> None:
    """A namespace's presence keys share one slot; when its master dies, the replica takes
    over, and what it had not copied is written back by each instance's heartbeat: both
    instances' members are listed again, and a join made after the failover is seen. (The
    TTL is longer than the failover, about 3 s here: with a shorter one, each instance would
    also be taken for dead meanwhile, and write its entries back after.)"""
    a = RedisClusterBackend(redis_cluster.url, presence_heartbeat=0.2, presence_ttl=10.0)
    b = RedisClusterBackend(redis_cluster.url, presence_heartbeat=0.2, presence_ttl=10.0)
    stores = [a.presence("ws", "inst-a"), b.presence("ws", "inst-b")]
    errors: list[BusError] = []
    for store in stores:
        store.bind(lambda change: None, errors.append)

    async def members(topic: str) -> list[str]:
        return [e.client_id for e in await stores[0].members(topic)]

    async def members_become(topic: str, expected: list[str]) -> None:
        async def poll() -> None:
            while True:
                try:
                    if await members(topic) == expected:
                        return
                except BusError:
                    pass  # the failover is under way: read again
                await asyncio.sleep(0.05)

        await asyncio.wait_for(poll(), RESUME_WITHIN)

    try:
        for store in stores:
            await asyncio.wait_for(store.start(), TIMEOUT)
        rooms = await one_room_per_master(redis_cluster)  # topics whose channels are apart
        for room, store, client in ((rooms[0], stores[0], "ann"), (rooms[1], stores[1], "ben")):
            entry = PresenceEntry(client, None, {"room": room}, store.instance)
            await asyncio.wait_for(store.add(room, entry), TIMEOUT)
            entry = PresenceEntry(client, None, None, store.instance)
            await asyncio.wait_for(store.add("lobby", entry), TIMEOUT)
        assert await members("lobby") == ["ann", "ben"]
        assert await members(rooms[1]) == ["ben"]

        keys = await redis_cluster.keys()
        assert len(keys) >= 6, keys  # 3 topics, 2 instances' keys and topic sets, the registry
        assert {slot_of(key) for key in keys} == {slot_of("{ws:presence}")}
        master = await redis_cluster.master_of("{ws:presence}")
        await redis_cluster.kill(master)
        assert await redis_cluster.failed_over(slot_of("{ws:presence}"), master) != master

        await members_become("lobby", ["ann", "ben"])
        await members_become(rooms[0], ["ann"])
        entry = PresenceEntry("cid", None, None, "inst-b")
        await asyncio.wait_for(stores[1].add("lobby", entry), TIMEOUT)
        assert await members("lobby") == ["ann", "ben", "cid"]
    finally:
        for store in stores:
            await asyncio.wait_for(store.aclose(), TIMEOUT)
    # (An outage is reported only if a call found no master within its timeout: redis-py's
    # retries, which read the slot map again, may carry each call over to the replica.)
    assert all(isinstance(e, BusError) for e in errors)


async def test_history_and_presence_on_a_cluster_that_cannot_be_reached_raise_bus_errors() -> None:
    """An instance that starts while its cluster is down (or whose nodes are all gone):
    redis-py's cluster client raises RedisClusterUnreachableError, which is not a RedisError.
    The history and presence stores say BusError, as on one Redis; the presence store's start
    and aclose do not raise, and its heartbeat reports the outage."""
    url = f"redis://127.0.0.1:{free_port()}"  # nothing listens there
    history = RedisHistory.from_cluster_url(url, timeout=0.5)
    presence = RedisPresence(url, instance="i", heartbeat=0.2, ttl=1.0, timeout=0.5, cluster=True)
    errors: list[BusError] = []
    presence.bind(lambda change: None, errors.append)
    try:
        await asyncio.wait_for(presence.start(), TIMEOUT)
        with pytest.raises(BusError, match="redis history: reading the position of topic 't'"):
            await asyncio.wait_for(history.position("t", History(size=10)), TIMEOUT)
        with pytest.raises(BusError, match="presence: could not read the members of topic 't'"):
            await asyncio.wait_for(presence.members("t"), TIMEOUT)
        entry = PresenceEntry("c1", None, None, "i")
        with pytest.raises(BusError, match="presence: could not add connection 'c1'"):
            await asyncio.wait_for(presence.add("t", entry), TIMEOUT)
    finally:
        await asyncio.wait_for(presence.aclose(), TIMEOUT)
        await history.aclose()
    assert errors and all(isinstance(e, BusError) for e in errors)
    assert "heartbeat" in str(errors[0])


async def test_delivery_resumes_after_a_master_dies_and_its_replica_takes_over(
    redis_cluster: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "crosswire.pubsub")
    loop = asyncio.get_running_loop()
    rooms = await one_room_per_master(redis_cluster)
    doomed, safe = f"ws:room:{rooms[0]}", f"ws:room:{rooms[1]}"

    def backend() -> RedisClusterBackend:
        return RedisClusterBackend(
            redis_cluster.url, health_check_interval=0.5, reconnect_delay=(0.05, 0.5)
        )

    sub, pub = Endpoint(backend()), Endpoint(backend())
    try:
        for channel in (doomed, safe):
            sub.backend.subscribe(channel)
        await asyncio.wait_for(sub.backend.flush(), TIMEOUT)
        pub.backend.publish(doomed, b"before")
        await asyncio.wait_for(pub.backend.flush(), TIMEOUT)
        await eventually(lambda: sub.messages(doomed) == [b"before"])

        master = await redis_cluster.master_of(doomed)
        killed_at = loop.time()
        await redis_cluster.kill(master)
        # Published while the master is dead: they wait for the new one, none is dropped.
        pub.backend.publish(safe, b"during")
        pub.backend.publish(doomed, b"during")
        promoted = await redis_cluster.failed_over(slot_of(doomed), master)
        assert promoted != master
        # Resubscribed on the promoted replica: what is published now is delivered.
        await asyncio.wait_for(sub.backend.flush(), RESUME_WITHIN)
        pub.backend.publish(doomed, b"after")
        await asyncio.wait_for(pub.backend.flush(), RESUME_WITHIN)
        await eventually(lambda: b"after" in sub.messages(doomed), RESUME_WITHIN)
        resumed = loop.time() - killed_at
        assert resumed < RESUME_WITHIN
        assert sub.messages(safe) == [b"during"]
        # b"during" on the doomed channel may precede the resubscription: missed, as said.
        assert sub.messages(doomed)[0] == b"before"
        assert sub.messages(doomed)[-1] == b"after"

        # The outage was reported: the loss (what this instance misses), then its end.
        assert any("misses what is published" in str(e) for e in sub.errors), sub.errors
        assert all(isinstance(e, BusError) for e in sub.errors + pub.errors)
        assert sub.backend.stats().reconnects == 1
        assert pub.backend.stats().dropped == 0  # publishes waited for the new master
        assert "reconnected to Redis Cluster" in caplog.text
    finally:
        await asyncio.wait_for(sub.backend.aclose(), TIMEOUT)
        await asyncio.wait_for(pub.backend.aclose(), TIMEOUT)


async def test_a_channel_whose_slot_moves_is_subscribed_on_its_new_master(
    redis_cluster: RedisCluster,
) -> None:
    channel = "ws:room:moving"
    sub = Endpoint(RedisClusterBackend(redis_cluster.url, health_check_interval=0.5))
    pub = Endpoint(RedisClusterBackend(redis_cluster.url, health_check_interval=0.5))
    try:
        sub.backend.subscribe(channel)
        await asyncio.wait_for(sub.backend.flush(), TIMEOUT)
        pub.backend.publish(channel, b"before")  # the publisher learns the map as it was
        await asyncio.wait_for(pub.backend.flush(), TIMEOUT)
        await eventually(lambda: sub.messages(channel) == [b"before"])

        source = await redis_cluster.master_of(channel)
        target = next(p for p in set((await redis_cluster.slots()).values()) if p != source)
        await redis_cluster.move(slot_of(channel), target)
        # Redis unsubscribes the channel on the old master: reported, and made again on the
        # new one; the publisher's next SPUBLISH is answered MOVED and sent again there.
        await eventually(lambda: bool(sub.errors))
        assert "its slot moved to another master" in str(sub.errors[0])
        await asyncio.wait_for(sub.backend.flush(), TIMEOUT)
        pub.backend.publish(channel, b"after")
        await asyncio.wait_for(pub.backend.flush(), TIMEOUT)
        await eventually(lambda: sub.messages(channel) == [b"before", b"after"])
        assert await redis_cluster.master_of(channel) == target
        assert pub.errors == [] and pub.backend.stats().dropped == 0
    finally:
        await asyncio.wait_for(sub.backend.aclose(), TIMEOUT)
        await asyncio.wait_for(pub.backend.aclose(), TIMEOUT)


async def test_a_push_that_is_not_pub_sub_is_no_outage(tmp_path: Path) -> None:
    """As on one Redis (test_redis_bus.py): an ``invalidate`` push on a master's subscriber
    connection (client-side caching redirected to it), which redis-py's ``read_response``
    answers with None as after a timeout, is no silence: no outage, the same connection, and
    what is published afterwards is delivered, the push alone or amid a burst."""
    redis_cluster = RedisCluster(tmp_path, replicas=False)
    await redis_cluster.start()
    try:
        await _push_is_no_outage(redis_cluster)
    finally:
        await redis_cluster.aclose()


async def _push_is_no_outage(redis_cluster: RedisCluster) -> None:
    channel = "ws:room:p"
    key = "{ws:room:p}k"  # in the channel's slot: on the same master
    sub = Endpoint(RedisClusterBackend(redis_cluster.url, health_check_interval=0.3))
    port = await redis_cluster.master_of(channel)
    node = next(node for node in redis_cluster.nodes if node.port == port)
    admin = node.client()
    tracker = aioredis.Redis.from_url(node.url, single_connection_client=True)
    try:
        sub.backend.subscribe(channel)
        await asyncio.wait_for(sub.backend.flush(), TIMEOUT)
        [subscriber] = await admin.client_list(_type="pubsub")
        await tracker.execute_command("CLIENT", "TRACKING", "ON", "REDIRECT", subscriber["id"])  # type: ignore[no-untyped-call]

        await tracker.get(key)
        await admin.set(key, "1")  # the push, alone
        await admin.execute_command("SPUBLISH", channel, b"after the push")  # type: ignore[no-untyped-call]
        await eventually(lambda: bool(sub.messages(channel) or sub.errors))
        assert sub.errors == []
        assert sub.messages(channel) == [b"after the push"]

        await tracker.get(key)
        async with admin.pipeline(transaction=True) as pipe:  # the push amid a burst
            pipe.execute_command("SPUBLISH", channel, b"before")
            pipe.set(key, "2")
            pipe.execute_command("SPUBLISH", channel, b"after")
            await pipe.execute()
        await eventually(lambda: len(sub.messages(channel)) == 3 or bool(sub.errors))
        assert sub.errors == []
        assert sub.messages(channel) == [b"after the push", b"before", b"after"]
        assert [c["id"] for c in await admin.client_list(_type="pubsub")] == [subscriber["id"]]
        assert sub.backend.stats().reconnects == 0
    finally:
        await asyncio.wait_for(sub.backend.aclose(), TIMEOUT)
        await tracker.aclose()
        await admin.aclose()
