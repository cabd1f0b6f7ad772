"""ReadGate: the adapters' receive loops wait on it while the peer's inbox is full."""

from __future__ import annotations

import asyncio

from crosswire.adapters._gate import ReadGate


async def test_a_paused_gate_holds_the_reader_until_opened() -> None:
    gate = ReadGate()
    await asyncio.wait_for(gate.wait(), 1)  # open: returns at once
    gate.pause()
    reader = asyncio.ensure_future(gate.wait())
    await asyncio.sleep(0)
    assert not reader.done()
    gate.open()
    await asyncio.wait_for(reader, 1)
    assert not gate.paused


async def test_a_reader_cancelled_while_waiting_leaves_the_gate_usable() -> None:
    gate = ReadGate()
    gate.pause()
    first = asyncio.ensure_future(gate.wait())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    second = asyncio.ensure_future(gate.wait())
    await asyncio.sleep(0)
    gate.open()
    await asyncio.wait_for(second, 1)


def test_an_idle_gate_holds_no_future() -> None:
    gate = ReadGate()
    gate.pause()
    gate.open()
    assert gate._resumed is None  # nothing made for a pause nobody waited on
