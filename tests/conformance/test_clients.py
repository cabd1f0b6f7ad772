"""What crosswire's clients send, a WS-Kit server takes (with ``send_deadline`` off): frames
of the Python client and of the browser client, recorded at a server. The event and the
request go through a real WS-Kit 0.10 router (tests/wskit/validate.mjs, ``via: router``). The
abort is checked against WS-Kit's shape of the control frame: WS-Kit 0.10 has no handler for
it that a router check could run."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from crosswire import App, Message, Peer, WsError, define_hooks
from crosswire.client import Client, Reconnect
from examples.echo import Add, Echo
from tests.conformance.replay import validate_with_wskit
from tests.support import RunScenario, ServeRouter, eventually

#: WS-Kit specs of the two client-to-server messages (see validate.mjs).
SPECS = {
    "ECHO": {"type": "ECHO", "payload": {"text": "string"}},
    "ADD": {
        "type": "ADD",
        "payload": {"a": "integer", "b": "integer"},
        "response": {"type": "ADD_RESULT", "payload": {"sum": "integer"}},
        "part": "request",
    },
}


def checks(frames: list[str]) -> list[dict[str, Any]]:
    """validate.mjs lines: messages through a WS-Kit router, the abort as a built-in frame."""
    lines = []
    for text in frames:
        frame = orjson.loads(text)
        if frame["type"] == "$ws:abort":
            lines.append({"schema": {"builtin": "ABORT"}, "frame": frame})
        else:
            lines.append({"schema": SPECS[frame["type"]], "frame": frame, "via": "router"})
    return lines


async def recording_server(serve_router: ServeRouter) -> tuple[str, list[str]]:
    frames: list[str] = []

    def message(peer: Peer, msg: Message) -> None:
        frames.append(msg.text())

    server = await serve_router(App(define_hooks(message=message)))
    return server.url + "/", frames


async def python_frames(url: str, frames: list[str], **options: Any) -> list[str]:
    frames.clear()
    async with Client(url, reconnect=Reconnect(enabled=False), **options) as client:
        await client.send(Echo, {"text": "hi"}, meta={"timestamp": 1, "clientId": "dropped"})
        with pytest.raises(WsError) as late:  # the recording server never answers
            await client.request(Add, {"a": 1, "b": 2}, timeout=0.1)
        assert late.value.code == "DEADLINE_EXCEEDED"  # without timeoutMs, on the client
        await eventually(lambda: len(frames) == 3)  # ECHO, ADD, and the abort of ADD
    return list(frames)


async def test_the_python_clients_frames_pass_a_wskit_router(serve_router: ServeRouter) -> None:
    url, frames = await recording_server(serve_router)
    sent = await python_frames(url, frames, send_deadline=False)
    assert [orjson.loads(f)["type"] for f in sent] == ["ECHO", "ADD", "$ws:abort"]
    assert [r["ok"] for r in validate_with_wskit(checks(sent))] == [True, True, True]


async def test_by_default_the_deadline_is_sent_and_wskit_refuses_it(
    serve_router: ServeRouter,
) -> None:
    """Why ``send_deadline`` exists: WS-Kit 0.10 refuses ``meta.timeoutMs`` on requests."""
    url, frames = await recording_server(serve_router)
    sent = await python_frames(url, frames)
    results = validate_with_wskit(checks(sent))
    assert [r["ok"] for r in results] == [True, False, True]
    assert "timeoutMs" in results[1]["error"]


async def test_the_browser_clients_frames_pass_a_wskit_router(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    url, frames = await recording_server(serve_router)
    result = await (await run_scenario(url, "wskit_frames")).result()
    assert result == {"late": "DEADLINE_EXCEEDED"}
    await eventually(lambda: len(frames) == 3)
    assert [orjson.loads(f)["type"] for f in frames] == ["ECHO", "ADD", "$ws:abort"]
    assert "clientId" not in orjson.loads(frames[0])["meta"]
    assert [r["ok"] for r in validate_with_wskit(checks(frames))] == [True, True, True]
