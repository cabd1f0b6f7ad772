"""What topic history costs, and how fast clients recover (issue 16).

    .venv/bin/python bench/history.py                 # both parts
    .venv/bin/python bench/history.py --part publish  # history on vs off on the publish path
    .venv/bin/python bench/history.py --part recover  # 1,000 clients recover 1,000 events each

**publish**: in one process, without sockets (as ``bench/hotpath.py``), one typed event to
1,000 subscribers of a topic, on a topic without history, one with history (in memory), and
one with history whose subscribers all asked for positions; alternating rounds, the best of
five batches each, the median of ``--reps`` rounds: µs of CPU per publication (fan-out
included) and the ratio to no history.

**recover**: one server process (``crosswire run tests.apps.news:app``, pinned to CPU 0) on a
redis-server of its own; 1,000 clients (this process, CPU 1) join ``news:bench`` asking for
positions, and leave; 1,000 events are published and kept in Redis; then the 1,000 clients
connect again at once and join with their last position. Printed: the time from the first
reconnect to the last client having all 1,000 missed events (1,000,000 frames), and the server
process's CPU seconds meanwhile. The clients are Python (websockets): at 1,000,000 frames they
may be the bottleneck, which the server's CPU share tells.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import run  # noqa: E402  (bench/run.py: redis_server(), pinned())


def publish_part(reps: int) -> None:
    import orjson

    import crosswire
    from crosswire.http import Accept, Headers, Request

    class Null:
        cork = None

        def bind(self, peer: Any) -> None: ...
        def send_text(self, payload: Any) -> None: ...
        def send_binary(self, payload: Any) -> None: ...
        def buffered_amount(self) -> int:
            return 0

        def close(self, code: int, reason: str) -> None: ...
        def abort(self) -> None: ...
        def pause_reading(self) -> None: ...
        def resume_reading(self) -> None: ...

    News = crosswire.message("NEWS", {"text": str})

    async def per_publish(topic: str, positioned: bool) -> float:
        router = crosswire.Router()
        router.topic("plain")
        router.topic("kept", history=crosswire.History(size=1000, ttl=None))
        app = crosswire.App(router)
        request = Request("/", "", Headers([("upgrade", "websocket")]), "127.0.0.1")
        body: dict[str, Any] = {"topic": topic} | ({"recover": {}} if positioned else {})
        join = orjson.dumps({"type": "$ws:join", "payload": body}).decode()
        for _ in range(1000):
            peer = app.connect(Null(), request, Accept())  # type: ignore[arg-type]
            peer._receive_data(join, False)
        await asyncio.sleep(0)
        payload = {"text": "x" * 64}
        best = float("inf")
        for _ in range(5):
            start = time.process_time()
            for _ in range(200):
                router.publish(topic, News, payload)
            best = min(best, (time.process_time() - start) / 200 * 1e6)
        return best

    cases = {"no history": ("plain", False), "history": ("kept", False),
             "history, positioned": ("kept", True)}  # fmt: skip
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for rep in range(reps):
        order = list(cases) if rep % 2 == 0 else list(reversed(cases))
        for name in order:
            samples[name].append(asyncio.run(per_publish(*cases[name])))
    base = statistics.median(samples["no history"])
    print("publish to 1,000 subscribers, µs of CPU per publication (median, spread):")
    for name, values in samples.items():
        med = statistics.median(values)
        spread = (max(values) - min(values)) / med * 50
        print(f"  {name:<22} {med:8.1f}  ±{spread:.0f}%  {med / base:.2f}x")


async def recover_part(clients: int, events: int) -> None:
    import orjson
    from redis.asyncio import Redis
    from websockets.asyncio.client import connect

    with run.redis_server() as url:
        env = {**os.environ, "CROSSWIRE_REDIS_URL": url, "PYTHONPATH": str(ROOT / "src")}
        argv = [str(Path(sys.executable).parent / "crosswire"), "run", "tests.apps.news:app",
                "--port", "0"]  # fmt: skip
        server = subprocess.Popen(  # noqa: ASYNC220 (started once, before the clock)
            run.pinned(run.SERVER_CPU, argv), cwd=ROOT, env=env, stdout=subprocess.PIPE
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline().decode()
            ws_url = line.split("on ")[1].split()[0]
            sockets = [await connect(ws_url, max_queue=None) for _ in range(clients)]
            join = {"type": "$ws:join", "payload": {"topic": "news:bench", "recover": {}}}
            for ws in sockets:
                await ws.send(orjson.dumps(join))
            epochs = {orjson.loads(await ws.recv())["payload"]["epoch"] for ws in sockets}
            assert len(epochs) == 1, epochs
            (epoch,) = epochs
            for ws in sockets:
                await ws.close()
            publisher = await connect(ws_url)
            for n in range(1, events + 1):
                frame = {"type": "PUB", "payload": {"topic": "news:bench", "n": n}}
                await publisher.send(orjson.dumps(frame))
            redis = Redis.from_url(url)
            while int(await redis.get("ws:offset:news:bench") or 0) < events:  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # (until every event is kept in Redis)
            await redis.aclose()
            await publisher.close()
            cpu_before = _cpu_seconds(server.pid)
            start = time.perf_counter()

            async def rejoin() -> None:
                ws = await connect(ws_url, max_queue=None)
                since = {"offset": 0, "epoch": epoch}
                payload = {"topic": "news:bench", "recover": since}
                await ws.send(orjson.dumps({"type": "$ws:join", "payload": payload}))
                ack = orjson.loads(await ws.recv())
                assert ack["payload"]["recovered"] is True, ack
                for _ in range(events):
                    await ws.recv()
                await ws.close()

            await asyncio.gather(*(rejoin() for _ in range(clients)))
            took = time.perf_counter() - start
            cpu = _cpu_seconds(server.pid) - cpu_before
            frames = clients * events
            print(f"recover: {clients:,} clients x {events:,} missed events = {frames:,} frames")
            share = cpu / took * 100
            print(
                f"  {took:.2f} s from the first reconnect to the last event "
                f"({frames / took:,.0f} frames/s); server CPU {cpu:.2f} s "
                f"({share:.0f}% of a core, {cpu / frames * 1e6:.1f} µs per frame)"
            )
        finally:
            server.kill()
            server.wait()


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["publish", "recover", "both"], default="both")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1000)
    args = parser.parse_args()
    if args.part in ("publish", "both"):
        publish_part(args.reps)
    if args.part in ("recover", "both"):
        asyncio.run(recover_part(args.clients, args.events))


if __name__ == "__main__":
    main()
