"""Rate limits as a client sees them (in memory, and over real websockets and picows
servers): refusals with RESOURCE_EXHAUSTED and retryAfterMs, per-type buckets, costs, the
on_limit_exceeded report, and the connection carrying on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from crosswire import (
    EventContext,
    LimitExceeded,
    Router,
    RpcContext,
    WsError,
    is_retryable,
    message,
    rpc,
)
from crosswire.ratelimit import Decision, MemoryRateLimiter, per_user, rate_limit
from crosswire.testing import TestClient
from tests.support import MakeClient, eventually, settle

Chat = message("CHAT", {"text": str})
Search = rpc("SEARCH", {"q": str}, "RESULTS", {"hits": int})
Lookup = rpc("LOOKUP", {"q": str}, "FOUND", {"hits": int})


class Clock:
    """Seconds, moved by the test."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def chat_router(limiter: Any, **options: Any) -> tuple[Router, list[LimitExceeded]]:
    exceeded: list[LimitExceeded] = []
    router = Router()
    router.use(rate_limit(limiter, **options))
    router.on(Chat, lambda ctx: ctx.send(Chat, {"text": ctx.payload.text}))
    router.rpc(Search, lambda ctx: ctx.reply({"hits": len(ctx.payload.q)}))
    router.on_limit_exceeded(exceeded.append)
    return router, exceeded


async def test_past_the_burst_a_message_is_refused_with_when_to_retry(
    make_client: MakeClient,
) -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(capacity=2, tokens_per_second=4, clock=clock)
    router, exceeded = chat_router(limiter)
    async with make_client(router).connect() as conn:
        for text in ("a", "b"):
            await conn.send(Chat, {"text": text})
            assert (await conn.receive_as(Chat)).payload.text == text
        await conn.send(Chat, {"text": "c"})
        error = await conn.expect_error("RESOURCE_EXHAUSTED")
        assert error.retry_after_ms == 250 and is_retryable(error.code)
        assert error.details == {"cost": 1, "capacity": 2, "remaining": 0}

        # RPCs have their own bucket (per type), and a refused call gets RPC_ERROR
        for _ in range(2):
            assert (await conn.request(Search, {"q": "abc"})).payload.hits == 3
        with pytest.raises(WsError) as refused:
            await conn.request(Search, {"q": "abc"}, correlation_id="s3")
        assert refused.value.code == "RESOURCE_EXHAUSTED"
        assert refused.value.retry_after_ms == 250

        clock.now += 0.25  # one token back
        await conn.send(Chat, {"text": "d"})
        assert (await conn.receive_as(Chat)).payload.text == "d"
        await settle(conn)
        assert conn.pending == []
    assert [(e.type, e.observed, e.limit, e.retry_after_ms) for e in exceeded] == [
        ("rate", 1, 2, 250),
        ("rate", 1, 2, 250),
    ]
    assert exceeded[0].client_id == exceeded[1].client_id


async def test_costs_weigh_messages_zero_is_free_and_too_much_is_never_allowed(
    make_client: MakeClient,
) -> None:
    costs = {"CHAT": 0, "SEARCH": 5}
    limiter = MemoryRateLimiter(capacity=4, tokens_per_second=1, clock=Clock())
    router, exceeded = chat_router(limiter, key=per_user, cost=lambda ctx: costs[ctx.type])
    async with make_client(router).connect() as conn:
        for n in range(10):  # free: never limited
            await conn.send(Chat, {"text": str(n)})
            assert (await conn.receive_as(Chat)).payload.text == str(n)
        with pytest.raises(WsError) as refused:
            await conn.request(Search, {"q": "x"})
        assert refused.value.code == "FAILED_PRECONDITION" and not is_retryable(refused.value.code)
        assert refused.value.details == {"cost": 5, "capacity": 4}
        costs["SEARCH"] = -1  # a bug in the server's cost function: not the client's fault
        with pytest.raises(WsError) as broken:
            await conn.request(Search, {"q": "x"})
        assert broken.value.code == "INTERNAL"
        costs["SEARCH"] = 4
        assert (await conn.request(Search, {"q": "x"})).payload.hits == 1
    assert [(e.observed, e.retry_after_ms) for e in exceeded] == [(5, None)]


async def test_one_route_limited_and_an_async_limiter(make_client: MakeClient) -> None:
    class Remote:
        """A limiter whose answer takes a round trip, as Redis's does."""

        def __init__(self) -> None:
            self.memory = MemoryRateLimiter(capacity=1, tokens_per_second=1, clock=Clock())
            self.policy = self.memory.policy

        async def consume(self, key: str, cost: int) -> Decision:
            await asyncio.sleep(0)
            return self.memory.consume(key, cost)

        async def aclose(self) -> None:
            pass

    order: list[str] = []

    async def search(ctx: RpcContext[Any]) -> None:
        await asyncio.sleep(0)
        ctx.reply({"hits": 0})

    def chat(ctx: EventContext[Any]) -> None:
        order.append(ctx.payload.text)
        ctx.send(Chat, {"text": ctx.payload.text})

    router = Router()
    router.route(Search).use(rate_limit(Remote())).rpc(search)  # an async handler
    router.route(Chat).use(rate_limit(Remote())).on(chat)  # a plain one
    async with make_client(router).connect() as conn:
        assert (await conn.request(Search, {"q": "x"})).payload.hits == 0
        with pytest.raises(WsError, match="rate limit exceeded"):
            await conn.request(Search, {"q": "x"})
        await conn.send(Chat, {"text": "first"})
        assert (await conn.receive_as(Chat)).payload.text == "first"
        await conn.send(Chat, {"text": "second"})
        await conn.expect_error("RESOURCE_EXHAUSTED")
    assert order == ["first"]


async def test_identified_users_share_a_budget_across_their_connections(
    make_client: MakeClient,
) -> None:
    limiter = MemoryRateLimiter(capacity=1, tokens_per_second=1, clock=Clock())
    router, _ = chat_router(limiter)
    router.on_open(lambda ctx: ctx.peer.identify("ada"))
    client = make_client(router)
    async with client.connect() as first, client.connect() as second:
        await first.send(Chat, {"text": "x"})
        await first.receive_as(Chat)
        await second.send(Chat, {"text": "y"})
        await second.expect_error("RESOURCE_EXHAUSTED")  # same user, same bucket
    assert len(limiter) == 1


class Scripted:
    """An async limiter whose calls take the given delays (seconds), or raise, in turn: as a
    pool of Redis connections answers."""

    def __init__(self, *steps: float | Exception) -> None:
        self.memory = MemoryRateLimiter(capacity=10, tokens_per_second=1, clock=Clock())
        self.policy = self.memory.policy
        self.steps = list(steps)

    async def consume(self, key: str, cost: int) -> Decision:
        step = self.steps.pop(0) if self.steps else 0.0
        if isinstance(step, Exception):
            raise step
        await asyncio.sleep(step)
        return self.memory.consume(key, cost)

    async def aclose(self) -> None:
        pass


def ordered_router(limiter: Scripted, handled: list[str]) -> Router:
    async def slow(ctx: RpcContext[Any]) -> None:
        await asyncio.sleep(5)

    router = Router().use(rate_limit(limiter))
    router.on(Chat, lambda ctx: handled.append(ctx.payload.text))
    router.rpc(Search, slow)
    router.rpc(Lookup, lambda ctx: ctx.reply({"hits": 1}))  # plain: limited inline
    return router


async def test_an_async_limiter_keeps_a_connections_messages_in_order(
    make_client: MakeClient,
) -> None:
    handled: list[str] = []
    router = ordered_router(Scripted(0.06, 0.03, 0.0), handled)  # answers come back reversed
    async with make_client(router).connect() as conn:
        for text in ("1", "2", "3"):
            await conn.send(Chat, {"text": text})
        await eventually(lambda: len(handled) == 3)
    assert handled == ["1", "2", "3"]


async def test_order_holds_when_the_limiter_fails_or_a_call_is_aborted(
    make_client: MakeClient,
) -> None:
    handled: list[str] = []
    router = ordered_router(Scripted(0.1, WsError("UNAVAILABLE", "down"), 0.0), handled)
    async with make_client(router).connect() as conn:
        for text in ("1", "2", "3"):
            await conn.send(Chat, {"text": text})
        await conn.expect_error("UNAVAILABLE")  # 2: the limiter failed
        await eventually(lambda: len(handled) == 2)
        assert handled == ["1", "3"]  # 3 waited for 1, though 2 ended at once

        handled.clear()
        router_limiter = Scripted(0.1, 0.0, 0.0)
        async with make_client(ordered_router(router_limiter, handled)).connect() as other:
            await other.send(Chat, {"text": "slow"})
            await other.send(Search, {"q": "x"}, meta={"correlationId": "s"})
            await other.abort("s")  # cancels a call that waits behind "slow"
            await other.expect_error("CANCELLED")
            await other.send(Chat, {"text": "after"})
            await eventually(lambda: len(handled) == 2)
            await settle(other)
            assert other.pending == []  # no INTERNAL: "slow" was not disturbed
    assert handled == ["slow", "after"]


async def test_a_call_aborted_in_the_same_read_leaves_no_one_waiting() -> None:
    """The abort cancels the call's task before it starts (Python 3.11): the call takes no
    place in the order, so the next message is not held behind it."""
    handled: list[str] = []
    async with TestClient(ordered_router(Scripted(), handled)).connect() as conn:
        peer = conn.peer
        peer._receive_data(
            '{"type":"LOOKUP","meta":{"correlationId":"s"},"payload":{"q":"x"}}', False
        )
        peer._receive_data('{"type":"$ws:abort","meta":{"correlationId":"s"}}', False)
        await conn.expect_error("CANCELLED")
        await conn.send(Chat, {"text": "next"})
        await eventually(lambda: handled == ["next"])
