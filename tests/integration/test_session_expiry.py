"""Sessions that expire (issue 17, point 2): an authentication result carries an expiry, the
client refreshes its token in band without reconnecting, and a session past its expiry is
closed with 1008 ``Session expired``, in every dialect, over real sockets, with expiries of
a fraction of a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

import crosswire
from crosswire import App, AuthContext, Endpoint, Identity, Router, message
from crosswire.server import SERVERS
from crosswire.wire import CANONICAL, EVENTS, ROVER
from tests.support import TIMEOUT, closed_with, recv

Ping = message("ping")
Pong = message("pong", {"user": str})

#: Short enough for a test, long enough for a loaded machine to authenticate and ping first.
SHORT = 0.6


def check(ctx: AuthContext) -> Identity | None:
    """Tokens ``<user>:<seconds>`` (valid for that long), ``<user>:forever``; anything else
    is refused."""
    token = ctx.payload.get("token") if isinstance(ctx.payload, dict) else None
    if not isinstance(token, str) or ":" not in token:
        return None
    user, lifetime = token.split(":", 1)
    if lifetime == "forever":
        return Identity(user_id=user)
    return Identity(user_id=user, expires_at=time.time() + float(lifetime))


def expiring_router(refreshes: list[bool]) -> Router:
    router = Router()

    def counted(ctx: AuthContext) -> Identity | None:
        refreshes.append(ctx.refreshing)
        return check(ctx)

    router.authenticate(counted, timeout=TIMEOUT)
    router.on(Ping, lambda ctx: ctx.send(Pong, {"user": ctx.peer.user_id or ""}))
    return router


@dataclass(frozen=True)
class Speaker:
    """How a client of one dialect writes and reads the frames of this test."""

    path: str
    authenticate: Callable[[str, str], dict[str, Any]]
    ping: dict[str, Any]
    pong_user: Callable[[dict[str, Any]], str | None]
    #: ``(userId, expiresAt)`` of an ``authenticated`` answer (None: not one).
    authenticated: Callable[[dict[str, Any]], tuple[Any, Any] | None]
    error_message: Callable[[dict[str, Any]], str | None]
    #: Whether the first authentication is answered (seed 003's is the app's ``connected``).
    answers_first: bool


def _canonical_authenticated(f: dict[str, Any]) -> tuple[Any, Any] | None:
    if f.get("type") != "$ws:authenticated":
        return None
    return f["payload"].get("userId"), f["payload"].get("expiresAt")


def _events_authenticated(f: dict[str, Any]) -> tuple[Any, Any] | None:
    if f.get("event") != "authenticated":
        return None
    return f["data"].get("userId"), f["data"].get("expiresAt")


def _rover_authenticated(f: dict[str, Any]) -> tuple[Any, Any] | None:
    if f.get("type") != "authenticated":
        return None
    return f.get("userId"), f.get("expiresAt")


SPEAKERS = {
    "canonical": Speaker(
        "/canonical",
        lambda token, cid: {
            "type": "$ws:authenticate",
            "meta": {"correlationId": cid},
            "payload": {"token": token},
        },
        {"type": "ping", "meta": {}},
        lambda f: f["payload"]["user"] if f.get("type") == "pong" else None,
        _canonical_authenticated,
        lambda f: f["payload"]["message"] if f.get("type") in ("ERROR", "RPC_ERROR") else None,
        True,
    ),
    "events": Speaker(
        "/events",
        lambda token, cid: {"event": "authenticate", "data": {"token": token}, "id": cid},
        {"event": "ping"},
        lambda f: f["data"]["user"] if f.get("event") == "pong" else None,
        _events_authenticated,
        lambda f: f["data"]["message"] if f.get("event") == "error" else None,
        False,
    ),
    "rover": Speaker(
        "/rover",
        lambda token, cid: {"type": "authenticate", "token": token},
        {"type": "ping"},
        lambda f: f["user"] if f.get("type") == "pong" else None,
        _rover_authenticated,
        lambda f: f["message"] if f.get("type") == "error" else None,
        True,
    ),
}


class Talk:
    """One client connection in one dialect."""

    def __init__(self, ws: ClientConnection, speaker: Speaker) -> None:
        self.ws = ws
        self.speaker = speaker

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(frame).decode())

    async def receive(self) -> dict[str, Any]:
        frame: dict[str, Any] = orjson.loads(await recv(self.ws))
        return frame

    async def authenticate(self, token: str, cid: str = "a1") -> tuple[Any, Any] | None:
        """Send credentials; the ``authenticated`` answer's (userId, expiresAt), or None
        for a first authentication the dialect does not answer."""
        await self.send(self.speaker.authenticate(token, cid))
        if not self.speaker.answers_first and cid == "first":
            return None
        answer = await self.receive()
        authenticated = self.speaker.authenticated(answer)
        assert authenticated is not None, answer
        return authenticated

    async def ping(self) -> str | None:
        await self.send(self.speaker.ping)
        return self.speaker.pong_user(await self.receive())


Open = Callable[[], Awaitable[Talk]]


def expiring_app(refreshes: list[bool]) -> App:
    """The expiring router at /canonical, /events and /rover."""
    router = expiring_router(refreshes)
    return App(
        endpoints=[
            Endpoint("/canonical", router, dialects=[CANONICAL]),
            Endpoint("/events", router, dialects=[EVENTS]),
            Endpoint("/rover", router, dialects=[ROVER]),
        ]
    )


@pytest.fixture
async def sockets() -> AsyncIterator[list[ClientConnection]]:
    """The test's client connections, closed at teardown."""
    opened: list[ClientConnection] = []
    yield opened
    for ws in opened:
        await ws.close()


@pytest.fixture(params=sorted(SPEAKERS))
async def talk(
    request: pytest.FixtureRequest, serve_router: Any, sockets: list[ClientConnection]
) -> tuple[Open, list[bool]]:
    """``open_()`` connects a client of the dialect under test to the expiring router."""
    speaker = SPEAKERS[request.param]
    refreshes: list[bool] = []
    running = await serve_router(expiring_app(refreshes))

    async def open_() -> Talk:
        ws = await asyncio.wait_for(connect(running.url + speaker.path), TIMEOUT)
        sockets.append(ws)
        return Talk(ws, speaker)

    return open_, refreshes


@pytest.mark.parametrize("dialect", sorted(SPEAKERS))
@pytest.mark.parametrize("server", SERVERS)
async def test_a_refreshed_session_then_expires_on_every_server(
    serve_router: Any, sockets: list[ClientConnection], server: str, dialect: str
) -> None:
    """The in-band part on each server crosswire runs: authenticate, refresh, and the close
    1008 ``Session expired`` at the refreshed expiry."""
    speaker = SPEAKERS[dialect]
    refreshes: list[bool] = []
    running = await serve_router(expiring_app(refreshes), server)
    ws = await asyncio.wait_for(connect(running.url + speaker.path), TIMEOUT)
    sockets.append(ws)
    client = Talk(ws, speaker)
    await client.authenticate("ann:0.3", cid="first")
    answer = await client.authenticate(f"ann:{SHORT}", cid="r1")
    assert answer is not None and answer[0] == "ann"
    assert await client.ping() == "ann"
    assert await closed_with(ws) == (1008, "Session expired")
    assert time.time() >= answer[1] / 1000 - 0.01
    assert refreshes == [False, True]


async def until(deadline: float) -> None:
    """Wait (on the event loop) until the wall clock passes ``deadline``."""
    await asyncio.sleep(max(0.0, deadline - time.time()) + 0.05)


async def test_a_session_past_its_expiry_is_closed_1008(talk: tuple[Open, list[bool]]) -> None:
    open_, _ = talk
    client = await open_()
    before = time.time()
    answer = await client.authenticate(f"ann:{SHORT}", cid="first")
    if answer is not None:  # canonical and Rover answer the first authentication
        user, expires_ms = answer
        assert user == "ann"
        assert before + SHORT - 0.001 <= expires_ms / 1000 <= time.time() + SHORT  # (in ms)
    assert await client.ping() == "ann"
    assert await closed_with(client.ws) == (1008, "Session expired")
    assert time.time() >= before + SHORT - 0.01  # not before its time


async def test_a_refresh_moves_the_expiry_without_reconnecting(
    talk: tuple[Open, list[bool]],
) -> None:
    open_, refreshes = talk
    client = await open_()
    first_expiry = time.time() + SHORT
    await client.authenticate(f"ann:{SHORT}", cid="first")
    answer = await client.authenticate("ann:1.5", cid="r1")
    assert answer is not None
    user, expires_ms = answer
    assert user == "ann"
    later = expires_ms / 1000
    assert later >= first_expiry + 0.5
    assert refreshes == [False, True]  # the check knew the second was a refresh

    await until(first_expiry)
    assert await client.ping() == "ann"  # past the first expiry, the same connection serves
    assert await closed_with(client.ws) == (1008, "Session expired")
    assert time.time() >= later - 0.01


async def test_a_refused_refresh_keeps_the_old_expiry_and_the_connection(
    talk: tuple[Open, list[bool]],
) -> None:
    open_, _ = talk
    client = await open_()
    expiry = time.time() + SHORT
    await client.authenticate(f"ann:{SHORT}", cid="first")
    speaker = client.speaker
    for token in ("garbage", "bob:60"):  # refused by the check; another user's
        await client.send(speaker.authenticate(token, "r2"))
        refused = await client.receive()
        assert speaker.error_message(refused) == "Refresh refused", refused
        assert await client.ping() == "ann"  # the connection carries on as ann
    assert await closed_with(client.ws) == (1008, "Session expired")
    assert time.time() >= expiry - 0.01


async def test_a_session_without_expiry_has_nothing_to_refresh(
    talk: tuple[Open, list[bool]],
) -> None:
    open_, refreshes = talk
    client = await open_()
    await client.authenticate("ann:forever", cid="first")
    await client.send(client.speaker.authenticate("ann:forever", "again"))
    again = await client.receive()
    assert client.speaker.error_message(again) == "Already authenticated", again
    assert await client.ping() == "ann"
    assert refreshes == [False]


async def test_an_expired_session_ends_only_its_own_connection(
    talk: tuple[Open, list[bool]],
) -> None:
    open_, _ = talk
    client = await open_()
    await client.authenticate("ann:0.2", cid="first")
    assert await closed_with(client.ws) == (1008, "Session expired")
    other = await open_()  # the server carries on: a fresh connection authenticates
    await other.authenticate("ann:forever", cid="first")
    assert await other.ping() == "ann"


async def test_an_expiry_at_the_handshake_closes_1008_on_every_server(
    start_server: Any, kind: str
) -> None:
    """``Accept(expires_at=...)``: a token checked at the handshake ends the session when it
    expires, on every server; ``peer.expire_at`` moves it."""
    opened: list[crosswire.Peer] = []

    def upgrade(request: crosswire.Request) -> crosswire.Accept:
        lifetime = float(request.query.get("lifetime", "60"))
        return crosswire.Accept(expires_at=time.time() + lifetime)

    def message_(peer: crosswire.Peer, msg: crosswire.Message) -> None:
        if msg.text() == "extend":
            peer.expire_at(time.time() + SHORT)
        peer.send(f"{msg.text()}:{peer.expires_at is not None}")

    app = App(crosswire.define_hooks(upgrade=upgrade, open=opened.append, message=message_))
    served = await start_server(app, kind)
    async with connect(served.url + "?lifetime=0.3") as short, connect(served.url) as long_:
        started = time.time()
        await short.send("extend")
        assert await recv(short) == "extend:True"
        assert await closed_with(short) == (1008, "Session expired")
        assert time.time() >= started + SHORT - 0.01  # the extension held, not the 0.3 s
        await long_.send("hello")
        assert await recv(long_) == "hello:True"  # the other connection lives on
        long_peer = next(p for p in opened if p.ready_state is crosswire.ReadyState.OPEN)
        long_peer.expire_at(None)  # never expires now
        assert long_peer.expires_at is None
