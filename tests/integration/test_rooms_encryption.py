"""Per-client encryption of the rooms layer, checked by a client that implements the seed's
scheme on its own (``cryptography``'s primitives, not crosswire's helper): ECDH P-256 with raw
base64 points, HKDF-SHA256 with the server's salt, AES-256-GCM ``{"iv","ct"}``."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from websockets.asyncio.client import connect

import crosswire
from crosswire.crypto import Encryption
from crosswire.rooms import Handshake, Identity, RoomClient, RoomServer
from tests.integration.test_rooms import EventClient
from tests.support import TIMEOUT, closed_with

INFO = b"ignis-ecdh-p256-aes-256-gcm-v1"


class SealedClient:
    """A client that performs the handshake and opens what it receives."""

    def __init__(self, client: EventClient) -> None:
        self.client = client
        self._private = ec.generate_private_key(ec.SECP256R1())
        raw = self._private.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.public_key = base64.b64encode(raw).decode()
        self._key: AESGCM | None = None

    async def authenticate(self, token: str) -> dict[str, Any]:
        connected = await self.client.authenticate({"token": token, "publicKey": self.public_key})
        await self.authenticate_with(connected)
        return connected

    async def authenticate_with(self, connected: dict[str, Any]) -> None:
        """Derive the key from the ``connected`` event's data."""
        server_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), base64.b64decode(connected["serverPublicKey"])
        )
        secret = self._private.exchange(ec.ECDH(), server_key)
        salt = base64.b64decode(connected["salt"])
        assert len(salt) == 32
        self._key = AESGCM(
            HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=INFO).derive(secret)
        )

    async def receive(self) -> Any:
        return orjson.loads(await self.receive_raw())

    async def receive_raw(self) -> bytes:
        """The plaintext of the next (sealed) frame."""
        frame = await self.client.receive()
        assert frame["event"] == "encrypted", f"sent in clear: {frame}"
        assert list(frame["data"]) == ["iv", "ct"]
        iv = base64.b64decode(frame["data"]["iv"])
        assert len(iv) == 12
        assert self._key is not None
        return self._key.decrypt(iv, base64.b64decode(frame["data"]["ct"]), None)


def auth(client: RoomClient, data: Any) -> Identity | None:
    return Identity(user_id=data["token"]) if data.get("token") else None


@pytest.fixture
async def encrypted_server() -> AsyncIterator[tuple[RoomServer, str]]:
    encryption = Encryption()
    rooms = RoomServer(
        authenticate=auth,
        validate_rooms=lambda client, wanted: wanted,
        require_encryption=True,
        handshake=encryption.handshake,
        outbound_transformer=encryption.transform,
    )
    server = await crosswire.start(crosswire.App(rooms))
    yield rooms, server.url + "/ws"
    await asyncio.wait_for(server.aclose(), TIMEOUT)


@pytest.fixture
async def dial() -> AsyncIterator[Callable[[str], Awaitable[EventClient]]]:
    opened: list[EventClient] = []

    async def open_(url: str) -> EventClient:
        client = EventClient(await asyncio.wait_for(connect(url), TIMEOUT))
        opened.append(client)
        return client

    yield open_
    for client in opened:
        await client.ws.close()


async def test_after_the_handshake_every_message_is_sealed_for_its_client(
    encrypted_server: tuple[RoomServer, str], dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    rooms, url = encrypted_server
    ann, ben = SealedClient(await dial(url)), SealedClient(await dial(url))
    connected = await ann.authenticate("ann")
    assert list(connected) == ["id", "userId", "time", "serverPublicKey", "salt"]
    await ben.authenticate("ben")

    assert rooms.to_room("ws-default", "news", {"text": "secret"}) == 2
    assert await ann.receive() == {"event": "news", "data": {"text": "secret"}}
    assert await ben.receive() == {"event": "news", "data": {"text": "secret"}}
    rooms.to_user("ann", "dm", 1)
    rooms.broadcast("all", None)
    assert await ann.receive() == {"event": "dm", "data": 1}
    assert await ann.receive() == {"event": "all"}  # in order, per client
    # Errors after the handshake are sealed too.
    await ann.client.send("join", {"rooms": 5})
    assert await ann.receive() == {"event": "error", "data": {"message": "Invalid rooms"}}


async def test_many_messages_to_many_encrypted_clients_arrive_in_order(
    encrypted_server: tuple[RoomServer, str], dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    rooms, url = encrypted_server
    clients = [SealedClient(await dial(url)) for _ in range(25)]  # > the 10 transforms at once
    for i, client in enumerate(clients):
        await client.authenticate(f"user{i}")
    for n in range(40):
        rooms.to_room("ws-notification", "tick", n)
    for client in clients:
        assert [(await client.receive())["data"] for _ in range(40)] == list(range(40))


async def test_a_failed_handshake_closes_4004(
    encrypted_server: tuple[RoomServer, str], dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    _, url = encrypted_server
    for data in ({"token": "ann"}, {"token": "ann", "publicKey": "bm90IGEga2V5"}):
        client = await dial(url)
        await client.send("authenticate", data)
        assert await client.receive() == {
            "event": "error",
            "data": {"message": "Encryption handshake failed"},
        }
        assert await closed_with(client.ws) == (4004, "Encryption required")


async def test_encrypted_and_plain_clients_share_a_room(
    dial: Callable[[str], Awaitable[EventClient]],
) -> None:
    """Without require_encryption nobody is sealed; a server can mix: here two RoomServers
    on one in-process bus, one encrypting, one not, share the room ``lobby``."""
    from crosswire import Hub
    from crosswire.pubsub import MemoryBackend, MemoryBus

    bus = MemoryBus()
    encryption = Encryption()
    sealed_rooms = RoomServer(
        authenticate=auth,
        require_encryption=True,
        handshake=encryption.handshake,
        outbound_transformer=encryption.transform,
    )
    plain_rooms = RoomServer(authenticate=auth)
    servers = [
        await crosswire.start(crosswire.App(r, hub=Hub(MemoryBackend(bus))))
        for r in (sealed_rooms, plain_rooms)
    ]
    try:
        sealed = SealedClient(await dial(servers[0].url + "/ws"))
        plain = await dial(servers[1].url + "/ws")
        await sealed.authenticate("s")
        await plain.authenticate({"token": "p"})
        for server in servers:
            await asyncio.wait_for(server.app.hub.flush(), TIMEOUT)
        plain_rooms.to_room("ws-default", "hello", "both")
        assert await plain.receive() == {"event": "hello", "data": "both"}
        assert await sealed.receive() == {"event": "hello", "data": "both"}
    finally:
        for server in servers:
            await asyncio.wait_for(server.aclose(), TIMEOUT)


async def test_transforms_run_with_bounded_concurrency_and_plain_clients_do_not_wait(
    dial: Callable[[str], Awaitable[EventClient]],
) -> None:
    """A slow transformer: at most ``transform_concurrency`` run at once, each client's
    messages stay in order, and a plain client in the same room gets its copy at once."""
    from crosswire import Hub

    running = 0
    most = 0
    release = asyncio.Event()

    async def slow_seal(client: RoomClient, event: str, data: Any) -> tuple[str, Any]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return "sealed", {"event": event, "data": data}

    def handshake(client: RoomClient, data: Any) -> Handshake | None:
        return Handshake(server_public_key="k", salt="s") if data.get("seal") else None

    rooms = RoomServer(
        authenticate=auth,
        require_encryption=True,
        handshake=handshake,
        outbound_transformer=slow_seal,
    )
    plain_rooms = RoomServer(authenticate=auth)
    from crosswire.pubsub import MemoryBackend, MemoryBus

    bus = MemoryBus()
    sealed_server = await crosswire.start(
        crosswire.App(rooms, hub=Hub(MemoryBackend(bus), transform_concurrency=3))
    )
    plain_server = await crosswire.start(crosswire.App(plain_rooms, hub=Hub(MemoryBackend(bus))))
    try:
        sealed = [await dial(sealed_server.url + "/ws") for _ in range(8)]
        for i, client in enumerate(sealed):
            await client.authenticate({"token": f"s{i}", "seal": True})
        plain = await dial(plain_server.url + "/ws")
        await plain.authenticate({"token": "p"})
        for server in (sealed_server, plain_server):
            await asyncio.wait_for(server.app.hub.flush(), TIMEOUT)
        for n in range(3):
            rooms.to_room("ws-default", "tick", n)
        assert [(await plain.receive())["data"] for _ in range(3)] == [0, 1, 2]
        await asyncio.sleep(0.1)
        assert most == 3  # 8 clients x 3 messages wait, 3 transforms at a time
        release.set()
        for client in sealed:
            got = [await client.receive() for _ in range(3)]
            assert got == [
                {"event": "sealed", "data": {"event": "tick", "data": n}} for n in range(3)
            ]
        assert most == 3
    finally:
        for server in (sealed_server, plain_server):
            await asyncio.wait_for(server.aclose(), TIMEOUT)


async def test_nothing_reaches_a_client_in_clear_while_its_handshake_runs(
    dial: Callable[[str], Awaitable[EventClient]],
) -> None:
    """Until its handshake is done, a client is still authenticating: it cannot join rooms and
    is in none, so no room message can reach it unsealed."""
    encryption = Encryption()
    started, gate = asyncio.Event(), asyncio.Event()

    async def slow_handshake(client: RoomClient, data: Any) -> Handshake | None:
        started.set()
        await gate.wait()  # e.g. a key service
        return encryption.handshake(client, data)

    rooms = RoomServer(
        authenticate=auth,
        validate_rooms=lambda client, wanted: wanted,
        require_encryption=True,
        handshake=slow_handshake,
        outbound_transformer=encryption.transform,
    )
    server = await crosswire.start(crosswire.App(rooms))
    try:
        ann = SealedClient(await dial(server.url + "/ws"))
        await ann.client.send("authenticate", {"token": "ann", "publicKey": ann.public_key})
        await asyncio.wait_for(started.wait(), TIMEOUT)  # authenticated, handshake running
        await ann.client.send("join", {"rooms": ["secret"]})
        assert await ann.client.receive() == {
            "event": "error",
            "data": {"message": "Not authenticated"},
        }
        assert rooms.to_room("secret", "payroll", {"salary": 1}) == 0
        assert rooms.to_room("ws-default", "payroll", {"salary": 2}) == 0
        assert rooms.to_user("ann", "payroll", {"salary": 3}) == 0
        gate.set()
        connected = await ann.client.receive()
        assert connected["event"] == "connected"
        await ann.authenticate_with(connected["data"])
        rooms.to_room("ws-default", "news", 4)
        assert await ann.receive() == {"event": "news", "data": 4}
    finally:
        await asyncio.wait_for(server.aclose(), TIMEOUT)


async def test_a_handshake_that_never_ends_closes_4001(
    dial: Callable[[str], Awaitable[EventClient]],
) -> None:
    async def stuck(client: RoomClient, data: Any) -> Handshake | None:
        await asyncio.Event().wait()
        return None

    rooms = RoomServer(
        authenticate=auth,
        require_encryption=True,
        handshake=stuck,
        outbound_transformer=Encryption().transform,
        auth_timeout=0.1,
    )
    server = await crosswire.start(crosswire.App(rooms))
    try:
        client = await dial(server.url + "/ws")
        await client.send("authenticate", {"token": "ann", "publicKey": "x"})
        assert await closed_with(client.ws) == (4001, "Authentication timeout")
    finally:
        await asyncio.wait_for(server.aclose(), TIMEOUT)


async def test_raw_frames_are_sealed_as_they_are(
    encrypted_server: tuple[RoomServer, str], dial: Callable[[str], Awaitable[EventClient]]
) -> None:
    rooms, url = encrypted_server
    ann = SealedClient(await dial(url))
    await ann.authenticate("ann")
    assert rooms.app.hub.publish("ws-default", "plain text") == 1
    assert rooms.app.hub.publish("ws-default", b"\x00\x01") == 1
    assert await ann.receive_raw() == b"plain text"
    assert await ann.receive_raw() == b"\x00\x01"


async def test_a_transform_that_returns_nonsense_loses_that_message_only(
    dial: Callable[[str], Awaitable[EventClient]], caplog: pytest.LogCaptureFixture
) -> None:
    def transform(client: RoomClient, event: str, data: Any) -> Any:
        if data == 1:
            return ("e", {1, 2})  # a set: not JSON
        if data == 2:
            return "not a pair"
        return ("wrapped", data)

    rooms = RoomServer(
        authenticate=auth,
        require_encryption=True,
        handshake=lambda client, data: Handshake(server_public_key="k", salt="s"),
        outbound_transformer=transform,
    )
    app = crosswire.App(rooms)
    server = await crosswire.start(app)
    try:
        client = await dial(server.url + "/ws")
        await client.authenticate({"token": "ann"})
        for n in (1, 2, 3, 4):
            rooms.to_room("ws-default", "m", n)
        assert await client.receive() == {"event": "wrapped", "data": 3}
        assert await client.receive() == {"event": "wrapped", "data": 4}
        assert caplog.text.count("message dropped") == 2
    finally:
        await asyncio.wait_for(server.aclose(), TIMEOUT)
