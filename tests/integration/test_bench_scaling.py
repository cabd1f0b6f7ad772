"""bench/scaling.py's instance side (docs/scaling.md's ``i_p`` and ``i_b``): a crosswire
instance in a fresh interpreter publishes through a real redis-server, another receives what
this process publishes, and each reports its CPU per message; and its presence probe, which
joins, reads and leaves through a real redis-server. Nothing here asserts on speed, only that
each ran to the end (every publish flushed, every message delivered, every join left)."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

from tests.redis_server import RedisServer

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def scaling(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))  # (it imports bench/run.py as "run")
    module = importlib.import_module("scaling")
    monkeypatch.setattr(module, "PUBLISHES", 3_000)
    monkeypatch.setattr(module, "PRESENCE_OPS", 200)
    return module


async def test_both_instances_report_their_cpu_per_message(
    scaling: ModuleType, redis_server: RedisServer
) -> None:
    assert scaling.instance_publish(redis_server.url) > 0
    assert await scaling.instance_receive(redis_server.url) >= 0  # (whole ticks: may be 0)


async def test_the_presence_probe_joins_reads_and_leaves_through_a_real_redis(
    scaling: ModuleType, redis_server: RedisServer
) -> None:
    costs = await scaling.presence(redis_server.url, redis_server.pid)
    assert set(costs) == {"join", "members", "leave"}
    assert all(cost >= 0 for cost in costs.values())  # (whole ticks: may be 0)
    client = redis_server.client()
    try:  # every join was left again: nothing of the probe's stays in Redis
        assert [key async for key in client.scan_iter("ws:presence:*")] == []
    finally:
        await client.aclose()
