"""The browser client (src/crosswire/static/client.js) in Node.js, and in a headless Chromium
that loads it from a crosswire App, against real crosswire servers (each test runs in both):
requests, progress, errors, deadlines and AbortSignal, heartbeat, a token in a subprotocol,
the offline queue across a server restart, and topics: joins, leaves, the joins made again
after a server restart, and the events missed meanwhile recovered (or a resync)."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import aiohttp

import crosswire
from crosswire import Accept, Heartbeat, Response, Router, RpcContext, message, rpc
from crosswire.auth import bearer_token
from crosswire.client import browser_module
from examples import echo
from tests.integration.test_client_recovery import Newsroom, repeating_app
from tests.integration.test_client_topics import Said, topic_router
from tests.support import BROWSER_CLIENT, RunScenario, ServeRouter, eventually

Slow = rpc("SLOW", {"seconds": float}, "SLOW_DONE", None)
Note = message("NOTE", {"text": str})


def make_router(events: list[Any], **options: Any) -> Router:
    async def slow(ctx: RpcContext[Any]) -> None:
        ctx.on_cancel(lambda: events.append(("cancelled", ctx.correlation_id)))
        events.append(("started", ctx.correlation_id))
        await asyncio.sleep(ctx.payload.seconds)
        ctx.reply()

    router = Router(**options).merge(echo.create_router())
    router.rpc(Slow, slow)
    router.rpc(rpc("FAIL", None, "NEVER", None), lambda ctx: ctx.error("PERMISSION_DENIED", "no"))
    router.on(Note, lambda ctx: events.append(("note", ctx.payload.text)))
    return router


async def test_requests_progress_events_and_errors(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    server = await serve_router(make_router([]))
    result = await (await run_scenario(server.url + "/", "basics")).result()
    assert result["add"] == {
        "type": "ADD_RESULT",
        "meta": {"correlationId": "mine"},
        "payload": {"sum": 3},
    }
    assert result["progress"] == [1, 2, 3] and result["count"] == {"total": 3}
    assert result["echoed"] == [["hi", "ECHO"]]
    assert result["errors"] == [["server", "UNIMPLEMENTED"]]
    assert result["denied"]["code"] == "PERMISSION_DENIED"
    assert result["denied"]["name"] == "WsClientError" and result["denied"]["retryable"] is False
    assert result["state"] == "closed"


async def test_the_deadline_reaches_the_server_and_an_abort_signal_cancels(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    events: list[Any] = []
    server = await serve_router(make_router(events))
    scenario = await run_scenario(server.url + "/", "deadline_and_abort")
    assert await scenario.step() == "started"
    await eventually(lambda: ("started", "gone") in events)
    scenario.go_on()
    assert await scenario.step() == "aborted"
    await eventually(lambda: ("cancelled", "gone") in events)
    scenario.go_on()
    result = await scenario.result()
    assert result["late"]["code"] == "DEADLINE_EXCEEDED" and result["late"]["retryable"]
    assert result["aborted"]["code"] == "CANCELLED"
    assert result["after"] == {"sum": 4}
    await eventually(lambda: {("cancelled", "late"), ("cancelled", "gone")} <= set(events))


async def test_heartbeats_are_answered_and_the_token_rides_in_a_subprotocol(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    def upgrade(request: crosswire.Request) -> Accept | Response:
        credentials = bearer_token(request)
        if credentials is None or credentials.token != "secret":
            return Response(401, "no token")
        return Accept(subprotocol=credentials.subprotocol)

    router = make_router([], heartbeat=Heartbeat(interval=0.05, timeout=0.2))
    router.on_upgrade(upgrade)
    server = await serve_router(router)
    result = await (await run_scenario(server.url + "/", "heartbeat_and_token")).result()
    assert result["states"] == ["closing", "closed"]  # one connection all along
    assert result["protocol"] == "bearer.secret" and result["sum"] == 2


async def test_offline_frames_are_queued_and_sent_after_the_reconnect(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    events: list[Any] = []
    first = await serve_router(make_router(events))
    scenario = await run_scenario(first.url + "/", "queue_and_reconnect")
    assert await scenario.step() == "stop-server"
    await eventually(lambda: any(e[0] == "started" for e in events))
    await first.aclose()
    scenario.go_on()
    assert await scenario.step() == "start-server"
    await serve_router(make_router(events), port=first.port)
    scenario.go_on()
    result = await scenario.result()
    assert result["lostError"]["code"] == "UNAVAILABLE" and result["sentNow"] is False
    assert result["sum"] == 8
    await eventually(lambda: ("note", "while down") in events)
    assert result["states"][:3] == ["connecting", "open", "reconnecting"]
    assert result["states"][-3:] == ["open", "closing", "closed"]


async def test_an_app_serves_the_module_from_its_http_handler(serve_router: ServeRouter) -> None:
    def http(request: crosswire.Request) -> Response:
        return browser_module() if request.path == "/crosswire/client.js" else Response(404)

    server = await serve_router(crosswire.App(make_router([]), http=http))
    url = f"http://127.0.0.1:{server.port}/crosswire/client.js"
    async with aiohttp.ClientSession() as session, session.get(url) as got:
        assert got.status == 200
        assert got.headers["content-type"] == "text/javascript; charset=utf-8"
        assert await got.read() == BROWSER_CLIENT.read_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_close_then_connect_and_the_calls_that_are_refused(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    server = await serve_router(make_router([]))
    result = await (await run_scenario(server.url + "/", "lifecycle")).result()
    assert result["slow"] == "SLOW_DONE"  # the old socket's close did not fail it
    assert result["odd"] == {"sum": 2}  # timeoutMs 1500.5 sent as a whole number
    assert "same" in result["duplicate"]["message"]
    assert result["twice"] == "Error" and result["badCode"]["name"] == "RangeError"
    assert result["afterClose"] == "WsClientError"
    assert result["sockets"] == 2  # and both closed (the script waits for it)
    opened_twice = ["connecting", "open", "closing", "connecting", "open", "closing", "closed"]
    assert result["states"] == opened_twice


async def test_a_server_that_comes_up_later_is_reached(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    port = free_port()
    scenario = await run_scenario(f"ws://127.0.0.1:{port}/", "refused_then_up")
    assert await scenario.step() == "start-server"
    await serve_router(make_router([]), port=port)
    scenario.go_on()
    assert (await scenario.result())["sum"] == 10


async def test_the_client_gives_up_after_max_attempts_and_after_1008(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    router = make_router([])
    router.on_auth(lambda ctx: ctx.type != "NOTE")
    server = await serve_router(router)
    dead = f"ws://127.0.0.1:{free_port()}/"
    result = await (await run_scenario(dead, "gives_up", server.url + "/")).result()
    assert result["failed"]["name"] == "Error" and result["state"] == "closed"
    assert result["request"]["code"] == "UNAVAILABLE"
    assert result["states"] == ["connecting", "open", "closed"]  # 1008: no reconnect


async def test_a_token_in_the_query(serve_router: ServeRouter, run_scenario: RunScenario) -> None:
    sources: list[str] = []

    def upgrade(request: crosswire.Request) -> Accept | Response:
        credentials = bearer_token(request)
        if credentials is None or credentials.token != "secret":
            return Response(401, "no token")
        sources.append(credentials.source)
        return Accept()

    router = make_router([])
    router.on_upgrade(upgrade)
    server = await serve_router(router)
    assert (await (await run_scenario(server.url + "/", "query_token")).result())["sum"] == 4
    assert sources == ["query"]


async def test_an_in_band_token_is_refreshed_before_the_session_expires(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    """``auth: {getToken, attach: "message"}`` against ``router.authenticate`` with sessions
    of 0.8 s, as the Python client's test."""
    checks: list[tuple[str, bool]] = []
    events: list[Any] = []

    async def check(ctx: crosswire.AuthContext) -> crosswire.Identity | None:
        await asyncio.sleep(0.01)
        token = ctx.payload.get("token") if isinstance(ctx.payload, dict) else None
        checks.append((str(token), ctx.refreshing))
        if not isinstance(token, str) or not token.startswith("ann-"):
            return None
        return crosswire.Identity(user_id="ann", expires_at=time.time() + 0.8)

    router = make_router(events)
    router.authenticate(check, timeout=2)
    server = await serve_router(router)
    result = await (await run_scenario(server.url + "/", "in_band_token")).result()
    assert (result["sum"], result["again"]) == (4, 6)
    assert result["refreshedStates"] == ["connecting", "open"]  # one connection all along
    assert checks[:5] == [
        ("ann-1", False),
        ("ann-by-hand", True),
        ("nobody", True),
        ("ann-2", True),
        ("ann-3", True),
    ]
    assert result["byHand"] == {"userId": "ann", "expires": "number"}
    assert (result["refused"]["code"], result["refused"]["message"]) == (
        "UNAUTHENTICATED",
        "Refresh refused",
    )
    assert result["errors"] == ["auth"]
    assert events[0] == ("note", "queued")  # sent once authenticated, not refused before


async def test_joins_are_acknowledged_or_refused_and_leaves_stop_publications(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    server = await serve_router(topic_router([]))
    result = await (await run_scenario(server.url + "/", "topics")).result()
    assert result["ack"] == {"welcome": "ann"} and result["lobby"] is True  # no data: undefined
    assert result["refused"] == {
        "name": "JoinRefused",
        "code": "PERMISSION_DENIED",
        "message": "members only",
        "retryable": False,
        "topic": "room:secret",
        "reason": "members only",
    }
    assert result["unknown"]["code"] == "NOT_FOUND"
    assert result["unknown"]["reason"] == "no topic 'nowhere'"
    assert result["badTopic"]["name"] == "TypeError"
    assert result["heard"] == ["hello", "after"]  # nothing said in room:1 after the leave
    assert result["joined"] == [["room:1", {"username": "ann"}], ["lobby", None]]
    assert result["left"] == [["lobby", None]] and result["closed"] == []


async def test_topics_are_joined_again_after_the_server_restarts(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    joins: list[tuple[str, Any]] = []
    first = await serve_router(topic_router(joins))
    scenario = await run_scenario(first.url + "/", "rejoin")
    assert await scenario.step() == "stop-server"
    await first.aclose()
    joins.clear()
    scenario.go_on()
    assert await scenario.step() == "start-server"
    router = topic_router(joins, closed=frozenset({"room:2"}))
    await serve_router(router, port=first.port)
    scenario.go_on()
    assert await scenario.step() == "publish"
    router.publish("room:1", Said, {"room": "room:1", "text": "from the server"})
    scenario.go_on()
    result = await scenario.result()
    assert joins == [("room:1", "ann"), ("room:2", "ann")]  # with the data of the first join
    # The rejoins went before the queued SAY: the client was in room:1 again to hear it.
    assert result["heard"] == ["while down", "from the server"]
    assert result["errors"] == [
        {
            "type": "rejoin",
            "details": "room:2",
            "name": "JoinRefused",
            "topic": "room:2",
            "reason": "members only",
        }
    ]
    assert result["topics"] == {"room:1": {"username": "ann"}}


def presence_router() -> Router:
    """``room:{id}``: presence, each member seen by the name its join gave; ``plain``: none."""
    router = Router()

    def join(ctx: crosswire.JoinContext) -> None:
        ctx.accept(presence={"name": ctx.payload["name"]})

    router.topic("room:{id}", presence=True).on_join(join)
    router.topic("plain")
    return router


async def test_presence_keeps_the_members_of_a_topic_live_across_a_restart(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    first = await serve_router(presence_router())
    scenario = await run_scenario(first.url + "/", "presence")
    assert await scenario.step() == "restart-server"
    await first.aclose()
    await serve_router(presence_router(), port=first.port)
    scenario.go_on()
    result = await scenario.result()
    assert result["before"] is None
    assert result["listed"] == ["ann", "ben"]
    assert result["member"]["userId"] is None and isinstance(result["member"]["clientId"], str)
    assert result["denied"]["code"] == "PERMISSION_DENIED"
    assert result["noPresence"]["code"] == "FAILED_PRECONDITION"
    # ann's listener: listed on joining, ben came, ben left; after the restart listed afresh
    # (only ann, on the new server), then ben again.
    seen = [members for topic, members in result["seen"] if topic == "room:1"]
    assert seen[:3] == [["ann"], ["ann", "ben"], ["ann"]]
    assert seen[result["relisted"]] == ["ann"] and seen[-1] == ["ann", "ben"]
    assert result["afterLeave"] is None


async def test_a_join_while_offline_waits_for_the_connection(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    server = await serve_router(topic_router([]))
    result = await (await run_scenario(server.url + "/", "join_offline")).result()
    assert result["queued"] == 2
    assert result["cancelled"]["code"] == "CANCELLED"
    assert result["ack"] == {"welcome": "ann"}
    assert result["topics"] == {"room:1": {"username": "ann"}}


async def test_events_missed_while_away_arrive_in_order_once_each_then_live_ones(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    newsroom = Newsroom()
    server = await serve_router(newsroom.router)
    scenario = await run_scenario(server.url + "/", "recover")
    assert await scenario.step() == "publish"
    newsroom.publish("news:1", 1, 2)
    scenario.go_on()
    assert await scenario.step() == "away"
    newsroom.away = True
    scenario.go_on()
    assert await scenario.step() == "publish-missed"
    newsroom.publish("news:1", 3, 4, 5)  # while the client is away: all within the history
    newsroom.away = False
    scenario.go_on()
    assert await scenario.step() == "publish-live"
    newsroom.publish("news:1", 6)
    scenario.go_on()
    result = await scenario.result()
    assert result["ack"] == {"latest": 0} and result["first"]["offset"] == 0
    epoch = result["first"]["epoch"]
    assert result["seen"] == [["news", n, n] for n in range(1, 7)]  # no resync, none twice
    assert result["position"] == {"offset": 6, "epoch": epoch}
    assert result["left"] is None


async def test_a_server_restart_is_another_epoch_and_a_resync(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    first = Newsroom()
    server = await serve_router(first.router)
    scenario = await run_scenario(server.url + "/", "resync")
    assert await scenario.step() == "publish"
    first.publish("news:2", 1, 2, 3)
    scenario.go_on()
    assert await scenario.step() == "restart"
    await server.aclose()
    again = Newsroom()
    await serve_router(again.router, port=server.port)
    scenario.go_on()
    assert await scenario.step() == "publish-live"
    again.publish("news:2", 1)  # offset 1 again, in the new epoch: not taken for a repeat
    scenario.go_on()
    result = await scenario.result()
    assert result["seen"] == [
        ["news", 1, 1],
        ["news", 2, 2],
        ["news", 3, 3],
        ["resync", "news:2", {"latest": 0}],
        ["news", 1, 1],
    ]
    assert result["before"]["offset"] == 3 and result["after"]["offset"] == 0
    assert result["after"]["epoch"] != result["before"]["epoch"]


async def test_an_event_sent_twice_is_handed_to_the_application_once(
    serve_router: ServeRouter, run_scenario: RunScenario
) -> None:
    server = await serve_router(repeating_app())
    result = await (await run_scenario(server.url + "/", "duplicates")).result()
    assert result["seen"] == [["news", 2, 2], ["news", 3, 3], ["resync", "t", None], ["news", 1, 1]]
    assert result["position"] == {"offset": 1, "epoch": "f"}
