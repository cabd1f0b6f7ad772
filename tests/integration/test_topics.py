"""Topics on the router: joins accepted or rejected with a reason, leaves, in every dialect,
over real sockets, as clients written from each seed send and read them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

import crosswire
from crosswire import App, Endpoint, JoinContext, LeaveContext, Limits, Router, message
from crosswire.wire import CANONICAL, EVENTS, ROVER
from tests.support import TIMEOUT, recv

Say = message("say", {"room": str, "text": str})
Said = message("said", {"room": str, "text": str})
UserJoined = message("user_joined", {"user": str, "room": str})
UserLeft = message("user_left", {"user": str})


def chat_router(joins: list[str]) -> Router:
    """``lobby`` is open; ``room:{id}`` wants a username, refuses ``room:secret``, and says
    who joins and leaves; ``slow:{id}`` decides after an await."""
    router = Router()
    router.topic("lobby")
    members: dict[str, int] = {}

    def join_room(ctx: JoinContext) -> None:
        joins.append(ctx.topic)
        if ctx.params["id"] == "secret":
            ctx.reject("members only")
            return
        ctx.publish(ctx.topic, UserJoined, {"user": ctx.payload.username, "room": ctx.topic})
        members[ctx.topic] = members.get(ctx.topic, 0) + 1
        ctx.accept({"members": members[ctx.topic]})

    def leave_room(ctx: LeaveContext) -> None:
        ctx.publish(ctx.topic, UserLeft, {"user": ctx.payload.get("username", "?")})

    router.topic("room:{id}", data={"username": str}).on_join(join_room).on_leave(leave_room)

    async def join_slowly(ctx: JoinContext) -> None:
        await asyncio.sleep(0.05)
        joins.append(ctx.topic)
        if ctx.params["id"] == "no":
            raise crosswire.WsError("FAILED_PRECONDITION", "not today")

    router.topic("slow:{id}").on_join(join_slowly)

    def say(ctx: crosswire.EventContext[Any]) -> None:
        room, text = ctx.payload.room, ctx.payload.text
        ctx.publish(room, Said, {"room": room, "text": text})

    router.on(Say, say)
    return router


Open = Callable[[str], Awaitable[ClientConnection]]


@pytest.fixture
async def chat(serve_router: Any) -> AsyncIterator[tuple[list[str], Open]]:
    """The chat router at /rover, /canonical and /events; ``open_(path)`` connects."""
    joins: list[str] = []
    router = chat_router(joins)
    app = App(
        endpoints=[
            Endpoint("/rover", router, dialects=[ROVER]),
            Endpoint("/canonical", router, dialects=[CANONICAL]),
            Endpoint("/events", router, dialects=[EVENTS]),
        ],
        limits=Limits(max_topics=4),
    )
    running = await serve_router(app)
    sockets: list[ClientConnection] = []

    async def open_(path: str) -> ClientConnection:
        ws = await asyncio.wait_for(connect(running.url + path), TIMEOUT)
        sockets.append(ws)
        return ws

    yield joins, open_
    for ws in sockets:
        await ws.close()


async def send(ws: ClientConnection, frame: dict[str, Any]) -> None:
    await ws.send(orjson.dumps(frame).decode())


async def receive(ws: ClientConnection) -> Any:
    return orjson.loads(await recv(ws))


async def nothing_more(ws: ClientConnection) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.recv(), 0.2)


async def test_rover_joins_are_acknowledged_or_rejected_with_a_reason(
    chat: tuple[list[str], Open],
) -> None:
    joins, open_ = chat
    ann, bob = await open_("/rover"), await open_("/rover")
    await send(ann, {"type": "join", "topic": "room:1", "username": "ann"})
    assert await receive(ann) == {"type": "join_ack", "topic": "room:1", "members": 1}
    await send(bob, {"type": "join", "topic": "room:1", "username": "bob"})
    # The room hears of bob before bob is in it; then bob's ack.
    assert await receive(ann) == {"type": "user_joined", "user": "bob", "room": "room:1"}
    assert await receive(bob) == {"type": "join_ack", "topic": "room:1", "members": 2}

    await send(bob, {"type": "join", "topic": "room:secret", "username": "bob"})
    assert await receive(bob) == {
        "type": "join_error",
        "topic": "room:secret",
        "reason": "members only",
        "code": "PERMISSION_DENIED",
    }
    await send(bob, {"type": "join", "topic": "room:2"})  # no username: the data schema
    refused = await receive(bob)
    assert (refused["type"], refused["code"]) == ("join_error", "INVALID_ARGUMENT")
    assert "username" in refused["reason"]
    await send(bob, {"type": "join", "topic": "nowhere"})
    assert (await receive(bob))["code"] == "NOT_FOUND"
    assert joins == ["room:1", "room:1", "room:secret"]  # the handler ran for each join

    # A rejected join never subscribes: nothing said in room:secret reaches bob.
    await send(ann, {"type": "say", "room": "room:secret", "text": "psst"})
    await nothing_more(bob)
    await send(ann, {"type": "say", "room": "room:1", "text": "hi"})
    for ws in (ann, bob):
        assert await receive(ws) == {"type": "said", "room": "room:1", "text": "hi"}


async def test_rover_leave_runs_the_leave_handler_then_acknowledges(
    chat: tuple[list[str], Open],
) -> None:
    _, open_ = chat
    ann, bob = await open_("/rover"), await open_("/rover")
    for ws, name in ((ann, "ann"), (bob, "bob")):
        await send(ws, {"type": "join", "topic": "room:1", "username": name})
        assert (await receive(ws))["type"] == "join_ack"
    assert (await receive(ann))["type"] == "user_joined"
    await send(bob, {"type": "leave", "topic": "room:1", "username": "bob"})
    # While bob is still a member: both hear it; then bob's ack.
    assert await receive(bob) == {"type": "user_left", "user": "bob"}
    assert await receive(bob) == {"type": "leave_ack", "topic": "room:1"}
    assert await receive(ann) == {"type": "user_left", "user": "bob"}
    await send(ann, {"type": "say", "room": "room:1", "text": "gone?"})
    assert (await receive(ann))["text"] == "gone?"
    await nothing_more(bob)
    await send(bob, {"type": "leave", "topic": "room:1"})  # not in it: acknowledged anyway
    assert await receive(bob) == {"type": "leave_ack", "topic": "room:1"}


async def test_joining_twice_is_acknowledged_without_running_the_handler_again(
    chat: tuple[list[str], Open],
) -> None:
    joins, open_ = chat
    ann = await open_("/rover")
    for _ in range(2):
        await send(ann, {"type": "join", "topic": "room:1", "username": "ann"})
        assert (await receive(ann))["type"] == "join_ack"
    assert joins == ["room:1"]


async def test_async_join_handlers_answer_in_order(chat: tuple[list[str], Open]) -> None:
    joins, open_ = chat
    ann = await open_("/rover")
    for topic in ("slow:1", "slow:no", "lobby"):
        await send(ann, {"type": "join", "topic": topic})
    assert [await receive(ann) for _ in range(3)] == [
        {"type": "join_ack", "topic": "slow:1"},
        {
            "type": "join_error",
            "topic": "slow:no",
            "reason": "not today",
            "code": "FAILED_PRECONDITION",
        },
        {"type": "join_ack", "topic": "lobby"},
    ]
    assert joins == ["slow:1", "slow:no"]


async def test_bad_topic_requests_get_the_dialects_error_and_the_connection_lives(
    chat: tuple[list[str], Open],
) -> None:
    _, open_ = chat
    rover, canonical = await open_("/rover"), await open_("/canonical")
    await send(rover, {"type": "join"})
    error = await receive(rover)
    assert (error["type"], error["code"]) == ("error", "INVALID_ARGUMENT")
    await send(canonical, {"type": "$ws:join", "meta": {"correlationId": "j"}, "payload": {}})
    error = await receive(canonical)
    assert (error["type"], error["meta"], error["payload"]["code"]) == (
        "RPC_ERROR",
        {"correlationId": "j"},
        "INVALID_ARGUMENT",
    )
    await send(rover, {"type": "join", "topic": "lobby"})
    assert await receive(rover) == {"type": "join_ack", "topic": "lobby"}


async def test_canonical_join_frames_carry_the_correlation_id(
    chat: tuple[list[str], Open],
) -> None:
    _, open_ = chat
    ws = await open_("/canonical")
    join = {"topic": "room:7", "data": {"username": "ann"}}
    await send(ws, {"type": "$ws:join", "meta": {"correlationId": "j1"}, "payload": join})
    assert await receive(ws) == {
        "type": "$ws:join-ack",
        "meta": {"correlationId": "j1"},
        "payload": {"topic": "room:7", "data": {"members": 1}},
    }
    await send(ws, {"type": "$ws:join", "payload": {"topic": "room:secret", "data": {}}})
    refused = await receive(ws)
    assert refused["type"] == "$ws:join-error"
    assert refused["payload"]["topic"] == "room:secret"
    assert refused["payload"]["code"] == "INVALID_ARGUMENT"  # (no username: the schema first)
    await send(ws, {"type": "$ws:leave", "meta": {"correlationId": "l1"}, "payload": join})
    assert await receive(ws) == {"type": "user_left", "meta": {}, "payload": {"user": "ann"}}
    assert await receive(ws) == {
        "type": "$ws:leave-ack",
        "meta": {"correlationId": "l1"},
        "payload": {"topic": "room:7"},
    }


async def test_events_joins_answer_refusals_with_one_error_each(
    chat: tuple[list[str], Open],
) -> None:
    _, open_ = chat
    ws = await open_("/events")
    rooms = ["lobby", "room:secret", "nowhere", "slow:2"]
    await send(ws, {"event": "join", "data": {"rooms": rooms}})
    invalid, unknown = [await receive(ws) for _ in range(2)]
    # room:secret wants a username (its data schema), which an events join cannot carry.
    assert invalid["event"] == "error" and invalid["data"]["rooms"] == ["room:secret"]
    assert "username" in invalid["data"]["message"] and invalid["data"]["issues"]
    assert unknown == {
        "event": "error",
        "data": {"message": "no topic 'nowhere'", "rooms": ["nowhere"]},
    }
    await send(ws, {"event": "say", "data": {"room": "slow:2", "text": "in"}})
    assert await receive(ws) == {"event": "said", "data": {"room": "slow:2", "text": "in"}}


async def test_a_join_past_max_topics_is_refused_as_a_whole(
    chat: tuple[list[str], Open],
) -> None:
    _, open_ = chat
    ws = await open_("/events")
    await send(ws, {"event": "join", "data": {"rooms": ["slow:1", "slow:2", "slow:3"]}})
    await send(ws, {"event": "join", "data": {"rooms": ["lobby", "slow:4"]}})  # 5 > 4
    assert await receive(ws) == {
        "event": "error",
        "data": {"message": "too many topics", "limit": 4},
    }
    rover = await open_("/rover")
    for i in range(4):
        await send(rover, {"type": "join", "topic": f"slow:{i}"})
    await send(rover, {"type": "join", "topic": "lobby"})
    answers = [await receive(rover) for _ in range(5)]
    assert [a["type"] for a in answers] == ["join_ack"] * 4 + ["join_error"]
    assert answers[-1]["code"] == "RESOURCE_EXHAUSTED"


async def test_on_auth_decides_before_any_join(serve_router: Any) -> None:
    router = Router()
    router.topic("lobby")
    router.on_auth(lambda ctx: ctx.data.get("token") == "ok")

    def upgrade(request: crosswire.Request) -> crosswire.Accept:
        return crosswire.Accept(context={"token": request.query.get("token")})

    router.on_upgrade(upgrade)
    app = App(endpoints=[Endpoint("/rover", router, dialects=[ROVER])])
    running = await serve_router(app)
    async with connect(running.url + "/rover?token=ok") as ok:
        await send(ok, {"type": "join", "topic": "lobby"})
        assert await receive(ok) == {"type": "join_ack", "topic": "lobby"}
    async with connect(running.url + "/rover?token=no") as no:
        await send(no, {"type": "join", "topic": "lobby"})
        assert (await receive(no))["code"] == "UNAUTHENTICATED"
        await asyncio.wait_for(no.wait_closed(), TIMEOUT)
        assert no.close_code == 1008


async def test_a_leave_sent_after_an_async_join_is_served_after_it(
    chat: tuple[list[str], Open],
) -> None:
    """The connection's topic frames are served in order, even while a join handler awaits:
    the leave does not overtake the join (which would leave the client subscribed)."""
    _, open_ = chat
    ann, bob = await open_("/rover"), await open_("/rover")
    await send(ann, {"type": "join", "topic": "slow:1"})
    await send(ann, {"type": "leave", "topic": "slow:1"})
    assert [await receive(ann) for _ in range(2)] == [
        {"type": "join_ack", "topic": "slow:1"},
        {"type": "leave_ack", "topic": "slow:1"},
    ]
    await send(bob, {"type": "say", "room": "slow:1", "text": "anyone?"})
    await nothing_more(ann)
