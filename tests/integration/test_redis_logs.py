"""What a server on Redis says in its log (issue 14): whether the bus is reachable as soon as it
starts, one ERROR when Redis goes away (not one per attempt to reconnect), a line when it is
back, and never the password. Run as a user runs it: ``crosswire run examples.rooms:app`` with
``CROSSWIRE_REDIS_URL``, reading the process's stderr; and under uvicorn's ASGI lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

import crosswire
from crosswire.pubsub.redis import RedisBackend
from tests.redis_server import RedisServer
from tests.support import TIMEOUT, Command, RunCommand, eventually, recv

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "never-in-a-log-5319"


class Lines:
    """What a process writes to stderr, line by line, read as it comes."""

    def __init__(self, stream: asyncio.StreamReader) -> None:
        self.lines: list[str] = []
        self._ended = False
        self._changed = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._read(stream))

    async def _read(self, stream: asyncio.StreamReader) -> None:
        try:
            while line := await stream.readline():
                self.lines.append(line.decode().rstrip("\n"))
                self._changed.set()
        finally:
            self._ended = True
            self._changed.set()

    def matching(self, pattern: str) -> list[str]:
        return [line for line in self.lines if re.search(pattern, line)]

    async def wait_for(self, pattern: str, count: int = 1) -> list[str]:
        """The lines matching ``pattern``, once there are ``count`` of them."""

        async def wait() -> list[str]:
            while len(found := self.matching(pattern)) < count:
                assert not self._ended, f"no {count} lines match {pattern!r}: {self.lines}"
                self._changed.clear()
                await self._changed.wait()
            return found

        return await asyncio.wait_for(wait(), TIMEOUT)


Watch = Callable[[Command], Lines]


@pytest.fixture
async def watch() -> AsyncIterator[Watch]:
    """``watch(cmd)`` reads ``cmd``'s stderr as it comes; stopped at teardown."""
    made: list[Lines] = []

    def start(cmd: Command) -> Lines:
        assert cmd.proc.stderr is not None
        lines = Lines(cmd.proc.stderr)
        made.append(lines)
        return lines

    yield start
    for lines in made:
        lines.task.cancel()
    await asyncio.gather(*(lines.task for lines in made), return_exceptions=True)


async def rooms_server(crosswire_cmd: RunCommand, watch: Watch, url: str) -> tuple[Command, Lines]:
    """``crosswire run examples.rooms:app`` on ``url``, logging everything (DEBUG)."""
    cmd = await crosswire_cmd(
        "run",
        "examples.rooms:app",
        "--port",
        "0",
        "--log-level",
        "debug",
        cwd=ROOT,
        env={"CROSSWIRE_REDIS_URL": url},
    )
    lines = watch(cmd)
    await cmd.started()
    return cmd, lines


async def send(ws: ClientConnection, event: str, data: Any) -> None:
    await ws.send(orjson.dumps({"event": event, "data": data}).decode())


async def member(url: str, name: str) -> ClientConnection:
    """A client that authenticated as ``name`` and joined the lobby."""
    ws = await asyncio.wait_for(connect(url), TIMEOUT)
    await send(ws, "authenticate", {"token": f"demo-token-{name}"})  # (the example's)
    assert orjson.loads(await recv(ws))["event"] == "connected"
    await send(ws, "join", {"rooms": ["lobby"]})  # answered only if refused
    return ws


async def said(ws: ClientConnection, count: int) -> list[tuple[str, str]]:
    """The next ``count`` messages of the lobby, as (from, text)."""
    frames = [orjson.loads(await recv(ws)) for _ in range(count)]
    assert all(frame["event"] == "said" for frame in frames), frames
    return [(frame["data"]["from"], frame["data"]["text"]) for frame in frames]


async def lobby_members_on(redis: RedisServer, instances: int) -> None:
    """Wait until ``instances`` instances subscribe the lobby on Redis."""
    client = redis.client()
    try:
        while (await client.pubsub_numsub("ws:room:lobby"))[0][1] != instances:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


#: Each failed attempt to reach Redis, logged at DEBUG.
ATTEMPT = r" DEBUG crosswire\.pubsub: attempt \d+ to reach Redis at "


async def test_a_redis_that_is_not_there_is_said_at_startup_and_its_coming_is_logged(
    crosswire_cmd: RunCommand, watch: Watch, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path)  # not started: nothing listens on its port yet
    where = re.escape(f"127.0.0.1:{redis.port}")
    _, log = await rooms_server(
        crosswire_cmd, watch, f"redis://:{PASSWORD}@127.0.0.1:{redis.port}/0"
    )
    # Said before any client came: the server connected to the bus as it started.
    [error] = await log.wait_for(r" ERROR ")
    assert re.search(rf" crosswire\.pubsub: .*Redis at {where} is not reachable", error), error
    await log.wait_for(ATTEMPT + where, count=2)  # it keeps trying, quietly

    await redis.start("--requirepass", PASSWORD)
    await log.wait_for(
        rf" INFO crosswire\.pubsub: bus reachable at {where} after [\d.]+ s unreachable; "
        r"0 messages were queued$"
    )
    assert len(log.matching(r" ERROR ")) == 1
    assert not [line for line in log.lines if PASSWORD in line]
    await redis.kill()


async def test_two_rooms_servers_on_one_redis_survive_its_restart_and_say_so_once(
    crosswire_cmd: RunCommand, watch: Watch, tmp_path: Path
) -> None:
    """The issue's reproduction: two instances of examples/rooms.py, Redis killed and started
    again on the same port; once both have resubscribed, what one says reaches the other."""
    redis = RedisServer(tmp_path)
    await redis.start("--requirepass", PASSWORD)
    where = re.escape(f"127.0.0.1:{redis.port}")
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis.port}/0"
    a, a_log = await rooms_server(crosswire_cmd, watch, url)
    b, b_log = await rooms_server(crosswire_cmd, watch, url)
    logs = (a_log, b_log)
    for log in logs:
        await log.wait_for(rf" INFO crosswire\.pubsub: bus reachable at {where}$")
    ann, ben = await member(a.ws_url, "ann"), await member(b.ws_url, "ben")
    try:
        await asyncio.wait_for(lobby_members_on(redis, 2), TIMEOUT)
        for i in range(5):
            await send(ben, "say", {"room": "lobby", "text": f"before {i}"})
        before = [("ben", f"before {i}") for i in range(5)]
        assert await said(ann, 5) == before
        assert await said(ben, 5) == before

        await redis.kill()
        for log in logs:
            [lost] = await log.wait_for(r" ERROR ")
            assert re.search(rf"lost the connection to Redis at {where}", lost), lost
            await log.wait_for(ATTEMPT + where, count=2)
        await redis.start("--requirepass", PASSWORD)
        for log in logs:
            await log.wait_for(
                rf" INFO crosswire\.pubsub: reconnected to Redis at {where} after [\d.]+ s; "
                r"0 messages were queued$"
            )
        await asyncio.wait_for(lobby_members_on(redis, 2), TIMEOUT)
        for i in range(5):
            await send(ben, "say", {"room": "lobby", "text": f"after {i}"})
        await send(ben, "say", {"room": "lobby", "text": "end"})
        after = [("ben", f"after {i}") for i in range(5)] + [("ben", "end")]
        assert await said(ann, 6) == after  # every one, once, in order
        assert await said(ben, 6) == after
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ann.recv(), 0.3)
        for log in logs:
            assert len(log.matching(r" ERROR ")) == 1
            assert not [line for line in log.lines if PASSWORD in line]
    finally:
        await ann.close()
        await ben.close()
        await redis.kill()


async def test_the_asgi_lifespan_startup_connects_the_bus(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "crosswire.pubsub")
    app = crosswire.App(crosswire.define_hooks(), hub=crosswire.Hub(RedisBackend(redis_server.url)))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(crosswire.asgi(app), lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started or task.done())
        assert f"bus reachable at 127.0.0.1:{redis_server.port}" in caplog.messages
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)
        sock.close()
