"""The router as a user's tests see it: registration, middleware, contexts, lifecycle, errors.
Each test that takes ``make_client`` runs three times: in memory, and over a real websockets
and a real picows server. RPC semantics are in test_rpc.py."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
import orjson
import pytest
from pydantic import BaseModel

from crosswire import (
    Accept,
    App,
    ConfigurationError,
    ErrorCode,
    EventContext,
    Limits,
    Router,
    ValidationError,
    WsError,
    message,
    rpc,
)
from crosswire.testing import TestClient
from tests.support import MakeClient, eventually, settle

Echo = message("ECHO", {"text": str})
Ping = message("PING")
Pong = message("PONG", {"n": int})
Add = rpc("ADD", {"a": int, "b": int}, "ADD_RESULT", {"sum": int})
Traced = message("TRACED", {"action": str}, meta={"traceId": str})


def echo_router() -> Router:
    router = Router()
    router.on(Echo, lambda ctx: ctx.send(Echo, {"text": ctx.payload.text}))
    router.rpc(Add, lambda ctx: ctx.reply({"sum": ctx.payload.a + ctx.payload.b}))
    return router


# -- registration -----------------------------------------------------------------------------


def test_registration_errors_are_raised_at_startup() -> None:
    router = Router()
    with pytest.raises(ConfigurationError, match="has no response"):
        router.rpc(Echo, lambda ctx: None)
    with pytest.raises(ConfigurationError, match=r"use router\.rpc"):
        router.on(Add, lambda ctx: None)
    with pytest.raises(ConfigurationError, match=r"handler must accept 1 positional"):
        router.on(Echo, lambda: None)  # type: ignore[arg-type,misc]
    with pytest.raises(ConfigurationError, match="middleware must accept 2"):
        router.use(lambda ctx: None)  # type: ignore[arg-type,misc]
    with pytest.raises(ConfigurationError, match="expected a schema"):
        router.on("ECHO", lambda ctx: None)  # type: ignore[arg-type]
    router.on(Echo, lambda ctx: None)
    with pytest.raises(ConfigurationError, match="already has a handler"):
        router.on(Echo, lambda ctx: None)

    async def on_error(error: WsError, ctx: Any) -> None:
        pass

    with pytest.raises(ConfigurationError, match="plain functions"):
        router.on_error(on_error)


def test_a_router_needs_room_in_the_transport_limit() -> None:
    with pytest.raises(ConfigurationError, match="max_payload_bytes"):
        App(Router(max_payload_bytes=2_000_000), limits=Limits(max_message_size=1_000_000))


# -- schemas ---------------------------------------------------------------------------------


class Vec(msgspec.Struct):
    x: int
    y: int


class Norm(BaseModel):
    length2: int


Measure = rpc("MEASURE", Vec, "MEASURED", Norm)  # a msgspec request, a pydantic response
Swapped = message("SWAPPED", Vec)
Named = message("NAMED", Norm)


async def test_msgspec_and_pydantic_payloads_are_validated_both_ways(
    make_client: MakeClient,
) -> None:
    def measure(ctx: Any) -> None:
        vec = ctx.payload
        assert type(vec) is Vec  # the user's own class
        ctx.send(Swapped, Vec(vec.y, vec.x))
        ctx.reply(Norm(length2=vec.x * vec.x + vec.y * vec.y))

    router = Router().rpc(Measure, measure)
    router.on(Named, lambda ctx: ctx.send(Swapped, {"x": ctx.payload.length2, "y": "many"}))
    router.on(Swapped, lambda ctx: ctx.send(Named, {"length2": "long"}))  # pydantic, invalid
    async with make_client(router).connect() as conn:
        reply = await conn.request(Measure, {"x": 3, "y": 4})
        assert reply.payload == Norm(length2=25)
        assert reply.json is not None and reply.json["payload"] == {"length2": 25}
        swapped = await conn.receive_as(Swapped)
        assert swapped.payload == Vec(4, 3) and swapped.json is not None
        assert swapped.json["payload"] == {"x": 4, "y": 3}

        for bad, says in [  # what the test client would refuse to send: sent raw
            ({"x": "3", "y": 4}, "Expected `int`, got `str`"),
            ({"x": 3}, "missing required field `y`"),
            ({"x": 3, "y": 4, "z": 5}, "unknown field `z`"),
        ]:
            frame = {"type": "MEASURE", "meta": {"correlationId": "m"}, "payload": bad}
            await conn.send_raw(orjson.dumps(frame).decode())
            error = await conn.expect_error("INVALID_ARGUMENT")
            assert says in error.message
        await conn.send(Named, {"length2": 1})
        await conn.expect_error("INTERNAL")  # the outbound Vec is invalid: a server bug
        await conn.send(Swapped, {"x": 1, "y": 2})
        await conn.expect_error("INTERNAL")  # the outbound Norm too
        await conn.send_raw('{"type": "NAMED", "payload": {"length2": 1, "extra": 0}}')
        error = await conn.expect_error("INVALID_ARGUMENT")
        assert "extra" in error.message  # pydantic refuses unknown keys too


# -- events, middleware --------------------------------------------------------------------


async def test_event_handler_sees_typed_payload_meta_and_connection(
    make_client: MakeClient,
) -> None:
    seen: list[Any] = []

    def handle(ctx: EventContext[Any]) -> None:
        seen.append((ctx.type, ctx.payload.action, dict(ctx.meta), ctx.client_id, ctx.is_rpc))
        seen.append((ctx.received_at, dict(ctx.data)))
        ctx.send(Pong, {"n": 1}, meta={"timestamp": 5})

    router = Router().on(Traced, handle)
    router.on_upgrade(lambda request: Accept(context={"from": "upgrade"}))
    async with make_client(router).connect() as conn:
        before = time.time()
        await conn.send(Traced, {"action": "x"}, meta={"traceId": "t-1", "timestamp": 1})
        pong = await conn.receive_as(Pong)
        after = time.time()
        assert pong.payload.n == 1 and pong.meta == {"timestamp": 5}
    (kind, action, meta, client_id, is_rpc), (received_at, data) = seen
    assert (kind, action, is_rpc) == ("TRACED", "x", False)
    assert meta["traceId"] == "t-1" and meta["timestamp"] == 1
    assert meta["clientId"] == client_id and meta["receivedAt"] == int(received_at * 1000)
    assert before <= received_at <= after and data == {"from": "upgrade"}


async def test_middleware_order_short_circuit_and_route_middleware(make_client: MakeClient) -> None:
    order: list[str] = []
    router = Router()

    async def outer(ctx: EventContext[Any], next: Any) -> None:
        order.append(f"outer-before:{ctx.payload}")  # payload not validated yet
        await next()
        order.append("outer-after")

    def gate(ctx: EventContext[Any], next: Any) -> Any:
        if ctx.get_data("user") is None and ctx.type != "PING":
            ctx.error("UNAUTHENTICATED", "log in first")
            return None
        return next()

    def route_mw(ctx: EventContext[Any], next: Any) -> Any:
        order.append("route")
        return next()

    router.use(outer).use(gate)
    router.route(Echo).use(route_mw).on(lambda ctx: order.append(f"handler:{ctx.payload.text}"))
    router.on(Ping, lambda ctx: ctx.assign_data({"user": "ada"}))
    async with make_client(router).connect() as conn:
        await conn.send(Echo, {"text": "a"})
        error = await conn.expect_error("UNAUTHENTICATED")
        assert error.message == "log in first"
        await conn.send(Ping)
        await conn.send(Echo, {"text": "b"})
        await eventually(lambda: len(order) == 8)
    assert order == [
        "outer-before:None",
        "outer-after",
        "outer-before:None",
        "outer-after",
        "outer-before:None",
        "route",
        "handler:b",
        "outer-after",
    ]


async def test_plain_routes_run_inline_and_async_ones_in_a_task() -> None:
    """In memory only: "inline" is the task that delivered the frame, the test's own here."""
    where: list[str] = []

    def plain(ctx: EventContext[Any]) -> None:
        where.append("inline" if asyncio.current_task() is outer_task else "task")

    async def awaiting(ctx: EventContext[Any]) -> None:
        async with asyncio.timeout(1):  # belongs to the handler's own task
            await asyncio.sleep(0)
        where.append("inline" if asyncio.current_task() is outer_task else "task")

    router = Router().on(Echo, plain).on(Ping, awaiting)
    outer_task = asyncio.current_task()
    async with TestClient(router).connect() as conn:
        await conn.send(Echo, {"text": "x"})
        await conn.send(Ping)
        await asyncio.sleep(0.01)
    assert where == ["inline", "task"]


async def test_merge_off_and_reset(make_client: MakeClient) -> None:
    def tag(ctx: EventContext[Any], next: Any) -> Any:
        ctx.assign_data({"via": "chat"})
        return next()

    chat = Router()
    chat.use(tag)
    chat.on(Echo, lambda ctx: ctx.send(Echo, {"text": ctx.get_data("via")}))
    main = Router().on(Ping, lambda ctx: ctx.send(Pong, {"n": 0 if ctx.get_data("via") else 1}))
    main.merge(chat)
    with pytest.raises(ConfigurationError, match="both routers handle"):
        main.merge(Router().on(Echo, lambda ctx: None))
    client = make_client(main)
    async with client.connect() as conn:
        await conn.send(Ping)
        assert (await conn.receive_as(Pong)).payload.n == 1  # chat's middleware not applied
        await conn.send(Echo, {"text": "?"})
        assert (await conn.receive_as(Echo)).payload.text == "chat"
        main.off(Echo)
        await conn.send(Echo, {"text": "?"})
        await conn.expect_error("UNIMPLEMENTED")
        main.reset()
        await conn.send(Ping)
        await conn.expect_error("UNIMPLEMENTED")


async def test_middleware_and_auth_added_while_serving_apply_to_the_next_frame(
    make_client: MakeClient,
) -> None:
    router = Router().on(Echo, lambda ctx: ctx.send(Echo, {"text": ctx.get_data("via", "-")}))
    async with make_client(router).connect() as conn:
        await conn.send(Echo, {"text": "?"})
        assert (await conn.receive_as(Echo)).payload.text == "-"

        def tag(ctx: Any, next: Any) -> Any:
            ctx.assign_data({"via": "mw"})
            return next()

        router.use(tag)  # the route's chain was compiled for the first frame: compiled again
        await conn.send(Echo, {"text": "?"})
        assert (await conn.receive_as(Echo)).payload.text == "mw"
        router.on_auth(lambda ctx: False)
        await conn.send(Echo, {"text": "?"})
        await conn.expect_error("UNAUTHENTICATED")


# -- lifecycle -------------------------------------------------------------------------------


async def test_open_close_and_publish_from_outside(make_client: MakeClient) -> None:
    log: list[Any] = []
    router = Router()

    def opened(ctx: Any) -> None:
        ctx.subscribe("news")
        ctx.send(Pong, {"n": 0})

    router.on_open(opened)

    async def closed(ctx: Any) -> None:
        log.append(("close", ctx.code, ctx.reason, ctx.get_data("name")))

    router.on_close(closed)
    router.on(
        Echo, lambda ctx: ctx.publish("news", Echo, {"text": ctx.payload.text}, exclude_self=True)
    )
    router.on(Ping, lambda ctx: ctx.unsubscribe("news"))
    router.on(Pong, lambda ctx: ctx.subscribe("news"))
    client = make_client(router)
    async with client.connect() as a, client.connect() as b:
        for conn in (a, b):
            assert (await conn.receive_as(Pong)).payload.n == 0
        a.peer.context["name"] = "ada"
        result = router.publish("news", Echo, {"text": "from cron"})
        assert result.matched_local == 2 and result.ok
        for conn in (a, b):
            assert (await conn.receive_as(Echo)).payload.text == "from cron"
        await a.send(Echo, {"text": "hello"})
        assert (await b.receive_as(Echo)).payload.text == "hello"
        await settle(a)
        assert a.pending == []  # exclude_self
        await b.send(Ping)
        await settle(b)
        assert router.publish("news", Echo, {"text": "a only"}).matched_local == 1
        assert (await a.receive_as(Echo)).payload.text == "a only"
        await settle(b)
        assert b.pending == []  # b left the topic
        await b.send(Pong, {"n": 0})  # and joins it again, from a message handler
        await settle(b)
        assert router.publish("news", Echo, {"text": "both"}).matched_local == 2
        for conn in (a, b):
            assert (await conn.receive_as(Echo)).payload.text == "both"
        await a.close(4000, "bye")
        await eventually(lambda: len(log) == 1)
        assert log == [("close", 4000, "bye", "ada")]


Note = message("NOTE", {"text": str})


async def test_send_to_client_send_to_user_and_broadcast_reach_exactly_their_targets(
    make_client: MakeClient,
) -> None:
    """The router's addressing from outside any handler (a cron job, another service): one
    connection, every connection of a user, everyone; each with its exclusions, validated
    before anything is sent."""
    router = Router().on(Ping, lambda ctx: None)
    router.on_upgrade(lambda request: Accept(context={"user": request.query.get("user")}))
    router.on_open(lambda ctx: ctx.peer.identify(ctx.data["user"]))
    with pytest.raises(ConfigurationError, match="not served yet"):
        router.broadcast(Note, {"text": "too early"})
    client = make_client(router)
    async with (
        client.connect(query="user=ann") as ann1,
        client.connect(query="user=ann") as ann2,
        client.connect(query="user=ben") as ben,
    ):
        everyone = (ann1, ann2, ben)

        async def got(*conns: Any) -> list[tuple[str, Any, Any]]:
            """What each connection received, once all of them have settled."""
            for conn in everyone:
                await settle(conn)
            seen = [(f.type, f.meta, f.payload) for c in conns for f in c.pending]
            for conn in everyone:
                conn._inbox.clear()
            return seen

        note: tuple[str, Any, Any] = ("NOTE", {}, {"text": "hi ben"})
        assert router.send_to_client(ben.peer.id, Note, {"text": "hi ben"}).matched_local == 1
        assert await got(ben) == [note] and await got(ann1, ann2) == []

        sent = router.send_to_user("ann", Note, {"text": "ann"}, meta={"timestamp": 5})
        assert sent.matched_local == 2
        assert await got(ann1, ann2) == [("NOTE", {"timestamp": 5}, {"text": "ann"})] * 2
        assert await got(ben) == []
        sent = router.send_to_user("ann", Note, {"text": "one"}, exclude=[ann2.peer.id])
        assert sent.matched_local == 1 and await got(ann1, ann2, ben) == [
            ("NOTE", {}, {"text": "one"})
        ]

        sent = router.broadcast(Note, {"text": "all"}, exclude=[ben.peer.id])
        assert (
            sent.matched_local == 2 and await got(ann1, ann2) == [("NOTE", {}, {"text": "all"})] * 2
        )
        assert await got(ben) == []
        assert router.broadcast(Note, {"text": "all"}).matched_local == 3
        assert len(await got(*everyone)) == 3

        assert router.send_to_client("nobody", Note, {"text": "?"}).matched_local == 0
        assert router.send_to_user("nobody", Note, {"text": "?"}).matched_local == 0
        with pytest.raises(ValidationError):
            router.broadcast(Note, {"text": 1})  # validated once, before anything is sent
        with pytest.raises(ValidationError):
            router.send_to_user("ann", Note, {"text": "x"}, meta={"topic": "t"})
        assert await got(*everyone) == []

        await ben.close()
        await eventually(lambda: len(client.app.peers) == 2)
        assert router.send_to_client(ben.peer.id, Note, {"text": "gone"}).matched_local == 0
        assert router.broadcast(Note, {"text": "left"}).matched_local == 2


async def test_on_auth_false_rejects_with_unauthenticated_and_1008(make_client: MakeClient) -> None:
    router = echo_router()
    router.on_upgrade(lambda request: Accept(context={"user": request.query.get("user")}))
    router.on_auth(lambda ctx: ctx.get_data("user") is not None)
    client = make_client(router)
    async with client.connect(query="user=ada") as conn:
        reply = await conn.request(Add, {"a": 2, "b": 2})
        assert reply.payload.sum == 4
    async with client.connect() as conn:
        await conn.send(Echo, {"text": "x"})
        await conn.expect_error("UNAUTHENTICATED")
        await conn.expect_close(1008)


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "says"),
    [
        ("{nope", "INVALID_ARGUMENT", "malformed JSON"),
        ('{"meta": {}}', "INVALID_ARGUMENT", 'missing "type"'),
        ('{"type": "NOPE"}', "UNIMPLEMENTED", "no handler for message type 'NOPE'"),
        ('{"type": "ECHO", "payload": {"text": 5}}', "INVALID_ARGUMENT", "invalid payload"),
        ('{"type": "ECHO", "payload": {"text": "a", "x": 1}}', "INVALID_ARGUMENT", "x"),
        ('{"type": "ECHO"}', "INVALID_ARGUMENT", "needs a payload"),
        ('{"type": "ECHO", "payload": {"text": "a"}, "extra": 1}', "INVALID_ARGUMENT", "root"),
        (
            '{"type": "ECHO", "meta": {"who": 1}, "payload": {"text": "a"}}',
            "INVALID_ARGUMENT",
            "meta key 'who'",
        ),
        (
            '{"type": "ECHO", "meta": {"clientId": "me"}, "payload": {"text": "a"}}',
            "INVALID_ARGUMENT",
            "stamped",
        ),
        ('{"type": "$ws:nope"}', "INVALID_ARGUMENT", "reserved"),
        ('{"type": "__sneaky"}', "INVALID_ARGUMENT", "reserved"),
        # Nested deeper than a JSON reader goes (orjson: 1,024 levels; msgspec fewer).
        (
            '{"type": "ECHO", "payload": ' + "[" * 1100 + "]" * 1100 + "}",
            "INVALID_ARGUMENT",
            "depth",
        ),
    ],
)
async def test_bad_input_gets_a_documented_error_and_the_connection_lives(
    frame: str, code: str, says: str, make_client: MakeClient
) -> None:
    async with make_client(echo_router()).connect() as conn:
        await conn.send_raw(frame)
        error = await conn.expect_error(code)
        assert says in error.message
        await conn.send(Echo, {"text": "still here"})
        assert (await conn.receive_as(Echo)).payload.text == "still here"


async def test_rpc_frames_with_errors_get_rpc_error_with_their_correlation_id(
    make_client: MakeClient,
) -> None:
    async with make_client(echo_router()).connect() as conn:
        await conn.send_raw('{"type": "NOPE", "meta": {"correlationId": "q1"}}')
        frame = await conn.receive()
        assert frame.type == "RPC_ERROR" and frame.correlation_id == "q1"
        await conn.send_raw('{"type": "ADD", "meta": {"correlationId": "q2"}, "payload": {"a": 1}}')
        frame = await conn.receive()
        assert frame.json == {
            "type": "RPC_ERROR",
            "meta": {"correlationId": "q2"},
            "payload": {
                "code": "INVALID_ARGUMENT",
                "message": "invalid payload: Object missing required field `b` at b",
                "details": {
                    "issues": [
                        {"path": ["payload", "b"], "message": "Object missing required field `b`"}
                    ]
                },
            },
        }


async def test_handler_exceptions_become_internal_without_details(
    caplog: pytest.LogCaptureFixture, make_client: MakeClient
) -> None:
    def boom(ctx: Any) -> None:
        raise RuntimeError("db password is hunter2")

    router = Router().on(Echo, boom)
    with caplog.at_level(logging.ERROR, logger="crosswire.router"):
        async with make_client(router).connect() as conn:
            await conn.send(Echo, {"text": "x"})
            error = await conn.expect_error("INTERNAL")
    assert error.message == "internal server error" and not error.details
    assert "hunter2" not in str(error.to_payload())
    assert "RuntimeError" in caplog.text  # the server's log has it

    rpc_router = Router().rpc(Add, boom)
    async with make_client(rpc_router).connect() as conn:
        with pytest.raises(WsError) as answered:
            await conn.request(Add, {"a": 1, "b": 1}, correlation_id="r1")
    assert answered.value.code == "INTERNAL" and answered.value.message == "internal server error"
    assert not answered.value.details  # an RPC_ERROR for r1, with nothing of the exception

    exposed = Router(expose_error_details=True).on(Echo, boom)
    async with make_client(exposed).connect() as conn:
        await conn.send(Echo, {"text": "x"})
        error = await conn.expect_error("INTERNAL")
    assert error.message == "RuntimeError: db password is hunter2"


async def test_ws_errors_from_handlers_keep_their_code_and_on_error_can_suppress(
    make_client: MakeClient,
) -> None:
    seen: list[tuple[str, str | None]] = []

    def handler(ctx: Any) -> None:
        raise WsError("NOT_FOUND", "no such room", {"room": ctx.payload.text})

    router = Router().on(Echo, handler).on(Ping, lambda ctx: 1 / 0)

    def on_error(error: WsError, ctx: Any) -> bool | None:
        seen.append((error.code, ctx.type if ctx is not None else None))
        return False if error.code == ErrorCode.INTERNAL else None

    router.on_error(on_error)
    async with make_client(router).connect() as conn:
        await conn.send(Echo, {"text": "blue"})
        error = await conn.expect_error("NOT_FOUND")
        assert error.details == {"room": "blue"}
        await conn.send(Ping)  # suppressed
        await conn.send_raw("{bad")
        await conn.expect_error("INVALID_ARGUMENT")
        assert conn.pending == []
    assert seen == [("NOT_FOUND", "ECHO"), ("INTERNAL", "PING"), ("INVALID_ARGUMENT", None)]


async def test_outbound_payloads_are_validated_and_the_failure_is_internal(
    make_client: MakeClient,
) -> None:
    router = Router().on(Echo, lambda ctx: ctx.send(Pong, {"n": "not a number"}))
    async with make_client(router).connect() as conn:
        await conn.send(Echo, {"text": "x"})
        await conn.expect_error("INTERNAL")  # a server bug, not the client's


async def test_heartbeat_frames_and_stale_connections(make_client: MakeClient) -> None:
    from crosswire import Heartbeat

    stale: list[str] = []
    router = Router(
        heartbeat=Heartbeat(
            interval=0.2, timeout=0.1, on_stale_connection=lambda cid, peer: stale.append(cid)
        )
    )
    async with make_client(router).connect() as conn:
        await conn.send_raw('{"type": "__heartbeat"}')
        ack = await conn.receive()
        assert ack.type == "__heartbeat_ack" and isinstance(ack.meta["ts"], int)
        ping = await conn.receive(timeout=1)  # idle: the server asks
        assert ping.json == {"type": "__heartbeat"}
        await conn.send_raw('{"type": "__heartbeat_ack"}')
        assert (await conn.receive(timeout=1)).type == "__heartbeat"  # next idle period
        _, reason = await conn.expect_close(4002, timeout=1)  # this time, no answer
        assert reason == "Heartbeat timeout"
        assert stale == [conn.peer.id]


async def test_payload_limit_calls_on_limit_exceeded_and_closes_1009(
    make_client: MakeClient,
) -> None:
    seen: list[Any] = []
    router = echo_router().on_limit_exceeded(seen.append)
    router.max_payload_bytes = 100
    async with make_client(router).connect() as conn:
        await conn.send(Echo, {"text": "x" * 200})
        await conn.expect_close(1009)
    (info,) = seen
    assert (info.type, info.limit) == ("payload", 100) and info.observed > 200


async def test_test_client_waits_have_a_default_timeout(make_client: MakeClient) -> None:
    async with make_client(echo_router(), timeout=0.05).connect() as conn:
        with pytest.raises(TimeoutError):
            await conn.receive()


async def test_on_upgrade_refuses_before_the_websocket_opens(make_client: MakeClient) -> None:
    from crosswire import Response
    from crosswire.testing import Rejected

    router = echo_router().on_upgrade(
        lambda request: None if request.headers.get("x-key") == "k" else Response(401, "no key")
    )
    client = make_client(router)
    with pytest.raises(Rejected) as refused:
        async with client.connect():
            pass
    assert refused.value.status == 401
    async with client.connect(headers={"X-Key": "k"}) as conn:
        assert (await conn.request(Add, {"a": 1, "b": 1})).payload.sum == 2
    with pytest.raises(ConfigurationError, match="already has an on_upgrade"):
        router.on_upgrade(lambda request: None)
