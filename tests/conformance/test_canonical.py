"""The canonical dialect, written down: every fixture in tests/fixtures/canonical is replayed
(in-process, and over real sockets on websockets and picows), and every frame crosswire sends
is checked by WS-Kit's own validators (strict client view)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

import crosswire
from tests.conformance.replay import (
    fixture_files,
    load_fixture,
    load_router,
    replay,
    replay_over,
    validate_with_wskit,
    wskit_spec,
)

FIXTURES = fixture_files("canonical")


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
async def test_fixture_replays(path: Path) -> None:
    await replay(path)


@pytest.mark.parametrize("kind", ["websockets", "picows"])
@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
async def test_fixture_replays_over_a_real_socket(path: Path, kind: str, start_server: Any) -> None:
    router = load_router(load_fixture(path)["router"])
    served = await start_server(crosswire.App(router), kind)
    async with connect(served.url) as ws:
        await replay_over(path, ws)


async def test_every_frame_sent_is_accepted_by_a_strict_wskit_client() -> None:
    lines: list[dict[str, Any]] = []
    for path in FIXTURES:
        router, frames = await replay(path)
        schemas = {s.type: s for s in router.schemas}
        lines.extend(
            {"schema": wskit_spec(f, schemas), "frame": f, "fixture": path.stem} for f in frames
        )
    assert len(lines) >= 25
    results = validate_with_wskit(
        [{k: v for k, v in line.items() if k != "fixture"} for line in lines]
    )
    refused = [
        (line["fixture"], line["frame"], r["error"])
        for line, r in zip(lines, results, strict=True)
        if not r["ok"]
    ]
    assert refused == []
    assert len(results) == len(lines)


def test_the_validator_refuses_what_a_strict_client_refuses() -> None:
    """The check above is only worth something if the validator bites: frames with an extra
    root key, an unknown meta key or a wrong payload type are refused."""
    schema = {"type": "ADD_RESULT", "payload": {"sum": "integer"}}
    bad = [
        {"type": "ADD_RESULT", "meta": {}, "payload": {"sum": 1}, "topic": "x"},
        {"type": "ADD_RESULT", "meta": {"offset": 3}, "payload": {"sum": 1}},
        {"type": "ADD_RESULT", "meta": {}, "payload": {"sum": "1"}},
        {"type": "ADD_RESULT", "meta": {}, "payload": {"sum": 1, "extra": True}},
    ]
    results = validate_with_wskit([{"schema": schema, "frame": frame} for frame in bad])
    assert [r["ok"] for r in results] == [False] * len(bad)
