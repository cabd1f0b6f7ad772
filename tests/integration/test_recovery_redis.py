"""Topic history shared by two instances on a real redis-server (issue 16): one numbering per
topic, recovery on another instance than the one the client left, and Redis faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from crosswire import App, Endpoint, History, Hub, Router, message
from crosswire.pubsub.redis import RedisBackend
from crosswire.wire import CANONICAL
from tests.redis_server import AOF, RedisServer
from tests.support import TIMEOUT, RunCommand, eventually, recv

ROOT = Path(__file__).resolve().parents[2]

News = message("NEWS", {"n": int})


@dataclass
class Instance:
    router: Router
    url: str

    def publish(self, topic: str, *numbers: int) -> None:
        for n in numbers:
            self.router.publish(topic, News, {"n": n})


Start = Callable[[], Awaitable[Instance]]


@pytest.fixture
async def instances(serve_router: Any, redis_server: RedisServer) -> AsyncIterator[Start]:
    async def start() -> Instance:
        router = Router()
        router.topic("news:{id}", history=History(size=10_000, ttl=None))
        app = App(
            endpoints=[Endpoint("/c", router, dialects=[CANONICAL])],
            hub=Hub(RedisBackend(redis_server.url, reconnect_delay=(0.02, 0.2))),
        )
        server = await serve_router(app)
        return Instance(router, server.url + "/c")

    yield start


async def open_(url: str) -> ClientConnection:
    return await asyncio.wait_for(connect(url), TIMEOUT)


async def receive(ws: ClientConnection) -> Any:
    return orjson.loads(await recv(ws))


async def join(ws: ClientConnection, topic: str, recover: dict[str, Any]) -> Any:
    payload = {"topic": topic, "recover": recover}
    await ws.send(orjson.dumps({"type": "$ws:join", "payload": payload}).decode())
    ack = await receive(ws)
    assert ack["type"] == "$ws:join-ack", ack
    return ack["payload"]


async def offsets(ws: ClientConnection, count: int) -> list[int]:
    return [(await receive(ws))["meta"]["offset"] for _ in range(count)]


async def test_two_instances_number_a_topic_alike_and_deliver_it_in_one_order(
    instances: Start,
) -> None:
    one, two = await instances(), await instances()
    a, b = await open_(one.url), await open_(two.url)
    epoch = (await join(a, "news:1", {}))["epoch"]
    assert (await join(b, "news:1", {}))["epoch"] == epoch
    for n in range(1, 7):
        (one if n % 2 else two).publish("news:1", n)
    got_a = [await receive(a) for _ in range(6)]
    got_b = [await receive(b) for _ in range(6)]
    assert [f["meta"]["offset"] for f in got_a] == [1, 2, 3, 4, 5, 6]
    assert got_a == got_b
    assert {f["meta"]["epoch"] for f in got_a} == {epoch}


async def test_a_client_recovers_on_another_instance_than_the_one_it_left(
    instances: Start,
) -> None:
    one, two = await instances(), await instances()
    ws = await open_(one.url)
    epoch = (await join(ws, "news:2", {}))["epoch"]
    two.publish("news:2", 1, 2)
    assert await offsets(ws, 2) == [1, 2]
    await ws.close()
    one.publish("news:2", 3, 4, 5)  # missed
    again = await open_(two.url)
    ack = await join(again, "news:2", {"offset": 2, "epoch": epoch})
    assert (ack["recovered"], ack["offset"]) == (True, 5)
    assert await offsets(again, 3) == [3, 4, 5]
    one.publish("news:2", 6)
    assert await offsets(again, 1) == [6]


async def test_rejoining_on_either_instance_while_events_keep_coming_loses_nothing(
    instances: Start,
) -> None:
    one, two = await instances(), await instances()
    stop = asyncio.Event()

    async def publisher() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            two.publish("news:3", n)
            await asyncio.sleep(0.002)

    seen: list[int] = []
    ws = await open_(one.url)
    epoch = (await join(ws, "news:3", {}))["epoch"]
    task = asyncio.create_task(publisher())
    try:
        for round_ in range(6):
            seen.extend(await offsets(ws, 3))
            await ws.close()
            ws = await open_((two if round_ % 2 == 0 else one).url)
            ack = await join(ws, "news:3", {"offset": seen[-1], "epoch": epoch})
            assert ack["recovered"] is True, ack
        seen.extend(await offsets(ws, 3))
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
        await ws.close()
    assert seen == list(range(1, len(seen) + 1))  # from the first: no gap, no duplicate


async def test_redis_restarted_without_persistence_changes_the_epoch(
    instances: Start, redis_server: RedisServer
) -> None:
    one = await instances()
    ws = await open_(one.url)
    epoch = (await join(ws, "news:4", {}))["epoch"]
    one.publish("news:4", 1)
    assert await offsets(ws, 1) == [1]
    await ws.close()
    await redis_server.kill()
    await redis_server.start()
    again = await open_(one.url)

    async def rejoined() -> Any:
        while True:  # until the instance's Redis connections are back
            ack = await join(again, "news:4", {"offset": 1, "epoch": epoch})
            if ack["epoch"]:
                return ack
            await asyncio.sleep(0.05)

    ack = await asyncio.wait_for(rejoined(), TIMEOUT)
    assert ack["recovered"] is False and ack["epoch"] != epoch


async def test_after_a_sigkill_of_redis_with_aof_every_kept_event_arrives_once_in_order(
    instances: Start, redis_server: RedisServer
) -> None:
    """Redis (``appendfsync always``) is killed during a steady stream and started again:
    the subscriber gets every event that Redis kept, in order, none twice (what was lost on
    the bus while the instance was away comes from the history)."""
    await redis_server.kill()
    await redis_server.start(*AOF)
    one, two = await instances(), await instances()
    ws = await open_(one.url)
    await join(ws, "news:5", {})
    got: list[int] = []

    async def read() -> None:
        while True:
            got.append((await receive(ws))["meta"]["offset"])

    reader = asyncio.create_task(read())
    stop = asyncio.Event()

    async def publisher() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            two.publish("news:5", n)
            await asyncio.sleep(0.002)

    task = asyncio.create_task(publisher())
    try:
        await eventually(lambda: len(got) >= 50)
        await redis_server.kill()
        await redis_server.start(*AOF)
        client = redis_server.client()
        await eventually(lambda: len(got) >= 100 and got[-1] > 150)
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
        entries: Any = await client.xrange("ws:history:news:5")
        kept = [int(bytes(entry_id).split(b"-")[0]) for entry_id, _ in entries]
        await client.aclose()
        await eventually(lambda: bool(got) and got[-1] == kept[-1])
    finally:
        stop.set()
        reader.cancel()
        await ws.close()
    assert got == kept
    assert got == sorted(set(got))


async def test_an_event_the_bus_lost_is_filled_in_from_the_history(
    instances: Start, redis_server: RedisServer
) -> None:
    """The bus drops an event that the history kept (here: kept, and published where nobody
    listens): the instance sees the gap at the next event and fills it in, in order."""
    from crosswire.pubsub import Publication
    from crosswire.pubsub.envelope import encode_envelope
    from crosswire.pubsub.redis_history import RedisHistory

    one = await instances()
    ws = await open_(one.url)
    await join(ws, "news:6", {})
    one.publish("news:6", 1)
    assert await offsets(ws, 1) == [1]
    store = RedisHistory.from_url(redis_server.url)
    lost = Publication.of_event("room", "news:6", "NEWS", {"n": 2})
    policy = History(size=10_000, ttl=None)
    await store.append_and_publish("news:6", "ws:room:nobody", encode_envelope("x", lost), policy)
    await store.aclose()
    one.publish("news:6", 3)
    frames = [await receive(ws) for _ in range(2)]
    assert [(f["meta"]["offset"], f["payload"]["n"]) for f in frames] == [(2, 2), (3, 3)]


async def test_clients_of_an_instance_killed_with_sigkill_recover_on_another(
    crosswire_cmd: RunCommand, redis_server: RedisServer
) -> None:
    """Two server processes on one Redis; the one a client is on is killed with SIGKILL.
    The client connects to the other with its last position and gets everything published
    meanwhile, in order, then the live stream."""
    env = {"CROSSWIRE_REDIS_URL": redis_server.url}
    servers = []
    for _ in range(2):
        cmd = await crosswire_cmd("run", "tests.apps.news:app", "--port", "0", cwd=ROOT, env=env)
        await cmd.started()
        servers.append(cmd)
    doomed, survivor = servers
    ws = await open_(doomed.ws_url)
    publisher = await open_(survivor.ws_url)

    async def pub(*numbers: int) -> None:
        for n in numbers:
            frame = {"type": "PUB", "payload": {"topic": "news:k", "n": n}}
            await publisher.send(orjson.dumps(frame).decode())

    try:
        epoch = (await join(ws, "news:k", {}))["epoch"]
        await pub(1, 2, 3)
        assert await offsets(ws, 3) == [1, 2, 3]
        doomed.proc.kill()  # SIGKILL: no close frame, no goodbye
        await asyncio.wait_for(doomed.proc.wait(), TIMEOUT)
        await pub(4, 5, 6, 7)
        again = await open_(survivor.ws_url)
        ack = await join(again, "news:k", {"offset": 3, "epoch": epoch})
        assert ack["recovered"] is True and ack["epoch"] == epoch
        await pub(8)
        got: list[int] = []
        while not got or got[-1] != 8:  # what was kept before the join, then the live rest
            got.append((await receive(again))["payload"]["n"])
        assert got == [4, 5, 6, 7, 8]
        await again.close()
    finally:
        await publisher.close()
