"""Edge cases of the router found in review; each test reproduces what went wrong. Tests that
take ``make_client`` run in memory and over real websockets and picows servers; the two that
hand the peer two frames in one read stay in memory."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import pickle
import warnings
from typing import Any

import msgspec
import pytest
from pydantic import BaseModel, ConfigDict, Field

from crosswire import (
    Accept,
    ErrorCode,
    EventContext,
    Response,
    Router,
    RpcContext,
    ValidationError,
    WsError,
    message,
    rpc,
)
from crosswire.testing import Rejected, TestClient
from tests.support import MakeClient, eventually, settle

Secret = message("SECRET")
Data = message("DATA", {"v": str})
Work = message("WORK", {"n": int})
Slow = rpc("SLOW", {"seconds": float}, "SLOW_DONE", None)


async def test_on_auth_that_returns_a_coroutine_from_a_plain_function_is_awaited(
    make_client: MakeClient,
) -> None:
    """A decorated async check looks like a plain function; its coroutine must be awaited,
    not taken for a yes."""

    async def check(ctx: Any) -> bool:
        return False

    @functools.wraps(check)
    def logged(ctx: Any) -> Any:  # a sync wrapper around an async check
        return check(ctx)

    router = Router().on(Secret, lambda ctx: ctx.send(Data, {"v": "the secret"}))
    router.on_auth(logged)
    async with make_client(router).connect() as conn:
        await conn.send(Secret)
        await conn.expect_error("UNAUTHENTICATED")
        await conn.expect_close(1008)


async def test_async_on_auth_runs_once_for_frames_that_arrive_together(
    make_client: MakeClient,
) -> None:
    checks: list[int] = []
    gate = asyncio.Event()

    async def check(ctx: Any) -> bool:
        checks.append(1)
        await gate.wait()
        return len(checks) == 1  # a single-use ticket: only the first check passes

    router = Router().on(Work, lambda ctx: ctx.send(Data, {"v": str(ctx.payload.n)}))
    router.on_auth(check)
    async with make_client(router).connect() as conn:
        for n in range(3):
            await conn.send(Work, {"n": n})
        gate.set()
        got = [(await conn.receive_as(Data)).payload.v for _ in range(3)]
    assert sorted(got) == ["0", "1", "2"] and checks == [1]


async def test_async_event_handlers_per_connection_are_bounded_and_reading_goes_on(
    make_client: MakeClient,
) -> None:
    """Past ``max_inflight_events`` running async event handlers, an event is answered
    RESOURCE_EXHAUSTED (it used to stop the connection's reading, so that an abort or a
    heartbeat behind the events waited for them)."""
    release = asyncio.Event()
    started: list[int] = []

    async def handle(ctx: EventContext[Any]) -> None:
        started.append(ctx.payload.n)
        await release.wait()
        ctx.send(Data, {"v": f"done {ctx.payload.n}"})

    router = Router(max_inflight_events=4).on(Work, handle)
    router.rpc(Slow, lambda ctx: ctx.reply(None))
    async with make_client(router).connect() as conn:
        for n in range(6):
            await conn.send(Work, {"n": n})
        for _ in range(2):
            error = await conn.expect_error("RESOURCE_EXHAUSTED")
            assert error.retry_after_ms == 100 and "limit 4" in error.message
        assert started == [0, 1, 2, 3]  # in order; 4 and 5 were refused, not run
        await settle(conn)  # a heartbeat is read and answered meanwhile
        assert (await conn.request(Slow, {"seconds": 0})).type == "SLOW_DONE"  # so is a call
        release.set()
        done = sorted([(await conn.receive_as(Data)).payload.v for _ in range(4)])
        assert done == ["done 0", "done 1", "done 2", "done 3"]
        await conn.send(Work, {"n": 6})  # room again
        assert (await conn.receive_as(Data)).payload.v == "done 6"
    assert started == [0, 1, 2, 3, 6]


async def test_a_plain_on_auth_that_raises_refuses_once_and_closes(
    make_client: MakeClient,
) -> None:
    """Issue 14: a plain ``on_auth`` that raised got INTERNAL, left the connection open and
    ran again on every frame (its verdict was never stored)."""
    checks: list[str] = []

    def check(ctx: Any) -> bool:
        checks.append(ctx.type)
        if len(checks) == 1:
            raise RuntimeError("the token store is down")
        return True

    router = Router().on(Data, lambda ctx: ctx.send(Data, {"v": "served"}))
    router.rpc(Slow, lambda ctx: ctx.reply(None))
    router.on_auth(check)
    client = make_client(router)
    async with client.connect() as conn:
        await conn.send(Slow, {"seconds": 0}, meta={"correlationId": "s"})
        error = await conn.receive()
        assert (error.type, error.correlation_id) == ("RPC_ERROR", "s")
        assert error.payload == {"code": "INTERNAL", "message": "internal server error"}
        await conn.expect_close(1008)
    async with client.connect() as fresh:  # the next connection is checked afresh
        await fresh.send(Data, {"v": "x"})
        assert (await fresh.receive_as(Data)).payload.v == "served"
    assert checks == ["SLOW", "DATA"]


async def test_frames_still_in_flight_when_the_router_closes_are_not_handled() -> None:
    handled: list[str] = []
    router = Router(max_payload_bytes=100).on(Data, lambda ctx: handled.append(ctx.payload.v))
    async with TestClient(router).connect() as conn:
        peer = conn.peer
        peer._receive_data('{"type": "DATA", "payload": {"v": "' + "x" * 200 + '"}}', False)
        # a frame the client sent before it saw the close: it must not run
        peer._receive_data('{"type": "DATA", "payload": {"v": "transfer"}}', False)
        await conn.expect_close(1009)
    assert handled == []


async def test_deadline_and_abort_go_through_on_error_and_can_be_suppressed(
    make_client: MakeClient,
) -> None:
    seen: list[str] = []

    async def slow(ctx: RpcContext[Any]) -> None:
        await asyncio.sleep(ctx.payload.seconds)

    def on_error(error: WsError, ctx: Any) -> bool:
        seen.append(error.code)
        return False

    router = Router().rpc(Slow, slow)
    router.on_error(on_error)
    async with make_client(router, timeout=0.3).connect() as conn:
        await conn.send(Slow, {"seconds": 5}, meta={"correlationId": "d", "timeoutMs": 20})
        await conn.send(Slow, {"seconds": 5}, meta={"correlationId": "a"})
        await conn.abort("a")
        await eventually(lambda: len(seen) == 2)
        await settle(conn)
        assert conn.pending == []
    assert sorted(seen) == ["CANCELLED", "DEADLINE_EXCEEDED"]


async def test_error_details_that_cannot_be_json_still_get_an_answer(
    make_client: MakeClient,
) -> None:
    Get = rpc("GET", None, "GOT", None)
    router = Router()
    router.rpc(Get, lambda ctx: ctx.error("NOT_FOUND", "gone", {"when": object()}))

    def raises(ctx: Any) -> None:
        raise WsError("NOT_FOUND", "gone", {"when": object()})

    router.on(Data, raises)
    async with make_client(router).connect() as conn:
        with pytest.raises(WsError) as answered:
            await conn.request(Get)
        assert answered.value.code is ErrorCode.INTERNAL
        await conn.send(Data, {"v": "x"})
        await conn.expect_error("INTERNAL")


async def test_pydantic_aliases_are_read_and_written_the_same_way(make_client: MakeClient) -> None:
    class User(BaseModel):
        user_id: int = Field(alias="userId")

    Get = message("GET_USER", User, response=message("USER", User))
    router = Router().rpc(Get, lambda ctx: ctx.reply(ctx.payload))
    async with make_client(router).connect() as conn:
        reply = await conn.request(Get, {"userId": 7})
    assert reply.json is not None and reply.json["payload"] == {"userId": 7}
    assert reply.payload.user_id == 7

    class Team(BaseModel):  # no alias of its own: its member's model has one
        lead: User

    GetTeam = message("GET_TEAM", User, response=message("TEAM", Team))
    router.rpc(GetTeam, lambda ctx: ctx.reply(Team(lead=ctx.payload)))
    async with make_client(router).connect() as conn:
        reply = await conn.request(GetTeam, {"userId": 8})
    assert reply.json is not None and reply.json["payload"] == {"lead": {"userId": 8}}


def test_payloads_are_instances_of_the_users_own_class() -> None:
    point = message("POINT", Point).load_payload({"x": 1, "y": 2})
    assert type(point) is Point and point == Point(1, 2)
    assert pickle.loads(pickle.dumps(point)) == point

    user = message("USER", Named).load_payload({"name": "a"})
    assert type(user) is Named and user == Named(name="a")
    with pytest.raises(ValidationError, match="unknown field `extra`"):
        message("POINT", Point).load_payload({"x": 1, "y": 2, "extra": 3})
    with pytest.raises(ValidationError, match="unknown field `extra`"):
        message("USER", Named).load_payload({"name": "a", "extra": 3})


class Point(msgspec.Struct):
    x: int
    y: int


class Named(BaseModel):
    name: str


def test_pydantic_is_strict_about_json_types_unless_the_model_says_otherwise() -> None:
    import datetime

    class Strict(BaseModel):
        n: int
        at: datetime.datetime | None = None

    class Lax(BaseModel):
        model_config = ConfigDict(strict=False)
        n: int

    strict = message("S", Strict)
    with pytest.raises(ValidationError):
        strict.load_payload({"n": "1"})
    loaded = strict.load_payload({"n": 1, "at": "2026-11-23T10:00:00Z"})
    assert loaded.at is not None and loaded.at.year == 2026  # ISO strings are JSON's datetimes
    assert message("L", Lax).load_payload({"n": "1"}).n == 1


async def test_outbound_checks_required_meta_and_struct_field_types(
    make_client: MakeClient,
) -> None:
    Traced = message("TRACED", {"x": int}, meta={"traceId": str})

    class Sum(msgspec.Struct):
        total: int

    Total = message("TOTAL", Sum)
    router = Router()
    router.on(Data, lambda ctx: ctx.send(Traced, {"x": 1}))  # required traceId missing
    router.on(Work, lambda ctx: ctx.send(Total, Sum(total="many")))  # type: ignore[arg-type]
    async with make_client(router).connect() as conn:
        await conn.send(Data, {"v": "x"})
        await conn.expect_error("INTERNAL")
        await conn.send(Work, {"n": 1})
        await conn.expect_error("INTERNAL")


async def test_plain_middleware_in_an_async_route_is_warned_about(
    caplog: pytest.LogCaptureFixture, make_client: MakeClient
) -> None:
    order: list[str] = []

    def around(ctx: Any, next: Any) -> None:
        order.append("before")
        next()  # not returned
        order.append("after")

    async def handle(ctx: Any) -> None:
        order.append("handler")

    router = Router().use(around).on(Data, handle)
    with caplog.at_level(logging.WARNING, logger="crosswire.router"):
        async with make_client(router).connect() as conn:
            await conn.send(Data, {"v": "x"})
            await eventually(lambda: len(order) == 3)
    assert order == ["before", "after", "handler"]
    assert "calls next() without returning it" in caplog.text


async def test_next_may_be_called_once(make_client: MakeClient) -> None:
    calls: list[int] = []

    def twice(ctx: Any, next: Any) -> Any:
        next()
        return next()

    router = Router().use(twice).on(Data, lambda ctx: calls.append(1))
    async with make_client(router).connect() as conn:
        await conn.send(Data, {"v": "x"})
        await conn.expect_error("INTERNAL")
    assert calls == [1]


async def test_a_handler_whose_awaited_work_is_cancelled_gets_an_answer(
    make_client: MakeClient,
) -> None:
    shared: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiting = asyncio.Event()

    async def waits(ctx: RpcContext[Any]) -> None:
        waiting.set()
        await shared  # someone else's work, cancelled by someone else

    router = Router().rpc(Slow, waits)
    async with make_client(router).connect() as conn:
        call = asyncio.ensure_future(conn.request(Slow, {"seconds": 1}))
        await asyncio.wait_for(waiting.wait(), 2)
        shared.cancel()
        with pytest.raises(WsError) as answered:
            await asyncio.wait_for(call, 1)
    assert answered.value.code is ErrorCode.CANCELLED


async def test_one_router_serves_one_test_client_after_another(make_client: MakeClient) -> None:
    router = Router().on(Data, lambda ctx: ctx.send(Data, {"v": ctx.payload.v}))
    for _ in range(2):
        async with make_client(router).connect() as conn:
            await conn.send(Data, {"v": "again"})
            assert (await conn.receive_as(Data)).payload.v == "again"


async def test_on_upgrade_registered_later_reset_and_merged(make_client: MakeClient) -> None:
    router = Router().on(Data, lambda ctx: None)
    client = make_client(router)  # the App exists before on_upgrade is registered
    router.on_upgrade(lambda request: Response(403, "closed"))
    with pytest.raises(Rejected):
        async with client.connect():
            pass
    router.reset()
    router.on_upgrade(lambda request: Accept(context={"via": "merged"}))
    main = Router().merge(router)
    main.on(Data, lambda ctx: ctx.send(Data, {"v": ctx.get_data("via")}))
    async with make_client(main).connect() as conn:
        await conn.send(Data, {"v": "?"})
        assert (await conn.receive_as(Data)).payload.v == "merged"


async def test_an_abort_right_behind_its_request_leaves_no_unawaited_coroutine() -> None:
    async def slow(ctx: RpcContext[Any]) -> None:
        await asyncio.sleep(5)

    router = Router().rpc(Slow, slow)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with TestClient(router).connect() as conn:
            peer = conn.peer
            peer._receive_data(
                '{"type":"SLOW","meta":{"correlationId":"s"},"payload":{"seconds":5}}', False
            )
            peer._receive_data('{"type":"$ws:abort","meta":{"correlationId":"s"}}', False)
            await conn.expect_error("CANCELLED")
            await asyncio.sleep(0.01)
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]
