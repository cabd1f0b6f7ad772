"""Topic history and recovery (issue 16), in one process, over real sockets, in each dialect:
a client that joins again with the last position it saw gets what it missed, in order, then
the live stream, with no duplicate and no gap; when the history no longer covers the gap it is
told ``recovered: false``, never left with a silent gap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

import crosswire
from crosswire import App, Endpoint, History, JoinContext, Router, message
from crosswire.pubsub import MemoryBackend, MemoryBus
from crosswire.wire import CANONICAL, EVENTS, ROVER
from tests.support import TIMEOUT, recv

News = message("NEWS", {"n": int})

Open = Callable[[str], Awaitable[ClientConnection]]


def news_router() -> Router:
    """``news:{id}`` keeps its last 5 events; ``plain`` keeps none."""
    router = Router()
    router.topic("news:{id}", history=History(size=5, ttl=None)).on_join(lambda ctx: ctx.accept())
    router.topic("plain")
    router.topic("race", history=History(size=100_000))
    return router


@pytest.fixture
async def served(serve_router: Any) -> AsyncIterator[tuple[Router, Open]]:
    router = news_router()
    app = App(
        endpoints=[
            Endpoint("/canonical", router, dialects=[CANONICAL]),
            Endpoint("/rover", router, dialects=[ROVER]),
            Endpoint("/events", router, dialects=[EVENTS]),
        ]
    )
    running = await serve_router(app)
    sockets: list[ClientConnection] = []

    async def open_(path: str) -> ClientConnection:
        ws = await asyncio.wait_for(connect(running.url + path), TIMEOUT)
        sockets.append(ws)
        return ws

    yield router, open_
    for ws in sockets:
        await ws.close()


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(frame).decode())


async def receive(ws: ClientConnection) -> Any:
    return orjson.loads(await recv(ws))


async def nothing_more(ws: ClientConnection) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.2)


def publish(router: Router, topic: str, *numbers: int) -> None:
    for n in numbers:
        router.publish(topic, News, {"n": n})


async def join_canonical(ws: ClientConnection, topic: str, recover: Any) -> Any:
    payload: dict[str, Any] = {"topic": topic}
    if recover is not None:
        payload["recover"] = recover
    await send(ws, {"type": "$ws:join", "meta": {"correlationId": "j"}, "payload": payload})
    return await receive(ws)


async def test_a_canonical_client_recovers_what_it_missed_then_gets_the_live_stream(
    served: tuple[Router, Open],
) -> None:
    router, open_ = served
    ws = await open_("/canonical")
    ack = await join_canonical(ws, "news:1", {})
    assert ack["type"] == "$ws:join-ack"
    position = ack["payload"]
    assert position["recovered"] is False and position["offset"] == 0
    epoch = position["epoch"]
    publish(router, "news:1", 1, 2)
    for n in (1, 2):
        assert await receive(ws) == {
            "type": "NEWS",
            "meta": {"topic": "news:1", "offset": n, "epoch": epoch},
            "payload": {"n": n},
        }
    await ws.close()

    publish(router, "news:1", 3, 4)  # missed
    again = await open_("/canonical")
    ack = await join_canonical(again, "news:1", {"offset": 2, "epoch": epoch})
    assert ack["payload"] == {
        "topic": "news:1",
        "recovered": True,
        "offset": 4,
        "epoch": epoch,
    }
    assert [(await receive(again))["meta"]["offset"] for _ in range(2)] == [3, 4]
    publish(router, "news:1", 5)
    live = await receive(again)
    assert live["meta"]["offset"] == 5 and live["payload"] == {"n": 5}
    await nothing_more(again)


async def test_a_strict_ws_kit_client_that_asks_for_nothing_sees_nothing_new(
    served: tuple[Router, Open],
) -> None:
    router, open_ = served
    ws = await open_("/canonical")
    ack = await join_canonical(ws, "news:2", None)
    assert ack["payload"] == {"topic": "news:2"}
    publish(router, "news:2", 1)
    assert await receive(ws) == {"type": "NEWS", "meta": {}, "payload": {"n": 1}}


async def test_a_gap_the_history_no_longer_covers_is_said_not_silent(
    served: tuple[Router, Open],
) -> None:
    router, open_ = served
    ws = await open_("/canonical")
    epoch = (await join_canonical(ws, "news:3", {}))["payload"]["epoch"]
    publish(router, "news:3", *range(1, 11))  # 10 events, 5 kept: offsets 6..10
    for _ in range(10):
        await receive(ws)
    late = await open_("/canonical")
    ack = await join_canonical(late, "news:3", {"offset": 1, "epoch": epoch})
    assert ack["payload"]["recovered"] is False and ack["payload"]["offset"] == 10
    await nothing_more(late)  # no partial replay: the client resyncs
    covered = await open_("/canonical")
    ack = await join_canonical(covered, "news:3", {"offset": 5, "epoch": epoch})
    assert ack["payload"]["recovered"] is True
    assert [(await receive(covered))["payload"]["n"] for _ in range(5)] == [6, 7, 8, 9, 10]


async def test_another_epoch_is_not_recovered(served: tuple[Router, Open]) -> None:
    router, open_ = served
    publish(router, "news:4", 1)
    ws = await open_("/canonical")
    ack = await join_canonical(ws, "news:4", {"offset": 0, "epoch": "not-this-one"})
    assert ack["payload"]["recovered"] is False and ack["payload"]["offset"] == 1
    await nothing_more(ws)


async def test_a_topic_without_history_answers_with_no_position(
    served: tuple[Router, Open],
) -> None:
    _, open_ = served
    ws = await open_("/canonical")
    ack = await join_canonical(ws, "plain", {"offset": 3, "epoch": "e"})
    assert ack["payload"] == {"topic": "plain", "recovered": False, "offset": 0, "epoch": ""}


async def test_a_malformed_recover_is_refused_and_the_connection_carries_on(
    served: tuple[Router, Open],
) -> None:
    _, open_ = served
    ws = await open_("/canonical")
    bad = await join_canonical(ws, "news:5", {"offset": -1, "epoch": "e"})
    assert bad["type"] == "RPC_ERROR" and bad["payload"]["code"] == "INVALID_ARGUMENT"
    ok = await join_canonical(ws, "news:5", {})
    assert ok["type"] == "$ws:join-ack"


async def test_rover_clients_recover_with_dollar_keys(served: tuple[Router, Open]) -> None:
    router, open_ = served
    ws = await open_("/rover")
    await send(ws, {"type": "join", "topic": "news:6", "$recover": {}})
    ack = await receive(ws)
    assert ack["type"] == "join_ack" and ack["$recovered"] is False and ack["$offset"] == 0
    epoch = ack["$epoch"]
    publish(router, "news:6", 1, 2, 3)
    assert await receive(ws) == {
        "type": "NEWS",
        "n": 1,
        "$topic": "news:6",
        "$offset": 1,
        "$epoch": epoch,
    }
    again = await open_("/rover")
    await send(
        again, {"type": "join", "topic": "news:6", "$recover": {"offset": 1, "epoch": epoch}}
    )
    ack = await receive(again)
    assert (ack["$recovered"], ack["$offset"]) == (True, 3)
    assert [(await receive(again))["n"] for _ in range(2)] == [2, 3]


async def test_events_clients_recover_with_a_joined_event(served: tuple[Router, Open]) -> None:
    router, open_ = served
    ws = await open_("/events")
    await send(ws, {"event": "join", "data": {"rooms": ["news:7"], "recover": {"news:7": {}}}})
    joined = await receive(ws)
    assert joined["event"] == "joined"
    epoch = joined["data"]["epoch"]
    assert joined["data"] == {"room": "news:7", "recovered": False, "offset": 0, "epoch": epoch}
    publish(router, "news:7", 1, 2)
    first = await receive(ws)
    assert first == {
        "event": "NEWS",
        "data": {"n": 1},
        "room": "news:7",
        "offset": 1,
        "epoch": epoch,
    }
    await receive(ws)
    again = await open_("/events")
    recover = {"news:7": {"offset": 1, "epoch": epoch}}
    await send(again, {"event": "join", "data": {"rooms": ["news:7"], "recover": recover}})
    assert (await receive(again))["data"]["recovered"] is True
    assert (await receive(again))["offset"] == 2


async def test_rejoining_while_events_keep_coming_gives_no_gap_and_no_duplicate(
    served: tuple[Router, Open],
) -> None:
    """A publisher never stops while clients drop and rejoin from their last position: each
    client's offsets run 1, 2, 3, ... with nothing missing and nothing twice."""
    router, open_ = served
    stop = asyncio.Event()

    async def publisher() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            publish(router, "race", n)
            await asyncio.sleep(0.001)  # (steady, and bounded within the history's size)

    seen: list[int] = []
    recovered = 0
    ws = await open_("/canonical")
    epoch = (await join_canonical(ws, "race", {}))["payload"]["epoch"]
    task = asyncio.create_task(publisher())
    try:
        for _ in range(5):
            for _ in range(3):
                frame = await receive(ws)
                if frame["type"] == "NEWS":
                    seen.append(frame["meta"]["offset"])
            await ws.close()
            ws = await open_("/canonical")
            ack = await join_canonical(ws, "race", {"offset": seen[-1], "epoch": epoch})
            assert ack["type"] == "$ws:join-ack", ack  # the ack comes before any event
            assert ack["payload"]["recovered"] is True
            recovered += 1
    finally:
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
    assert recovered == 5 and len(seen) >= 15
    assert seen == list(range(seen[0], seen[0] + len(seen)))  # no gap, no duplicate


async def test_history_on_a_bus_that_keeps_none_is_refused_at_startup() -> None:
    with pytest.raises(crosswire.ConfigurationError, match="a bus that keeps it"):
        App(news_router(), hub=crosswire.Hub(MemoryBackend(MemoryBus())))


def test_a_join_handler_sees_the_recover_key_neither_in_rover_nor_canonical() -> None:
    """``$recover``/``recover`` are the protocol's, not the join handler's data."""
    seen: list[Any] = []

    def join(ctx: JoinContext) -> None:
        seen.append(ctx.payload)

    router = Router()
    router.topic("t", history=History()).on_join(join)

    async def run() -> None:
        from crosswire.testing import TestClient

        app = App(endpoints=[Endpoint("/r", router, dialects=[ROVER])])
        async with TestClient(app).connect("/r") as conn:
            await conn.send_raw('{"type":"join","topic":"t","$recover":{},"name":"ann"}')
            frame = await conn.receive()
            assert frame.type == "join_ack"

    asyncio.run(run())
    assert seen == [{"name": "ann"}]
