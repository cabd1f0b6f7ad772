"""The rooms layer (seed 003) over real sockets, frame by frame as the seed's clients see it."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

import crosswire
from crosswire.rooms import Identity, RoomClient, RoomServer
from crosswire.wire.events import EventFrame
from tests.redis_server import RedisServer
from tests.support import TIMEOUT, Log, closed_with, eventually, recv

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class EventClient:
    """A seed-003 client: ``{"event", "data"}`` frames."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, event: str, data: Any = None) -> None:
        frame: dict[str, Any] = {"event": event}
        if data is not None:
            frame["data"] = data
        await self.ws.send(orjson.dumps(frame).decode())

    async def receive(self) -> Any:
        return orjson.loads(await recv(self.ws))

    async def authenticate(self, data: Any) -> dict[str, Any]:
        """Authenticate; returns the data of ``connected``."""
        await self.send("authenticate", data)
        frame = await self.receive()
        assert frame["event"] == "connected", frame
        return dict(frame["data"])

    async def nothing_more(self) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.ws.recv(), 0.3)


Serve = Callable[..., Awaitable[tuple[RoomServer, str]]]


@pytest.fixture
async def serve_rooms() -> AsyncIterator[Serve]:
    """``await serve_rooms(**RoomServer options)`` -> (rooms, ws url), on a real server."""
    running: list[crosswire.RunningServer] = []

    async def serve(**options: Any) -> tuple[RoomServer, str]:
        options.setdefault("authenticate", token_auth)
        rooms = RoomServer(**options)
        server = await crosswire.start(crosswire.App(rooms))
        running.append(server)
        return rooms, server.url + "/ws"

    yield serve
    for server in running:
        await asyncio.wait_for(server.aclose(), TIMEOUT)


@pytest.fixture
async def dial() -> AsyncIterator[Callable[[str], Awaitable[EventClient]]]:
    sockets: list[ClientConnection] = []

    async def open_(url: str) -> EventClient:
        ws = await asyncio.wait_for(connect(url), TIMEOUT)
        sockets.append(ws)
        return EventClient(ws)

    yield open_
    for ws in sockets:
        await ws.close()


def token_auth(client: RoomClient, data: Any) -> Identity | None:
    """``{"token": "ok-<user>"}`` is user <user>; ``{"token": "anon"}`` no user; else refused."""
    token = data.get("token", "") if isinstance(data, dict) else ""
    if token == "anon":
        return Identity()
    if token.startswith("ok-"):
        return Identity(user_id=token[3:], metadata={"plan": "pro"})
    return None


def allow_public(client: RoomClient, rooms: list[str]) -> list[str]:
    return [r for r in rooms if r.startswith("public-")]


async def test_authenticate_answers_connected_with_id_user_and_time(
    serve_rooms: Serve, dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    rooms, url = await serve_rooms()
    ann = await dial(url)
    connected = await ann.authenticate({"token": "ok-ann"})
    assert list(connected) == ["id", "userId", "time"]
    assert connected["userId"] == "ann"
    assert ISO_MS.match(connected["time"])
    client = rooms.client(connected["id"])
    assert client is not None and client.user_id == "ann" and client.metadata == {"plan": "pro"}
    assert client.rooms == {connected["id"], "ws-default", "ws-notification"}
    assert rooms.clients_of("ann") == [client]

    anon = await dial(url)
    assert list(await anon.authenticate({"token": "anon"})) == ["id", "time"]


async def test_refused_or_failing_authentication_sends_error_then_closes_4003(
    serve_rooms: Serve, dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    def auth(client: RoomClient, data: Any) -> Identity | None:
        if data.get("token") == "boom":
            raise RuntimeError("database down")
        return token_auth(client, data)

    _, url = await serve_rooms(authenticate=auth)
    wrong = await dial(url)
    await wrong.send("authenticate", {"token": "nope"})
    assert await wrong.receive() == {"event": "error", "data": {"message": "Authentication failed"}}
    assert await closed_with(wrong.ws) == (4003, "Authentication failed")

    failing = await dial(url)
    await failing.send("authenticate", {"token": "boom"})
    assert await failing.receive() == {
        "event": "error",
        "data": {"message": "Authentication error"},
    }
    assert await closed_with(failing.ws) == (4003, "Authentication failed")


async def test_no_authentication_in_time_closes_4001_and_heartbeats_do_not_count(
    serve_rooms: Serve, dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    _, url = await serve_rooms(auth_timeout=0.3)
    idle = await dial(url)
    await idle.send("heartbeat")  # silent before authentication: no reply, no error
    assert await closed_with(idle.ws) == (4001, "Authentication timeout")


async def test_a_slow_async_authentication_gets_three_times_the_timeout(
    serve_rooms: Serve, dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    async def slow(client: RoomClient, data: Any) -> Identity | None:
        await asyncio.sleep(data["delay"])
        return Identity(user_id="slow")

    _, url = await serve_rooms(authenticate=slow, auth_timeout=0.3)
    patient = await dial(url)
    await patient.send("authenticate", {"delay": 0.6})  # > timeout, < 3 x timeout
    assert (await patient.receive())["event"] == "connected"

    too_slow = await dial(url)
    await too_slow.send("authenticate", {"delay": 5})
    assert await closed_with(too_slow.ws) == (4001, "Authentication timeout")


async def test_bad_frames_and_early_or_repeated_events_get_error_events(
    serve_rooms: Serve, dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    _, url = await serve_rooms()
    client = await dial(url)
    for junk in ("not json", "[1]", '{"data": 1}', '{"event": 7}'):
        await client.ws.send(junk)
        assert await client.receive() == {
            "event": "error",
            "data": {"message": "Invalid message format"},
        }
    await client.send("chat", "too early")
    assert await client.receive() == {"event": "error", "data": {"message": "Not authenticated"}}
    await client.authenticate({"token": "ok-bo"})
    await client.send("authenticate", {"token": "ok-bo"})
    assert await client.receive() == {
        "event": "error",
        "data": {"message": "Already authenticated"},
    }
    await client.send("heartbeat")
    await client.nothing_more()  # heartbeats are never answered


async def test_a_session_that_expires_is_refreshed_in_band_and_keeps_its_rooms(
    serve_rooms: Serve, dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    """An Identity with ``expires_at``: the client sends ``authenticate`` again before it
    passes, is answered ``authenticated`` (not ``connected`` again) and keeps its rooms; the
    refreshed session ends with 1008 ``Session expired``."""

    def expiring(client: RoomClient, data: Any) -> Identity | None:
        lifetime = data.get("lifetime") if isinstance(data, dict) else None
        if not isinstance(lifetime, float):
            return None
        return Identity(user_id="ann", metadata={"n": lifetime}, expires_at=time.time() + lifetime)

    rooms, url = await serve_rooms(authenticate=expiring, validate_rooms=allow_public)
    ann = await dial(url)
    first_expiry = time.time() + 0.5
    ann_id = (await ann.authenticate({"lifetime": 0.5}))["id"]
    await ann.send("join", {"rooms": ["public-a"]})
    await eventually(lambda: len(rooms.members("public-a")) == 1)

    await ann.send("authenticate", {"lifetime": 1.2})
    refreshed = await ann.receive()
    assert refreshed["event"] == "authenticated"
    assert refreshed["data"]["userId"] == "ann"
    assert refreshed["data"]["expiresAt"] / 1000 >= first_expiry + 0.5
    assert rooms.client(ann_id).metadata == {"n": 1.2}  # type: ignore[union-attr]
    await ann.send("authenticate", {"lifetime": "no"})
    assert await ann.receive() == {"event": "error", "data": {"message": "Refresh refused"}}

    await asyncio.sleep(max(0.0, first_expiry - time.time()) + 0.05)
    assert rooms.to_room("public-a", "news", {"n": 1}) == 1  # still in its room
    assert await ann.receive() == {"event": "news", "data": {"n": 1}}
    assert await closed_with(ann.ws) == (1008, "Session expired")
    await eventually(lambda: rooms.members("public-a") == [])


async def test_join_and_leave_rooms_through_the_validator(
    serve_rooms: Serve, dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    rooms, url = await serve_rooms(validate_rooms=allow_public)
    ann, ben = await dial(url), await dial(url)
    ann_id = (await ann.authenticate({"token": "ok-ann"}))["id"]
    await ben.authenticate({"token": "ok-ben"})

    await ann.send("join", {"rooms": ["public-a", "secret", "ws:room:x", "public-b"]})
    assert await ann.receive() == {
        "event": "error",
        "data": {"message": "Join rejected", "rooms": ["secret", "ws:room:x"]},
    }
    await ben.send("join", {"rooms": ["public-a"]})
    await eventually(lambda: len(rooms.members("public-a")) == 2)
    assert [c.id for c in rooms.members("public-b")] == [ann_id]

    assert rooms.to_room("public-a", "news", {"n": 1}) == 2
    assert await ann.receive() == {"event": "news", "data": {"n": 1}}
    assert await ben.receive() == {"event": "news", "data": {"n": 1}}

    await ann.send("leave", {"rooms": ["public-a", "never-joined", "ws-default"]})
    await eventually(lambda: len(rooms.members("public-a")) == 1)
    assert rooms.client(ann_id) is not None
    assert rooms.client(ann_id).rooms == {ann_id, "public-b", "ws-notification"}  # type: ignore[union-attr]
    await ann.send("join", {"rooms": "public-a"})
    assert await ann.receive() == {"event": "error", "data": {"message": "Invalid rooms"}}
    await ann.send("join", {"rooms": []})  # nothing asked, nothing said
    await ann.nothing_more()


async def test_async_room_validation_and_the_default_of_refusing_every_join(
    serve_rooms: Serve, dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    async def later(client: RoomClient, rooms: list[str]) -> list[str]:
        await asyncio.sleep(0.05)
        return [*rooms, "not-asked-for"]  # can only narrow: extra rooms are ignored

    rooms, url = await serve_rooms(validate_rooms=later)
    client = await dial(url)
    client_id = (await client.authenticate({"token": "anon"}))["id"]
    await client.send("join", {"rooms": ["x"]})
    await eventually(lambda: "x" in rooms.client(client_id).rooms)  # type: ignore[union-attr]
    assert "not-asked-for" not in rooms.client(client_id).rooms  # type: ignore[union-attr]

    _, closed_url = await serve_rooms()  # no validate_rooms
    other = await dial(closed_url)
    await other.authenticate({"token": "anon"})
    await other.send("join", {"rooms": ["x"]})
    assert await other.receive() == {
        "event": "error",
        "data": {"message": "Join rejected", "rooms": ["x"]},
    }


async def test_other_events_go_to_on_message_and_lifecycle_callbacks_run(
    serve_rooms: Serve, dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    log = Log()

    async def on_message(client: RoomClient, frame: EventFrame) -> None:
        log.add("message", client.user_id, frame.event, frame.data, frame.id)

    rooms, url = await serve_rooms(
        on_message=on_message,
        on_connected=lambda c: log.add("connected", c.user_id, c.metadata),
        on_disconnected=lambda c: log.add("disconnected", c.user_id, c.state.value),
    )
    ann = await dial(url)
    await ann.authenticate({"token": "ok-ann"})
    await ann.ws.send('{"event":"chat","data":{"text":"hi"},"id":"m1"}')
    assert await log.wait_for("message") == [("message", "ann", "chat", {"text": "hi"}, "m1")]
    assert await log.wait_for("connected") == [("connected", "ann", {"plan": "pro"})]
    never = await dial(url)
    await never.ws.close()  # never authenticated: still reported
    await ann.ws.close()
    found = await log.wait_for("disconnected", 2)
    assert sorted(found, key=str) == [
        ("disconnected", "ann", "disconnected"),
        ("disconnected", None, "disconnected"),
    ]
    await eventually(lambda: not rooms.clients)


async def test_idle_authenticated_clients_are_swept_with_4002(
    serve_rooms: Serve, dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    _, url = await serve_rooms(heartbeat_interval=0.1, heartbeat_timeout=0.4)
    idle, alive = await dial(url), await dial(url)
    await idle.authenticate({"token": "anon"})
    await alive.authenticate({"token": "anon"})

    async def beat() -> None:
        for _ in range(10):
            await alive.send("heartbeat")
            await asyncio.sleep(0.1)

    beating = asyncio.create_task(beat())
    assert await closed_with(idle.ws) == (4002, "Heartbeat timeout")
    await beating
    await alive.send("heartbeat")
    await alive.nothing_more()  # still open


async def test_broadcast_reaches_authenticated_clients_only_and_shutdown_closes_all_1001(
    serve_rooms: Serve, dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    rooms, url = await serve_rooms()
    ann, ben, anon = await dial(url), await dial(url), await dial(url)
    ann_id = (await ann.authenticate({"token": "ok-ann"}))["id"]
    await ben.authenticate({"token": "ok-ben"})
    assert rooms.broadcast("hello", [1], exclude=[ann_id]) == 1
    assert await ben.receive() == {"event": "hello", "data": [1]}
    assert rooms.to_user("ann", "dm", "x") == 1
    assert await ann.receive() == {"event": "dm", "data": "x"}
    assert rooms.to_client(ann_id, "dm", "y") == 1
    assert await ann.receive() == {"event": "dm", "data": "y"}
    await anon.nothing_more()  # never authenticated: not in the broadcast group

    await rooms.shutdown(grace_period=2)
    for client in (ann, ben, anon):
        assert await closed_with(client.ws) == (1001, "Server shutting down")


async def test_rooms_users_and_clients_span_instances_on_redis(
    redis_server: RedisServer, dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    from crosswire import Emitter, Hub
    from crosswire.pubsub.redis import RedisBackend

    instances = []
    for _ in range(2):
        rooms = RoomServer(authenticate=token_auth, validate_rooms=allow_public)
        app = crosswire.App(rooms, hub=Hub(RedisBackend(redis_server.url)))
        instances.append((rooms, await crosswire.start(app)))
    try:
        (a, server_a), (b, server_b) = instances
        ann = await dial(server_a.url + "/ws")
        ann_phone = await dial(server_b.url + "/ws")
        ben = await dial(server_b.url + "/ws")
        await ann.authenticate({"token": "ok-ann"})
        await ann_phone.authenticate({"token": "ok-ann"})
        ben_id = (await ben.authenticate({"token": "ok-ben"}))["id"]
        await ben.send("join", {"rooms": ["public-x"]})
        await eventually(lambda: bool(b.members("public-x")))
        for _, server in instances:
            await asyncio.wait_for(server.app.hub.flush(), TIMEOUT)

        assert a.to_user("ann", "dm", 1) == 1  # one here, one on the other instance
        assert await ann.receive() == {"event": "dm", "data": 1}
        assert await ann_phone.receive() == {"event": "dm", "data": 1}
        assert a.to_room("public-x", "x", 2) == 0
        assert await ben.receive() == {"event": "x", "data": 2}
        assert a.to_client(ben_id, "only-you", 3) == 0
        assert await ben.receive() == {"event": "only-you", "data": 3}

        async with Emitter(RedisBackend(redis_server.url)) as emitter:
            await emitter.to_room("ws-default", "from-outside", {"ok": True}, exclude=[ben_id])
            await emitter.broadcast("everyone")
        for client in (ann, ann_phone):
            assert await client.receive() == {"event": "from-outside", "data": {"ok": True}}
        for client in (ann, ann_phone, ben):
            assert await client.receive() == {"event": "everyone"}
    finally:
        for _, server in instances:
            await asyncio.wait_for(server.aclose(), TIMEOUT)


async def test_an_on_message_that_raises_is_answered_and_the_client_carries_on(
    serve_rooms: Serve, dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    """Every frame gets an answer: an on_message that raises (plain or async) is logged on
    the server and answered ``Internal error``, without what was raised."""

    async def on_message(client: RoomClient, frame: EventFrame) -> None:
        if frame.event == "boom":
            raise TypeError("unhashable type: 'list' (never sent)")
        if frame.event == "later":
            await asyncio.sleep(0)
            raise RuntimeError("never sent either")
        client.peer.send({"event": "ok", "data": frame.data})

    def plain(client: RoomClient, frame: EventFrame) -> Any:
        if frame.event == "boom":
            raise TypeError("unhashable type: 'list' (never sent)")
        return on_message(client, frame)

    for handler in (on_message, plain):
        _, url = await serve_rooms(on_message=handler)
        client = await dial(url)
        await client.authenticate({"token": "ok-ann"})
        for event in ("boom", "later"):
            await client.send(event, {"room": ["lobby"]})
            assert await client.receive() == {
                "event": "error",
                "data": {"message": "Internal error"},
            }
        await client.send("fine", 1)
        assert await client.receive() == {"event": "ok", "data": 1}
