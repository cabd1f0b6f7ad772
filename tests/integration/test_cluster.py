"""Three server processes on one redis-server, clients spread over them: 10,000 messages from
random senders to three rooms, and every member of a room receives every message of it exactly
once, each sender's messages in the order sent.

Across instances there is no single order of a room (each instance delivers to its own clients
before Redis carries the message to the others); the order of each sender's messages in each
room is what crosswire guarantees, and what this checks.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.redis_server import RedisServer
from tests.support import TIMEOUT, Command, RunCommand

ROOMS = ("red", "green", "blue")
SERVERS = 3
CLIENTS_PER_SERVER = 4
MESSAGES = 10_000
ROOT = Path(__file__).resolve().parents[2]


async def start_relays(
    crosswire_cmd: RunCommand, redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> list[Command]:
    monkeypatch.setenv("CROSSWIRE_REDIS_URL", redis.url)
    relays = []
    for _ in range(SERVERS):
        relay = await crosswire_cmd(
            "run", "tests.apps.relay:app", "--port", "0", "--log-level", "warning", cwd=ROOT
        )
        await relay.started()
        relays.append(relay)
    return relays


async def rooms_subscribed_everywhere(redis: RedisServer) -> None:
    client = redis.client()
    try:
        while True:
            counts = dict(await client.pubsub_numsub(*(f"ws:room:{r}" for r in ROOMS)))
            if all(counts[f"ws:room:{r}".encode()] == SERVERS for r in ROOMS):
                return
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def test_ten_thousand_messages_across_three_processes_arrive_exactly_once_in_order(
    crosswire_cmd: RunCommand, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    relays = await start_relays(crosswire_cmd, redis_server, monkeypatch)
    rng = random.Random(20261123)

    # Client i is on server i % 3 and is a member of two of the three rooms; every server has
    # members of every room.
    members: list[tuple[str, ...]] = []
    sockets: list[ClientConnection] = []
    for i in range(SERVERS * CLIENTS_PER_SERVER):
        k = i // SERVERS
        rooms = (ROOMS[k % 3], ROOMS[(k + 1) % 3])
        query = "&".join(f"room={r}" for r in rooms)
        url = f"{relays[i % SERVERS].ws_url}/?{query}"
        sockets.append(await asyncio.wait_for(connect(url, max_queue=None), TIMEOUT))
        members.append(rooms)
    await asyncio.wait_for(rooms_subscribed_everywhere(redis_server), TIMEOUT)

    # The plan: message n goes from a random sender to a random room.
    plan: dict[int, list[tuple[int, str]]] = defaultdict(list)  # sender -> [(n, room)]
    room_of: dict[int, str] = {}
    for n in range(MESSAGES):
        sender, room = rng.randrange(len(sockets)), rng.choice(ROOMS)
        plan[sender].append((n, room))
        room_of[n] = room
    expected = {
        i: sorted(n for n, room in room_of.items() if room in rooms)
        for i, rooms in enumerate(members)
    }

    async def send_all(sender: int) -> None:
        ws = sockets[sender]
        for n, room in plan[sender]:
            await ws.send(orjson.dumps({"room": room, "sender": sender, "n": n}).decode())

    async def receive_all(i: int) -> list[tuple[int, int]]:
        got: list[tuple[int, int]] = []
        while len(got) < len(expected[i]):
            frame = orjson.loads(await sockets[i].recv())
            assert frame["room"] in members[i], "a message reached a client not in its room"
            got.append((frame["sender"], frame["n"]))
        return got

    receivers = [asyncio.create_task(receive_all(i)) for i in range(len(sockets))]
    await asyncio.wait_for(asyncio.gather(*(send_all(s) for s in plan)), 60)
    received = await asyncio.wait_for(asyncio.gather(*receivers), 60)

    for i, got in enumerate(received):
        numbers = [n for _, n in got]
        assert sorted(numbers) == expected[i], f"client {i}: missing or duplicated messages"
        by_sender_and_room: dict[tuple[int, str], list[int]] = defaultdict(list)
        for sender, n in got:
            by_sender_and_room[sender, room_of[n]].append(n)
        for key, sequence in by_sender_and_room.items():
            assert sequence == sorted(sequence), f"client {i}: {key} out of order"
    # Nothing more arrives after the last expected message: no late duplicate.
    for ws in sockets:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.2)
    for ws in sockets:
        await ws.close()
