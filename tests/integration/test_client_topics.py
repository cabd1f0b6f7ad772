"""The Python client's topics against real crosswire servers: joins accepted with the ack's
data or refused with a reason, leaves, publications received while joined and only then, and
the topics joined again after the server restarts on the same port."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from crosswire import (
    App,
    ErrorCode,
    JoinContext,
    JoinRefused,
    Router,
    WsError,
    define_hooks,
    message,
)
from crosswire.client import Client, ErrorContext, Reconnect
from tests.support import TIMEOUT, ServeRouter, eventually

Say = message("SAY", {"room": str, "text": str})
Said = message("SAID", {"room": str, "text": str})

FAST = Reconnect(initial_delay=0.02, max_delay=0.1)


def topic_router(joins: list[tuple[str, Any]], *, closed: frozenset[str] = frozenset()) -> Router:
    """``lobby`` is open to all; ``room:{id}`` wants a username, and refuses ``room:secret``
    and the rooms in ``closed``; ``SAY`` publishes ``SAID`` to a room (its members, the
    sender too when it is one)."""
    router = Router()
    router.topic("lobby")

    def join_room(ctx: JoinContext) -> None:
        joins.append((ctx.topic, ctx.payload.username))
        if ctx.params["id"] == "secret" or ctx.topic in closed:
            ctx.reject("members only")
        else:
            ctx.accept({"welcome": ctx.payload.username})

    router.topic("room:{id}", data={"username": str}).on_join(join_room)
    router.on(
        Say,
        lambda ctx: ctx.publish(
            ctx.payload.room, Said, {"room": ctx.payload.room, "text": ctx.payload.text}
        ),
    )
    return router


class Heard:
    """The SAID messages a client received, in order."""

    def __init__(self, client: Client) -> None:
        self.texts: list[str] = []
        client.on(Said, lambda frame: self.texts.append(frame.payload.text))

    async def until(self, *texts: str) -> None:
        await eventually(lambda: self.texts[-len(texts) :] == list(texts))


async def test_a_join_returns_the_acks_data_or_raises_the_servers_reason(
    serve_router: ServeRouter,
) -> None:
    joins: list[tuple[str, Any]] = []
    server = await serve_router(topic_router(joins))
    async with Client(server.url + "/", reconnect=FAST) as client:
        assert await client.join("room:1", {"username": "ann"}) == {"welcome": "ann"}
        assert await client.join("lobby") is None  # accepted, with no data
        with pytest.raises(JoinRefused) as refused:
            await client.join("room:secret", {"username": "ann"})
        assert refused.value.topic == "room:secret" and refused.value.reason == "members only"
        assert refused.value.code == ErrorCode.PERMISSION_DENIED
        assert isinstance(refused.value, WsError) and refused.value.retryable is False
        with pytest.raises(JoinRefused) as invalid:
            await client.join("room:2")  # no username: the route's data schema
        assert invalid.value.code == ErrorCode.INVALID_ARGUMENT
        with pytest.raises(JoinRefused) as unknown:
            await client.join("nowhere")
        assert (unknown.value.code, unknown.value.reason) == ("NOT_FOUND", "no topic 'nowhere'")
        assert client.topics == {"room:1": {"username": "ann"}, "lobby": None}
        assert joins == [("room:1", "ann"), ("room:secret", "ann")]


async def test_publications_arrive_while_joined_and_stop_after_a_leave(
    serve_router: ServeRouter,
) -> None:
    server = await serve_router(topic_router([]))
    async with (
        Client(server.url + "/", reconnect=FAST) as ann,
        Client(server.url + "/", reconnect=FAST) as bob,
    ):
        heard = Heard(ann)
        await bob.send(Say, {"room": "lobby", "text": "before"})  # ann is not in it yet
        await ann.join("lobby")
        await ann.join("room:1", {"username": "ann"})
        await bob.send(Say, {"room": "room:1", "text": "hello"})
        await heard.until("hello")
        await ann.leave("room:1")
        assert ann.topics == {"lobby": None}
        await bob.send(Say, {"room": "room:1", "text": "gone?"})
        await bob.send(Say, {"room": "lobby", "text": "after"})  # (in order, from one sender)
        await heard.until("after")
        assert heard.texts == ["hello", "after"]
        await ann.leave("room:1")  # not in it: acknowledged all the same


async def test_topics_are_joined_again_after_the_server_restarts(
    serve_router: ServeRouter,
) -> None:
    joins: list[tuple[str, Any]] = []
    first = await serve_router(topic_router(joins))
    errors: list[tuple[Exception, ErrorContext]] = []
    ann = Client(first.url + "/", reconnect=FAST)
    ann.on_error(lambda error, context: errors.append((error, context)))
    heard = Heard(ann)
    await ann.connect()
    try:
        await ann.join("room:1", {"username": "ann"})
        await ann.join("room:2", {"username": "ann"})
        await ann.join("lobby")
        joins.clear()
        await first.aclose()  # the server goes away (1001)
        await eventually(lambda: not ann.is_connected)
        assert not await ann.send(Say, {"room": "room:1", "text": "while down"})  # queued

        # Back on the same port, where room:2 is closed now.
        again = await serve_router(
            topic_router(joins, closed=frozenset({"room:2"})), port=first.port
        )
        # The rejoins went first (with their data), then the queued SAY: ann, in room:1
        # again by then, hears it.
        await heard.until("while down")
        assert joins == [("room:1", "ann"), ("room:2", "ann")]
        await eventually(lambda: len(errors) == 1)
        error, context = errors[0]
        assert context == ErrorContext("rejoin", "room:2")
        assert isinstance(error, JoinRefused) and error.reason == "members only"
        assert ann.topics == {"room:1": {"username": "ann"}, "lobby": None}

        async with Client(again.url + "/", reconnect=FAST) as bob:
            await bob.send(Say, {"room": "lobby", "text": "back"})
            await heard.until("back")
    finally:
        await ann.close()
    assert ann.topics == {}  # close() forgets them


async def test_a_join_while_offline_waits_for_the_connection(serve_router: ServeRouter) -> None:
    server = await serve_router(topic_router([]))
    client = Client(server.url + "/", reconnect=FAST)
    try:
        pending = asyncio.ensure_future(client.join("room:1", {"username": "ann"}))
        dropped = asyncio.ensure_future(client.join("room:9", {"username": "ann"}))
        await eventually(lambda: client.queued == 2)
        await client.leave("room:9")  # offline: nothing to leave, its queued join taken out
        with pytest.raises(WsError) as cancelled:
            await asyncio.wait_for(dropped, TIMEOUT)
        assert cancelled.value.code == ErrorCode.CANCELLED and client.queued == 1
        await client.connect()
        assert await asyncio.wait_for(pending, TIMEOUT) == {"welcome": "ann"}
        assert client.topics == {"room:1": {"username": "ann"}}
    finally:
        await client.close()


async def test_a_join_times_out_when_the_server_never_answers(serve_router: ServeRouter) -> None:
    server = await serve_router(App(define_hooks()))  # plain hooks: frames go unanswered
    async with Client(server.url + "/", reconnect=FAST) as client:
        with pytest.raises(WsError) as late:
            await client.join("lobby", timeout=0.1)
        assert late.value.code == ErrorCode.DEADLINE_EXCEEDED
        assert client.topics == {}
