"""The Rover dialect, written down: every fixture in tests/fixtures/rover is replayed over real
sockets (websockets and picows), by an endpoint that speaks Rover's flat frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

import crosswire
from crosswire.wire import ROVER
from tests.conformance.replay import fixture_files, load_fixture, load_router, replay_over

FIXTURES = fixture_files("rover")


def test_there_are_fixtures() -> None:
    assert len(FIXTURES) >= 10


@pytest.mark.parametrize("kind", ["websockets", "picows"])
@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
async def test_fixture_replays_over_a_real_socket(path: Path, kind: str, start_server: Any) -> None:
    router = load_router(load_fixture(path)["router"])
    app = crosswire.App(endpoints=[crosswire.Endpoint(None, router, dialects=[ROVER])])
    served = await start_server(app, kind)
    async with connect(served.url) as ws:
        await replay_over(path, ws)
        await ws.close()
