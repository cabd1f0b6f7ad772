"""The edges a review of issue 16 found (each failed before its fix), on real sockets and a
real redis-server: recovering joins under a burst, with transforms, with a topic named twice,
a connection that closes mid-recovery, Redis away, a gap the history no longer holds, an
epoch that changes under a connected client, and presence's edges."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

import crosswire
from crosswire import App, ConnectionContext, Endpoint, History, Hub, JoinContext, Limits, Router
from crosswire.client import Client, Resync
from crosswire.pubsub import Publication
from crosswire.pubsub import hub as hub_module
from crosswire.pubsub.envelope import encode_envelope
from crosswire.pubsub.redis import RedisBackend
from crosswire.pubsub.redis_history import RedisHistory
from crosswire.wire import CANONICAL, EVENTS, ROVER
from tests.redis_server import RedisServer
from tests.support import TIMEOUT, eventually, recv

News = crosswire.message("NEWS", {"n": int})


class Instance:
    def __init__(self, router: Router, app: App, url: str) -> None:
        self.router, self.app, self.url = router, app, url

    def publish(self, topic: str, *numbers: int) -> None:
        for n in numbers:
            self.router.publish(topic, News, {"n": n})


async def instance(
    serve_router: Any,
    redis_url: str,
    *,
    size: int = 10_000,
    configure: Callable[[Router], None] | None = None,
) -> Instance:
    router = Router()
    router.topic("news:{id}", history=History(size=size, ttl=None))
    if configure is not None:
        configure(router)
    app = App(
        endpoints=[
            Endpoint("/c", router, dialects=[CANONICAL]),
            Endpoint("/e", router, dialects=[EVENTS]),
        ],
        hub=Hub(RedisBackend(redis_url, reconnect_delay=(0.02, 0.2))),
    )
    server = await serve_router(app)
    return Instance(router, app, server.url)


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(frame).decode())


async def receive(ws: ClientConnection) -> Any:
    return orjson.loads(await recv(ws))


def join_frame(topic: str, recover: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "$ws:join",
        "meta": {"correlationId": "j"},
        "payload": {"topic": topic, "recover": recover},
    }


async def rejoin_and_check(url: str, topic: str, since: tuple[int, str], count: int) -> None:
    """Join from ``since``: the ack comes first, then ``count`` events, offsets contiguous."""
    ws = await asyncio.wait_for(connect(url, max_size=None), TIMEOUT)
    try:
        await send(ws, join_frame(topic, {"offset": since[0], "epoch": since[1]}))
        ack = await receive(ws)
        assert ack["type"] == "$ws:join-ack", ack  # nothing before the ack
        assert ack["payload"]["recovered"] is True
        offsets = [(await receive(ws))["meta"]["offset"] for _ in range(count)]
        assert offsets == list(range(since[0] + 1, since[0] + 1 + count)), offsets
    finally:
        await ws.close()


@pytest.mark.parametrize("transform", [False, True])
async def test_a_burst_of_rejoins_under_a_stream_gets_no_gap_and_no_duplicate(
    serve_router: Any, redis_server: RedisServer, transform: bool
) -> None:
    """Thirty clients rejoin from one position at once (they share one history read), while
    another instance publishes without pause; with an outbound transform too."""

    def configure(router: Router) -> None:
        if transform:

            def identity(ctx: ConnectionContext) -> None:
                ctx.peer.transform = lambda peer, event, data: None  # send the original

            router.on_open(identity)

    one = await instance(serve_router, redis_server.url, configure=configure)
    two = await instance(serve_router, redis_server.url)
    watcher = await asyncio.wait_for(connect(one.url + "/c"), TIMEOUT)
    await send(watcher, join_frame("news:b", {}))
    epoch = (await receive(watcher))["payload"]["epoch"]
    two.publish("news:b", *range(1, 201))
    await eventually(lambda: not two.app.hub._to_keep)
    stop = asyncio.Event()

    async def publisher() -> None:
        n = 200
        while not stop.is_set():
            n += 1
            two.publish("news:b", n)
            await asyncio.sleep(0.005)

    seen = [200]

    async def watch() -> None:
        while True:
            frame = await receive(watcher)
            seen.append(frame["meta"]["offset"])

    task = asyncio.create_task(publisher())
    watching = asyncio.create_task(watch())
    try:
        for _ in range(3):
            since = (seen[-1] - 20, epoch)  # a recent position: 20 missed, then live ones
            await asyncio.gather(
                *(rejoin_and_check(one.url + "/c", "news:b", since, 40) for _ in range(30))
            )
    finally:
        stop.set()
        watching.cancel()
        await asyncio.wait_for(task, TIMEOUT)
        await watcher.close()


async def test_a_topic_named_twice_in_one_join_is_served_once(
    serve_router: Any, redis_server: RedisServer
) -> None:
    one = await instance(serve_router, redis_server.url)
    ws = await asyncio.wait_for(connect(one.url + "/e"), TIMEOUT)
    one.publish("news:d", 1, 2)
    await eventually(lambda: not one.app.hub._to_keep)
    epoch = (await one.app.hub._shared.position("news:d", History()))[1]  # type: ignore[union-attr]
    recover = {"news:d": {"offset": 0, "epoch": epoch}}
    await send(ws, {"event": "join", "data": {"rooms": ["news:d", "news:d"], "recover": recover}})
    frames = [await receive(ws) for _ in range(3)]
    assert [f["event"] for f in frames] == ["joined", "NEWS", "NEWS"]
    assert [f["offset"] for f in frames[1:]] == [1, 2]
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.3)
    await ws.close()


async def test_a_connection_that_closes_mid_recovery_leaves_nothing_behind(
    serve_router: Any, redis_server: RedisServer
) -> None:
    one = await instance(serve_router, redis_server.url)
    one.publish("news:l", 1)
    await eventually(lambda: not one.app.hub._to_keep)
    ws = await asyncio.wait_for(connect(one.url + "/c"), TIMEOUT)
    redis_server.pause()  # the recovery's read waits
    try:
        await send(ws, join_frame("news:l", {"offset": 0, "epoch": "e"}))
        await eventually(lambda: bool(one.app.hub._recovering))
        await ws.close()
    finally:
        redis_server.resume()
    hub = one.app.hub
    await eventually(lambda: not hub._recovering and not hub._positioned.get("news:l"))


async def test_a_recovering_join_is_answered_while_redis_is_away(
    serve_router: Any, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "RECOVERY_TIMEOUT", 0.5)
    one = await instance(serve_router, redis_server.url)
    ws = await asyncio.wait_for(connect(one.url + "/c"), TIMEOUT)
    await redis_server.kill()
    await send(ws, join_frame("news:x", {"offset": 3, "epoch": "e"}))
    ack = await receive(ws)  # within recv's own timeout
    assert ack["payload"]["recovered"] is False and ack["payload"]["epoch"] == ""
    await send(
        ws, {"type": "$ws:leave", "meta": {"correlationId": "l"}, "payload": {"topic": "news:x"}}
    )
    assert (await receive(ws))["type"] == "$ws:leave-ack"  # not stuck behind it
    await ws.close()


async def test_a_gap_the_history_no_longer_holds_does_not_stop_the_topic(
    serve_router: Any, redis_server: RedisServer
) -> None:
    one = await instance(serve_router, redis_server.url, size=5)
    ws = await asyncio.wait_for(connect(one.url + "/c"), TIMEOUT)
    await send(ws, join_frame("news:g", {}))
    await receive(ws)
    one.publish("news:g", 1)
    assert (await receive(ws))["meta"]["offset"] == 1
    store = RedisHistory.from_url(redis_server.url)
    for n in range(2, 12):  # 10 events the bus loses; 5 are kept
        lost = encode_envelope("x", Publication.of_event("room", "news:g", "NEWS", {"n": n}))
        await store.append_and_publish("news:g", "ws:room:nobody", lost, History(size=5))
    await store.aclose()
    one.publish("news:g", 12, 13)
    got = [(await receive(ws))["payload"]["n"] for _ in range(2)]
    assert got == [12, 13]  # past the gap it cannot fill, in order
    assert not one.app.hub._filling
    await ws.close()


async def test_an_epoch_that_changes_under_a_connected_client_is_a_resync(
    serve_router: Any, redis_server: RedisServer
) -> None:
    one = await instance(serve_router, redis_server.url)
    resyncs: list[Resync] = []
    async with Client(one.url + "/c") as client:
        client.on_resync(resyncs.append)
        await client.join("news:e", recover=True)
        one.publish("news:e", 1)

        def offset() -> int:
            position = client.position("news:e")
            return position.offset if position is not None else 0

        await eventually(lambda: offset() == 1)
        redis = redis_server.client()
        await redis.flushall()  # the history's past is gone (as in a restart without data)
        await redis.aclose()
        one.publish("news:e", 2)
        await eventually(lambda: len(resyncs) == 1)
        assert resyncs[0].topic == "news:e"


async def test_an_empty_epoch_from_a_topic_without_history_is_taken_back(
    serve_router: Any,
) -> None:
    router = Router()
    router.topic("plain")
    running = await serve_router(App(router))
    ws = await asyncio.wait_for(connect(running.url + "/"), TIMEOUT)
    await send(ws, join_frame("plain", {"offset": 0, "epoch": ""}))
    ack = await receive(ws)
    assert ack["type"] == "$ws:join-ack" and ack["payload"]["recovered"] is False
    await ws.close()


def presence_router() -> Router:
    router = Router()
    router.topic("plain")

    def join(ctx: JoinContext) -> None:
        ctx.accept(presence=ctx.payload)

    router.topic("room:{id}", presence=True).on_join(join)
    return router


async def test_presence_edges(serve_router: Any) -> None:
    running = await serve_router(App(presence_router(), limits=Limits(max_topics=1)))
    ws = await asyncio.wait_for(connect(running.url + "/"), TIMEOUT)
    try:
        # a join whose presence subscription passes the limit is refused whole
        payload = {"topic": "room:1", "data": {}, "presence": True}
        await send(ws, {"type": "$ws:join", "meta": {"correlationId": "a"}, "payload": payload})
        refused = await receive(ws)
        assert refused["type"] == "$ws:join-error"
        await send(
            ws,
            {
                "type": "$ws:presence",
                "meta": {"correlationId": "b"},
                "payload": {"topic": "room:1"},
            },
        )
        assert (await receive(ws))["payload"]["code"] == "PERMISSION_DENIED"  # not a member
        # presence of a topic that keeps none is refused, not an empty list
        await send(
            ws,
            {"type": "$ws:presence", "meta": {"correlationId": "c"}, "payload": {"topic": "plain"}},
        )
        assert (await receive(ws))["payload"]["code"] == "FAILED_PRECONDITION"
        # presence data that is not JSON fails the join, clearly
        bad = {"topic": "room:2", "data": None}
        await send(ws, {"type": "$ws:join", "meta": {"correlationId": "d"}, "payload": bad})
        assert (await receive(ws))["type"] == "$ws:join-ack"  # (None is JSON)
    finally:
        await ws.close()


def test_a_presence_router_refuses_a_presence_message_of_its_own() -> None:
    router = presence_router()
    router.on(crosswire.message("presence", {"who": str}), lambda ctx: None)
    with pytest.raises(crosswire.ConfigurationError, match="presence"):
        App(endpoints=[Endpoint("/r", router, dialects=[ROVER])])


def test_presence_data_must_be_json() -> None:
    ctx = JoinContext.__new__(JoinContext)
    with pytest.raises(TypeError, match="JSON"):
        JoinContext.accept(ctx, presence={1, 2})
