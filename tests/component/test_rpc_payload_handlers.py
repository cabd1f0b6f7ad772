"""RPC handlers that take the payload and return the reply (``router.rpc(schema, fn,
takes="payload")``): every call is answered exactly as a handler of the context answers it,
whether the router calls ``fn`` without a context (a plain function, nothing before it) or
through one (middleware, ``async``, meta schemas). Tests that take ``make_client`` run in
memory and over real websockets and picows servers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from msgspec import to_builtins
from pydantic import BaseModel

from crosswire import (
    Accept,
    App,
    ConfigurationError,
    Endpoint,
    ErrorCode,
    EventContext,
    Router,
    RpcContext,
    WsError,
    message,
    rpc,
)
from crosswire.auth import Identity
from crosswire.router import dispatch
from crosswire.testing import DialectName, TestClient
from crosswire.wire import CANONICAL, EVENTS, ROVER
from tests.support import MakeClient


class PIn(BaseModel):
    a: int
    b: int


class POut(BaseModel):
    sum: int


Add = rpc("ADD", {"a": int, "b": int}, "ADD_RESULT", {"sum": int})  # the fast lane's
PAdd = rpc("PADD", PIn, "PADD_RESULT", POut)  # pydantic: validated by the route
Ping = rpc("PING", None, "PONG", None)
Traced = rpc("TRACED", {"n": int}, "TRACED_OK", {"n": int}, meta={"traceId": str})
Wait = rpc("WAIT", {"seconds": float}, "WAITED", {"ok": bool})
Wait2 = rpc("WAIT2", {"seconds": float}, "WAITED2", {"ok": bool})
Stamp = message("STAMP", {"n": int}, response=message("STAMPED", {"n": int}, meta={"v": int}))


def plain(payload: Any) -> Any:
    """A payload (a Struct, a pydantic model, None) as JSON values, to compare."""
    return payload.model_dump() if isinstance(payload, BaseModel) else to_builtins(payload)


def add(payload: Any) -> Any:
    """The sum, or what a handler may do instead: raise a WsError, fail, reply wrongly."""
    if payload.a == 13:
        raise WsError(ErrorCode.PERMISSION_DENIED, "unlucky", retryable=False)
    if payload.a == 7:
        raise ValueError("boom")
    if payload.a == 99:
        return {"sum": "not a number"}  # the reply is validated: INTERNAL
    return {"sum": payload.a + payload.b}


def padd(payload: PIn) -> POut | dict[str, Any]:
    if payload.a == 13:
        raise WsError(ErrorCode.PERMISSION_DENIED, "unlucky", retryable=False)
    return POut(sum=payload.a + payload.b)


def ping(payload: None) -> None:
    assert payload is None


def traced(payload: Any) -> Any:
    return {"n": payload.n}


async def wait(payload: Any) -> Any:
    await asyncio.sleep(payload.seconds)  # cancelled by abort, deadline and disconnect
    return {"ok": True}


def replying(fn: Callable[[Any], Any]) -> Callable[[RpcContext[Any]], None]:
    """``fn`` as a handler of the context, as it would be written without ``takes``."""

    def handler(ctx: RpcContext[Any]) -> None:
        ctx.reply(fn(ctx.payload))

    return handler


def router_taking(takes: str, **options: Any) -> Router:
    """The same routes, their handlers taking the payload or (``"ctx"``) the context."""
    router = Router(**options)
    for schema, fn in ((Add, add), (PAdd, padd), (Ping, ping), (Traced, traced)):
        if takes == "payload":
            router.rpc(schema, fn, takes="payload")
        else:
            router.rpc(schema, replying(fn))
    if takes == "payload":
        router.rpc(Wait, wait, takes="payload")
    else:

        async def wait_ctx(ctx: RpcContext[Any]) -> None:
            ctx.reply(await wait(ctx.payload))

        router.rpc(Wait, wait_ctx)
    return router


#: Frames a client may send, good and bad: each gets one answer.
FRAMES = [
    {"type": "ADD", "meta": {"correlationId": "c1"}, "payload": {"a": 1, "b": 2}},
    {"type": "ADD", "payload": {"a": 1, "b": 2}},  # no correlation id: srv-1
    {"type": "ADD", "meta": {"correlationId": "c2", "timeoutMs": 500}, "payload": {"a": 2, "b": 2}},
    {"type": "ADD", "meta": {"correlationId": "c3"}, "payload": {"a": "1", "b": 2}},
    {"type": "ADD", "meta": {"correlationId": "c4"}, "payload": {"a": 1, "b": 2, "c": 3}},
    {"type": "ADD", "meta": {"correlationId": "c5"}},
    {"type": "ADD", "meta": {"correlationId": "c6", "traceId": "t"}, "payload": {"a": 1, "b": 2}},
    {"type": "ADD", "meta": {"correlationId": "c7"}, "payload": {"a": 13, "b": 0}},
    {"type": "ADD", "meta": {"correlationId": "c8"}, "payload": {"a": 7, "b": 0}},
    {"type": "ADD", "meta": {"correlationId": "c9"}, "payload": {"a": 99, "b": 0}},
    {"type": "ADD", "meta": {"correlationId": ""}, "payload": {"a": 1, "b": 2}},
    {"type": "PADD", "meta": {"correlationId": "p1"}, "payload": {"a": 3, "b": 4}},
    {"type": "PADD", "meta": {"correlationId": "p2"}, "payload": {"a": 3}},
    {"type": "PADD", "meta": {"correlationId": "p3"}, "payload": {"a": 13, "b": 4}},
    {"type": "PADD", "meta": {"correlationId": "p4", "x": 1}, "payload": {"a": 1, "b": 4}},
    {"type": "PING", "meta": {"correlationId": "g1"}},
    {"type": "PING", "meta": {"correlationId": "g2"}, "payload": {"a": 1}},
    {"type": "TRACED", "meta": {"correlationId": "t1", "traceId": "abc"}, "payload": {"n": 5}},
    {"type": "TRACED", "meta": {"correlationId": "t2", "traceId": 5}, "payload": {"n": 5}},
    {"type": "ADD", "meta": {"correlationId": "c10"}, "payload": {"a": 2, "b": 3}},
]


async def answers(make_client: MakeClient, takes: str, **options: Any) -> list[Any]:
    """Each frame's answer, and what ``on_error`` saw of it."""
    errors: list[Any] = []

    def on_error(error: WsError, ctx: EventContext[Any] | None) -> None:
        payload = getattr(ctx, "payload", None)
        errors.append((error.code, type(ctx).__name__, getattr(ctx, "correlation_id", None)))
        errors.append(plain(payload))

    out = []
    router = router_taking(takes, **options).on_error(on_error)
    async with make_client(router).connect() as conn:
        for frame in FRAMES:
            errors.clear()
            await conn.send_raw(orjson.dumps(frame).decode())
            out.append(((await conn.receive()).json, list(errors)))
    return out


@pytest.mark.parametrize("options", [{}, {"expose_error_details": True}], ids=["", "details"])
async def test_every_frame_is_answered_as_a_context_handler_answers_it(
    make_client: MakeClient, options: dict[str, Any]
) -> None:
    """The same answers, and the same calls of ``on_error`` (the error, a context of the
    same kind with the same correlation id and payload), frame by frame."""
    answered = await answers(make_client, "payload", **options)
    assert answered == await answers(make_client, "ctx", **options)
    by_payload = [answer for answer, _ in answered]
    assert answered[7][1] == [
        (ErrorCode.PERMISSION_DENIED, "RpcContext", "c7"),
        {"a": 13, "b": 0},
    ]
    assert by_payload[0] == {
        "type": "ADD_RESULT",
        "meta": {"correlationId": "c1"},
        "payload": {"sum": 3},
    }
    assert by_payload[1]["meta"] == {"correlationId": "srv-1"}
    codes = [a["payload"]["code"] if "ERROR" in a["type"] else a["type"] for a in by_payload]
    assert codes == [
        "ADD_RESULT",
        "ADD_RESULT",
        "ADD_RESULT",
        "INVALID_ARGUMENT",  # a wrong type
        "INVALID_ARGUMENT",  # an unknown field
        "INVALID_ARGUMENT",  # no payload
        "INVALID_ARGUMENT",  # an unknown meta key
        "PERMISSION_DENIED",  # the handler's WsError
        "INTERNAL",  # the handler's ValueError
        "INTERNAL",  # a reply that does not match its schema
        "INVALID_ARGUMENT",  # an empty correlation id: the frame is refused (ERROR)
        "PADD_RESULT",
        "INVALID_ARGUMENT",
        "PERMISSION_DENIED",
        "INVALID_ARGUMENT",
        "PONG",
        "INVALID_ARGUMENT",  # PING takes no payload
        "TRACED_OK",
        "INVALID_ARGUMENT",  # traceId is a string
        "ADD_RESULT",  # the connection carried on
    ]
    assert by_payload[10]["type"] == "ERROR"
    assert by_payload[11]["payload"] == {"sum": 7} and "payload" not in by_payload[15]
    if options:
        assert by_payload[8]["payload"]["message"] == "ValueError: boom"


async def test_a_plain_handler_with_nothing_before_it_runs_without_a_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The point of ``takes="payload"``: no RpcContext for a call that succeeds; one for a
    call that fails, which ``on_error`` handlers get as from any handler."""
    made: list[RpcContext[Any]] = []

    class Counted(RpcContext[Any]):
        __slots__ = ()

        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(dispatch, "RpcContext", Counted)
    seen: list[tuple[str, Any, Any]] = []

    def on_error(error: WsError, ctx: EventContext[Any] | None) -> None:
        assert isinstance(ctx, RpcContext)
        seen.append((error.code, ctx.correlation_id, ctx.payload))

    router = router_taking("payload").on_error(on_error)
    router.rpc(Stamp, lambda payload: {"n": payload.n}, takes="payload")
    async with TestClient(router).connect() as conn:
        assert (await conn.request(Add, {"a": 1, "b": 2})).payload.sum == 3
        assert (await conn.request(PAdd, {"a": 1, "b": 2})).payload.sum == 3
        assert made == []
        with pytest.raises(WsError):
            await conn.request(Add, {"a": 13, "b": 2}, correlation_id="bad")
        assert len(made) == 1 and seen[0][:2] == (ErrorCode.PERMISSION_DENIED, "bad")
        assert seen[0][2].a == 13  # the validated payload
        # A response with a meta schema is answered through a context (ctx.reply's checks).
        with pytest.raises(WsError) as stamped:
            await conn.request(Stamp, {"n": 1})
        assert stamped.value.code is ErrorCode.INTERNAL  # (its meta "v" is required)
        assert len(made) == 2


async def test_middleware_runs_before_a_payload_handler(make_client: MakeClient) -> None:
    calls: list[str] = []

    def everywhere(ctx: EventContext[Any], next: Any) -> Any:
        calls.append(ctx.type)
        return next()

    def once(ctx: EventContext[Any], next: Any) -> Any:  # (before validation: no payload yet)
        if calls.count("ADD") > 1:
            raise WsError(ErrorCode.PERMISSION_DENIED, "once only")
        return next()

    router = Router().use(everywhere)
    router.route(Add).use(once).rpc(add, takes="payload")
    router.rpc(PAdd, padd, takes="payload")
    async with make_client(router).connect() as conn:
        assert (await conn.request(Add, {"a": 1, "b": 2})).payload.sum == 3
        assert (await conn.request(PAdd, {"a": 2, "b": 2})).payload.sum == 4
        with pytest.raises(WsError) as refused:
            await conn.request(Add, {"a": 1, "b": 2})
        assert refused.value.code is ErrorCode.PERMISSION_DENIED
    assert calls == ["ADD", "PADD", "ADD"]


async def test_an_async_payload_handler_is_answered_and_cancelled_like_any(
    make_client: MakeClient,
) -> None:
    async with make_client(router_taking("payload")).connect() as conn:
        assert (await conn.request(Wait, {"seconds": 0.01})).payload.ok is True
        await conn.send(Wait, {"seconds": 5}, meta={"correlationId": "w1"})
        await conn.abort("w1")
        cancelled = await conn.receive()
        assert (cancelled.type, cancelled.correlation_id) == ("RPC_ERROR", "w1")
        assert cancelled.payload["code"] == "CANCELLED"
        with pytest.raises(WsError) as late:
            await conn.request(Wait, {"seconds": 5}, timeout_ms=50)
        assert late.value.code is ErrorCode.DEADLINE_EXCEEDED


async def test_calls_in_flight_count_and_their_ids_stay_taken(make_client: MakeClient) -> None:
    """A call to a plain payload handler is admitted as any call: an id still in flight gets
    ALREADY_EXISTS, a call past the in-flight limit RESOURCE_EXHAUSTED."""
    async with make_client(router_taking("payload", max_inflight_rpcs=1)).connect() as conn:
        await conn.send(Wait, {"seconds": 5}, meta={"correlationId": "w1"})
        await conn.send(Add, {"a": 1, "b": 2}, meta={"correlationId": "w1"})
        dup = await conn.receive()
        assert (dup.correlation_id, dup.payload["code"]) == ("w1", "ALREADY_EXISTS")
        with pytest.raises(WsError) as full:
            await conn.request(Add, {"a": 1, "b": 2}, correlation_id="a1")
        assert full.value.code is ErrorCode.RESOURCE_EXHAUSTED
        await conn.abort("w1")
        assert (await conn.receive()).payload["code"] == "CANCELLED"
        assert (await conn.request(Add, {"a": 1, "b": 2})).payload.sum == 3


async def outcomes(make_client: MakeClient, takes: str, dialect: DialectName) -> list[Any]:
    """What a client in ``dialect`` gets for a few calls, good and bad (payloads that do
    not pass are the canonical test's: the test client refuses to send them)."""
    app = App(endpoints=[Endpoint("/", router_taking(takes), dialects=[CANONICAL, EVENTS, ROVER])])
    out: list[Any] = []
    async with make_client(app).connect(dialect=dialect) as conn:
        for schema, payload in [
            (Add, {"a": 1, "b": 2}),
            (PAdd, {"a": 5, "b": 2}),
            (Add, {"a": 13, "b": 2}),
            (Add, {"a": 7, "b": 2}),
            (Add, {"a": 99, "b": 2}),
            (Traced, {"n": 1}),
            (Add, {"a": 2, "b": 2}),
        ]:
            try:
                reply = await conn.request(schema, payload)
            except WsError as exc:
                out.append((exc.code, exc.message))
            else:
                out.append((reply.type, plain(reply.payload)))
    return out


@pytest.mark.parametrize("dialect", ["canonical", "events", "rover"])
async def test_payload_handlers_answer_in_each_dialect_as_context_handlers_do(
    make_client: MakeClient, dialect: DialectName
) -> None:
    got = await outcomes(make_client, "payload", dialect)
    assert got == await outcomes(make_client, "ctx", dialect)
    assert got[0] == ("ADD_RESULT", {"sum": 3}) and got[-1] == ("ADD_RESULT", {"sum": 4})
    assert got[2][1] == "unlucky"


async def test_a_merged_router_keeps_its_payload_handlers() -> None:
    merged = Router().merge(router_taking("payload"))
    async with TestClient(merged).connect() as conn:
        assert (await conn.request(Add, {"a": 1, "b": 2})).payload.sum == 3
        with pytest.raises(WsError) as failed:
            await conn.request(Add, {"a": 7, "b": 2})
        assert failed.value.code is ErrorCode.INTERNAL


def test_takes_is_ctx_or_payload_and_the_handler_must_take_one_argument() -> None:
    with pytest.raises(ConfigurationError, match='"ctx" or "payload"'):
        Router().rpc(Add, add, takes="body")  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match=r"1 positional argument\(s\) \(payload\)"):
        Router().rpc(Add, lambda a, b: None, takes="payload")  # type: ignore[call-overload]


async def test_the_auth_gate_runs_before_a_payload_handler(make_client: MakeClient) -> None:
    answered: list[int] = []

    def counted(payload: Any) -> Any:
        answered.append(payload.a)
        return {"sum": payload.a + payload.b}

    async def slow_verdict(ctx: EventContext[Any]) -> bool:
        await asyncio.sleep(0.01)
        return ctx.get_data("user") is not None

    for verdict in (lambda ctx: ctx.get_data("user") is not None, slow_verdict):
        answered.clear()
        router = Router().rpc(Add, counted, takes="payload")
        router.on_upgrade(lambda request: Accept(context={"user": request.query.get("user")}))
        router.on_auth(verdict)
        client = make_client(router)
        async with client.connect(query="user=ada") as conn:
            assert (await conn.request(Add, {"a": 2, "b": 2})).payload.sum == 4
        async with client.connect() as conn:
            await conn.send(Add, {"a": 5, "b": 5}, meta={"correlationId": "x"})
            await conn.expect_error("UNAUTHENTICATED")
            await conn.expect_close(1008)
        assert answered == [2]


async def test_in_band_authentication_comes_before_a_payload_handler(
    make_client: MakeClient,
) -> None:
    def check(ctx: Any) -> Identity | None:
        return Identity(user_id="ann") if ctx.payload.get("token") == "ok" else None

    router = Router().rpc(Add, add, takes="payload").authenticate(check)
    async with make_client(router).connect() as conn:
        await conn.send(Add, {"a": 1, "b": 2}, meta={"correlationId": "early"})
        early = await conn.receive()
        assert early.payload["code"] == "UNAUTHENTICATED"
        await conn.send_raw('{"type": "$ws:authenticate", "payload": {"token": "ok"}}')
        await conn.receive()  # (authenticated)
        assert (await conn.request(Add, {"a": 1, "b": 2})).payload.sum == 3


async def test_routes_changed_while_served_take_effect_on_the_next_call() -> None:
    seen: list[str] = []
    router = router_taking("payload")
    async with TestClient(router).connect() as conn:
        assert (await conn.request(Add, {"a": 1, "b": 2})).payload.sum == 3

        def noted(ctx: EventContext[Any], next: Any) -> Any:
            seen.append(ctx.type)
            return next()

        router.use(noted)
        assert (await conn.request(Add, {"a": 1, "b": 2})).payload.sum == 3
        assert seen == ["ADD"]
        router.off(Add).rpc(Add, lambda payload: {"sum": 0}, takes="payload")
        assert (await conn.request(Add, {"a": 1, "b": 2})).payload.sum == 0


async def test_an_on_error_handler_suppresses_a_payload_handlers_error(
    make_client: MakeClient,
) -> None:
    router = router_taking("payload").on_error(
        lambda error, ctx: error.code is not ErrorCode.PERMISSION_DENIED
    )
    async with make_client(router).connect() as conn:
        await conn.send(Add, {"a": 13, "b": 0}, meta={"correlationId": "quiet"})
        assert (await conn.request(Add, {"a": 1, "b": 2}, correlation_id="next")).payload.sum == 3


async def test_a_plain_function_that_returns_an_awaitable_is_answered_when_it_is_done(
    make_client: MakeClient,
) -> None:
    """An ``async`` function behind a decorator that hides it: answered once its awaitable
    is done, with or without middleware before it, and cancelled like any async handler."""

    def hidden(payload: Any) -> Any:
        return wait(payload)

    router = Router().rpc(Wait, hidden, takes="payload")
    router.route(Wait2).use(lambda ctx, next: next()).rpc(hidden, takes="payload")
    async with make_client(router).connect() as conn:
        assert (await conn.request(Wait, {"seconds": 0.01})).payload.ok is True
        assert (await conn.request(Wait2, {"seconds": 0.01})).payload.ok is True
        with pytest.raises(WsError) as late:
            await conn.request(Wait, {"seconds": 5}, timeout_ms=50)
        assert late.value.code is ErrorCode.DEADLINE_EXCEEDED
