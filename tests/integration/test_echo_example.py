"""examples/echo.py over real sockets, on every server: the RPC semantics of the typed layer
as a client sees them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

import crosswire
from examples import echo
from tests.support import CanonicalClient, RunCommand, Served, closed_with

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def client(start_server: Any, kind: str) -> Any:
    served: Served = await start_server(crosswire.App(echo.create_router()), kind)
    async with connect(served.url) as ws:
        yield CanonicalClient(ws)


async def test_echo_event(client: CanonicalClient) -> None:
    await client.send("ECHO", {"text": "hi"})
    assert await client.receive() == {"type": "ECHO", "meta": {}, "payload": {"text": "hi"}}


async def test_add_rpc(client: CanonicalClient) -> None:
    await client.send("ADD", {"a": 2, "b": 40}, correlationId="r1")
    assert await client.receive() == {
        "type": "ADD_RESULT",
        "meta": {"correlationId": "r1"},
        "payload": {"sum": 42},
    }


async def test_count_sends_progress_then_the_reply(client: CanonicalClient) -> None:
    await client.send("COUNT", {"to": 3, "delay_ms": 1}, correlationId="n")
    frames = [await client.receive() for _ in range(4)]
    assert [f["type"] for f in frames] == ["$ws:rpc-progress"] * 3 + ["COUNT_DONE"]
    assert [f["payload"] for f in frames] == [{"n": 1}, {"n": 2}, {"n": 3}, {"total": 3}]
    assert all(f["meta"] == {"correlationId": "n"} for f in frames)


async def test_count_abort(client: CanonicalClient) -> None:
    await client.send("COUNT", {"to": 1000, "delay_ms": 10}, correlationId="a")
    first = await client.receive()
    assert first["type"] == "$ws:rpc-progress"
    await client.send("$ws:abort", correlationId="a")
    while (frame := await client.receive())["type"] == "$ws:rpc-progress":
        pass
    assert frame["type"] == "RPC_ERROR" and frame["meta"] == {"correlationId": "a"}
    assert frame["payload"]["code"] == "CANCELLED"
    await client.send("ADD", {"a": 1, "b": 1}, correlationId="after")
    assert (await client.receive())["payload"] == {"sum": 2}  # no more progress from "a"


async def test_count_deadline(client: CanonicalClient) -> None:
    await client.send("COUNT", {"to": 1000, "delay_ms": 10}, correlationId="d", timeoutMs=100)
    while (frame := await client.receive())["type"] == "$ws:rpc-progress":
        pass
    assert frame["payload"]["code"] == "DEADLINE_EXCEEDED"
    assert frame["meta"] == {"correlationId": "d"}


async def test_bad_input_over_the_wire(client: CanonicalClient) -> None:
    await client.ws.send("not json")
    assert (await client.receive())["payload"]["code"] == "INVALID_ARGUMENT"
    await client.send("ADD", {"a": 1, "b": "two"}, correlationId="bad")
    frame = await client.receive()
    assert (frame["type"], frame["meta"], frame["payload"]["code"]) == (
        "RPC_ERROR",
        {"correlationId": "bad"},
        "INVALID_ARGUMENT",
    )
    await client.send("DIVIDE", {"a": 1})
    assert (await client.receive())["payload"]["code"] == "UNIMPLEMENTED"
    await client.send("ECHO", {"text": "alive"})
    assert (await client.receive())["payload"] == {"text": "alive"}


@pytest.mark.parametrize("kind", ["websockets"])
async def test_disconnect_cancels_the_running_count(start_server: Any, kind: str) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    router = echo.create_router()

    async def watch(ctx: Any) -> None:
        ctx.on_cancel(cancelled.set)
        started.set()
        await asyncio.sleep(60)

    router.off(echo.Count).rpc(echo.Count, watch)
    served = await start_server(crosswire.App(router), kind)
    async with connect(served.url) as ws:
        await CanonicalClient(ws).send("COUNT", {"to": 1, "delay_ms": 1}, correlationId="x")
        await asyncio.wait_for(started.wait(), 5)
    # the client has gone: the handler is cancelled
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_crosswire_run_serves_the_example(crosswire_cmd: RunCommand) -> None:
    cmd = await crosswire_cmd("run", "examples.echo:app", "--port", "0", cwd=ROOT)
    await cmd.started()
    async with connect(cmd.ws_url) as ws:
        client = CanonicalClient(ws)
        await client.send("ADD", {"a": 1, "b": 2}, correlationId="cli")
        assert (await client.receive())["payload"] == {"sum": 3}
        cmd.proc.send_signal(2)  # SIGINT
        assert (await closed_with(ws))[0] == 1001


async def test_a_second_reply_is_ignored_and_a_forgotten_reply_is_reported(
    start_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """One-shot replies, over a real socket: a handler that replies twice sends one reply; a
    handler that returns without replying is logged, and its call ends at its deadline."""
    router = echo.create_router()

    def twice(ctx: Any) -> None:
        assert ctx.reply({"sum": ctx.payload.a + ctx.payload.b}) is True
        assert ctx.reply({"sum": -1}) is False

    router.off(echo.Add).rpc(echo.Add, twice)
    forgetful = crosswire.rpc("FORGET", {"x": int}, "FORGOTTEN", {"x": int})
    router.rpc(forgetful, lambda ctx: None)
    served = await start_server(crosswire.App(router), "picows")
    with caplog.at_level("WARNING", logger="crosswire.router"):
        async with connect(served.url) as ws:
            client = CanonicalClient(ws)
            await client.send("ADD", {"a": 1, "b": 2}, correlationId="once")
            assert await client.receive() == {
                "type": "ADD_RESULT",
                "meta": {"correlationId": "once"},
                "payload": {"sum": 3},
            }
            await client.send("FORGET", {"x": 1}, correlationId="f", timeoutMs=100)
            frame = await client.receive()  # nothing came in between: no second ADD_RESULT
            assert (frame["type"], frame["meta"], frame["payload"]["code"]) == (
                "RPC_ERROR",
                {"correlationId": "f"},
                "DEADLINE_EXCEEDED",
            )
    assert "returned without reply() or error()" in caplog.text
