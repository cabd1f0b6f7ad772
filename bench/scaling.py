"""What Redis spends per publish, by the number of instances subscribed: the Redis side of
docs/scaling.md's model.

    .venv/bin/python bench/scaling.py            # about three minutes

A redis-server pinned to CPU 1; on CPU 0, K subscriber connections (one per crosswire
instance: an instance subscribes once per channel, whatever its number of clients) and one
publisher that PUBLISHes crosswire's own envelopes (a ``NEWS`` event to room ``b``, as the
Hub encodes it) in pipelined batches, as RedisBackend does. The subscribers read everything.
For each K, redis-server's CPU time (from /proc) over N publishes gives µs per publish; a
least-squares line through the Ks splits it into a cost per publish and a cost per
subscribed instance (per delivery to an instance). Prints one JSON line per K and the fit.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))

from redis.asyncio import Redis  # noqa: E402
from run import cpu_ticks, redis_server  # noqa: E402

from crosswire.pubsub.envelope import Publication, channel_for, encode_envelope  # noqa: E402

PUBLISHES = 200_000
BATCH = 100
KS = (1, 2, 4, 8)
REPS = 3
TICK = os.sysconf("SC_CLK_TCK")


def envelope() -> tuple[str, bytes]:
    """The channel and one envelope as a crosswire instance publishes them to Redis."""
    pub = Publication("room", "b", event="NEWS", data=b'{"text":"' + b"x" * 64 + b'"}')
    return channel_for("ws", "room", "b"), encode_envelope("bench-server", pub)


async def one(url: str, pid: int, k: int) -> float:
    """µs of redis-server CPU per publish with ``k`` subscribed instances."""
    channel, message = envelope()
    subscribers = [Redis.from_url(url) for _ in range(k)]
    pubsubs = [s.pubsub() for s in subscribers]
    for pubsub in pubsubs:
        await pubsub.subscribe(channel)
    received = [0] * k

    async def read(i: int) -> None:
        async for got in pubsubs[i].listen():
            if got["type"] == "message":
                received[i] += 1
                if received[i] == PUBLISHES:
                    return

    readers = [asyncio.create_task(read(i)) for i in range(k)]
    publisher = Redis.from_url(url)
    before = cpu_ticks(pid)
    for _ in range(PUBLISHES // BATCH):
        async with publisher.pipeline(transaction=False) as pipe:
            for _ in range(BATCH):
                pipe.publish(channel, message)
            await pipe.execute()
    await asyncio.wait_for(asyncio.gather(*readers), 120)
    used = (cpu_ticks(pid) - before) / TICK
    for pubsub in pubsubs:
        await pubsub.aclose()
    for client in [*subscribers, publisher]:
        await client.aclose()
    return used / PUBLISHES * 1e6


def main() -> None:
    results: dict[int, list[float]] = {k: [] for k in KS}
    with redis_server() as (url, pid):
        for _ in range(REPS):
            for k in KS:
                results[k].append(asyncio.run(one(url, pid, k)))
    medians = {k: statistics.median(v) for k, v in results.items()}
    for k in KS:
        line = {"instances": k, "redis_us_per_publish": round(medians[k], 2), "runs": results[k]}
        print(json.dumps(line))
    # cost = base + per_instance * k, least squares over the medians
    mean_k = statistics.mean(KS)
    mean_c = statistics.mean(medians.values())
    slope = sum((k - mean_k) * (medians[k] - mean_c) for k in KS) / sum(
        (k - mean_k) ** 2 for k in KS
    )
    base = mean_c - slope * mean_k
    fit = {"redis_us_per_publish": round(base, 2), "redis_us_per_instance": round(slope, 2)}
    print(json.dumps({"fit": fit, "publishes": PUBLISHES, "envelope_bytes": len(envelope()[1])}))


if __name__ == "__main__":
    main()
