"""The typed client against real crosswire servers: requests, progress, deadlines, abort,
errors, handlers, the offline queue, reconnection after a server restart, auth and heartbeat."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from websockets.server import ServerProtocol

import crosswire
from crosswire import (
    Accept,
    Heartbeat,
    Response,
    Router,
    RpcContext,
    ValidationError,
    WsError,
    message,
    rpc,
)
from crosswire.auth import bearer_token
from crosswire.client import Auth, Client, ClientState, ErrorContext, Reconnect
from examples import echo
from tests.support import ServeRouter, eventually

Slow = rpc("SLOW", {"seconds": float}, "SLOW_DONE", None)
Note = message("NOTE", {"text": str})
Odd = message("ODD", {"n": int})  # the server sends it with a string: invalid for the client

FAST = Reconnect(initial_delay=0.02, max_delay=0.1)

pytestmark = pytest.mark.parametrize("kind", ["websockets", "picows"])


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def add(self, *event: Any) -> None:
        self.events.append(event)

    def named(self, name: str) -> list[Any]:
        return [e for e in self.events if e[0] == name]


def make_router(rec: Recorder) -> Router:
    async def slow(ctx: RpcContext[Any]) -> None:
        ctx.on_cancel(lambda: rec.add("cancelled", ctx.correlation_id))
        rec.add("started", ctx.correlation_id, ctx.time_remaining())
        await asyncio.sleep(ctx.payload.seconds)
        ctx.reply()

    router = Router().merge(echo.create_router())
    router.rpc(Slow, slow)
    router.on(Note, lambda ctx: rec.add("note", ctx.payload.text))
    router.on_open(lambda ctx: ctx.send(Note, {"text": "welcome"}))
    return router


async def test_events_requests_and_progress(kind: str, serve_router: ServeRouter) -> None:
    rec = Recorder()
    server = await serve_router(make_router(rec), kind)
    got: list[Any] = []
    client = Client(server.url + "/", reconnect=FAST)
    client.on(Note, lambda frame: got.append(frame.payload.text))  # before the welcome comes
    client.on(echo.Echo, lambda frame: got.append(frame.payload.text))
    async with client:
        assert await client.send(echo.Echo, {"text": "hi"})
        reply = await client.request(echo.Add, {"a": 2, "b": 3})
        assert reply.payload.sum == 5 and reply.type == "ADD_RESULT"
        steps: list[Any] = []
        done = await client.request(echo.Count, {"to": 3, "delay_ms": 1}, on_progress=steps.append)
        assert done.payload.total == 3 and steps == [{"n": 1}, {"n": 2}, {"n": 3}]
        await eventually(lambda: len(got) == 2)
        assert got == ["welcome", "hi"]  # the on_open message was typed and handled too
        assert client.is_connected
    assert not client.is_connected and client.state == "closed"


async def test_the_deadline_reaches_the_server_and_cancelling_sends_abort(
    kind: str, serve_router: ServeRouter
) -> None:
    rec = Recorder()
    server = await serve_router(make_router(rec), kind)
    async with Client(server.url + "/", reconnect=FAST) as client:
        with pytest.raises(WsError) as late:
            await client.request(Slow, {"seconds": 5}, timeout=0.1, correlation_id="late")
        assert late.value.code == "DEADLINE_EXCEEDED"
        (_, _, remaining) = rec.named("started")[0]
        assert 0 < remaining <= 0.1  # the server knew the client's deadline
        await eventually(lambda: ("cancelled", "late") in rec.events)

        call = asyncio.ensure_future(client.request(Slow, {"seconds": 5}, correlation_id="gone"))
        await eventually(lambda: len(rec.named("started")) == 2)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await eventually(lambda: ("cancelled", "gone") in rec.events)  # $ws:abort arrived
        assert (await client.request(echo.Add, {"a": 1, "b": 1})).payload.sum == 2


async def test_errors_reach_the_caller_or_on_error(kind: str, serve_router: ServeRouter) -> None:
    rec = Recorder()
    router = make_router(rec)
    router.off(echo.Echo).on(echo.Echo, lambda ctx: ctx.error("NOT_FOUND", "no such echo"))
    router.rpc(rpc("FAIL", None, "NEVER", None), lambda ctx: ctx.error("PERMISSION_DENIED", "no"))
    router.on(Odd, lambda ctx: ctx.peer.send({"type": "ODD", "payload": {"n": "seven"}}))
    server = await serve_router(router, kind)
    errors: list[tuple[Exception, ErrorContext]] = []
    unhandled: list[Any] = []
    async with Client(server.url + "/", reconnect=FAST) as client:
        client.on_error(lambda error, context: errors.append((error, context)))
        client.on(Odd, lambda frame: unhandled.append(("handled?", frame)))
        with pytest.raises(WsError) as denied:
            await client.request(rpc("FAIL", None, "NEVER", None))
        assert denied.value.code == "PERMISSION_DENIED"
        assert denied.value.retryable is False  # the server sent none: inferred from the code
        with pytest.raises(ValidationError):  # refused before it is sent
            await client.send(echo.Echo, {"text": 5})
        await client.send(echo.Echo, {"text": "x"})
        await client.send(Odd, {"n": 1})
        await eventually(lambda: len(errors) == 2)
        (server_error, server_ctx), (invalid, invalid_ctx) = errors
        assert server_ctx.type == "server" and isinstance(server_error, WsError)
        assert server_error.code == "NOT_FOUND"
        assert server_error.retryable is False
        assert invalid_ctx.type == "validation" and isinstance(invalid, ValidationError)
        client.on_unhandled(unhandled.append)
        await client.send(message("NOPE"))  # the server answers UNIMPLEMENTED: an ERROR
        await eventually(lambda: len(errors) == 3)
        assert errors[2][1].type == "server"
    assert unhandled == []  # the invalid ODD reached no handler


async def test_offline_frames_wait_in_the_queue_and_the_client_reconnects(
    kind: str, serve_router: ServeRouter
) -> None:
    rec = Recorder()
    first = await serve_router(make_router(rec), kind)
    states: list[ClientState] = []
    client = Client(first.url + "/", reconnect=FAST)
    client.on_state(states.append)
    await client.connect()
    try:
        call = asyncio.ensure_future(client.request(Slow, {"seconds": 5}))
        await eventually(lambda: len(rec.named("started")) == 1)
        await first.aclose()  # the server goes away (1001)
        with pytest.raises(WsError) as lost:
            await asyncio.wait_for(call, 5)
        assert lost.value.code == "UNAVAILABLE"
        await eventually(lambda: client.state is ClientState.RECONNECTING)
        assert not await client.send(Note, {"text": "while down"})  # queued
        queued_call = asyncio.ensure_future(client.request(echo.Add, {"a": 4, "b": 4}))
        await eventually(lambda: client.queued == 2)

        await serve_router(make_router(rec), kind, port=first.port)  # back, same port
        assert (await asyncio.wait_for(queued_call, 5)).payload.sum == 8
        await eventually(lambda: ("note", "while down") in rec.events)
        assert client.state is ClientState.OPEN and client.queued == 0
    finally:
        await client.close()
    assert states[:3] == [ClientState.CONNECTING, ClientState.OPEN, ClientState.RECONNECTING]
    assert states[-3:] == [ClientState.OPEN, ClientState.CLOSING, ClientState.CLOSED]


async def test_a_token_goes_with_every_attempt_and_the_server_reads_it(
    kind: str, serve_router: ServeRouter
) -> None:
    seen: list[tuple[str, str | None]] = []

    def upgrade(request: crosswire.Request) -> Accept | Response:
        credentials = bearer_token(request)
        if credentials is None or credentials.token != "secret":
            return Response(401, "no token")
        seen.append((credentials.source, credentials.subprotocol))
        return Accept(subprotocol=credentials.subprotocol)  # echo bearer.<token>

    router = make_router(Recorder())
    router.on_upgrade(upgrade)
    server = await serve_router(router, kind)
    calls: list[int] = []

    async def token() -> str:
        calls.append(1)
        return "secret"

    async with Client(server.url + "/", auth=Auth(token=token)) as client:
        assert (await client.request(echo.Add, {"a": 1, "b": 2})).payload.sum == 3
    by_protocol = Auth(token=lambda: "secret", attach="protocol")
    async with Client(server.url + "/", subprotocols=("chat",), auth=by_protocol) as client:
        assert client.subprotocol == "bearer.secret"
    async with Client(server.url + "/", headers={"Authorization": "Bearer secret"}):
        pass
    assert seen == [("query", None), ("protocol", "bearer.secret"), ("header", None)]
    assert calls == [1]

    refused = Client(server.url + "/", reconnect=Reconnect(enabled=False))
    with pytest.raises(ConnectionError):
        await refused.connect()
    assert refused.state is ClientState.CLOSED
    await refused.close()


async def test_an_in_band_token_is_refreshed_before_the_session_expires(
    kind: str, serve_router: ServeRouter
) -> None:
    """``Auth(attach="message")`` against ``router.authenticate`` with sessions of 0.8 s: the
    client authenticates before its queued request goes out, then refreshes each session on
    the same connection with a fresh token; a refresh the server refuses is reported and the
    session expires (1008 ``Session expired``), after which the client reconnects with a
    fresh token and carries on."""
    checks: list[tuple[str, bool]] = []
    peers: set[str] = set()

    async def check(ctx: crosswire.AuthContext) -> crosswire.Identity | None:
        await asyncio.sleep(0.01)  # (a check that awaits: nothing may overtake it)
        token = ctx.payload.get("token") if isinstance(ctx.payload, dict) else None
        checks.append((str(token), ctx.refreshing))
        peers.add(ctx.peer.id)
        if not isinstance(token, str) or not token.startswith("ann-"):
            return None
        return crosswire.Identity(user_id="ann", expires_at=time.time() + 0.8)

    router = Router().merge(echo.create_router())
    notes: list[str] = []
    router.on(Note, lambda ctx: notes.append(ctx.payload.text))
    router.authenticate(check, timeout=2)
    server = await serve_router(router, kind)
    issued = 0
    failing = False

    def token() -> str:
        nonlocal issued
        issued += 1
        return f"bad-{issued}" if failing else f"ann-{issued}"

    errors: list[tuple[Exception, ErrorContext]] = []
    states: list[ClientState] = []
    client = Client(server.url + "/", auth=Auth(token=token, attach="message"), reconnect=FAST)
    client.on_error(lambda exc, ctx: errors.append((exc, ctx)))
    client.on_state(states.append)
    await client.send(Note, {"text": "queued before the connection"})
    async with client:
        assert (await client.request(echo.Add, {"a": 1, "b": 2})).payload.sum == 3
        session = await client.authenticate({"token": "ann-by-hand"})
        assert session.user_id == "ann" and session.expires_at is not None
        with pytest.raises(WsError) as refused:
            await client.authenticate({"token": "nobody"})
        assert (refused.value.code, refused.value.message) == ("UNAUTHENTICATED", "Refresh refused")
        await eventually(lambda: len(checks) >= 5)  # two refreshes (at 3/4 of each session)
        assert [token for token, _ in checks[:5]] == [
            "ann-1",
            "ann-by-hand",
            "nobody",
            "ann-2",
            "ann-3",
        ]
        assert [refreshing for _, refreshing in checks[:5]] == [False, True, True, True, True]
        assert len(peers) == 1 and ClientState.RECONNECTING not in states  # one connection
        assert notes == ["queued before the connection"]  # sent after the authentication
        assert (await client.request(echo.Add, {"a": 2, "b": 2})).payload.sum == 4

        failing = True  # the next refresh is refused: the session ends, the client reconnects
        await eventually(lambda: ClientState.RECONNECTING in states)
        assert any(ctx.type == "auth" for _, ctx in errors)
        failing = False
        await eventually(lambda: client.is_connected and len(peers) >= 2)
        assert (await client.request(echo.Add, {"a": 3, "b": 3})).payload.sum == 6


async def test_the_server_heartbeat_is_answered_and_a_policy_close_is_final(
    kind: str, serve_router: ServeRouter
) -> None:
    router = Router(heartbeat=Heartbeat(interval=0.05, timeout=0.2)).merge(echo.create_router())
    router.on_auth(lambda ctx: ctx.type != "NOTE")
    router.on(Note, lambda ctx: None)
    server = await serve_router(router, kind)
    changes: list[ClientState] = []
    async with Client(server.url + "/", reconnect=FAST) as client:
        client.on_state(changes.append)
        await asyncio.sleep(0.5)  # ten heartbeats: unanswered, the server would close (4002)
        assert changes == []  # the same connection all along
        assert (await client.request(echo.Add, {"a": 1, "b": 1})).payload.sum == 2
    states: list[ClientState] = []
    refused = Client(server.url + "/", reconnect=FAST)
    refused.on_state(states.append)
    async with refused:
        await refused.send(Note, {"text": "no"})  # on_auth says no: UNAUTHENTICATED, 1008
        await eventually(lambda: refused.state is ClientState.CLOSED)
    assert ClientState.RECONNECTING not in states  # 1008: reconnecting cannot help


async def test_the_queue_is_bounded_and_requests_are_limited(kind: str) -> None:
    overflow: list[Any] = []
    url = "ws://127.0.0.1:9/"  # never connected in this test
    newest = Client(url, queue_size=2)
    newest.on_error(lambda error, context: overflow.append(context.type))
    for n in range(3):
        assert not await newest.send(Note, {"text": str(n)})
    assert newest.queued == 2 and overflow == ["overflow"]

    oldest = Client(url, queue="drop-oldest", queue_size=1)
    oldest.on_error(lambda error, context: overflow.append(context.details))
    await oldest.send(Note, {"text": "a"})
    await oldest.send(Note, {"text": "b"})
    assert oldest.queued == 1 and '"a"' in overflow[-1]

    off = Client(url, queue="off")
    with pytest.raises(WsError) as unavailable:
        await off.request(echo.Add, {"a": 1, "b": 1})
    assert unavailable.value.code == "UNAVAILABLE"

    limited = Client(url, pending_requests_limit=1)
    first = asyncio.ensure_future(limited.request(echo.Add, {"a": 1, "b": 1}, timeout=5))
    await eventually(lambda: limited.queued == 1)
    with pytest.raises(WsError) as exhausted:
        await limited.request(echo.Add, {"a": 1, "b": 1})
    assert exhausted.value.code == "RESOURCE_EXHAUSTED"
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert limited.queued == 0  # a cancelled request leaves the queue


async def test_a_server_that_closes_at_once_is_not_hammered_and_max_attempts_ends_it(
    kind: str, serve_router: ServeRouter
) -> None:
    opens: list[int] = []
    router = Router().merge(echo.create_router())

    def open_and_close(ctx: Any) -> None:
        opens.append(1)
        ctx.close(1011, "broken")

    router.on_open(open_and_close)
    server = await serve_router(router, kind)
    client = Client(server.url + "/", reconnect=Reconnect(max_attempts=3, initial_delay=0.01))
    await client.connect()  # it did open, if only for a moment
    await eventually(lambda: client.state is ClientState.CLOSED)
    assert len(opens) == 4  # the first, then 3 attempts that each failed to last: the end
    with pytest.raises(WsError) as closed:
        await client.send(Note, {"text": "late"})
    assert closed.value.code == "UNAVAILABLE"
    await client.close()


async def test_frames_the_client_cannot_use_are_reported_and_it_carries_on(
    kind: str, serve_router: ServeRouter
) -> None:
    odd = [
        {"type": "ADD_RESULT", "meta": {"correlationId": ["c1"]}, "payload": {"sum": 1}},
        {"type": "ERROR", "payload": {"code": "QUOTA_EXCEEDED", "message": "an app's own code"}},
        {"type": "ERROR", "payload": {"code": "NOT_FOUND", "details": [1, 2]}},
        {"type": "RPC_ERROR", "meta": {"correlationId": "x"}, "payload": "not an object"},
    ]
    router = Router().merge(echo.create_router())
    router.on_open(lambda ctx: [ctx.peer.send(frame) for frame in odd])
    server = await serve_router(router, kind)
    errors: list[tuple[Exception, ErrorContext]] = []
    unhandled: list[Any] = []
    client = Client(server.url + "/", reconnect=FAST)
    client.on_error(lambda error, context: errors.append((error, context)))
    client.on_unhandled(unhandled.append)
    async with client:
        assert (await client.request(echo.Add, {"a": 1, "b": 1})).payload.sum == 2
        await eventually(lambda: len(errors) == 2 and len(unhandled) == 2)
    (quota, _), (not_found, _) = errors
    assert isinstance(quota, WsError) and quota.code == "INTERNAL"
    assert quota.details == {"code": "QUOTA_EXCEEDED", "details": None}
    assert isinstance(not_found, WsError) and not_found.code == "NOT_FOUND"
    assert [frame.type for frame in unhandled] == ["ADD_RESULT", "RPC_ERROR"]


async def test_a_refused_handshake_or_a_failing_token_ends_connect(
    kind: str, serve_router: ServeRouter
) -> None:
    router = Router().merge(echo.create_router())
    router.on_upgrade(lambda request: Response(403, "go away"))
    server = await serve_router(router, kind)
    refused = Client(server.url + "/")  # the default policy retries forever, but not a 4xx
    with pytest.raises(ConnectionError) as failed:
        await asyncio.wait_for(refused.connect(), 5)
    assert "403" in repr(failed.value.__cause__)

    def token() -> str:
        raise RuntimeError("token service down")

    no_token = Client(
        server.url + "/",
        auth=Auth(token=token),
        reconnect=Reconnect(max_attempts=1, initial_delay=0.01),
    )
    with pytest.raises(ConnectionError) as failed:
        await no_token.connect()
    assert isinstance(failed.value.__cause__, RuntimeError)
    assert no_token.state is ClientState.CLOSED


async def test_close_from_a_handler_and_close_when_the_server_never_answers(
    kind: str, serve_router: ServeRouter
) -> None:
    server = await serve_router(make_router(Recorder()), kind)
    client = Client(server.url + "/", reconnect=FAST)
    closed = asyncio.Event()

    async def on_note(frame: Any) -> None:
        await client.close()  # from a handler the client runs
        closed.set()

    client.on(Note, on_note)
    await client.connect()  # the server's welcome NOTE arrives
    await asyncio.wait_for(closed.wait(), 5)
    assert client.state is ClientState.CLOSED

    eof = asyncio.Event()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Completes the handshake, then never answers anything (nor the close)."""
        protocol = ServerProtocol()
        protocol.receive_data(await reader.readuntil(b"\r\n\r\n"))
        (request,) = protocol.events_received()
        protocol.send_response(protocol.accept(request))  # type: ignore[arg-type]
        writer.write(b"".join(protocol.data_to_send()))
        await reader.read()  # until the client drops the connection
        eof.set()
        writer.close()

    mute_server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = mute_server.sockets[0].getsockname()[1]
    try:
        stuck = Client(f"ws://127.0.0.1:{port}/", close_timeout=0.2, ping_interval=None)
        await stuck.connect()
        await asyncio.wait_for(stuck.close(), 5)  # bounded by close_timeout
        await asyncio.wait_for(eof.wait(), 5)  # and the socket was dropped, not leaked
    finally:
        mute_server.close()
        await mute_server.wait_closed()
