"""Presence on the router's topics (issue 16), over real sockets: who is in a topic, with what
the join handler attached, and joins and leaves sent to the members that ask for them; in
one process and across two instances on a real redis-server, and on a real Redis Cluster
(three masters; a namespace's presence keys in one slot)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from crosswire import App, Endpoint, Hub, JoinContext, Router
from crosswire.pubsub.backend import Backend
from crosswire.pubsub.redis import RedisBackend
from crosswire.pubsub.redis_cluster import RedisClusterBackend
from crosswire.wire import CANONICAL, ROVER
from tests.redis_cluster import RedisCluster
from tests.redis_server import RedisServer
from tests.support import TIMEOUT, RunCommand, recv

ROOT = Path(__file__).resolve().parents[2]

Open = Callable[[str], Awaitable[ClientConnection]]


def room_router() -> Router:
    router = Router()

    def join(ctx: JoinContext) -> None:
        ctx.accept(presence={"name": (ctx.payload or {}).get("name", "?")})

    router.topic("room:{id}", presence=True).on_join(join)
    return router


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(frame).decode())


async def receive(ws: ClientConnection) -> Any:
    return orjson.loads(await recv(ws))


async def join(ws: ClientConnection, topic: str, name: str, *, events: bool = True) -> Any:
    payload = {"topic": topic, "data": {"name": name}, "presence": events}
    await send(ws, {"type": "$ws:join", "meta": {"correlationId": name}, "payload": payload})
    ack = await receive(ws)
    assert ack["type"] == "$ws:join-ack", ack
    return ack


async def members(ws: ClientConnection, topic: str) -> list[Any]:
    await send(
        ws, {"type": "$ws:presence", "meta": {"correlationId": "p"}, "payload": {"topic": topic}}
    )
    answer = await receive(ws)
    assert answer["type"] == "$ws:presence", answer
    assert answer["meta"] == {"correlationId": "p"}
    return [(m["data"]["name"], m["userId"]) for m in answer["payload"]["members"]]


@pytest.fixture
async def one_process(serve_router: Any) -> AsyncIterator[Open]:
    router = room_router()
    app = App(
        endpoints=[
            Endpoint("/c", router, dialects=[CANONICAL]),
            Endpoint("/r", router, dialects=[ROVER]),
        ]
    )
    running = await serve_router(app)
    sockets: list[ClientConnection] = []

    async def open_(path: str) -> ClientConnection:
        ws = await asyncio.wait_for(connect(running.url + path), TIMEOUT)
        sockets.append(ws)
        return ws

    yield open_
    for ws in sockets:
        await ws.close()


async def test_members_see_who_joins_and_leaves_and_can_list_who_is_in(
    one_process: Open,
) -> None:
    ann = await one_process("/c")
    await join(ann, "room:1", "ann")
    joined = await receive(ann)  # ann's own join, as every member that asked sees it
    assert joined["type"] == "$ws:presence-join"
    assert joined["payload"]["data"] == {"name": "ann"}
    ben = await one_process("/c")
    await join(ben, "room:1", "ben", events=False)
    seen = await receive(ann)
    assert seen["type"] == "$ws:presence-join"
    assert seen["payload"]["topic"] == "room:1" and seen["payload"]["data"] == {"name": "ben"}
    ben_id = seen["payload"]["clientId"]
    assert sorted(await members(ann, "room:1")) == [("ann", None), ("ben", None)]
    await ben.close()
    left = await receive(ann)
    assert left["type"] == "$ws:presence-leave" and left["payload"]["clientId"] == ben_id
    assert await members(ann, "room:1") == [("ann", None)]


async def test_who_is_in_a_topic_is_for_its_members(one_process: Open) -> None:
    outsider = await one_process("/c")
    await send(
        outsider,
        {"type": "$ws:presence", "meta": {"correlationId": "p"}, "payload": {"topic": "room:2"}},
    )
    refused = await receive(outsider)
    assert refused["type"] == "RPC_ERROR"
    assert refused["payload"]["code"] == "PERMISSION_DENIED"
    await join(outsider, "room:2", "cy", events=False)  # the connection carries on
    assert await members(outsider, "room:2") == [("cy", None)]


async def test_rover_clients_ask_with_dollar_presence(one_process: Open) -> None:
    ws = await one_process("/r")
    await send(ws, {"type": "join", "topic": "room:3", "name": "dee", "$presence": True})
    assert (await receive(ws))["type"] == "join_ack"
    event = await receive(ws)
    assert event["type"] == "$ws:presence-join" and event["data"] == {"name": "dee"}
    await send(ws, {"type": "presence", "topic": "room:3"})
    answer = await receive(ws)
    assert answer["type"] == "presence" and answer["topic"] == "room:3"
    assert [m["data"] for m in answer["members"]] == [{"name": "dee"}]


@pytest.fixture(params=["redis", "cluster"])
async def bus(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Bus]:
    """What instances share: a real redis-server, or a real Redis Cluster (three masters, no
    replicas), each of the test's own."""
    if request.param == "redis":
        server = RedisServer(tmp_path)
        await server.start()
        yield Bus(server.url, False)
        await server.kill()
    else:
        cluster = RedisCluster(tmp_path, replicas=False)
        await cluster.start()
        yield Bus(cluster.url, True)
        await cluster.aclose()


class Bus:
    """The URL of a Redis, or of a node of a Redis Cluster (``cluster``)."""

    def __init__(self, url: str, cluster: bool) -> None:
        self.url = url
        self.cluster = cluster

    def backend(self) -> Backend:
        return RedisClusterBackend(self.url) if self.cluster else RedisBackend(self.url)

    @property
    def env(self) -> dict[str, str]:
        """How tests/apps/news.py is told where it is."""
        name = "CROSSWIRE_REDIS_CLUSTER_URL" if self.cluster else "CROSSWIRE_REDIS_URL"
        return {name: self.url}


async def test_presence_across_two_instances_on_redis(serve_router: Any, bus: Bus) -> None:
    urls = []
    for _ in range(2):
        app = App(room_router(), hub=Hub(bus.backend()))
        urls.append((await serve_router(app)).url + "/")
    ann = await asyncio.wait_for(connect(urls[0]), TIMEOUT)
    ben = await asyncio.wait_for(connect(urls[1]), TIMEOUT)
    try:
        await join(ann, "room:9", "ann")
        assert (await receive(ann))["payload"]["data"] == {"name": "ann"}
        await join(ben, "room:9", "ben", events=False)
        seen = await receive(ann)  # ben's join, from the other instance
        assert seen["type"] == "$ws:presence-join" and seen["payload"]["data"] == {"name": "ben"}
        assert sorted(await members(ben, "room:9")) == [("ann", None), ("ben", None)]
        await ben.close()
        left = await receive(ann)
        assert left["type"] == "$ws:presence-leave"
        assert await members(ann, "room:9") == [("ann", None)]
    finally:
        await ann.close()
        await ben.close()


async def test_the_members_of_an_instance_killed_with_sigkill_leave_within_the_ttl(
    crosswire_cmd: RunCommand, bus: Bus
) -> None:
    """Presence is right after a crash: a member on a server process killed with SIGKILL
    is announced as leaving, and is gone from the list, within the TTL (3 s in this app)
    after its instance's last heartbeat."""
    env = bus.env
    servers = []
    for _ in range(2):
        cmd = await crosswire_cmd("run", "tests.apps.news:app", "--port", "0", cwd=ROOT, env=env)
        await cmd.started()
        servers.append(cmd)
    doomed, survivor = servers
    ann = await asyncio.wait_for(connect(survivor.ws_url), TIMEOUT)
    ben = await asyncio.wait_for(connect(doomed.ws_url), TIMEOUT)
    try:
        await join(ann, "room:k", "ann")
        await receive(ann)  # ann's own join
        await join(ben, "room:k", "ben", events=False)
        assert (await receive(ann))["payload"]["data"] == {"name": "ben"}
        doomed.proc.kill()
        await asyncio.wait_for(doomed.proc.wait(), TIMEOUT)
        left = await receive(ann)  # (recv's own timeout bounds the wait: TTL + heartbeat)
        assert left["type"] == "$ws:presence-leave" and left["payload"]["data"] == {"name": "ben"}
        assert await members(ann, "room:k") == [("ann", None)]
    finally:
        await ann.close()
