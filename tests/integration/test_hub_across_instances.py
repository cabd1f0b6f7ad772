"""Pub/sub across instances: several Apps, each on its own real server, share one bus (a
MemoryBus, a real redis-server, or a real Redis Cluster of three masters, whose sharded
channels spread over them) and address rooms, clients, users and everyone.

Clients are real WebSocket clients. The hooks app below lets a client act as a user would
from a handler: subscribe to rooms and identify as a user when it connects (query string), and
ask its server to publish.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

import crosswire
from crosswire import BusError, Hub, Peer
from crosswire.pubsub import Backend, MemoryBackend, MemoryBus
from crosswire.pubsub.redis import RedisBackend
from crosswire.pubsub.redis_cluster import RedisClusterBackend
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer
from tests.support import TIMEOUT, eventually, recv


def hooks_app(hub: Hub) -> crosswire.App:
    """Rooms from ``?room=``, user from ``?user=``; frames ``{"op", ...}`` make the server
    publish."""

    def open(peer: Peer) -> None:
        for room in peer.request.query.getlist("room"):
            peer.subscribe(room)
        if "user" in peer.request.query:
            peer.identify(peer.request.query["user"])

    def message(peer: Peer, msg: crosswire.Message) -> None:
        cmd = msg.json()
        op = cmd["op"]
        exclude = cmd.get("exclude", ())
        if op == "whoami":
            peer.send({"id": peer.id})
        elif op == "publish":  # raw, every subscriber but the sender
            peer.publish(cmd["room"], cmd["data"])
        elif op == "publish_bytes":
            peer.publish(cmd["room"], cmd["data"].encode())
        elif op == "to_room":
            hub.to_room(cmd["room"], cmd["event"], cmd["data"], exclude=exclude)
        elif op == "to_client":
            hub.to_client(cmd["id"], cmd["event"], cmd["data"])
        elif op == "to_user":
            hub.to_user(cmd["user"], cmd["event"], cmd["data"], exclude=exclude)
        elif op == "broadcast":
            hub.broadcast(cmd["event"], cmd["data"], exclude=exclude)
        elif op == "leave":
            peer.unsubscribe(cmd["room"])

    return crosswire.App(crosswire.define_hooks(open=open, message=message), hub=hub)


class Instance:
    def __init__(self, app: crosswire.App, server: crosswire.RunningServer) -> None:
        self.app = app
        self.hub = app.hub
        self.server = server
        self.url = server.url
        self.errors: list[BusError] = []


class Cluster:
    """Instances on one bus; ``client()`` connects a real WebSocket client to one."""

    def __init__(self, new_backend: Callable[[], Backend], redis: RedisServer | None) -> None:
        self.new_backend = new_backend
        self.redis = redis
        self.instances: list[Instance] = []
        self.clients: list[ClientConnection] = []

    async def instance(
        self, build: Callable[[Hub], crosswire.App] = hooks_app, *, backend: Backend | None = None
    ) -> Instance:
        """A new instance on its own real server; ``backend`` replaces the cluster's usual one
        (another URL of the same bus)."""
        errors: list[BusError] = []
        hub = Hub(backend if backend is not None else self.new_backend(), on_error=errors.append)
        app = build(hub)
        inst = Instance(app, await crosswire.start(app))
        inst.errors = errors
        self.instances.append(inst)
        return inst

    async def client(
        self, inst: Instance, *, rooms: tuple[str, ...] = (), user: str = ""
    ) -> Client:
        query = "&".join([*(f"room={r}" for r in rooms), *([f"user={user}"] if user else [])])
        ws = await asyncio.wait_for(connect(f"{inst.url}/ws?{query}"), TIMEOUT)
        self.clients.append(ws)
        client = Client(ws)
        await client.send({"op": "whoami"})
        client.id = (await client.receive())["id"]
        return client

    async def settled(self) -> None:
        """Every instance's subscriptions are in effect on the bus."""
        for inst in self.instances:
            await asyncio.wait_for(inst.hub.flush(), TIMEOUT)


class Client:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.id = ""

    async def send(self, cmd: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(cmd).decode())

    async def receive(self) -> Any:
        return orjson.loads(await recv(self.ws))

    async def nothing_more(self) -> None:
        """Nothing else arrives (checked after a marker that went out after everything)."""
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.ws.recv(), 0.3)


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    redis: RedisServer | RedisCluster | None = None
    if request.param == "memory":
        bus = MemoryBus()
        made = Cluster(lambda: MemoryBackend(bus), None)
    elif request.param == "redis-cluster":
        redis = RedisCluster(tmp_path)
        await redis.start()
        seed = redis.url
        made = Cluster(lambda: RedisClusterBackend(seed, health_check_interval=0.5), None)
    else:
        redis = RedisServer(tmp_path)
        await redis.start()
        url = redis.url
        made = Cluster(lambda: RedisBackend(url, health_check_interval=0.5), redis)
    yield made
    for ws in made.clients:
        await ws.close()
    for inst in made.instances:
        await asyncio.wait_for(inst.server.aclose(), TIMEOUT)
    if isinstance(redis, RedisServer):
        await redis.kill()
    elif redis is not None:
        await redis.aclose()


async def test_a_room_spans_instances_and_each_member_gets_each_message_once(
    cluster: Cluster,
) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    alice = await cluster.client(a, rooms=("lobby",))
    bob = await cluster.client(a, rooms=("lobby",))
    carol = await cluster.client(b, rooms=("lobby",))
    dave = await cluster.client(b, rooms=("elsewhere",))
    await cluster.settled()

    await alice.send({"op": "publish", "room": "lobby", "data": {"n": 1}})
    await alice.send({"op": "publish_bytes", "room": "lobby", "data": "raw"})
    assert await bob.receive() == {"n": 1}
    assert await carol.receive() == {"n": 1}
    assert await recv(bob.ws) == b"raw"  # binary frames cross instances as binary
    assert await recv(carol.ws) == b"raw"
    # A marker from the other side: anything sent before it has arrived by then.
    await carol.send({"op": "to_room", "room": "lobby", "event": "marker", "data": None})
    for client in (alice, bob, carol):
        assert await client.receive() == {"event": "marker"}
        await client.nothing_more()  # no echo, no duplicate through the bus
    await dave.nothing_more()


async def test_events_reach_one_client_one_user_or_everyone_on_any_instance(
    cluster: Cluster,
) -> None:
    a, b, c = await cluster.instance(), await cluster.instance(), await cluster.instance()
    ann_phone = await cluster.client(a, user="ann")
    ann_laptop = await cluster.client(b, user="ann")
    ben = await cluster.client(c, user="ben")
    anon = await cluster.client(c)
    everyone = (ann_phone, ann_laptop, ben, anon)
    await cluster.settled()

    await ben.send({"op": "to_client", "id": ann_laptop.id, "event": "dm", "data": "hi"})
    assert await ann_laptop.receive() == {"event": "dm", "data": "hi"}

    await anon.send({"op": "to_user", "user": "ann", "event": "note", "data": 1})
    assert await ann_phone.receive() == {"event": "note", "data": 1}
    assert await ann_laptop.receive() == {"event": "note", "data": 1}

    exclude = [ann_phone.id]
    await anon.send(
        {"op": "to_user", "user": "ann", "event": "note", "data": 2, "exclude": exclude}
    )
    assert await ann_laptop.receive() == {"event": "note", "data": 2}

    await ann_phone.send({"op": "broadcast", "event": "all", "data": 3, "exclude": [ben.id]})
    for client in (ann_phone, ann_laptop, anon):
        assert await client.receive() == {"event": "all", "data": 3}
    await ann_phone.send({"op": "broadcast", "event": "end", "data": None})
    for client in everyone:
        assert await client.receive() == {"event": "end"}
        await client.nothing_more()


async def test_room_events_skip_excluded_clients_on_every_instance(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    one = await cluster.client(a, rooms=("r",))
    two = await cluster.client(b, rooms=("r",))
    three = await cluster.client(b, rooms=("r",))
    await cluster.settled()
    await one.send(
        {"op": "to_room", "room": "r", "event": "e", "data": [1], "exclude": [one.id, two.id]}
    )
    assert await three.receive() == {"event": "e", "data": [1]}
    await three.send({"op": "to_room", "room": "r", "event": "end", "data": None})
    for client in (one, two, three):
        assert await client.receive() == {"event": "end"}
        await client.nothing_more()


async def test_a_typed_router_renders_bus_events_in_its_own_dialect(cluster: Cluster) -> None:
    from crosswire import Router, message

    news = message("NEWS", {"text": str})
    router = Router()
    router.on(news, lambda ctx: ctx.publish("news", news, {"text": ctx.payload.text}))

    def typed(hub: Hub) -> crosswire.App:
        @router.on_open
        def join(ctx: crosswire.ConnectionContext) -> None:
            ctx.peer.subscribe("news")

        return crosswire.App(router, hub=hub)

    typed_instance = await cluster.instance(typed)
    hooks_instance = await cluster.instance()
    typed_ws = await asyncio.wait_for(connect(f"{typed_instance.url}/ws"), TIMEOUT)
    cluster.clients.append(typed_ws)
    reader = await cluster.client(hooks_instance, rooms=("news",))
    await cluster.settled()

    await reader.send({"op": "to_room", "room": "news", "event": "NEWS", "data": {"text": "a"}})
    # The router's client gets the canonical envelope, the hooks client the events form.
    assert orjson.loads(await recv(typed_ws)) == {
        "type": "NEWS",
        "meta": {},
        "payload": {"text": "a"},
    }
    assert await reader.receive() == {"event": "NEWS", "data": {"text": "a"}}

    await typed_ws.send(orjson.dumps({"type": "NEWS", "payload": {"text": "b"}}).decode())
    assert orjson.loads(await recv(typed_ws)) == {
        "type": "NEWS",
        "meta": {},
        "payload": {"text": "b"},
    }
    assert await reader.receive() == {"event": "NEWS", "data": {"text": "b"}}
    assert router.publish("news", news, {"text": "c"}).matched_local == 1
    assert await reader.receive() == {"event": "NEWS", "data": {"text": "c"}}


async def test_an_unreadable_message_on_the_bus_is_reported_and_serving_goes_on(
    cluster: Cluster,
) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    member = await cluster.client(b, rooms=("r",))
    await cluster.settled()
    backend = cluster.new_backend()
    backend.bind(lambda channel, message, more: None, lambda error: None)
    try:
        for junk in (
            b"not json",
            b'{"serverId": "x"}',
            b'{"serverId":"x","type":"room","event":"e"}',
        ):
            backend.publish("ws:room:r", junk)
        await asyncio.wait_for(backend.flush(), TIMEOUT)
    finally:
        await backend.aclose()
    await eventually(lambda: len(b.errors) == 3)
    assert all(isinstance(e, BusError) for e in b.errors)
    assert "no target" in str(b.errors[2])
    sender = await cluster.client(a)
    await sender.send({"op": "to_room", "room": "r", "event": "still", "data": "here"})
    assert await member.receive() == {"event": "still", "data": "here"}
