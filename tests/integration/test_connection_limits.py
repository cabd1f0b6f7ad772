"""Connection limits (issue 17, point 1), on every server: global and per client address
refused before the WebSocket opens (503 / 429 with Retry-After), per user closed with 1013;
client addresses from proxy headers only when the proxy is trusted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from crosswire import App, ConfigurationError, Limits, Message, Peer, define_hooks
from crosswire.http import Headers, Request, client_address
from tests.support import TIMEOUT, closed_with


def echo(peer: Peer, msg: Message) -> None:
    peer.send(msg.text())


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as opened:
        yield opened


async def opened(stack: AsyncExitStack, url: str, **headers: str) -> ClientConnection:
    ws = await connect(url, additional_headers=headers, open_timeout=TIMEOUT)
    return await stack.enter_async_context(ws)


async def refused(url: str, **headers: str) -> Any:
    with pytest.raises(InvalidStatus) as refusal:
        await connect(url, additional_headers=headers, open_timeout=TIMEOUT)
    return refusal.value.response


async def turned_away(kind: str, url: str, **headers: str) -> tuple[int, str]:
    """How a connection over the per-address limit ends: refused before the WebSocket opens
    (status, Retry-After), or, on picows, whose handshake does not tell the client's address,
    closed at once with 1013 (code, reason)."""
    if kind != "picows":
        response = await refused(url, **headers)
        return response.status_code, response.headers["Retry-After"]
    async with connect(url, additional_headers=headers, open_timeout=TIMEOUT) as ws:
        code, reason = await closed_with(ws)
        assert code is not None and reason is not None
        return code, reason


async def open_when_free(stack: AsyncExitStack, url: str) -> ClientConnection:
    """A connection, once the server has seen another close (bounded by TIMEOUT)."""

    async def attempt() -> ClientConnection:
        while True:
            try:
                return await opened(stack, url)
            except InvalidStatus:
                await asyncio.sleep(0.02)

    return await asyncio.wait_for(attempt(), TIMEOUT)


async def test_past_max_connections_the_handshake_gets_503_with_retry_after(
    start_server: Any, kind: str, stack: AsyncExitStack
) -> None:
    app = App(define_hooks(message=echo), limits=Limits(max_connections=2))
    served = await start_server(app, kind)
    first = await opened(stack, served.url)
    await opened(stack, served.url)
    response = await refused(served.url)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    await first.close()
    again = await open_when_free(stack, served.url)  # a place is free again
    await again.send("hi")
    assert await again.recv() == "hi"


async def test_per_address_the_socket_counts_unless_a_trusted_proxy_forwards(
    start_server: Any, kind: str, stack: AsyncExitStack
) -> None:
    limits = Limits(max_connections_per_address=1, connection_retry_after=7)
    direct = await start_server(App(define_hooks(message=echo), limits=limits), kind)
    await opened(stack, direct.url, **{"X-Forwarded-For": "203.0.113.5"})
    away = await turned_away(kind, direct.url, **{"X-Forwarded-For": "203.0.113.6"})  # ignored
    assert away in {(429, "7"), (1013, "too many connections from this address")}

    proxied = App(define_hooks(message=echo), limits=limits, trusted_proxies={"127.0.0.1"})
    behind = await start_server(proxied, kind)
    await opened(stack, behind.url, **{"X-Forwarded-For": "203.0.113.5"})
    await opened(stack, behind.url, **{"X-Forwarded-For": "203.0.113.6"})
    spoofed = "203.0.113.6, 203.0.113.5"  # the client wrote the first; the proxy the last
    away = await turned_away(kind, behind.url, **{"X-Forwarded-For": spoofed})
    assert away[0] in {429, 1013}


async def test_past_max_connections_per_user_the_connection_is_closed_with_1013(
    start_server: Any, kind: str, stack: AsyncExitStack
) -> None:
    def open_(peer: Peer) -> None:
        peer.identify(peer.request.query["user"])

    app = App(define_hooks(open=open_, message=echo), limits=Limits(max_connections_per_user=1))
    served = await start_server(app, kind)
    ann = await opened(stack, served.url + "?user=ann")
    await opened(stack, served.url + "?user=ben")  # another user: fine
    second = await opened(stack, served.url + "?user=ann")
    assert await closed_with(second) == (1013, "too many connections for this user")
    await ann.send("still here")
    assert await ann.recv() == "still here"


def test_the_client_address_behind_trusted_proxies() -> None:
    def request(peer: str | None, forwarded: str | None) -> Request:
        headers = Headers([("x-forwarded-for", forwarded)] if forwarded else [])
        return Request("/", "", headers, peer)

    proxies = frozenset({"10.0.0.1", "10.0.0.2"})
    assert client_address(request("10.0.0.9", "1.2.3.4"), proxies) == "10.0.0.9"  # untrusted
    assert client_address(request("10.0.0.1", "1.2.3.4"), proxies) == "1.2.3.4"
    assert client_address(request("10.0.0.1", "6.6.6.6, 1.2.3.4, 10.0.0.2"), proxies) == "1.2.3.4"
    assert client_address(request("10.0.0.1", "not-an-ip, 10.0.0.2"), proxies) == "10.0.0.2"
    assert client_address(request("10.0.0.1", None), proxies) == "10.0.0.1"
    assert client_address(request(None, "1.2.3.4"), proxies) is None


@pytest.mark.parametrize(
    "bad",
    [
        {"max_connections": 0},
        {"max_connections_per_address": -1},
        {"max_connections_per_user": 1.5},
        {"connection_retry_after": -1},
    ],
)
def test_limits_that_make_no_sense_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Limits(**bad)


def test_trusted_proxies_given_as_one_string_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        App(define_hooks(), trusted_proxies="127.0.0.1")
