"""The server's CPU per message on crosswire's hot paths, in one process, without sockets.

    .venv/bin/python bench/hotpath.py                    # this tree
    .venv/bin/python bench/hotpath.py --against dbaab80  # this tree and REV, alternating

The socket benchmark (``bench/run.py``) measures whole servers, and on this 2-core machine its
figures move by ±10-40% between runs: too much to tell whether a change of the router made a
message 5% dearer. This one measures only crosswire's own work: the benchmark's typed App
(``bench/servers.py``: the ECHO RPC, and PUB published as NEWS to topic ``"b"``) gets frames
from an in-memory transport that counts what it is asked to send, so the time is the
router's (decode, dispatch, validate, handler, encode) and the Hub's fan-out, nothing else.
The ``picows listener`` rows hand real picows frames (``_make_test_ws_frame``) to the raw
picows echo of ``bench/servers.py`` and to crosswire's picows listener (hooks echo, typed
RPC), over a real picows WSTransport whose asyncio transport counts what picows writes (no
system call): the Python that each costs per message, the part of a picows server that is not
the kernel's or picows' own; and to ``bench/servers.py``'s floor of a typed RPC (msgspec, a
Python handler, no framework). crosswire's picows read path runs compiled where it is built
(``src/crosswire/adapters/_picows_read.py``); the tree of ``--against`` is not built, so there
it runs as Python, as it does anywhere with ``CROSSWIRE_NO_EXTENSIONS=1``.

Each measurement runs in a fresh interpreter (the revision's ``src`` first on its path) and
keeps the best of five batches (as ``timeit`` does: on a shared VM, noise only adds time);
the revisions alternate, and each prints µs of CPU per message: the median of ``--reps``
runs and their spread (max-min over median).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: What the probe measures, in µs of CPU: (key, what).
METRICS = (
    ("rpc", "typed RPC per call, pydantic models (peer to reply)"),
    ("rpc_struct", "typed RPC per call, {text: str} schemas (fast lane)"),
    ("rpc_payload", "typed RPC per call, {text: str}, payload handler"),
    ("fanout", "fan-out per delivery, 1,000 subscribers"),
    ("picows_raw", "picows listener: raw echo (bench/servers.py's)"),
    ("picows_hooks", "picows listener: crosswire hooks echo"),
    ("picows_typed", "picows listener: crosswire typed RPC, pydantic"),
    ("picows_struct", "picows listener: crosswire typed RPC, {text: str}"),
    ("picows_payload", "picows listener: crosswire typed RPC, payload handler"),
    ("picows_floor", "picows listener: the floor of a typed RPC (no framework)"),
)

#: One measurement, run in a fresh interpreter: prints {metric: µs} (see METRICS).
PROBE = r"""
import asyncio, json, logging, socket, sys, time
sys.path.insert(0, sys.argv[1])  # bench/ (servers.py)
import crosswire
from crosswire.http import Accept, Headers, Request
from crosswire.adapters.picows import _Listener
from picows import WSListener, WSMsgType, WSTransport
from picows.picows import _make_test_ws_frame
import servers

assert crosswire.__file__.startswith(sys.argv[2]), crosswire.__file__

Null = servers.Counting  # (a transport that counts what it is asked to send)

pair = socket.socketpair()  # (picows reads the socket's fd; nothing is sent through it)

class Socket:  # the asyncio transport under a real picows WSTransport: counts what is written
    written = 0
    def set_write_buffer_limits(self, high): pass
    def get_extra_info(self, key, default=None):
        return {"socket": pair[0], "peername": ("127.0.0.1", 50000)}.get(key, default)
    def get_write_buffer_size(self): return 1  # (so picows writes here, not to the socket)
    def is_closing(self): return False
    def write(self, data): self.written += 1
    def pause_reading(self): pass
    def resume_reading(self): pass

TEXT = WSMsgType.TEXT

class RawEcho(WSListener):  # bench/servers.py's raw picows echo
    def on_ws_frame(self, transport, frame):
        kind = frame.msg_type
        if kind is TEXT:
            data = frame.get_payload_as_bytes()
            if data == b"sub":
                pass
            elif data.startswith(b"pub:"):
                pass
            else:
                transport.send(kind, data)

request = Request("/", "", Headers([("upgrade", "websocket")]), "127.0.0.1")
n = int(sys.argv[3])
RPC = '{"type":"ECHO","meta":{"correlationId":"c1"},"payload":{"text":"%s"}}' % ("x" * 64)

def best(call, *args):
    for _ in range(2000):  # warm up
        call(*args)
    cost = float("inf")
    for _ in range(5):  # the best of five batches: what the code costs, not the noise
        start = time.process_time()
        for _ in range(n // 5):
            call(*args)
        cost = min(cost, (time.process_time() - start) / (n // 5) * 1e6)
    return cost

def connect(app):
    t = Null()
    return app.connect(t, request, Accept()), t

def rpc_cost(app):
    caller, out = connect(app)
    cost = best(caller._receive_data, RPC, False)
    assert out.sent >= n, out.sent
    return cost

def picows_cost(listener, text):
    raw = Socket()
    ws = WSTransport(False, raw, logging.getLogger("probe"), asyncio.get_running_loop())
    if isinstance(listener, _Listener):
        listener.on_ws_connected(ws)
    frame = _make_test_ws_frame(TEXT, text.encode(), True, False)  # (last in its read)
    cost = best(listener.on_ws_frame, ws, frame)
    assert raw.written >= n, raw.written
    return cost

async def main():
    result = {"rpc": rpc_cost(servers.typed_app())}
    app = servers.typed_app("struct")
    result["rpc_struct"] = rpc_cost(app)
    echo = "x" * 100
    result["picows_raw"] = picows_cost(RawEcho(), echo)
    hooks = servers.crosswire_app()
    result["picows_hooks"] = picows_cost(_Listener(hooks, request, Accept()), echo)
    typed = servers.typed_app()
    result["picows_typed"] = picows_cost(_Listener(typed, request, Accept()), RPC)
    result["picows_struct"] = picows_cost(_Listener(app, request, Accept()), RPC)
    try:  # (a revision before router.rpc(..., takes="payload") does not measure it)
        answering = servers.typed_app("struct", "payload")
    except TypeError:
        pass
    else:
        result["rpc_payload"] = rpc_cost(answering)
        answering = servers.typed_app("struct", "payload")
        result["picows_payload"] = picows_cost(_Listener(answering, request, Accept()), RPC)
    result["picows_floor"] = picows_cost(servers.floor_listener()(), RPC)

    caller, out = connect(app)
    receive = caller._receive_data
    await asyncio.sleep(0)
    subs = [connect(app) for _ in range(1000)]
    for peer, _ in subs:
        peer._receive_data('{"type":"SUB","meta":{"correlationId":"s"}}', False)
    await asyncio.sleep(0)
    pub = '{"type":"PUB","payload":{"text":"%s"}}' % ("y" * 64)
    for _ in range(20):
        receive(pub, False)
    before = sum(t.sent for _, t in subs)
    m = max(n // 5000, 20)
    fanout = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(m):
            receive(pub, False)
        fanout = min(fanout, (time.process_time() - start) / (m * 1000) * 1e6)
    assert sum(t.sent for _, t in subs) - before == 5 * m * 1000
    result["fanout"] = fanout
    print(json.dumps(result))

asyncio.run(main())
"""


def source_of(rev: str | None) -> Path:
    """``src/`` of this tree, or of ``bench/results/against-<rev>`` (``run.py --against``
    makes that worktree; this script reuses it, or makes it the same way)."""
    if rev is None:
        return ROOT / "src"
    short = subprocess.check_output(["git", "rev-parse", "--short", rev], cwd=ROOT, text=True)
    tree = ROOT / "bench" / "results" / f"against-{short.strip()}"
    if not tree.exists():
        subprocess.check_call(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT)
    return tree / "src"


def measure(src: Path, n: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.check_output(
        [sys.executable, "-c", PROBE, str(ROOT / "bench"), str(src), str(n)], env=env, text=True
    )
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="also measure the crosswire of this git revision")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    trees = {"current": source_of(None)}
    if args.against:
        trees[args.against] = source_of(args.against)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for rep in range(args.reps):
        order = list(trees) if rep % 2 == 0 else list(reversed(trees))
        for name in order:
            samples[name].append(measure(trees[name], args.calls))
    names = list(trees)
    print(f"{'µs of CPU per message':<58}" + "".join(f"{n:>18}" for n in names), end="")
    print(f"{'ratio':>8}" if args.against else "")
    for key, what in METRICS:
        row = f"{what:<58}"
        medians: list[float | None] = []
        for name in names:
            values = [r[key] for r in samples[name] if key in r]
            if not values:  # (a revision whose probe did not measure it)
                row += f"{'-':>18}"
                medians.append(None)
                continue
            med = statistics.median(values)
            medians.append(med)
            spread = (max(values) - min(values)) / med * 100
            row += f"{med:>11.3f} {f'±{spread / 2:.0f}%':>6}"
        new, old = medians[0], medians[-1]
        if args.against and new is not None and old is not None:
            row += f"{new / old:>7.2f}x"
        print(row)
    if args.against:
        print(f"ratio: current / {args.against} (below 1: current is cheaper)")


if __name__ == "__main__":
    main()
