"""Benchmark crosswire against the raw servers it runs on, in the same run.

    .venv/bin/python bench/run.py            # full run: 5 rounds, about 30 minutes
    .venv/bin/python bench/run.py --quick    # short run, about 2 minutes
    .venv/bin/python bench/run.py --only picows --scenarios echo --profile
    .venv/bin/python bench/run.py --only picows --scenarios cluster   # fan-out through Redis
    .venv/bin/python bench/run.py --only picows --scenarios split     # subscribers on 2 instances
    .venv/bin/python bench/run.py --only picows --scenarios fanout    # typed fan-out
    .venv/bin/python bench/run.py --scenarios rpc,fanout --against main  # before/after

Each server (bench/servers.py) runs in its own Python process pinned to CPU 0; the load
generator runs pinned to CPU 1. The generator is bench/loadgen.c, which this script builds
with the system's gcc into bench/results/ on first use (``--generator node`` runs the older
bench/load.mjs instead). Echo and RPC run with one request in flight per connection (1, 10
and 100 connections) and pipelined (16 in flight on 10 connections). Raw server and
crosswire on that server alternate, each on a fresh server process, for 5 rounds; the table
gives the median of each figure, its spread, the server's CPU time per message, the
latency percentiles, the generator's own CPU, and flags the cells where the generator was
the limit (over 90% of its core). The ratio is crosswire / raw for the same underlying
server, and typed RPC / raw picows' echo. The cluster scenario compares fan-out through two
crosswire instances and a redis-server (publisher on one, subscribers on the other) with
single-instance fan-out on the same server; the split scenario puts half the subscribers on
each of two instances, both instances and redis-server on the server's core. The fanout
scenario compares typed fan-out through a Router (SUB, PUB, NEWS in the canonical dialect)
with the hooks layer's broadcast on the same server. ``--against REV`` also runs every
server that imports crosswire with the crosswire of revision REV (a git worktree under
bench/results/), in the same run, rows named ``typed-picows@<rev>``, and gives the ratio
current / REV. All runs also go to bench/results/latest.json. docs/performance.md explains
the method.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import pstats
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
PYTHON = sys.executable
BASES = ("websockets", "aiohttp", "picows", "uvicorn", "hypercorn")
KINDS = ("raw", "crosswire")
SCENARIOS = ("echo", "broadcast", "fanout", "memory", "rpc", "cluster", "split")
#: The cluster and split scenarios: one instance ("crosswire") against two on Redis ("redis").
CLUSTER_KINDS = ("crosswire", "redis")
CLUSTER_GOAL = 0.7  # issue 4: fan-out through two instances and Redis >= 0.7x one instance
SPLIT_GOAL = 0.9  # issue 19: subscribers split over two instances >= 0.9x one instance
#: The typed-RPC comparison (scenario "rpc"): every row against raw picows' echo.
RPC_SERVERS = (
    "raw-picows",
    "typed-picows",
    "struct-picows",  # the same App, its payloads {"text": str} mappings (msgspec)
    "payload-picows",  # struct's, its handler taking the payload (takes="payload")
    "floor-picows",  # no framework: the least a typed RPC costs in Python (bench/servers.py)
    "typed-websockets",
    "raw-websockets",
    "socketio-aiohttp",
)
#: How the verdicts name the typed rows.
RPC_KINDS = {"struct": "struct", "payload": "struct, payload handler,"}
RPC_BASELINE = "raw-picows"
RPC_GOAL = 0.8  # issue 19: typed RPC at one request in flight >= 0.8x raw picows' echo
RPC_CPU_BUDGET = 1.5  # issue 19: ... and at most 1.5 µs more server CPU per call
#: A cell whose load generator used more of its core than this is flagged: the generator,
#: not the server, may have been the limit.
GENERATOR_BOUND = 0.9
#: Typed fan-out (scenario "fanout"): each typed row against the hooks layer's broadcast
#: ("crosswire-*") on the same server.
FANOUT_SERVERS = (
    "crosswire-websockets",
    "typed-websockets",
    "crosswire-picows",
    "typed-picows",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")

SERVER_CPU = "0"
CLIENT_CPU = "1"
#: The servers that import crosswire: the ones ``--against`` runs on another revision too.
CROSSWIRE_KINDS = ("crosswire", "typed", "struct", "payload", "redis")


@dataclass(frozen=True)
class Code:
    """The crosswire a server imports: the current tree's ``src/`` (``rev`` empty), or the
    ``src/`` of a worktree of another revision (``--against``), first on its PYTHONPATH."""

    rev: str = ""  # short commit of the other revision; "" for the current tree
    commit: str = ""  # its full commit
    src: Path = ROOT / "src"

    @property
    def suffix(self) -> str:
        """What the names of this code's rows end with: ``@<rev>``, or nothing."""
        return f"@{self.rev}" if self.rev else ""

    def env(self) -> dict[str, str]:
        """The server's environment changes: another revision's ``src/`` before anything."""
        if not self.rev:
            return {}
        path = [str(self.src), *filter(None, [os.environ.get("PYTHONPATH")])]
        return {"PYTHONPATH": os.pathsep.join(path)}


HERE = Code()
#: Where each code's servers imported crosswire from ("current" or the rev), as they said.
IMPORTED: dict[str, str] = {}


@dataclass(frozen=True)
class Settings:
    echo_conns: tuple[int, ...] = (1, 10, 100)  # echo and rpc with one request in flight
    pipelined_conns: tuple[int, ...] = (10,)  # echo and rpc with echo_window in flight
    echo_window: int = 16  # messages in flight per connection when pipelined
    broadcast_subs: tuple[int, ...] = (1000, 5000)
    broadcast_window: int = 8  # broadcasts outstanding (sent, not yet at every subscriber)
    idle_conns: int = 2000
    size: int = 100  # bytes per message
    warmup: float = 0.5  # seconds of load before counting starts
    duration: float = 1.0  # seconds counted
    rounds: int = 5  # runs per server (but memory: one); the table gives the median
    concurrency: int = 100  # WebSocket handshakes in flight while connecting
    load_args: tuple[str, ...] = ()  # extra options for the load generator (--load-args)


FULL = Settings()
QUICK = Settings(
    echo_conns=(1, 10),
    pipelined_conns=(10,),
    broadcast_subs=(500,),
    idle_conns=500,
    warmup=0.3,
    duration=1.0,
    rounds=1,
)


@dataclass
class Sample:
    """One measurement: one load run against one server process."""

    scenario: str  # one of SCENARIOS
    param: int  # connections (echo, rpc, memory) or subscribers (broadcast, fanout, ...)
    base: str  # websockets / aiohttp / picows / uvicorn / hypercorn
    kind: str  # raw / crosswire / typed / struct / redis / socketio
    value: float  # messages/s, deliveries/s or KiB per connection
    server_cpu: float | None = None  # share of CPU 0 the server used while measured
    client_cpu: float | None = None  # share of CPU 1 the load generator used
    other_cpu: float | None = None  # CPU (in cores) used by the rest of the machine meanwhile
    extra: dict[str, Any] = field(default_factory=dict)
    rev: str = ""  # the crosswire it ran: "" for the current tree, else --against's short rev
    window: int = 0  # echo and rpc: requests in flight per connection (0: other scenarios)
    latency_us: dict[str, float] | None = None  # echo and rpc: p50, p99 ... (C generator)


UNITS = {
    "echo": "msg/s",
    "broadcast": "deliveries/s",
    "fanout": "deliveries/s",
    "memory": "KiB/conn",
    "rpc": "msg/s",
    "cluster": "deliveries/s",
    "split": "deliveries/s",
}


#: What identifies a summary: (scenario, param, window, base, kind, rev).
Key = tuple[str, int, int, str, str, str]


@dataclass
class Summary:
    """The samples of one (scenario, param, server): median and spread."""

    scenario: str
    param: int
    window: int
    base: str
    kind: str
    rev: str
    samples: list[Sample]

    @property
    def key(self) -> Key:
        return (self.scenario, self.param, self.window, self.base, self.kind, self.rev)

    @property
    def at(self) -> str:
        """``@<rev>`` for a row of ``--against``'s revision, else nothing."""
        return f"@{self.rev}" if self.rev else ""

    @property
    def server(self) -> str:
        return f"{self.kind}-{self.base}{self.at}"

    @property
    def unit(self) -> str:
        return UNITS[self.scenario]

    @property
    def value(self) -> float:
        return statistics.median(x.value for x in self.samples)

    @property
    def low(self) -> float:
        return min(x.value for x in self.samples)

    @property
    def high(self) -> float:
        return max(x.value for x in self.samples)

    def _median(self, attr: str) -> float | None:
        values = [v for x in self.samples if (v := getattr(x, attr)) is not None]
        return statistics.median(values) if values else None

    @property
    def server_cpu(self) -> float | None:
        return self._median("server_cpu")

    @property
    def client_cpu(self) -> float | None:
        return self._median("client_cpu")

    @property
    def generator_bound(self) -> bool:
        """Whether the load generator used more than GENERATOR_BOUND of its core (median)."""
        return (self.client_cpu or 0.0) > GENERATOR_BOUND

    @property
    def server_bound(self) -> bool:
        return (self.server_cpu or 0.0) > GENERATOR_BOUND

    def latency(self, which: str) -> float | None:
        """The median over runs of one latency percentile (``p50``, ``p99``) in µs."""
        values = [x.latency_us[which] for x in self.samples if x.latency_us]
        return statistics.median(values) if values else None

    @property
    def other_cpu(self) -> float | None:
        """The most CPU the rest of the machine used during one of these runs."""
        values = [x.other_cpu for x in self.samples if x.other_cpu is not None]
        return max(values) if values else None

    @property
    def cpu_us(self) -> float | None:
        """Server CPU time per message (per delivery), in microseconds: median over runs."""
        values = [x.server_cpu * 1e6 / x.value for x in self.samples if x.server_cpu and x.value]
        return statistics.median(values) if values else None

    @property
    def in_flight(self) -> str:
        """How many requests each connection keeps in flight, for echo and rpc."""
        return "1 in flight" if self.window == 1 else f"{self.window} in flight (pipelined)"

    @property
    def label(self) -> str:
        if self.scenario == "echo":
            return f"echo, {self.param} conn, {self.in_flight}"
        if self.scenario == "broadcast":
            return f"broadcast, {self.param} subs"
        if self.scenario == "fanout":
            return f"fanout, {self.param} subs"
        if self.scenario == "rpc":
            return f"rpc echo, {self.param} conn, {self.in_flight}"
        if self.scenario == "cluster":
            return f"fan-out, {self.param} subs, {2 if self.kind == 'redis' else 1} instance(s)"
        if self.scenario == "split":
            where = "2 instances + Redis, one core" if self.kind == "redis" else "1 instance"
            return f"split fan-out, {self.param} subs, {where}"
        return f"memory, {self.param} idle"


def summarize(samples: list[Sample]) -> list[Summary]:
    groups: dict[Key, list[Sample]] = {}
    for x in samples:
        groups.setdefault((x.scenario, x.param, x.window, x.base, x.kind, x.rev), []).append(x)
    return [Summary(*key, group) for key, group in groups.items()]


# -- processes -------------------------------------------------------------------------------


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < 12000:
        print(f"warning: open-file limit is {soft}; 5,000 connections may fail", file=sys.stderr)


def pinned(cpu: str, argv: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", cpu, *argv]
    return argv


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


def busy_ticks() -> int:
    """User + nice + system ticks of all CPUs (irq and softirq time left out)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()  # the "cpu" line: totals over all CPUs
    return int(fields[1]) + int(fields[2]) + int(fields[3])


BUSY = 0.15  # CPU (in cores) other processes may use during a run before it is redone


def wait_quiet(limit: float = 60.0) -> float:
    """Wait until the rest of the machine uses under BUSY of a CPU (at most ``limit`` s)."""
    deadline = time.monotonic() + limit
    while True:
        b0, t0 = busy_ticks(), time.monotonic()
        time.sleep(0.5)
        load = (busy_ticks() - b0) / CLK_TCK / (time.monotonic() - t0)
        if load < BUSY or time.monotonic() > deadline:
            return load


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextlib.contextmanager
def server(
    name: str,
    profile: Path | None = None,
    *,
    kill: bool = False,
    cpu: str = SERVER_CPU,
    env: dict[str, str] | None = None,
    code: Code = HERE,
) -> Iterator[tuple[int, int]]:
    """Start ``bench/servers.py NAME`` on ``cpu`` (CPU 0) with the crosswire of ``code``;
    yields ``(pid, port)``.

    On exit the server gets SIGTERM (graceful), or SIGKILL with ``kill=True``: after a
    5,000-subscriber run a graceful shutdown only costs time. Profiled servers always stop
    gracefully, as they write their profile on the way out.
    """
    env = {**os.environ, **(env or {}), **code.env()}
    if profile is not None:
        env["BENCH_PROFILE"] = str(profile)
        kill = False
    proc = subprocess.Popen(
        pinned(cpu, [PYTHON, str(BENCH / "servers.py"), name]),
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.startswith("crosswire "):
            check_import(name, code, line.split(" ", 1)[1].strip())
            line = proc.stdout.readline()
        elif code.rev and line.strip().isdigit():
            raise RuntimeError(f"server {name}{code.suffix} did not say which crosswire it runs")
        if not line.strip().isdigit():
            hint = f" (can {code.rev} serve this bench/servers.py?)" if code.rev else ""
            raise RuntimeError(f"server {name}{code.suffix} did not start{hint}: printed {line!r}")
        yield proc.pid, int(line)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def check_import(name: str, code: Code, path: str) -> None:
    """Fail unless the server ``name`` imported crosswire from ``code``'s ``src/``."""
    where = Path(path).resolve()
    if not where.is_relative_to(code.src.resolve()):
        raise RuntimeError(
            f"server {name}{code.suffix} imported crosswire from {where}, not from {code.src}"
        )
    IMPORTED.setdefault(code.rev or "current", str(where))


LOADGEN_SOURCE = BENCH / "loadgen.c"
GENERATORS = ("c", "node")
#: Which load generator Load runs: "c" (bench/loadgen.c) or "node" (bench/load.mjs).
GENERATOR = "c"
CFLAGS = ("-O2", "-Wall", "-Wextra")


def build_loadgen(into: Path = RESULTS) -> Path:
    """Compile bench/loadgen.c with the system's gcc into ``into`` (once per version of the
    source: the binary's name holds the source's hash); returns the binary's path.

    Raises RuntimeError if gcc is missing or the build fails."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError("gcc not found: the C load generator (bench/loadgen.c) needs it")
    digest = hashlib.sha256(LOADGEN_SOURCE.read_bytes() + " ".join(CFLAGS).encode())
    binary = into / f"loadgen-{digest.hexdigest()[:12]}"
    if binary.is_file():
        return binary
    into.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f"{binary.name}.{os.getpid()}.tmp")
    built = subprocess.run(
        [gcc, *CFLAGS, "-o", str(partial), str(LOADGEN_SOURCE)], capture_output=True, text=True
    )
    if built.returncode != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"gcc could not build {LOADGEN_SOURCE}:\n{built.stderr}")
    partial.replace(binary)  # atomic: a concurrent build of the same source is the same file
    return binary


def generator_argv() -> list[str]:
    """The command of the load generator, without its options."""
    if GENERATOR == "node":
        return ["node", str(BENCH / "load.mjs")]
    return [str(build_loadgen())]


class Load:
    """One run of the load generator (bench/loadgen.c, or bench/load.mjs with ``--generator
    node``; same options and output) on CPU 1; reads its JSON lines."""

    def __init__(
        self, port: int, args: list[str], *, stdin: bool = False, scheme: str = "ws"
    ) -> None:
        argv = [*generator_argv(), "--url", f"{scheme}://127.0.0.1:{port}/", *args]
        self.proc = subprocess.Popen(
            pinned(CLIENT_CPU, argv),
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            text=True,
            cwd=BENCH,
        )

    def until(self, name: str) -> dict[str, Any]:
        """Read events up to the next one called ``name``."""
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        while True:
            line = out.readline()
            if not line:
                code = self.proc.wait()
                raise RuntimeError(f"load generator exited ({code}) before {name!r}")
            if not line.startswith("{"):
                continue
            event: dict[str, Any] = json.loads(line)
            if event.get("event") == "error":
                raise RuntimeError(f"load generator: {event.get('message')}")
            if event.get("event") == name:
                return event

    def finish(self, timeout: float = 30) -> None:
        """Let the load generator close its connections and exit (closing stdin ends idle mode)."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- scenarios -------------------------------------------------------------------------------


def common(s: Settings) -> list[str]:
    return [
        "--size", str(s.size),
        "--warmup", str(s.warmup),
        "--duration", str(s.duration),
        "--concurrency", str(s.concurrency),
        *s.load_args,
    ]  # fmt: skip


def measure(load: Load, *pids: int) -> tuple[dict[str, Any], float, float]:
    """Read one result from ``load``; returns it, the CPU share of the server's core that the
    processes ``pids`` used together over the counted seconds, and the CPU (in cores) that
    other processes of the machine used meanwhile."""

    def server_ticks() -> int:
        return sum(cpu_ticks(pid) for pid in pids)

    load.until("measure")
    t0, s0, l0, b0 = time.monotonic(), server_ticks(), cpu_ticks(load.proc.pid), busy_ticks()
    load.until("end")
    t1, s1, l1, b1 = time.monotonic(), server_ticks(), cpu_ticks(load.proc.pid), busy_ticks()
    result = load.until("result")
    wall = t1 - t0
    if wall <= 0:
        return result, 0.0, 0.0
    other = max(0.0, ((b1 - b0) - (s1 - s0) - (l1 - l0)) / CLK_TCK / wall)
    return result, min(1.0, (s1 - s0) / CLK_TCK / wall), other


def cells(s: Settings) -> list[tuple[int, int]]:
    """The (connections, requests in flight per connection) of echo and rpc: one in flight
    at each of ``echo_conns``, then ``echo_window`` in flight at each of ``pipelined_conns``."""
    return [(n, 1) for n in s.echo_conns] + [(n, s.echo_window) for n in s.pipelined_conns]


def latency_of(result: dict[str, Any]) -> dict[str, float] | None:
    """The latency percentiles the C generator reports (µs); None from the Node one."""
    latency: dict[str, float] | None = result.get("latency_us")
    return latency


def run_echo(
    base: str, kind: str, s: Settings, profile: Path | None, code: Code = HERE
) -> list[Sample]:
    """Echo with one message in flight on 1, 10 and 100 connections, then pipelined, one
    after the other on one server process."""
    samples = []
    with server(f"{kind}-{base}", profile, code=code) as (pid, port):
        for conns, window in cells(s):
            args = ["--mode", "echo", "--conns", str(conns), "--window", str(window)]
            load = Load(port, args + common(s))
            try:
                r, srv_cpu, other = measure(load, pid)
            finally:
                load.finish()
            if r.get("wrong"):
                print(f"\nwarning: {kind}-{base} sent {r['wrong']} replies of the wrong size")
            samples.append(
                Sample(
                    "echo", conns, base, kind, r["rate"], srv_cpu, r["client_cpu"], other,
                    window=window, latency_us=latency_of(r),
                )
            )  # fmt: skip
    return samples


def run_broadcast(
    base: str, kind: str, s: Settings, profile: Path | None, code: Code = HERE
) -> list[Sample]:
    """Fan-out to each number of subscribers, each on a fresh server process."""
    return fan_out("broadcast", base, kind, s, profile, code)


def run_fanout(
    base: str, kind: str, s: Settings, profile: Path | None, code: Code = HERE
) -> list[Sample]:
    """Fan-out as in broadcast, typed (SUB, PUB, NEWS through a Router) on the typed servers,
    the hooks layer's broadcast on the crosswire ones."""
    return fan_out("fanout", base, kind, s, profile, code, typed=kind == "typed")


def fan_out(
    scenario: str,
    base: str,
    kind: str,
    s: Settings,
    profile: Path | None,
    code: Code,
    *,
    typed: bool = False,
) -> list[Sample]:
    """One publisher and each number of subscribers, each on a fresh server process; with
    ``typed``, the load generator speaks the typed protocol (``load.mjs --typed 1``)."""
    samples = []
    for subs in s.broadcast_subs:
        args = ["--mode", "broadcast", "--subs", str(subs),
                "--bwindow", str(s.broadcast_window), "--typed", str(int(typed))]  # fmt: skip
        with server(f"{kind}-{base}", profile, kill=True, code=code) as (pid, port):
            load = Load(port, args + common(s))
            try:
                r, srv_cpu, other = measure(load, pid)
            except BaseException:
                load.proc.kill()
                raise
        load.finish()
        if not r.get("complete"):
            print(f"\nwarning: {kind}-{base} lost or duplicated broadcasts with {subs} subscribers")
        if r.get("wrong"):
            print(f"\nwarning: {kind}-{base} sent {r['wrong']} frames that were not the broadcast")
        samples.append(
            Sample(
                scenario, subs, base, kind, r["rate"], srv_cpu, r["client_cpu"], other,
                {"broadcasts_per_s": r["broadcasts"] / r["seconds"], "complete": r["complete"],
                 "wrong": r.get("wrong", 0)},
            )
        )  # fmt: skip
    return samples


def run_memory(
    base: str, kind: str, s: Settings, profile: Path | None, code: Code = HERE
) -> list[Sample]:
    """RSS growth of a fresh server process per idle connection."""
    with server(f"{kind}-{base}", profile, kill=True, code=code) as (pid, port):
        # Warm up first (lazy imports, first allocations), so that the difference below is
        # what the idle connections cost.
        warm = Load(port, ["--mode", "idle", "--conns", "50"], stdin=True)
        warm.until("ready")
        warm.finish()
        time.sleep(0.5)
        before = rss_kib(pid)
        load = Load(port, ["--mode", "idle", "--conns", str(s.idle_conns),
                           "--concurrency", str(s.concurrency)], stdin=True)  # fmt: skip
        try:
            load.until("ready")
            time.sleep(0.5)
            after = rss_kib(pid)
        except BaseException:
            load.proc.kill()
            raise
    load.finish()
    per_conn = (after - before) / s.idle_conns
    return [
        Sample(
            "memory", s.idle_conns, base, kind, per_conn,
            extra={"rss_before_kib": before, "rss_after_kib": after},
        )
    ]  # fmt: skip


def run_rpc(
    base: str, kind: str, s: Settings, profile: Path | None, code: Code = HERE
) -> list[Sample]:
    """Request/response at 1, 10 and 100 connections: typed RPC (typed-*), socket.io events
    answered through their ack (socketio-*), or the plain echo of the raw servers."""
    mode, scheme = {
        "typed": ("rpc", "ws"),
        "struct": ("rpc", "ws"),
        "payload": ("rpc", "ws"),
        "floor": ("rpc", "ws"),
        "socketio": ("sio", "http"),
    }.get(kind, ("echo", "ws"))
    samples = []
    with server(f"{kind}-{base}", profile, code=code) as (pid, port):
        for conns, window in cells(s):
            args = ["--mode", mode, "--conns", str(conns), "--window", str(window)]
            load = Load(port, args + common(s), scheme=scheme)
            try:
                r, srv_cpu, other = measure(load, pid)
            finally:
                load.finish()
            if r.get("wrong"):
                print(f"\nwarning: {kind}-{base} sent {r['wrong']} replies that matched no request")
            samples.append(
                Sample(
                    "rpc", conns, base, kind, r["rate"], srv_cpu, r["client_cpu"], other,
                    window=window, latency_us=latency_of(r),
                )
            )  # fmt: skip
    return samples


@contextlib.contextmanager
def redis_server(cpu: str = CLIENT_CPU) -> Iterator[tuple[str, int]]:
    """A redis-server on a free port, pinned to ``cpu`` (the load generator's, unless told);
    yields its URL and its pid."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("the cluster scenario needs redis-server (python3 dev.py test installs it)")
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(pinned(CLIENT_CPU, argv), stdout=subprocess.DEVNULL, cwd=RESULTS)
    try:
        for _ in range(200):
            with socket.socket() as sock, contextlib.suppress(OSError):
                sock.connect(("127.0.0.1", port))
                break
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        proc.kill()
        proc.wait()


def measure_once(load: Load, *pids: int) -> tuple[dict[str, Any], float, float]:
    """:func:`measure` one run of ``load``, which is killed if measuring fails."""
    try:
        measured = measure(load, *pids)
    except BaseException:
        load.proc.kill()
        raise
    load.finish()
    return measured


def broadcast_sample(
    scenario: str,
    subs: int,
    base: str,
    kind: str,
    r: dict[str, Any],
    srv_cpu: float,
    other: float,
    **extra: Any,
) -> Sample:
    """The sample of a fan-out run through Redis (``cluster``, ``split``), with a warning if
    broadcasts were lost or duplicated."""
    if not r.get("complete"):
        print(f"\nwarning: {kind}-{base} lost or duplicated broadcasts with {subs} subscribers")
    rates = {"broadcasts_per_s": r["broadcasts"] / r["seconds"], "complete": r["complete"]}
    return Sample(
        scenario, subs, base, kind, r["rate"], srv_cpu, r["client_cpu"], other, rates | extra
    )


def run_cluster(
    base: str, kind: str, s: Settings, profile: Path | None, code: Code = HERE
) -> list[Sample]:
    """Fan-out with every subscriber on one instance: the publisher on the same instance
    ("crosswire"), or on a second instance that reaches it through Redis ("redis"). The
    subscribers' instance runs on CPU 0 and is measured; the publisher's instance and
    redis-server share CPU 1 with the load generator."""
    samples = []
    for subs in s.broadcast_subs:
        args = ["--mode", "broadcast", "--subs", str(subs),
                "--bwindow", str(s.broadcast_window)]  # fmt: skip
        with contextlib.ExitStack() as stack:
            if kind == "redis":
                RESULTS.mkdir(parents=True, exist_ok=True)
                env = {"BENCH_REDIS_URL": stack.enter_context(redis_server())[0]}
                pid, port = stack.enter_context(
                    server(f"redis-{base}", profile, kill=True, env=env, code=code)
                )
                _, pub_port = stack.enter_context(
                    server(f"redis-{base}", kill=True, cpu=CLIENT_CPU, env=env, code=code)
                )
                args += ["--puburl", f"ws://127.0.0.1:{pub_port}/"]
            else:
                pid, port = stack.enter_context(
                    server(f"crosswire-{base}", profile, kill=True, code=code)
                )
            measured = measure_once(Load(port, args + common(s)), pid)
        samples.append(broadcast_sample("cluster", subs, base, kind, *measured))
    return samples


def run_split(
    base: str, kind: str, s: Settings, profile: Path | None, code: Code = HERE
) -> list[Sample]:
    """Fan-out with the subscribers split over two instances on Redis ("redis"): every
    second subscriber on each, the publisher on the first. Both instances and redis-server
    run on the server's core (CPU 0), and their CPU counts together as the server's. Against
    one instance with every subscriber and the publisher ("crosswire"), as in cluster."""
    if GENERATOR != "c":
        sys.exit("the split scenario needs the C load generator (--generator c)")
    samples = []
    for subs in s.broadcast_subs:
        args = ["--mode", "broadcast", "--subs", str(subs),
                "--bwindow", str(s.broadcast_window)]  # fmt: skip
        with contextlib.ExitStack() as stack:
            if kind == "redis":
                RESULTS.mkdir(parents=True, exist_ok=True)
                url, redis_pid = stack.enter_context(redis_server(SERVER_CPU))
                env = {"BENCH_REDIS_URL": url}
                pid, port = stack.enter_context(
                    server(f"redis-{base}", profile, kill=True, env=env, code=code)
                )
                other_pid, other_port = stack.enter_context(
                    server(f"redis-{base}", kill=True, env=env, code=code)
                )
                args += ["--url2", f"ws://127.0.0.1:{other_port}/"]
                pids: tuple[int, ...] = (pid, other_pid, redis_pid)
            else:
                pid, port = stack.enter_context(
                    server(f"crosswire-{base}", profile, kill=True, code=code)
                )
                pids = (pid,)
            measured = measure_once(Load(port, args + common(s)), *pids)
        samples.append(broadcast_sample("split", subs, base, kind, *measured, processes=len(pids)))
    return samples


RUNNERS = {
    "echo": run_echo,
    "broadcast": run_broadcast,
    "fanout": run_fanout,
    "memory": run_memory,
    "rpc": run_rpc,
    "cluster": run_cluster,
    "split": run_split,
}


# -- reporting -------------------------------------------------------------------------------


def raw_of(summaries: list[Summary], x: Summary) -> Summary | None:
    """The row ``x`` is compared with: for the hooks layer, the raw server it runs on; for
    the RPC scenario, raw picows' echo; for typed fan-out, the hooks layer's broadcast on the
    same server; for fan-out through Redis, fan-out on one instance."""
    if x.scenario == "rpc":
        if x.server == RPC_BASELINE:
            return None
        kind, base = RPC_BASELINE.split("-", 1)
        return find(summaries, ("rpc", x.param, x.window, base, kind, ""))
    if x.scenario in ("cluster", "fanout", "split"):
        if x.kind not in ("redis", "typed"):
            return None
        return find(summaries, (x.scenario, x.param, x.window, x.base, "crosswire", x.rev))
    if x.kind != "crosswire":
        return None
    return find(summaries, (x.scenario, x.param, x.window, x.base, "raw", ""))


def find(summaries: list[Summary], key: Key) -> Summary | None:
    return next((x for x in summaries if x.key == key), None)


def new_of(summaries: list[Summary], x: Summary) -> Summary | None:
    """For a row of another revision (``--against``), the same row of the current tree."""
    return find(summaries, (*x.key[:5], "")) if x.rev else None


def new_over_old(summaries: list[Summary], x: Summary) -> tuple[float | None, float | None]:
    """For a row of another revision: current / old figure, and old / current server CPU per
    message (above 1: the current tree is faster)."""
    new = new_of(summaries, x)
    if new is None:
        return None, None
    q = new.value / x.value if x.value else None
    by_cpu = x.cpu_us / new.cpu_us if x.cpu_us is not None and new.cpu_us else None
    return q, by_cpu


def ratio(summaries: list[Summary], x: Summary) -> float | None:
    """crosswire / raw on the same server (median figures), for a crosswire row."""
    raw = raw_of(summaries, x)
    return x.value / raw.value if raw is not None and raw.value else None


def cpu_ratio(summaries: list[Summary], x: Summary) -> float | None:
    """raw / crosswire server CPU per message: the throughput ratio if the server were the only
    limit (steadier than throughput on a noisy machine), for a crosswire row."""
    raw = raw_of(summaries, x)
    if raw is None or raw.cpu_us is None or not x.cpu_us:
        return None
    return raw.cpu_us / x.cpu_us


def fmt_value(value: float, unit: str) -> str:
    if unit == "KiB/conn":
        return f"{value:.1f} {unit}"
    return f"{value:,.0f} {unit}"


def pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.0f}%"


def spread(x: Summary) -> str:
    if len(x.samples) < 2 or not x.value:
        return ""
    return f"±{50 * (x.high - x.low) / x.value:.0f}%"


HEADER = ["scenario", "server", "figure (median)", "spread", "vs raw", "server µs/msg",
          "by CPU", "p50 µs", "p99 µs", "server CPU", "gen CPU", "bound", "others"]  # fmt: skip


def bound(x: Summary) -> str:
    """What limited the cell: ``GENERATOR`` (flagged: the load generator used over
    GENERATOR_BOUND of its core, so the figure may say more about it than about the
    server), ``server``, or nothing (neither core was full: with one request in flight
    per connection, the round trips are the limit)."""
    if x.generator_bound:
        return "GENERATOR"
    return "server" if x.server_bound else ""


def us(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def times(q: float | None) -> str:
    return "" if q is None else f"{q:.2f}x"


AGAINST_HEADER = ["new/old", "new/old by CPU"]  # with --against: on each row of the old code


def table(summaries: list[Summary]) -> list[list[str]]:
    against = any(x.rev for x in summaries)
    rows = [HEADER + AGAINST_HEADER if against else HEADER]
    for x in summaries:
        per_msg = "" if x.cpu_us is None else f"{x.cpu_us:.1f}"
        row = [
            x.label, x.server, fmt_value(x.value, x.unit), spread(x),
            times(ratio(summaries, x)), per_msg, times(cpu_ratio(summaries, x)),
            us(x.latency("p50")), us(x.latency("p99")),
            pct(x.server_cpu), pct(x.client_cpu), bound(x), pct(x.other_cpu),
        ]  # fmt: skip
        if against:
            row += [times(q) for q in new_over_old(summaries, x)]
        rows.append(row)
    return rows


def print_table(rows: list[list[str]], markdown: bool = False) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = set(range(2, len(widths)))

    def line(row: list[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return ("| " + " | ".join(cells) + " |") if markdown else "  ".join(cells)

    print(line(rows[0]))
    if markdown:
        rules = [
            ("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)
        ]
        print("|" + "|".join(rules) + "|")
    else:
        print("  ".join("-" * w for w in widths))
    for row in rows[1:]:
        print(line(row))


GOAL = 0.95  # issue 19: crosswire's hooks (echo, fan-out) >= 0.95x the raw server they run on


def verdicts(summaries: list[Summary]) -> list[str]:
    """Whether crosswire reaches GOAL x the raw server, by throughput and by CPU per message;
    and the typed-RPC goal against raw picows."""
    lines = rpc_verdicts(summaries) + fanout_verdicts(summaries)
    lines += instances_verdicts(summaries, "cluster", CLUSTER_GOAL)
    lines += instances_verdicts(summaries, "split", SPLIT_GOAL)
    for base in BASES:
        rows = [
            x for x in summaries
            if x.base == base and x.scenario in ("echo", "broadcast") and not x.rev
            and raw_of(summaries, x)
        ]  # fmt: skip
        if not rows:
            continue
        tput = [ratio(summaries, x) or 0.0 for x in rows]
        cpu = [q for x in rows if (q := cpu_ratio(summaries, x)) is not None]
        below = [f"{x.label} {q:.2f}x" for x, q in zip(rows, tput, strict=True) if q < GOAL]
        cpu_below = sum(q < GOAL for q in cpu)
        detail = f"throughput ratio {min(tput):.2f}-{max(tput):.2f}x"
        if cpu:
            detail += f", CPU-per-message ratio {min(cpu):.2f}-{max(cpu):.2f}x"
        if not below and not cpu_below:
            lines.append(f"crosswire on {base}: meets the >= {GOAL}x goal ({detail})")
            continue
        lines.append(
            f"crosswire on {base}: MISSES the >= {GOAL}x goal in {len(below)} of {len(rows)} "
            f"by throughput, {cpu_below} of {len(cpu)} by CPU per message ({detail})"
            + (f"; below by throughput: {'; '.join(below)}" if below else "")
        )
    return lines


def instances_verdicts(summaries: list[Summary], scenario: str, goal: float) -> list[str]:
    """Fan-out through two instances and Redis against one instance: the ``cluster``
    scenario (publisher on one, subscribers on the other) or ``split`` (subscribers on both,
    everything on one core)."""
    how = {
        "cluster": "through 2 instances + Redis",
        "split": "split over 2 instances + Redis (one core)",
    }[scenario]
    lines = []
    for x in summaries:
        q = ratio(summaries, x) if x.scenario == scenario else None
        if q is None:
            continue
        verdict = "meets" if q >= goal else "MISSES"
        lines.append(
            f"fan-out to {x.param} subs {how} on {x.base}{x.at}: "
            f"{x.value:,.0f} deliveries/s = {q:.2f}x one instance ({verdict} the >= {goal}x goal)"
        )
    return lines


def generator_notes(summaries: list[Summary]) -> list[str]:
    """The cells flagged GENERATOR: what they show is bounded by the load generator."""
    flagged = [x for x in summaries if x.generator_bound]
    if not flagged:
        return [f"no cell was generator-bound (load generator under {GENERATOR_BOUND:.0%})"]
    cells_ = "; ".join(f"{x.label} {x.server} ({pct(x.client_cpu)})" for x in flagged)
    return [
        f"GENERATOR-BOUND ({len(flagged)} cells; the load generator over "
        f"{GENERATOR_BOUND:.0%} of its core, so their throughput understates the server, "
        f"and their ratios are not the server's: use server µs/msg): {cells_}"
    ]


def fanout_verdicts(summaries: list[Summary]) -> list[str]:
    """Typed fan-out against the hooks layer's broadcast (no goal: issue 15 compares each
    with itself before and after a change)."""
    lines = []
    for x in summaries:
        q = ratio(summaries, x) if x.scenario == "fanout" else None
        if q is None:
            continue
        by_cpu = cpu_ratio(summaries, x)
        lines.append(
            f"typed fan-out to {x.param} subs on {x.base}{x.at}: {x.value:,.0f} deliveries/s = "
            f"{q:.2f}x the hooks layer's broadcast"
            + (f" ({by_cpu:.2f}x by CPU per delivery)" if by_cpu is not None else "")
        )
    return lines


def rpc_verdicts(summaries: list[Summary]) -> list[str]:
    """Typed RPC against raw picows' echo: the goal holds at one request in flight; the
    pipelined cells are reported without one."""
    lines = []
    rows = {(x.server, x.param, x.window): x for x in summaries if x.scenario == "rpc"}
    for (server_name, conns, window), x in sorted(rows.items()):
        raw = raw_of(summaries, x)
        if raw is None or not raw.value:
            continue
        if server_name.startswith("floor-"):  # what no Python typed layer can beat
            line = (
                f"floor of a typed RPC in Python on {x.base}{x.at}, {conns} conn, "
                f"{x.in_flight}: {x.value:,.0f} msg/s = {x.value / raw.value:.2f}x raw picows"
            )
            if x.cpu_us is not None and raw.cpu_us is not None:
                line += f", {x.cpu_us - raw.cpu_us:+.1f} µs of server CPU per call"
            lines.append(line)
            continue
        if not server_name.startswith(("typed-", "struct-", "payload-")):
            continue
        q = x.value / raw.value
        line = (
            f"{RPC_KINDS.get(x.kind, 'typed')} RPC echo on {x.base}{x.at}, "
            f"{conns} conn, {x.in_flight}: {x.value:,.0f} "
            f"msg/s = {q:.2f}x raw picows"
        )
        extra = None if x.cpu_us is None or raw.cpu_us is None else x.cpu_us - raw.cpu_us
        if extra is not None:
            line += f", {extra:+.1f} µs of server CPU per call"
        if window == 1:
            met = q >= RPC_GOAL and (extra is None or extra <= RPC_CPU_BUDGET)
            line += (
                f" ({'meets' if met else 'MISSES'} the >= {RPC_GOAL}x and "
                f"<= +{RPC_CPU_BUDGET} µs goal)"
            )
        sio = rows.get(("socketio-aiohttp", conns, window))
        if sio is not None and sio.value:
            line += f"; {x.value / sio.value:.1f}x python-socketio"
        floor = rows.get(("floor-picows", conns, window))
        if floor is not None and floor.value:
            line += f"; {x.value / floor.value:.2f}x the floor"
        lines.append(line)
    return lines


def against_verdicts(summaries: list[Summary]) -> list[str]:
    """Each row of the current tree against the same row of ``--against``'s revision."""
    lines = []
    for x in summaries:
        q, by_cpu = new_over_old(summaries, x)
        new = new_of(summaries, x)
        if q is None or new is None:
            continue
        lines.append(
            f"{x.label}, {new.server} against {x.server}: {new.value:,.0f} / {x.value:,.0f} "
            f"{x.unit} = {q:.2f}x"
            + (f", {by_cpu:.2f}x by CPU per message" if by_cpu is not None else "")
            + f" (spread {spread(new) or '-'} / {spread(x) or '-'}; above 1: current is faster)"
        )
    return lines


def print_profile(path: Path, limit: int = 30) -> None:
    if not path.exists():
        print(f"(no profile written at {path})")
        return
    print(f"\n== cProfile of {path.name} (top {limit} by own time) ==")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(limit)


# -- main ------------------------------------------------------------------------------------


def ensure_node_deps() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        sys.exit("bench/run.py needs Node.js (node and npm) for the load generator")
    if (BENCH / "node_modules" / "ws").is_dir():
        return
    cmd = ["npm", "ci"] if (BENCH / "package-lock.json").exists() else ["npm", "install"]
    print(f"installing the load generator's dependencies: {' '.join(cmd)} (in bench/)")
    subprocess.run([*cmd, "--no-audit", "--no-fund"], cwd=BENCH, check=True)


@dataclass(frozen=True)
class Selection:
    """The servers ``--only`` picked: (base, kind) pairs for echo, broadcast, memory and
    cluster; full names for the rpc and fanout scenarios."""

    pairs: list[tuple[str, str]]
    rpc: list[str]
    fanout: list[str]


def select(only: str | None) -> Selection:
    """What to run. ``--only`` takes bases (picows), kinds (raw, crosswire, typed) or full
    names (crosswire-aiohttp, typed-picows); a typed row brings the row it is compared with
    (raw picows for rpc, the hooks layer on the same server for fanout)."""
    pairs = [(base, kind) for base in BASES for kind in KINDS]
    if not only:
        return Selection(pairs, list(RPC_SERVERS), list(FANOUT_SERVERS))
    wanted = {w.strip() for w in only.split(",") if w.strip()}

    def picked(name: str) -> bool:
        kind, base = name.split("-", 1)
        return bool(wanted & {name, kind, base})

    chosen = [(b, k) for b, k in pairs if picked(f"{k}-{b}")]
    rpc = [n for n in RPC_SERVERS if picked(n)]
    if rpc and RPC_BASELINE not in rpc:
        rpc.insert(0, RPC_BASELINE)
    fanout = [
        n for n in FANOUT_SERVERS if picked(n) or picked(n.replace("crosswire-", "typed-", 1))
    ]
    if not chosen and not rpc and not fanout:
        sys.exit(
            f"--only {only!r} matches no server; use e.g. picows, raw-aiohttp, crosswire, "
            f"typed-picows"
        )
    return Selection(chosen, rpc, fanout)


@dataclass(frozen=True)
class Run:
    """One entry of the plan: a scenario on one server with the crosswire of ``code``, in
    round ``rnd`` of ``rounds``."""

    scenario: str
    base: str
    kind: str
    code: Code
    rnd: int
    rounds: int

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.base}{self.code.suffix}"


def kinds_for(scenario: str, base: str, sel: Selection) -> list[str]:
    """The servers (kinds) of ``scenario`` on ``base``, in the order they run in even rounds."""
    if scenario in ("cluster", "split"):
        return list(CLUSTER_KINDS) if (base, "crosswire") in sel.pairs else []
    if scenario == "fanout":
        return [n.split("-", 1)[0] for n in sel.fanout if n.endswith(f"-{base}")]
    return [k for k in KINDS if (base, k) in sel.pairs]


def lineup(names: list[tuple[str, str]], against: Code | None) -> list[tuple[str, str, Code]]:
    """The (kind, base) servers on the current tree, each followed by the same server on
    ``against``'s revision if it imports crosswire."""
    out = []
    for kind, base in names:
        out.append((kind, base, HERE))
        if against is not None and kind in CROSSWIRE_KINDS:
            out.append((kind, base, against))
    return out


def plan(scenarios: list[str], sel: Selection, s: Settings, against: Code | None) -> list[Run]:
    """Every run, in order. The sides of a ratio (raw and crosswire, typed and hooks, current
    and old code) alternate, and swap order every round, so that drift of the machine's
    speed hits both alike."""
    runs = []

    def rounds_of(scenario: str, servers: list[tuple[str, str, Code]], rounds: int) -> None:
        for rnd in range(rounds):
            for kind, base, code in servers if rnd % 2 == 0 else servers[::-1]:
                runs.append(Run(scenario, base, kind, code, rnd, rounds))

    for base in BASES:
        for scenario in (x for x in scenarios if x != "rpc"):
            kinds = kinds_for(scenario, base, sel)
            servers = lineup([(kind, base) for kind in kinds], against)
            rounds_of(scenario, servers, 1 if scenario == "memory" else s.rounds)
    if "rpc" in scenarios:
        names = [(kind, base) for kind, base in (n.split("-", 1) for n in sel.rpc)]
        rounds_of("rpc", lineup(names, against), s.rounds)
    return runs


def git(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


def against_code(rev: str) -> Code:
    """The crosswire of revision ``rev``: a git worktree of it at bench/results/against-<rev>
    (made, or reused when it is there at that commit). Exits with a message if ``rev`` names
    no commit, if the current tree's ``src/`` has uncommitted changes (its rows would be of
    no revision), or if the worktree there is not a clean checkout of ``rev``."""
    found = git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if found.returncode != 0:
        sys.exit(f"--against {rev}: no such revision in {ROOT} (git rev-parse finds no commit)")
    commit = found.stdout.strip()
    if changed := git("status", "--porcelain", "--", "src").stdout.splitlines():
        files = ", ".join(line[3:] for line in changed[:3]) + (", ..." if changed[3:] else "")
        sys.exit(
            f"--against {rev}: src/ has uncommitted changes ({files}), so the current rows "
            "would be of no revision: commit or stash them, then rerun"
        )
    short = git("rev-parse", "--short", commit).stdout.strip()
    tree = RESULTS / f"against-{short}"
    if tree.exists():
        reuse_worktree(tree, commit, rev)
    else:
        RESULTS.mkdir(parents=True, exist_ok=True)
        # --force: the path may still be registered from a worktree deleted without git.
        made = git("worktree", "add", "--force", "--detach", str(tree), commit)
        if made.returncode != 0:
            sys.exit(f"--against {rev}: git worktree add {tree} failed: {made.stderr.strip()}")
    if not (tree / "src" / "crosswire" / "__init__.py").is_file():
        sys.exit(f"--against {rev}: revision {short} has no src/crosswire/__init__.py")
    return Code(short, commit, tree / "src")


def reuse_worktree(tree: Path, commit: str, rev: str) -> None:
    """Check that ``tree`` is a worktree with a clean ``src/``; move it to ``commit`` if it
    is at another one."""
    top = git("rev-parse", "--show-toplevel", cwd=tree).stdout.strip()
    if not top or Path(top).resolve() != tree.resolve():
        sys.exit(f"--against {rev}: {tree} exists but is not a git worktree: remove it, rerun")
    if git("status", "--porcelain", "--", "src", cwd=tree).stdout.strip():
        sys.exit(
            f"--against {rev}: {tree} has local changes in src/, so it is not {rev}: "
            f"remove it (git worktree remove --force {tree}) and rerun"
        )
    if git("rev-parse", "HEAD", cwd=tree).stdout.strip() != commit:
        moved = git("checkout", "--quiet", "--detach", commit, cwd=tree)
        if moved.returncode != 0:
            sys.exit(f"--against {rev}: could not check out {commit} in {tree}: {moved.stderr}")


def current_rev(*, short: bool = True) -> str:
    """The current tree's commit, marked when its src/ has uncommitted changes."""
    with contextlib.suppress(OSError):
        rev = git("rev-parse", *(["--short"] if short else []), "HEAD").stdout.strip()
        dirty = git("status", "--porcelain", "src").stdout.strip()
        if rev:
            return rev + (" (src/ modified)" if dirty else "")
    return ""


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("crosswire", "websockets", "aiohttp", "picows", "uvicorn", "hypercorn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    for pkg in ("ws", "bufferutil", "utf-8-validate"):
        meta = BENCH / "node_modules" / pkg / "package.json"
        if GENERATOR == "node" and meta.exists():
            out[f"{pkg} (npm)"] = json.loads(meta.read_text())["version"]
    if rev := current_rev():
        out["crosswire git"] = rev
    if GENERATOR == "node":
        node = subprocess.run(["node", "--version"], capture_output=True, text=True)
        out["node"] = node.stdout.strip()
    else:
        gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True)
        out["gcc"] = gcc.stdout.strip()
        out["loadgen"] = build_loadgen().name
    out["python"] = platform.python_version()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Benchmark crosswire against the raw servers it runs on."
    )
    parser.add_argument("--quick", action="store_true", help="short run: 1 round of 1 s each")
    parser.add_argument(
        "--only",
        help="comma-separated servers: websockets, aiohttp, picows, uvicorn, hypercorn, raw, "
        "crosswire, typed, or full names like crosswire-picows, typed-picows",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated: {','.join(SCENARIOS)}",
    )
    parser.add_argument("--rounds", type=int, help="runs per server for echo and broadcast")
    parser.add_argument("--duration", type=float, help="seconds counted per run")
    parser.add_argument(
        "--profile", action="store_true",
        help="run the servers under cProfile and print their top functions",
    )  # fmt: skip
    parser.add_argument(
        "--generator", choices=GENERATORS, default="c",
        help="the load generator: c (bench/loadgen.c, built with gcc; the default) or node "
        "(bench/load.mjs, which saturates on the raw servers; no split scenario)",
    )  # fmt: skip
    parser.add_argument(
        "--load-args", default="", help="extra options for the load generator, e.g. '--size 1000'"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument(
        "--no-coalesce", action="store_true",
        help="crosswire servers with Limits(coalesce_writes=False): every write leaves at once",
    )  # fmt: skip
    parser.add_argument(
        "--raw-default-reads", action="store_true",
        help="raw asyncio servers read 256 KiB per recv (asyncio's default) instead of 64 KiB "
        "as crosswire's connections do",
    )  # fmt: skip
    parser.add_argument(
        "--against", metavar="REV",
        help="also run the servers that import crosswire with the crosswire of git revision "
        "REV (rows NAME@REV), and give the ratio current / REV",
    )  # fmt: skip
    parser.add_argument(
        "--output", type=Path, default=RESULTS / "latest.json", help="where to write the JSON"
    )
    args = parser.parse_args()

    settings = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    if args.rounds:
        overrides["rounds"] = args.rounds
    if args.duration:
        overrides["duration"] = args.duration
    if args.load_args:
        overrides["load_args"] = tuple(args.load_args.split())
    settings = dataclasses.replace(settings, **overrides)
    scenarios = [x.strip() for x in args.scenarios.split(",") if x.strip()]
    if unknown := set(scenarios) - set(SCENARIOS):
        sys.exit(f"unknown scenario(s) {sorted(unknown)}; choose from {SCENARIOS}")
    against = against_code(args.against) if args.against else None
    runs = plan(scenarios, select(args.only), settings, against)
    if args.no_coalesce:
        os.environ["BENCH_COALESCE"] = "0"  # read by bench/servers.py
    if args.raw_default_reads:
        os.environ["BENCH_RAW_READS"] = "default"  # read by bench/servers.py

    global GENERATOR
    GENERATOR = args.generator
    if GENERATOR == "node":
        ensure_node_deps()
    else:
        try:
            print(f"load generator: {build_loadgen()} (built from {LOADGEN_SOURCE.name})")
        except RuntimeError as exc:
            sys.exit(f"{exc}\n(--generator node runs the Node load generator instead)")
    raise_fd_limit()
    if (os.cpu_count() or 1) < 2 or not shutil.which("taskset"):
        print("warning: not pinning (needs taskset and 2 CPUs); figures will be noisier")

    started = time.monotonic()
    patience = 120.0  # seconds this run may spend waiting for other processes to finish
    samples: list[Sample] = []
    profiles: list[Path] = []

    def run_one(run: Run) -> None:
        nonlocal patience
        scenario, base, kind, name = run.scenario, run.base, run.kind, run.name
        print(f"  {scenario:<9} {name:<29} {run.rnd + 1}/{run.rounds}:", end="", flush=True)
        prof = None
        if args.profile:
            prof = RESULTS / f"profile-{scenario}-{name.replace('@', '-at-')}.prof"
            prof.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        got = RUNNERS[scenario](base, kind, settings, prof, run.code)
        # Other processes took CPU meanwhile: wait for quiet and redo (twice at most, and no
        # more than `patience` seconds of waiting in a whole run).
        for _ in range(2):
            busy = max((x.other_cpu or 0) for x in got)
            if busy <= BUSY or patience <= 0:
                break
            print(f" [{busy:.0%} of a CPU busy elsewhere: waiting, redoing]", end="", flush=True)
            w0 = time.monotonic()
            wait_quiet(min(60.0, patience))
            patience -= time.monotonic() - w0
            got = RUNNERS[scenario](base, kind, settings, prof, run.code)
        for x in got:
            x.rev = run.code.rev
        samples.extend(got)
        if prof is not None and prof not in profiles:
            profiles.append(prof)
        unit = UNITS[scenario]
        figures = ", ".join(f"{x.param}: {fmt_value(x.value, unit)}" for x in got)
        print(f" {figures}  ({time.monotonic() - t0:.0f} s)")

    for run in runs:
        run_one(run)
    elapsed = time.monotonic() - started

    summaries = summarize(samples)
    print()
    print_table(table(summaries), markdown=args.markdown)
    print()
    for line in generator_notes(summaries) + verdicts(summaries):
        print(line)
    if against is not None:
        print(f"\nbefore/after: the current tree ({current_rev()}) against {against.rev}")
        for line in against_verdicts(summaries):
            print(line)
    if IMPORTED:
        print("\ncrosswire imported from (checked in every server):")
        for code_rev, where in IMPORTED.items():
            print(f"  {code_rev}: {where}")
    busy = [x for x in samples if (x.other_cpu or 0) > BUSY]
    if busy:
        print(
            f"\nwarning: in {len(busy)} runs other processes used over {BUSY:.0%} of a CPU "
            "(column 'others'): those figures are not reliable; rerun on a quiet machine"
        )
    print(f"\n{len(samples)} runs in {elapsed:.0f} s")

    here = current_rev(short=False)

    def revision(x: Summary) -> str:
        return against.commit if against is not None and x.rev else here

    data = {
        "settings": dataclasses.asdict(settings),
        "quick": args.quick,
        "profiled": args.profile,
        "pinning": {"server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU},
        "generator": GENERATOR,
        "load_average": os.getloadavg(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": versions(),
        "against": None if against is None else {
            "rev": args.against, "commit": against.commit, "worktree": str(against.src.parent),
        },
        "crosswire_imported_from": IMPORTED,
        "elapsed_s": round(elapsed, 1),
        "summary": [
            {
                "scenario": x.scenario, "param": x.param, "window": x.window,
                "server": x.server, "base": x.base,
                "kind": x.kind, "unit": x.unit, "median": x.value, "min": x.low, "max": x.high,
                "runs": len(x.samples), "ratio_crosswire_over_raw": ratio(summaries, x),
                "server_cpu_us_per_msg": x.cpu_us,
                "ratio_by_cpu_raw_us_over_crosswire_us": cpu_ratio(summaries, x),
                "server_cpu": x.server_cpu, "client_cpu": x.client_cpu,
                "generator_bound": x.generator_bound,
                "latency_p50_us": x.latency("p50"), "latency_p99_us": x.latency("p99"),
                "max_other_cpu": x.other_cpu, "revision": revision(x),
                "ratio_new_over_old": new_over_old(summaries, x)[0],
                "ratio_by_cpu_old_us_over_new_us": new_over_old(summaries, x)[1],
            }
            for x in summaries
        ],
        "samples": [dataclasses.asdict(x) for x in samples],
        "verdicts": generator_notes(summaries) + verdicts(summaries)
        + against_verdicts(summaries),
    }  # fmt: skip
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=2) + "\n")
    print(f"results written to {args.output}")
    for path in profiles:
        print_profile(path)


if __name__ == "__main__":
    main()
