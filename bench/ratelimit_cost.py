"""What the rate_limit middleware costs per message, in process (no socket, no load generator).

    .venv/bin/python bench/ratelimit_cost.py

A typed RPC (``ADD``) is handed to the router's peer directly, 20,000 times per round, for
three routers in alternation: no middleware, a middleware that only calls ``next()``, and
``rate_limit(MemoryRateLimiter(...))`` with a policy that never refuses. Prints the median
microseconds per call of seven rounds, and the difference. docs/rate-limits.md has the figures.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from crosswire import Router, rpc
from crosswire.ratelimit import MemoryRateLimiter, rate_limit
from crosswire.testing import TestClient

Add = rpc("ADD", {"a": int, "b": int}, "ADD_RESULT", {"sum": int})
FRAME = '{"type":"ADD","meta":{"correlationId":"c"},"payload":{"a":1,"b":2}}'
CALLS = 20_000
ROUNDS = 7


def make_router(middleware: Any) -> Router:
    router = Router()
    if middleware is not None:
        router.use(middleware)
    router.rpc(Add, lambda ctx: ctx.reply({"sum": ctx.payload.a + ctx.payload.b}))
    return router


async def per_call(middleware: Any) -> float:
    """Microseconds per call through one router."""
    async with TestClient(make_router(middleware)).connect() as conn:
        peer, inbox = conn.peer, conn._inbox
        start = time.perf_counter()
        for _ in range(CALLS):
            peer._receive_data(FRAME, False)
            inbox.clear()
        return (time.perf_counter() - start) / CALLS * 1e6


async def main() -> None:
    kinds = {
        "no middleware": lambda: None,
        "next() only": lambda: lambda ctx, next: next(),
        "rate_limit (memory)": lambda: rate_limit(
            MemoryRateLimiter(capacity=10**12, tokens_per_second=10**12)
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(ROUNDS):
        for name, middleware in kinds.items():
            times[name].append(await per_call(middleware()))
    base = statistics.median(times["no middleware"])
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:22} {median:6.2f} µs per call  (+{median - base:.2f})")


if __name__ == "__main__":
    asyncio.run(main())
