"""RedisRateLimiter against a real redis-server: one budget shared by instances on different
servers, the Lua script deciding as ``bucket.take`` does, and Redis going away and back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from crosswire import Accept, App, Router, is_retryable, message
from crosswire.ratelimit import Decision, Policy, RedisRateLimiter, rate_limit
from crosswire.ratelimit.bucket import take
from tests.redis_server import RedisServer
from tests.support import SocketClient, settle

Chat = message("CHAT", {"text": str})
Note = message("NOTE", {"text": str})


@pytest.fixture
async def limiters() -> AsyncIterator[list[RedisRateLimiter]]:
    """Limiters made by the test, closed at teardown."""
    made: list[RedisRateLimiter] = []
    yield made
    for limiter in made:
        await limiter.aclose()


@pytest.fixture
async def clients() -> AsyncIterator[list[SocketClient]]:
    made: list[SocketClient] = []
    yield made
    for client in made:
        await client.aclose()


def chat_app(limiter: RedisRateLimiter, note_limiter: RedisRateLimiter | None = None) -> App:
    router = Router()
    router.on_upgrade(lambda request: Accept(context={"user": request.query.get("user")}))
    router.on_open(lambda ctx: ctx.peer.identify(ctx.get_data("user")))
    router.route(Chat).use(rate_limit(limiter)).on(
        lambda ctx: ctx.send(Chat, {"text": ctx.payload.text})
    )
    if note_limiter is not None:
        router.route(Note).use(rate_limit(note_limiter)).on(
            lambda ctx: ctx.send(Note, {"text": ctx.payload.text})
        )
    return App(router)


async def test_instances_on_different_servers_share_one_budget(
    redis_server: RedisServer, limiters: list[RedisRateLimiter], clients: list[SocketClient]
) -> None:
    for kind in ("websockets", "picows"):  # two instances, each with its own limiter
        limiters.append(RedisRateLimiter(redis_server.url, capacity=3, tokens_per_second=0.01))
        clients.append(SocketClient(chat_app(limiters[-1]), kind))
    one, two = clients
    async with one.connect(query="user=ada") as a, two.connect(query="user=ada") as b:
        for conn, text in ((a, "1"), (b, "2"), (a, "3")):
            await conn.send(Chat, {"text": text})
            assert (await conn.receive_as(Chat)).payload.text == text
        for conn in (b, a):
            await conn.send(Chat, {"text": "over"})
            error = await conn.expect_error("RESOURCE_EXHAUSTED")
            assert error.retry_after_ms is not None and 99_000 < error.retry_after_ms <= 100_000
        async with two.connect(query="user=bob") as c:  # another user: another bucket
            await c.send(Chat, {"text": "hi"})
            assert (await c.receive_as(Chat)).payload.text == "hi"
    keys = sorted(await redis_server.client().keys("rl:*"))
    assert keys == [b"rl:user:ada:CHAT", b"rl:user:bob:CHAT"]
    ttl = await redis_server.client().pttl("rl:user:ada:CHAT")
    assert 0 < ttl <= Policy(3, 0.01).ms_to_fill + 1000  # forgotten once it would be full


async def test_the_script_decides_as_the_bucket_arithmetic_does(
    redis_server: RedisServer, limiters: list[RedisRateLimiter]
) -> None:
    limiter = RedisRateLimiter(redis_server.url, capacity=5, tokens_per_second=0.001)
    limiters.append(limiter)
    costs = [2, 2, 2, 1, 6, 1]
    got = [await limiter.consume("k", cost) for cost in costs]
    tokens: float | None = None
    expected: list[Decision] = []
    for cost in costs:  # no time passes here; on Redis a few ms do (0.001 tokens/s: nothing)
        decision, tokens = take(limiter.policy, tokens, 0, cost, 0)
        expected.append(decision)
    assert [(d.allowed, d.remaining) for d in got] == [(d.allowed, d.remaining) for d in expected]
    for mine, theirs in zip(got, expected, strict=True):
        if theirs.retry_after_ms is None:
            assert mine.retry_after_ms is None
        else:
            assert mine.retry_after_ms is not None
            assert abs(mine.retry_after_ms - theirs.retry_after_ms) < 1_000

    fast = RedisRateLimiter(redis_server.url, capacity=1, tokens_per_second=20, prefix="f:")
    limiters.append(fast)
    assert (await fast.consume("k", 1)).allowed
    refused = await fast.consume("k", 1)
    assert not refused.allowed and refused.retry_after_ms is not None
    assert 0 < refused.retry_after_ms <= 50
    await asyncio.sleep(0.06)  # a token back, refilled on Redis's clock
    assert (await fast.consume("k", 1)).allowed


async def test_while_redis_is_down_messages_are_refused_or_let_through_and_then_limited_again(
    redis_server: RedisServer, limiters: list[RedisRateLimiter], clients: list[SocketClient]
) -> None:
    strict = RedisRateLimiter(redis_server.url, capacity=5, tokens_per_second=0.1, timeout=0.5)
    lenient = RedisRateLimiter(
        redis_server.url, capacity=5, tokens_per_second=0.1, timeout=0.5, fail_open=True
    )
    limiters.extend([strict, lenient])
    client = SocketClient(chat_app(strict, lenient), "websockets")
    clients.append(client)
    async with client.connect(query="user=ada") as conn:

        async def chat(schema: Any, text: str) -> Any:
            await conn.send(schema, {"text": text})
            return (await conn.receive_as(schema)).payload.text

        assert await chat(Chat, "before") == "before"
        await redis_server.kill()
        await conn.send(Chat, {"text": "down"})
        error = await conn.expect_error("UNAVAILABLE")
        assert is_retryable(error.code)
        assert await chat(Note, "let through") == "let through"  # fail_open
        await settle(conn)  # the connection carries on

        await redis_server.start()  # same port, empty
        for n in range(5):  # redis-py reconnects; the new Redis starts with a full bucket
            assert await chat(Chat, str(n)) == str(n)
        await conn.send(Chat, {"text": "limited again"})
        await conn.expect_error("RESOURCE_EXHAUSTED")
