"""The test client speaks each dialect: one router served in all three, driven through
``TestClient.connect(dialect=...)`` in memory and over real sockets, the way a test of an
application would: messages, RPC with progress, errors, joins accepted and refused, leaves."""

from __future__ import annotations

from typing import Any

import pytest

from crosswire import (
    App,
    Endpoint,
    ErrorCode,
    JoinContext,
    JoinRefused,
    LeaveContext,
    Router,
    RpcContext,
    WsError,
    message,
    rpc,
)
from crosswire.testing import DialectName, Rejected, TestClient
from crosswire.wire import CANONICAL, EVENTS, ROVER
from tests.support import MakeClient

Echo = message("ECHO", {"text": str})
Nope = message("NOPE")
Add = rpc("ADD", {"a": int, "b": int}, "ADD_RESULT", {"sum": int})
Count = rpc("COUNT", {"to": int}, "COUNT_DONE", {"total": int})
# (with a payload: Rover reads a frame without fields as the payload {}, which a schema
# without a payload refuses)
Deny = rpc("DENY", {"who": str}, "NEVER", None)
Say = message("SAY", {"room": str, "text": str})
Said = message("SAID", {"room": str, "text": str})
Left = message("LEFT", {"room": str})

DIALECTS: tuple[DialectName, ...] = ("canonical", "events", "rover")


def make_app() -> App:
    """One router at ``/``, serving the three dialects (canonical by default)."""
    router = Router()
    router.on(Echo, lambda ctx: ctx.send(Echo, {"text": ctx.payload.text}))
    router.rpc(Add, lambda ctx: ctx.reply({"sum": ctx.payload.a + ctx.payload.b}))
    router.rpc(Deny, lambda ctx: ctx.error("PERMISSION_DENIED", "not you"))

    def count(ctx: RpcContext[Any]) -> None:
        for n in range(1, ctx.payload.to + 1):
            ctx.progress({"n": n})
        ctx.reply({"total": ctx.payload.to})

    router.rpc(Count, count)
    router.on(
        Say,
        lambda ctx: ctx.publish(
            ctx.payload.room, Said, {"room": ctx.payload.room, "text": ctx.payload.text}
        ),
    )

    def join(ctx: JoinContext) -> None:
        if ctx.params["id"] == "secret":
            ctx.reject("members only")
        else:
            ctx.accept({"members": 1})

    def leave(ctx: LeaveContext) -> None:
        ctx.send(Left, {"room": ctx.topic})

    router.topic("room:{id}").on_join(join).on_leave(leave)
    return App(endpoints=[Endpoint("/", router, dialects=[CANONICAL, EVENTS, ROVER])])


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_messages_requests_and_errors_in_each_dialect(
    make_client: MakeClient, dialect: DialectName
) -> None:
    async with make_client(make_app()).connect(dialect=dialect) as conn:
        assert conn.dialect == dialect and conn.peer.dialect.name == dialect
        await conn.send(Echo, {"text": "hi"})
        assert (await conn.receive_as(Echo)).payload.text == "hi"
        assert (await conn.request(Add, {"a": 1, "b": 2})).payload.sum == 3
        steps: list[Any] = []
        done = await conn.request(Count, {"to": 2}, on_progress=steps.append)
        assert done.payload.total == 2 and steps == [{"n": 1}, {"n": 2}]

        with pytest.raises(WsError) as denied:
            await conn.request(Deny, {"who": "ann"})
        assert denied.value.message == "not you"
        await conn.send(Nope)
        if dialect == "events":  # its errors carry no code: INTERNAL, the message kept
            assert denied.value.code == ErrorCode.INTERNAL
            assert "NOPE" in (await conn.expect_error()).message
        else:
            assert denied.value.code == ErrorCode.PERMISSION_DENIED
            assert "NOPE" in (await conn.expect_error(ErrorCode.UNIMPLEMENTED)).message


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_joins_and_leaves_in_each_dialect(
    make_client: MakeClient, dialect: DialectName
) -> None:
    client = make_client(make_app())
    async with client.connect(dialect=dialect) as ann, client.connect() as bob:
        ack = await ann.join("room:1")
        assert ack.topic == "room:1"
        if dialect == "events":  # an accepted join is answered with nothing
            assert ack.data is None and ack.frame is None
        else:
            assert ack.data == {"members": 1} and ack.frame is not None
        assert "room:1" in ann.peer.topics

        with pytest.raises(JoinRefused) as refused:
            await ann.join("room:secret")
        assert refused.value.topic == "room:secret" and refused.value.reason == "members only"
        code = ErrorCode.INTERNAL if dialect == "events" else ErrorCode.PERMISSION_DENIED
        assert refused.value.code == code
        with pytest.raises(JoinRefused) as unknown:
            await ann.join("nowhere")
        assert unknown.value.reason == "no topic 'nowhere'"
        assert "room:secret" not in ann.peer.topics

        await bob.send(Say, {"room": "room:1", "text": "hello"})  # bob speaks canonical
        said = await ann.receive_as(Said)
        assert said.payload.text == "hello" and said.type == "SAID"

        await ann.leave("room:1")
        assert (await ann.receive_as(Left)).payload.room == "room:1"  # the leave handler's
        await bob.send(Say, {"room": "room:1", "text": "gone?"})
        with pytest.raises(TimeoutError):
            await ann.receive(timeout=0.2)


async def test_how_each_dialect_maps_onto_frames() -> None:
    client = TestClient(make_app())
    async with client.connect(dialect="rover") as rover, client.connect(dialect="events") as ev:
        await rover.send(Echo, {"text": "hi"})
        frame = await rover.receive()
        assert (frame.type, frame.meta, frame.payload) == ("ECHO", {}, {"text": "hi"})
        assert frame.json == {"type": "ECHO", "text": "hi"}
        await ev.send(Echo, {"text": "hi"})
        frame = await ev.receive()
        assert (frame.type, frame.meta, frame.payload) == ("ECHO", {}, {"text": "hi"})
        assert frame.json == {"event": "ECHO", "data": {"text": "hi"}}
        ack = await rover.join("room:2")
        assert ack.frame is not None
        assert ack.frame.json == {"type": "join_ack", "topic": "room:2", "members": 1}


async def test_without_a_dialect_the_connection_speaks_the_servers_choice() -> None:
    client = TestClient(make_app())
    async with client.connect() as default:
        assert default.dialect == "canonical"
    async with client.connect(subprotocols=("crosswire.rover",)) as offered:
        assert offered.dialect == "rover" and offered.peer.dialect is ROVER
        assert (await offered.join("room:1")).data == {"members": 1}
    only_rover = App(endpoints=[Endpoint("/", Router(), dialects=[ROVER])])
    async with TestClient(only_rover).connect() as conn:
        assert conn.dialect == "rover"
    with pytest.raises(Rejected) as refused:
        async with TestClient(only_rover).connect(dialect="events"):
            pass
    assert refused.value.status == 400


async def test_what_a_dialect_cannot_say_is_refused_before_sending() -> None:
    client = TestClient(make_app())
    async with client.connect(dialect="events") as events:
        with pytest.raises(ValueError, match="no data"):
            await events.join("room:1", {"username": "ann"})
        with pytest.raises(ValueError, match="no meta"):
            await events.request(Add, {"a": 1, "b": 1}, timeout_ms=100)
        await events.send(Nope)
        with pytest.raises(AssertionError, match="carry no code"):
            await events.expect_error(ErrorCode.UNIMPLEMENTED)
    async with client.connect(dialect="rover") as rover:
        with pytest.raises(ValueError, match="no meta"):
            await rover.send(Echo, {"text": "hi"}, meta={"timestamp": 1})
        with pytest.raises(ValueError, match="cannot abort"):
            await rover.abort("c1")
        with pytest.raises(ValueError, match="beside its topic"):
            await rover.join("room:1", ["not", "an", "object"])
    with pytest.raises(ValueError, match="dialect is one of"):
        async with client.connect(dialect="klingon"):  # type: ignore[arg-type]
            pass
