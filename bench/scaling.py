"""What Redis spends per publish, by the number of instances subscribed, and what each
crosswire instance spends per publish on the bus: the per-publish costs of docs/scaling.md's
model.

    .venv/bin/python bench/scaling.py            # about four minutes

A redis-server pinned to CPU 1; on CPU 0, K subscriber connections (one per crosswire
instance: an instance subscribes once per channel, whatever its number of clients) and one
publisher that PUBLISHes crosswire's own envelopes (a ``NEWS`` event to room ``b``, as the
Hub encodes it) in pipelined batches, as RedisBackend does. The subscribers read everything.
For each K, redis-server's CPU time (from /proc) over N publishes gives µs per publish; a
least-squares line through the Ks splits it into a cost per publish and a cost per
subscribed instance (per delivery to an instance). Prints one JSON line per K and the fit.

Then the instances' side, each in a fresh interpreter pinned to CPU 0 (its own CPU time, from
/proc or the process itself): a Hub on that Redis publishing to a topic with no local member,
every message put on Redis (``hub.publish`` then ``hub.flush`` per batch): CPU per publish
on the publishing instance; and a Hub with one local member of the topic (a transport that
only counts) receiving crosswire envelopes that this script PUBLISHes: CPU per bus message on
a subscribing instance, before its deliveries (one delivery to a counting transport is in it).

Last, the presence store's cost on Redis (docs/scaling.md: what the master that holds a
namespace's presence spends): redis-server's CPU per join (``RedisPresence.add``), per read of
a topic of 10 members (``members``) and per leave (``remove``), each one Lua script, run one
at a time as an instance runs them.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))

from redis.asyncio import Redis  # noqa: E402
from run import SERVER_CPU, cpu_ticks, pinned, redis_server  # noqa: E402

from crosswire.pubsub.envelope import Publication, channel_for, encode_envelope  # noqa: E402

PUBLISHES = 200_000
#: Joins, reads and leaves of the presence probe (each): 10 members per topic.
PRESENCE_OPS = 20_000
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


#: The instance side, in a fresh interpreter: ``publish URL N`` prints µs of CPU per publish
#: put on Redis; ``receive URL N`` prints "ready", then, once N bus messages reached its one
#: local member, "done".
INSTANCE = r"""
import asyncio, sys, time
import crosswire
from crosswire.http import Accept, Headers, Request
from crosswire.pubsub.redis import RedisBackend
from servers import Counting  # (bench/ is on the path)

async def main(mode, url, n):
    hub = crosswire.Hub(RedisBackend(url))
    app = crosswire.App(crosswire.define_hooks(), hub=hub)
    await hub.start()
    if mode == "publish":
        text = '{"type":"NEWS","meta":{},"payload":{"text":"%s"}}' % ("x" * 64)
        for _ in range(2000):  # warm up
            hub.publish("b", text)
        await hub.flush()
        start = time.process_time()
        for _ in range(n // 1000):
            for _ in range(1000):
                hub.publish("b", text)
            await hub.flush()
        print((time.process_time() - start) / n * 1e6, flush=True)
    else:
        member = Counting()
        request = Request("/", "", Headers([("upgrade", "websocket")]), "127.0.0.1")
        peer = app.connect(member, request, Accept())
        peer.subscribe("b")
        await hub.flush()  # subscribed on Redis
        print("ready", flush=True)
        while member.sent < n:
            await asyncio.sleep(0.01)
        print("done", flush=True)
    await hub.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def instance(mode: str, url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH.parent / "src"), str(BENCH)])}
    argv = [sys.executable, "-c", INSTANCE, mode, url, str(PUBLISHES)]
    return subprocess.Popen(pinned(SERVER_CPU, argv), stdout=subprocess.PIPE, text=True, env=env)


def instance_publish(url: str) -> float:
    """µs of CPU per publish put on Redis, on the publishing instance."""
    proc = instance("publish", url)
    out, _ = proc.communicate(timeout=300)
    return float(out.split()[-1])


async def instance_receive(url: str) -> float:
    """µs of CPU per bus message on an instance with one local member of the topic."""
    proc = instance("receive", url)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise RuntimeError("the receiving instance did not start")
    channel, message = envelope()
    publisher = Redis.from_url(url)
    before = cpu_ticks(proc.pid)
    for _ in range(PUBLISHES // BATCH):
        async with publisher.pipeline(transaction=False) as pipe:
            for _ in range(BATCH):
                pipe.publish(channel, message)
            await pipe.execute()
    await publisher.aclose()
    done = await asyncio.to_thread(proc.stdout.readline)
    used = (cpu_ticks(proc.pid) - before) / TICK
    proc.wait(timeout=30)
    if done.strip() != "done":
        raise RuntimeError("the receiving instance did not get every message")
    return used / PUBLISHES * 1e6


async def presence(url: str, pid: int) -> dict[str, float]:
    """µs of redis-server CPU per presence join, per read of a topic of 10 members, and per
    leave (RedisPresence's scripts, one at a time)."""
    from crosswire.pubsub.presence import PresenceEntry
    from crosswire.pubsub.redis_presence import RedisPresence

    name = "bench-presence"
    store = RedisPresence(url, instance=name)
    await store.start()
    topics = [f"room:{i}" for i in range(PRESENCE_OPS // 10)]
    costs: dict[str, float] = {}

    async def measure(op: str, call: Callable[[int], Awaitable[object]]) -> None:
        before = cpu_ticks(pid)
        for i in range(PRESENCE_OPS):
            await call(i)
        costs[op] = (cpu_ticks(pid) - before) / TICK / PRESENCE_OPS * 1e6

    def join(i: int) -> Awaitable[object]:
        return store.add(topics[i // 10], PresenceEntry(f"c{i}", None, {"name": "x"}, name))

    await measure("join", join)
    await measure("members", lambda i: store.members(topics[i % len(topics)]))
    await measure("leave", lambda i: store.remove(topics[i // 10], f"c{i}"))
    await store.aclose()
    return costs


def main() -> None:
    results: dict[int, list[float]] = {k: [] for k in KS}
    sides: dict[str, list[float]] = {"publish": [], "receive": []}
    presences: list[dict[str, float]] = []
    with redis_server() as (url, pid):
        for _ in range(REPS):
            for k in KS:
                results[k].append(asyncio.run(one(url, pid, k)))
            sides["publish"].append(instance_publish(url))
            sides["receive"].append(asyncio.run(instance_receive(url)))
            presences.append(asyncio.run(presence(url, pid)))
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
    for side, what in (("publish", "publishing"), ("receive", "receiving")):
        runs = sides[side]
        line = {f"instance_us_per_{side}": round(statistics.median(runs), 2), "runs": runs}
        print(json.dumps({"instance": what, **line}))
    line = {
        f"redis_us_per_presence_{op}": round(statistics.median(r[op] for r in presences), 2)
        for op in ("join", "members", "leave")
    }
    print(json.dumps({**line, "runs": presences}))


if __name__ == "__main__":
    main()
