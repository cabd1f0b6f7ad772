"""The benchmark's compiled load generator (bench/loadgen.c): built with the system's gcc, run
for about a second against real servers of bench/servers.py on port 0 (raw websockets, raw
uvicorn and hypercorn, and the floor of a typed RPC on picows), it prints the JSON lines
bench/run.py reads, and it fails loudly on a frame it does not accept.
Nothing here asserts on speed."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from bench.run import build_loadgen
from bench.servers import STARTERS, Started, raw_hypercorn, raw_uvicorn, raw_websockets
from tests.support import skip_stage


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        skip_stage("LOADGEN", "gcc not found: the benchmark's C load generator is not built")
    return build_loadgen(tmp_path_factory.mktemp("loadgen"))


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    port, stop = await raw_websockets()
    try:
        yield port
    finally:
        await asyncio.wait_for(stop(), 10)


async def run(loadgen: Path, port: int, *args: str) -> tuple[int, list[dict[str, Any]]]:
    """Run the generator for 0.2 s of warm-up and 0.8 s counted; its exit status and events."""
    proc = await asyncio.create_subprocess_exec(
        str(loadgen), "--url", f"ws://127.0.0.1:{port}/", "--warmup", "0.2",
        "--duration", "0.8", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert not err, err.decode()
    return proc.returncode or 0, [json.loads(line) for line in out.decode().splitlines()]


def result(code: int, events: list[dict[str, Any]]) -> dict[str, Any]:
    assert code == 0, events
    assert [e["event"] for e in events] == ["connected", "measure", "end", "result"]
    last = events[-1]
    assert last["wrong"] == 0
    assert 0 <= last["client_cpu"] <= 1.5  # its own CPU time over the counted wall time
    assert last["seconds"] > 0.5
    return last


async def test_one_request_in_flight_reports_messages_cpu_and_latency(
    loadgen: Path, echo_port: int
) -> None:
    r = result(*await run(loadgen, echo_port, "--mode", "echo", "--conns", "2", "--window", "1"))
    assert r["messages"] > 0
    assert r["rate"] == pytest.approx(r["messages"] / r["seconds"], rel=1e-3)
    latency = r["latency_us"]
    assert latency["samples"] == r["messages"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]


async def test_pipelined_echo(loadgen: Path, echo_port: int) -> None:
    r = result(*await run(loadgen, echo_port, "--mode", "echo", "--conns", "2", "--window", "8"))
    assert r["window"] == 8
    assert r["messages"] > 0


@pytest.mark.parametrize("name", ["floor-picows", "payload-picows"])
async def test_typed_rpc_servers_answer_every_call_they_are_sent(loadgen: Path, name: str) -> None:
    """bench/servers.py's floor-picows (a typed RPC with no framework) and payload-picows (a
    handler that takes the payload), driven in rpc mode: the generator checks every reply's
    type and correlation id (``wrong`` counts misses)."""
    port, stop = await STARTERS[name]()
    try:
        r = result(*await run(loadgen, port, "--mode", "rpc", "--conns", "2", "--window", "4"))
    finally:
        await asyncio.wait_for(stop(), 10)
    assert r["messages"] > 0


async def test_fan_out_counts_every_delivery(loadgen: Path, echo_port: int) -> None:
    code, events = await run(loadgen, echo_port, "--mode", "broadcast", "--subs", "20")
    r = result(code, events)
    assert r["deliveries"] > 0
    assert r["complete"] is True  # every subscriber got every broadcast, once


@pytest.mark.parametrize("start", [raw_uvicorn, raw_hypercorn], ids=["uvicorn", "hypercorn"])
async def test_raw_asgi_servers_echo_and_fan_out_every_message(
    loadgen: Path, start: Callable[[], Awaitable[Started]]
) -> None:
    """bench/servers.py's raw uvicorn and raw hypercorn (a bare ASGI app): what crosswire on
    each is measured against answers every echo and delivers every broadcast, once."""
    port, stop = await start()
    try:
        echo = result(*await run(loadgen, port, "--mode", "echo", "--conns", "2", "--window", "1"))
        fanout = result(*await run(loadgen, port, "--mode", "broadcast", "--subs", "20"))
    finally:
        await asyncio.wait_for(stop(), 10)
    assert echo["messages"] > 0
    assert fanout["deliveries"] > 0
    assert fanout["complete"] is True


async def test_a_binary_frame_fails_the_run_loudly(loadgen: Path) -> None:
    async def binary(ws: ServerConnection) -> None:
        async for _ in ws:
            await ws.send(b"\x00\x01")

    async with serve(binary, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        code, events = await run(loadgen, port, "--mode", "echo", "--conns", "1")
    assert code == 2
    assert events[-1]["event"] == "error"
    assert "opcode 2" in events[-1]["message"]
