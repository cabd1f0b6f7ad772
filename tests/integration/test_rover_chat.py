"""Seed 004's complete chat example (examples/rover_chat.py), run as a user runs it, driven
with raw frames as a client written from the seed sends and reads them; then two instances on
one redis-server form one chat."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.redis_server import RedisServer
from tests.support import TIMEOUT, Command, RunCommand, recv

ROOT = Path(__file__).resolve().parents[2]


class RoverClient:
    """A client of seed 004: flat ``{"type": event, ...fields}`` frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, event: str, **fields: Any) -> None:
        await self.ws.send(orjson.dumps({"type": event, **fields}).decode())

    async def receive(self) -> dict[str, Any]:
        frame: dict[str, Any] = orjson.loads(await recv(self.ws))
        return frame

    async def join_room(self, username: str) -> str:
        """Join the room; returns this connection's id (from the ack)."""
        await self.send("join", topic="room", username=username)
        ack = await self.receive()
        assert (ack["type"], ack["topic"]) == ("join_ack", "room"), ack
        return str(ack["id"])

    async def nothing_more(self) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.ws.recv(), 0.3)


Dial = Callable[[str], Awaitable[RoverClient]]


@pytest.fixture
async def dial() -> AsyncIterator[Dial]:
    sockets: list[ClientConnection] = []

    async def open_(url: str) -> RoverClient:
        ws = await asyncio.wait_for(connect(url), TIMEOUT)
        sockets.append(ws)
        return RoverClient(ws)

    yield open_
    for ws in sockets:
        await ws.close()


async def chat_server(crosswire_cmd: RunCommand, redis_url: str | None = None) -> Command:
    env = {"CROSSWIRE_REDIS_URL": redis_url} if redis_url else {"CROSSWIRE_REDIS_URL": ""}
    cmd = await crosswire_cmd("run", "examples.rover_chat:app", "--port", "0", cwd=ROOT, env=env)
    await cmd.started()
    return cmd


async def test_the_seeds_chat_end_to_end(crosswire_cmd: RunCommand, dial: Dial) -> None:
    cmd = await chat_server(crosswire_cmd)
    ann, bob = await dial(cmd.ws_url + "/chat"), await dial(cmd.ws_url + "/chat")

    await ann.send("join", topic="room")
    assert await ann.receive() == {
        "type": "join_error",
        "topic": "room",
        "reason": "Username required",
        "code": "INVALID_ARGUMENT",
    }
    ann_id = await ann.join_room("ann")
    bob_id = await bob.join_room("bob")  # (bob's user_joined went to the room first)
    assert await ann.receive() == {"type": "user_joined", "user": "bob", "id": bob_id}
    assert ann_id != bob_id

    await ann.send("chat_message", user="ann", text="Hello everyone!")
    for client in (ann, bob):
        said = await client.receive()
        assert said["type"] == "chat_message"
        assert (said["user"], said["text"]) == ("ann", "Hello everyone!")
        assert isinstance(said["timestamp"], int) and isinstance(said["server_time"], int)

    await bob.send("typing", user="bob")
    for client in (ann, bob):
        assert await client.receive() == {"type": "user_typing", "user": "bob"}

    await bob.send("private_message", target_connection_id=ann_id, text="psst", **{"from": "bob"})
    assert await ann.receive() == {"type": "private_message", "from": "bob", "text": "psst"}
    await ann.send("report_user", reported_connection_id=bob_id)
    assert await bob.receive() == {"type": "kicked", "reason": "Reported by moderator"}
    await ann.nothing_more()

    await bob.send("leave", topic="room", user="bob")
    assert await bob.receive() == {"type": "user_left", "user": "bob"}
    assert await bob.receive() == {"type": "leave_ack", "topic": "room"}
    assert await ann.receive() == {"type": "user_left", "user": "bob"}
    await ann.send("chat_message", user="ann", text="bye")
    assert (await ann.receive())["text"] == "bye"
    await bob.nothing_more()  # no longer in the room


async def test_the_echo_endpoint_and_bad_input(crosswire_cmd: RunCommand, dial: Dial) -> None:
    cmd = await chat_server(crosswire_cmd)
    echo = await dial(cmd.ws_url + "/echo")
    await echo.send("message", text="Hello!")
    assert await echo.receive() == {"type": "message", "text": "Hello!"}

    chat = await dial(cmd.ws_url + "/chat")
    for bad, code in (
        ("not json", "INVALID_ARGUMENT"),
        ('{"text": "no type"}', "INVALID_ARGUMENT"),
        ('{"type": "chat_message", "user": 5, "text": "x"}', "INVALID_ARGUMENT"),
        ('{"type": "dance"}', "UNIMPLEMENTED"),
    ):
        await chat.ws.send(bad)
        error = await chat.receive()
        assert (error["type"], error["code"]) == ("error", code), error
        assert error["message"]
    await chat.join_room("still-here")  # the connection carries on

    with pytest.raises(InvalidStatus) as refused:
        await asyncio.wait_for(connect(cmd.ws_url + "/nowhere"), TIMEOUT)
    assert refused.value.response.status_code == 404


async def test_two_instances_on_redis_are_one_chat(
    crosswire_cmd: RunCommand, dial: Dial, redis_server: RedisServer
) -> None:
    a = await chat_server(crosswire_cmd, redis_server.url)
    b = await chat_server(crosswire_cmd, redis_server.url)
    ann, bob = await dial(a.ws_url + "/chat"), await dial(b.ws_url + "/chat")
    client = redis_server.client()

    async def instances_in_room(count: int) -> None:
        """Wait until ``count`` instances subscribe the room on Redis (asynchronous)."""
        while (await client.pubsub_numsub("ws:room:room"))[0][1] != count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    try:
        ann_id = await ann.join_room("ann")
        await asyncio.wait_for(instances_in_room(1), TIMEOUT)
        bob_id = await bob.join_room("bob")
        # bob's announcement crossed to ann's instance.
        assert await ann.receive() == {"type": "user_joined", "user": "bob", "id": bob_id}
        await asyncio.wait_for(instances_in_room(2), TIMEOUT)
    finally:
        await client.aclose()

    await ann.send("chat_message", user="ann", text="across")
    for who in (ann, bob):
        said = await who.receive()
        assert (said["type"], said["text"]) == ("chat_message", "across")
    await bob.send("private_message", target_connection_id=ann_id, text="hi", **{"from": "bob"})
    assert await ann.receive() == {"type": "private_message", "from": "bob", "text": "hi"}
    await ann.send("report_user", reported_connection_id=bob_id)
    assert await bob.receive() == {"type": "kicked", "reason": "Reported by moderator"}
    await ann.nothing_more()  # each once
    await bob.nothing_more()
