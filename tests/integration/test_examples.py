"""The examples the README shows run as the README says, and do what it says."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect

from tests.redis_server import RedisServer
from tests.support import TIMEOUT, RunCommand, recv

ROOT = Path(__file__).resolve().parents[2]


def readme_block(after: str) -> str:
    """The fenced Python block that follows the line ``after`` in README.md."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(re.escape(after) + r"\s*```python\n(.*?)```", readme, re.DOTALL)
    assert found, f"no python block after {after!r} in README.md"
    return found.group(1)


def test_readme_shows_the_examples_verbatim() -> None:
    for example in ("hello", "echo", "rooms"):
        shown = readme_block(f"<!-- examples/{example}.py -->")
        assert shown == (ROOT / f"examples/{example}.py").read_text(), example


async def test_hello_example_echoes_and_broadcasts(crosswire_cmd: RunCommand) -> None:
    cmd = await crosswire_cmd("run", "examples.hello:app", "--port", "0", cwd=ROOT)
    await cmd.started()
    async with connect(cmd.ws_url) as a, connect(cmd.ws_url) as b, connect(cmd.ws_url) as c:
        hellos = [orjson.loads(await recv(ws))["hello"] for ws in (a, b, c)]
        assert len(set(hellos)) == 3
        await a.send("just me")
        assert await recv(a) == "just me"
        await a.send("/all hi everyone")
        assert [await recv(b), await recv(c)] == ["hi everyone", "hi everyone"]
        await a.send("ping")
        assert await recv(a) == "ping"  # a got nothing from its own /all in between


async def test_rooms_example_shares_a_room_between_two_processes_on_redis(
    crosswire_cmd: RunCommand, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CROSSWIRE_REDIS_URL", redis_server.url)
    first = await crosswire_cmd("run", "examples.rooms:app", "--port", "0", cwd=ROOT)
    second = await crosswire_cmd("run", "examples.rooms:app", "--port", "0", cwd=ROOT)
    await first.started()
    await second.started()

    async def say(ws: Any, event: str, data: Any) -> None:
        await ws.send(orjson.dumps({"event": event, "data": data}).decode())

    async with connect(first.ws_url) as ann, connect(second.ws_url) as ben:
        for ws, name in ((ann, "ann"), (ben, "ben")):
            await say(ws, "authenticate", {"token": f"demo-token-{name}"})
            connected = orjson.loads(await recv(ws))
            assert (connected["event"], connected["data"]["userId"]) == ("connected", name)
            await say(ws, "join", {"rooms": ["lobby", "secret"]})
            assert orjson.loads(await recv(ws)) == {
                "event": "error",
                "data": {"message": "Join rejected", "rooms": ["secret"]},
            }

        async def lobby_on_redis() -> None:
            client = redis_server.client()
            try:
                while dict(await client.pubsub_numsub("ws:room:lobby"))[b"ws:room:lobby"] < 2:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            finally:
                await client.aclose()

        await asyncio.wait_for(lobby_on_redis(), TIMEOUT)
        await say(ann, "say", {"room": "lobby", "text": "hi ben"})
        said = {"event": "said", "data": {"room": "lobby", "from": "ann", "text": "hi ben"}}
        assert orjson.loads(await recv(ben)) == said
        assert orjson.loads(await recv(ann)) == said
        await say(ben, "say", {"room": "dev", "text": "?"})
        assert orjson.loads(await recv(ben)) == {
            "event": "error",
            "data": {"message": "say needs a room you are in"},
        }
        client = redis_server.client()
        try:
            channels = [
                c if isinstance(c, str) else c.decode() for c in await client.pubsub_channels()
            ]
        finally:
            await client.aclose()
        assert "ws:user:ann" in channels  # the user's name, never the token
        assert not [c for c in channels if "token" in c], channels


async def test_rooms_example_answers_every_malformed_say_and_never_shows_the_token(
    crosswire_cmd: RunCommand,
) -> None:
    """Issue 14: ``{"room": ["lobby"]}`` raised TypeError in the example's on_message (a
    traceback in the log, no answer), and the token was the user id, so it went out in
    ``said.from``."""
    cmd = await crosswire_cmd("run", "examples.rooms:app", "--port", "0", cwd=ROOT)
    await cmd.started()

    async def send(ws: Any, event: str, data: Any = None) -> None:
        await ws.send(orjson.dumps({"event": event, "data": data}).decode())

    async with connect(cmd.ws_url) as stranger:
        await send(stranger, "authenticate", {"token": "ann"})  # a name is not a token
        assert orjson.loads(await recv(stranger)) == {
            "event": "error",
            "data": {"message": "Authentication failed"},
        }
    async with connect(cmd.ws_url) as ann:
        await send(ann, "authenticate", {"token": "demo-token-ann"})
        assert orjson.loads(await recv(ann))["data"]["userId"] == "ann"
        await send(ann, "join", {"rooms": ["lobby"]})
        for data in (
            {"room": ["lobby"], "text": "t"},
            {"room": {"lobby": 1}, "text": "t"},
            {"room": "lobby", "text": ["t"]},
            {"room": "lobby"},
            ["lobby", "t"],
            None,
        ):
            await send(ann, "say", data)
            assert orjson.loads(await recv(ann)) == {
                "event": "error",
                "data": {"message": "say needs a room and a text, both strings"},
            }, data
        await send(ann, "shout", {"room": "lobby", "text": "t"})
        assert orjson.loads(await recv(ann)) == {
            "event": "error",
            "data": {"message": "unknown event: send say"},
        }
        await send(ann, "say", {"room": "lobby", "text": "still here"})
        said = orjson.loads(await recv(ann))
        assert said == {
            "event": "said",
            "data": {"room": "lobby", "from": "ann", "text": "still here"},
        }
    cmd.proc.terminate()
    assert await cmd.exit_code() == 0
    log = await cmd.stderr()
    assert "Traceback" not in log and "demo-token" not in log, log


async def test_echo_client_example_talks_to_the_echo_example(crosswire_cmd: RunCommand) -> None:
    cmd = await crosswire_cmd("run", "examples.echo:app", "--port", "0", cwd=ROOT)
    await cmd.started()
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable)),
        "-m",
        "examples.echo_client",
        cmd.ws_url + "/",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0
    assert out.decode().splitlines() == [
        "echo: hello",
        "1 + 2 = 3",
        "counted 1",
        "counted 2",
        "counted 3",
        "counted to 3",
    ]
