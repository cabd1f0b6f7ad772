"""RPC semantics: correlation, deadlines, abort, disconnect, in-flight limit, progress, one-shot
replies. Tests that take ``make_client`` run in memory and over real websockets and picows
servers; test_echo_example.py drives examples/echo.py over every server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
import pytest

from crosswire import ErrorCode, Router, RpcContext, WsError, rpc
from crosswire.testing import TestClient
from tests.support import MakeClient, eventually, settle

Add = rpc("ADD", {"a": int, "b": int}, "ADD_RESULT", {"sum": int})
Wait = rpc("WAIT", {"seconds": float}, "WAITED", {"ok": bool})
Steps = rpc("STEPS", {"n": int}, "STEPS_DONE", {"total": int})


class Recorder:
    """What the handlers saw, for assertions."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.changed = asyncio.Event()

    def add(self, *event: Any) -> None:
        self.events.append(event)
        self.changed.set()

    async def wait_for(self, name: str) -> tuple[Any, ...]:
        async def wait() -> tuple[Any, ...]:
            while True:
                for event in self.events:
                    if event[0] == name:
                        return event  # type: ignore[no-any-return]
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(wait(), 2)


def make_router(rec: Recorder, **options: Any) -> Router:
    router = Router(**options)
    router.rpc(Add, lambda ctx: ctx.reply({"sum": ctx.payload.a + ctx.payload.b}))

    async def wait(ctx: RpcContext[Any]) -> None:
        ctx.on_cancel(lambda: rec.add("cancelled", ctx.correlation_id))
        loop_now = asyncio.get_running_loop().time()
        rec.add("started", ctx.correlation_id, ctx.time_remaining(), ctx.deadline - loop_now)
        try:
            await asyncio.sleep(ctx.payload.seconds)
        except asyncio.CancelledError:
            rec.add("handler saw CancelledError", ctx.correlation_id)
            raise
        ctx.reply({"ok": True})

    async def steps(ctx: RpcContext[Any]) -> None:
        for i in range(1, ctx.payload.n + 1):
            ctx.progress({"step": i})
            await asyncio.sleep(0)
        ctx.reply({"total": ctx.payload.n})
        rec.add("second reply", ctx.reply({"total": -1}), ctx.error("INTERNAL"), ctx.progress(9))

    router.rpc(Wait, wait)
    router.rpc(Steps, steps)
    return router


async def test_reply_is_correlated_and_typed(make_client: MakeClient) -> None:
    async with make_client(make_router(Recorder())).connect() as conn:
        reply = await conn.request(Add, {"a": 2, "b": 3}, correlation_id="abc")
        assert reply.correlation_id == "abc" and reply.payload.sum == 5
        assert reply.json == {
            "type": "ADD_RESULT",
            "meta": {"correlationId": "abc"},
            "payload": {"sum": 5},
        }


async def test_missing_correlation_id_is_synthesized(make_client: MakeClient) -> None:
    async with make_client(make_router(Recorder())).connect() as conn:
        await conn.send_raw('{"type": "ADD", "payload": {"a": 1, "b": 1}}')
        reply = await conn.receive()
        assert reply.type == "ADD_RESULT" and reply.correlation_id == "srv-1"


async def test_progress_comes_before_the_reply_and_later_answers_are_ignored(
    make_client: MakeClient,
) -> None:
    rec = Recorder()
    progress: list[Any] = []
    async with make_client(make_router(rec)).connect() as conn:
        reply = await conn.request(Steps, {"n": 3}, on_progress=progress.append)
        assert reply.payload.total == 3 and progress == [{"step": 1}, {"step": 2}, {"step": 3}]
        assert await rec.wait_for("second reply") == ("second reply", False, False, False)
        await settle(conn)
        assert conn.pending == []  # nothing after the terminal reply


async def test_client_timeout_sets_the_deadline_and_cancels_the_handler(
    make_client: MakeClient,
) -> None:
    rec = Recorder()
    async with make_client(make_router(rec)).connect() as conn:
        with pytest.raises(WsError) as late:
            await conn.request(Wait, {"seconds": 5}, timeout_ms=50, correlation_id="slow")
        assert late.value.code is ErrorCode.DEADLINE_EXCEEDED
        assert late.value.retryable is True  # the server sends none: inferred from the code
        await rec.wait_for("handler saw CancelledError")
    started = next(e for e in rec.events if e[0] == "started")
    assert 0 < started[2] <= 0.05  # time_remaining() follows meta.timeoutMs
    assert 0 < started[3] <= 0.05  # and so does the deadline, on the loop's clock
    assert ("cancelled", "slow") in rec.events


async def test_router_default_deadline(make_client: MakeClient) -> None:
    rec = Recorder()
    async with make_client(make_router(rec, rpc_timeout=0.05)).connect() as conn:
        with pytest.raises(WsError, match="deadline"):
            await conn.request(Wait, {"seconds": 5})


async def test_abort_cancels_the_handler_runs_on_cancel_and_answers_cancelled(
    make_client: MakeClient,
) -> None:
    rec = Recorder()
    async with make_client(make_router(rec)).connect() as conn:
        call = asyncio.ensure_future(conn.request(Wait, {"seconds": 5}, correlation_id="w1"))
        await rec.wait_for("started")
        await conn.abort("w1")
        with pytest.raises(WsError) as cancelled:
            await call
        assert cancelled.value.code is ErrorCode.CANCELLED
        assert ("cancelled", "w1") in rec.events
        await rec.wait_for("handler saw CancelledError")
        await conn.abort("w1")  # already over: ignored
        await conn.abort("never-existed")
        assert (await conn.request(Add, {"a": 1, "b": 0})).payload.sum == 1


async def test_disconnect_cancels_every_call_in_flight(make_client: MakeClient) -> None:
    rec = Recorder()
    async with make_client(make_router(rec)).connect() as conn:
        for cid in ("d1", "d2"):
            await conn.send(Wait, {"seconds": 5}, meta={"correlationId": cid})
        await eventually(lambda: len([e for e in rec.events if e[0] == "started"]) == 2)
    # the connection closed on leaving the block
    await rec.wait_for("handler saw CancelledError")
    assert {e[1] for e in rec.events if e[0] == "cancelled"} == {"d1", "d2"}


async def test_in_flight_limit_and_duplicate_ids(make_client: MakeClient) -> None:
    rec = Recorder()
    async with make_client(make_router(rec, max_inflight_rpcs=2)).connect() as conn:
        for cid in ("f1", "f2"):
            await conn.send(Wait, {"seconds": 5}, meta={"correlationId": cid})
        await conn.send(Wait, {"seconds": 5}, meta={"correlationId": "f1"})
        dup = await conn.receive()
        assert (dup.type, dup.correlation_id, dup.payload["code"]) == (
            "RPC_ERROR",
            "f1",
            "ALREADY_EXISTS",
        )
        with pytest.raises(WsError) as full:
            await conn.request(Add, {"a": 1, "b": 2}, correlation_id="f3")
        assert full.value.code is ErrorCode.RESOURCE_EXHAUSTED
        assert full.value.retry_after_ms is not None
        await conn.abort("f1")
        await conn.receive()  # f1's CANCELLED
        assert (await conn.request(Add, {"a": 1, "b": 2})).payload.sum == 3


async def test_a_handler_that_returns_without_answering_is_reported(
    caplog: pytest.LogCaptureFixture, make_client: MakeClient
) -> None:
    router = Router()
    router.rpc(Add, lambda ctx: None)  # forgets to reply
    with caplog.at_level(logging.WARNING, logger="crosswire.router"):
        async with make_client(router).connect() as conn:
            with pytest.raises(WsError) as late:
                await conn.request(Add, {"a": 1, "b": 1}, timeout_ms=50)
    assert late.value.code is ErrorCode.DEADLINE_EXCEEDED
    assert "returned without reply() or error()" in caplog.text


async def test_a_late_reply_from_elsewhere_still_answers_the_call(make_client: MakeClient) -> None:
    pending: list[RpcContext[Any]] = []
    router = Router().rpc(Add, pending.append)
    async with make_client(router).connect() as conn:
        call = asyncio.ensure_future(conn.request(Add, {"a": 4, "b": 4}))
        await eventually(lambda: bool(pending))
        pending[0].reply({"sum": 8})
        assert (await call).payload.sum == 8


async def test_errors_in_rpc_handlers_answer_with_rpc_error(make_client: MakeClient) -> None:
    router = Router()

    async def fails(ctx: RpcContext[Any]) -> None:
        await asyncio.sleep(0)
        raise WsError("NOT_FOUND", "no such sum")

    router.rpc(Add, fails)
    async with make_client(router).connect() as conn:
        with pytest.raises(WsError, match="no such sum") as err:
            await conn.request(Add, {"a": 1, "b": 1})
        assert err.value.code is ErrorCode.NOT_FOUND


async def test_progress_is_dropped_while_the_client_is_behind() -> None:
    """In memory, with the flag the transport sets; test_rpc_backpressure.py fills a real socket."""
    router = Router()
    sent: list[bool] = []

    def steps(ctx: RpcContext[Any]) -> None:
        ctx.peer._write_paused = True  # as the transport reports when its buffer is full
        sent.append(ctx.progress({"step": 1}))
        ctx.peer._write_paused = False
        sent.append(ctx.progress({"step": 2}))
        ctx.reply({"total": 2})

    router.rpc(Steps, steps)
    progress: list[Any] = []
    async with TestClient(router).connect() as conn:
        await conn.request(Steps, {"n": 2}, on_progress=progress.append)
    assert sent == [False, True] and progress == [{"step": 2}]


async def test_progress_frames_carry_the_value_as_payload_and_data(make_client: MakeClient) -> None:
    async with make_client(make_router(Recorder())).connect() as conn:
        await conn.send(Steps, {"n": 1}, meta={"correlationId": "p"})
        frame = await conn.receive()
        assert orjson.loads(frame.raw) == {
            "type": "$ws:rpc-progress",
            "meta": {"correlationId": "p"},
            "payload": {"step": 1},
            "data": {"step": 1},
        }


async def test_unregistering_during_cancellation_skips_no_callback(make_client: MakeClient) -> None:
    ran: list[str] = []
    router = Router()

    async def handler(ctx: RpcContext[Any]) -> None:
        def first() -> None:
            ran.append("first")
            unregister_first()  # a callback that removes itself as it runs

        unregister_first = ctx.on_cancel(first)
        ctx.on_cancel(lambda: ran.append("second"))
        removed = ctx.on_cancel(lambda: ran.append("removed before"))
        removed()
        ready.set()
        await asyncio.sleep(5)

    ready = asyncio.Event()
    router.rpc(Wait, handler)
    async with make_client(router).connect() as conn:
        call = asyncio.ensure_future(conn.request(Wait, {"seconds": 5}, correlation_id="c"))
        await asyncio.wait_for(ready.wait(), 2)
        await conn.abort("c")
        with pytest.raises(WsError, match="cancelled"):
            await call
    assert ran == ["first", "second"]


async def test_integers_beyond_64_bits_are_read_exactly_and_a_huge_timeout_is_a_day(
    make_client: MakeClient,
) -> None:
    """JSON numbers are read as Python reads them: exactly. A timeoutMs of 400 digits is capped
    at a day (it used to overflow the deadline); a pydantic int field gets the exact value."""
    from pydantic import BaseModel

    class Big(BaseModel):
        n: int

    class Got(BaseModel):
        n: int
        remaining: float

    Echo = rpc("BIG", Big, "BIG_RESULT", Got)
    router = Router().rpc(
        Echo, lambda ctx: ctx.reply(Got(n=ctx.payload.n, remaining=ctx.time_remaining()))
    )
    huge = "9" * 400
    async with make_client(router).connect() as conn:
        await conn.send_raw(
            f'{{"type":"BIG","meta":{{"correlationId":"b","timeoutMs":{huge}}},'
            f'"payload":{{"n":{2**70 + 1}}}}}'
        )
        reply = await conn.receive()
    assert reply.type == "BIG_RESULT", reply
    assert reply.payload["n"] == 2**70 + 1
    assert 86_000 < reply.payload["remaining"] <= 86_400


Hold = rpc("HOLD", {"n": int}, "HELD", {"n": int})


def holding_router(rec: Recorder, **options: Any) -> Router:
    """HOLD calls wait until they are cancelled; ADD answers at once."""
    router = make_router(rec, **options)

    async def hold(ctx: RpcContext[Any]) -> None:
        try:
            await asyncio.Event().wait()  # only cancellation ends it
        except asyncio.CancelledError:
            rec.add("cancelled", ctx.correlation_id)
            raise

    return router.rpc(Hold, hold)


async def test_calls_past_the_in_flight_limit_get_resource_exhausted_while_others_run(
    make_client: MakeClient,
) -> None:
    """Issue 14: reading used to pause at Limits.inbound_queue (256) running handlers, so the
    1,001st slow call of the default limit (1,000) never got its RESOURCE_EXHAUSTED."""
    router = holding_router(Recorder())
    limit = router.max_inflight_rpcs
    async with make_client(router, timeout=10).connect() as conn:  # (a shared, busy machine)
        for n in range(limit + 3):
            await conn.send(Hold, {"n": n}, meta={"correlationId": f"h{n}"})
        refused = [await conn.receive() for _ in range(3)]
        assert [(f.type, f.correlation_id) for f in refused] == [
            ("RPC_ERROR", f"h{n}") for n in range(limit, limit + 3)
        ]
        for frame in refused:
            assert frame.payload["code"] == "RESOURCE_EXHAUSTED"
            assert frame.payload["retryAfterMs"] > 0
        await conn.abort("h0")
        cancelled = await conn.receive()
        assert (cancelled.correlation_id, cancelled.payload["code"]) == ("h0", "CANCELLED")
        # The place h0 left: one call more is admitted, and answered.
        assert (await conn.request(Add, {"a": 2, "b": 2})).payload.sum == 4
        await settle(conn)  # heartbeats are read too
        assert conn.pending == []


async def test_an_abort_sent_after_hundreds_of_slow_calls_reaches_its_call(
    make_client: MakeClient,
) -> None:
    """Issue 14: with 300 slow calls running (more than Limits.inbound_queue), a $ws:abort
    was read only once its own call had ended."""
    rec = Recorder()
    async with make_client(holding_router(rec), timeout=10).connect() as conn:
        for n in range(300):
            await conn.send(Hold, {"n": n}, meta={"correlationId": f"h{n}"})
        await conn.abort("h7")
        cancelled = await conn.receive()
        assert (cancelled.type, cancelled.correlation_id) == ("RPC_ERROR", "h7")
        assert cancelled.payload["code"] == "CANCELLED"
        assert await rec.wait_for("cancelled") == ("cancelled", "h7")
        assert (await conn.request(Add, {"a": 1, "b": 2})).payload.sum == 3


async def test_rpc_handlers_still_running_after_their_reply_count_against_the_limit(
    make_client: MakeClient,
) -> None:
    """A handler that replies, then goes on awaiting, still holds a task: the in-flight limit
    bounds those too, so a client cannot pile up tasks through replied calls."""
    release = asyncio.Event()
    finished: list[int] = []

    async def reply_then_linger(ctx: RpcContext[Any]) -> None:
        ctx.reply({"n": ctx.payload.n})
        await release.wait()
        finished.append(ctx.payload.n)

    router = Router(max_inflight_rpcs=3).rpc(Hold, reply_then_linger)
    router.rpc(Add, lambda ctx: ctx.reply({"sum": ctx.payload.a + ctx.payload.b}))
    async with make_client(router).connect() as conn:
        for n in range(3):
            assert (await conn.request(Hold, {"n": n})).payload.n == n
        with pytest.raises(WsError) as full:
            await conn.request(Hold, {"n": 3}, correlation_id="over")
        assert full.value.code is ErrorCode.RESOURCE_EXHAUSTED
        assert (await conn.request(Add, {"a": 1, "b": 1})).payload.sum == 2  # runs inline
        release.set()
        await eventually(lambda: len(finished) == 3)
        assert (await conn.request(Hold, {"n": 4})).payload.n == 4


async def test_an_integer_past_pythons_digit_limit_is_answered_with_its_correlation_id(
    make_client: MakeClient,
) -> None:
    """Issue 14: an integer of more than 4,300 digits (sys.get_int_max_str_digits()) got
    ERROR "malformed JSON" without the call's correlationId, and the caller waited for its
    timeout."""
    huge = "9" * 4301
    async with make_client(make_router(Recorder())).connect() as conn:
        await conn.send_raw(
            f'{{"type":"ADD","meta":{{"correlationId":"big"}},"payload":{{"a":{huge},"b":1}}}}'
        )
        error = await conn.receive()
        assert (error.type, error.correlation_id) == ("RPC_ERROR", "big")
        assert error.payload["code"] == "INVALID_ARGUMENT"
        assert "4300 digits" in error.payload["message"]
        await conn.send_raw('{"type":"ADD","meta":{"correlationId":"inf"},"payload":{"a":1e400}}')
        error = await conn.receive()
        assert (error.type, error.correlation_id) == ("RPC_ERROR", "inf")
        assert "out of range" in error.payload["message"]
        await conn.send_raw(f'{{"type":"ADD","payload":{{"a":{huge},"b":1}}}}')  # no id
        error = await conn.receive()
        assert (error.type, error.payload["code"]) == ("ERROR", "INVALID_ARGUMENT")
        await conn.send_raw(f'{{"type":"ADD","meta":{{"correlationId":"x"}},"payload":[{huge},}}')
        error = await conn.receive()  # not JSON at all: nothing can be read from it
        assert error.type == "ERROR" and "malformed JSON" in error.payload["message"]
        digits = "9" * 4300  # the longest an integer may be
        reply = await conn.request(Add, {"a": int(digits), "b": -1})
        assert reply.payload.sum == int(digits) - 1
