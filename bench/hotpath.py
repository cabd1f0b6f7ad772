"""The server's CPU per message on crosswire's hot paths, in one process, without sockets.

    .venv/bin/python bench/hotpath.py                    # this tree
    .venv/bin/python bench/hotpath.py --against dbaab80  # this tree and REV, alternating

The socket benchmark (``bench/run.py``) measures whole servers, and on this 2-core machine its
figures move by ±10-40% between runs: too much to tell whether a change of the router made a
message 5% dearer. This one measures only crosswire's own work: the benchmark's typed App
(``bench/servers.py``: the ECHO RPC, and PUB published as NEWS to topic ``"b"``) gets frames
from an in-memory transport that counts what it is asked to send, so the time is the
router's (decode, dispatch, validate, handler, encode) and the Hub's fan-out, nothing else.

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

#: One measurement, run in a fresh interpreter: prints {"rpc": µs/call ({"text": str} schemas),
#: "rpc_pydantic": µs/call (pydantic models), "fanout": µs/delivery}.
PROBE = r"""
import asyncio, json, sys, time
sys.path.insert(0, sys.argv[1])  # bench/ (servers.py)
import crosswire
from crosswire.http import Accept, Headers, Request
import servers

assert crosswire.__file__.startswith(sys.argv[2]), crosswire.__file__

class Null:
    cork = None
    sent = 0
    def bind(self, peer): pass
    def send_text(self, payload): self.sent += 1
    def send_binary(self, payload): self.sent += 1
    def buffered_amount(self): return 0
    def close(self, code, reason): pass
    def abort(self): pass
    def pause_reading(self): pass
    def resume_reading(self): pass

request = Request("/", "", Headers([("upgrade", "websocket")]), "127.0.0.1")
n = int(sys.argv[3])

def connect(app):
    t = Null()
    return app.connect(t, request, Accept()), t

def rpc_cost(app):
    caller, out = connect(app)
    frame = '{"type":"ECHO","meta":{"correlationId":"c1"},"payload":{"text":"%s"}}' % ("x" * 64)
    receive = caller._receive_data
    for _ in range(2000):  # warm up
        receive(frame, False)
    best = float("inf")
    for _ in range(5):  # the best of five batches: what the code costs, not the noise
        start = time.process_time()
        for _ in range(n // 5):
            receive(frame, False)
        best = min(best, (time.process_time() - start) / (n // 5) * 1e6)
    assert out.sent >= n, out.sent
    return best

async def main():
    rpc_pydantic = rpc_cost(servers.typed_app("pydantic"))
    app = servers.typed_app()
    rpc = rpc_cost(app)
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
    print(json.dumps({"rpc": rpc, "rpc_pydantic": rpc_pydantic, "fanout": fanout}))

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
    header = (
        f"{'rpc µs/call':>12} {'spread':>7} {'pydantic rpc':>13} {'spread':>7} "
        f"{'fanout µs/delivery':>19} {'spread':>7}"
    )
    print(f"{'tree':<12} {header}")
    medians: dict[str, dict[str, float]] = {}
    for name, runs in samples.items():
        row = [f"{name:<12}"]
        medians[name] = {}
        for key, width in (("rpc", 12), ("rpc_pydantic", 13), ("fanout", 19)):
            values = [r[key] for r in runs]
            med = statistics.median(values)
            medians[name][key] = med
            spread = (max(values) - min(values)) / med * 100
            row.append(f"{med:>{width}.2f} {f'±{spread / 2:.0f}%':>7}")
        print(" ".join(row))
    if args.against:
        new, old = medians["current"], medians[args.against]
        print(
            f"current / {args.against}, CPU per message (below 1: current is cheaper): "
            f"rpc {new['rpc'] / old['rpc']:.2f}x, pydantic rpc "
            f"{new['rpc_pydantic'] / old['rpc_pydantic']:.2f}x, "
            f"fanout {new['fanout'] / old['fanout']:.2f}x"
        )


if __name__ == "__main__":
    main()
