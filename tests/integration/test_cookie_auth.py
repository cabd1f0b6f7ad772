"""Cookie authentication without cross-site WebSocket hijacking (issue 17, point 3), on every
server: an App that reads a session cookie must list the origins allowed to open WebSockets
(else it refuses to start), and a look-alike origin carrying the user's cookie is refused."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from crosswire import Accept, App, ConfigurationError, Message, Peer, Response, define_hooks
from crosswire.auth import cookie_token
from crosswire.http import Headers, Request
from tests.support import TIMEOUT

SESSIONS = {"s3cret-ann": "ann"}
SITE = "https://example.com"


def cookie_app() -> App:
    app: App

    def upgrade(request: Request) -> Accept | Response:
        credentials = cookie_token(request, app.session_cookie or "")
        user = SESSIONS.get(credentials.token) if credentials is not None else None
        if user is None:
            return Response(401, "sign in first")
        return Accept(context={"user": user})

    def message(peer: Peer, msg: Message) -> None:
        peer.send(f"{peer.context['user']}: {msg.text()}")

    app = App(define_hooks(upgrade=upgrade, message=message), session_cookie="sid", origins={SITE})
    return app


async def status_of(url: str, origin: str | None, cookie: str | None) -> int:
    headers = {"Cookie": cookie} if cookie else {}
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, origin=origin, additional_headers=headers, open_timeout=TIMEOUT)  # type: ignore[arg-type]
    return int(refused.value.response.status_code)


async def test_the_site_opens_with_its_cookie_and_look_alikes_are_refused(
    start_server: Any, kind: str
) -> None:
    served = await start_server(cookie_app(), kind)
    cookie = "theme=dark; sid=s3cret-ann"
    async with connect(
        served.url,
        origin=Origin(SITE),
        additional_headers={"Cookie": cookie},
        open_timeout=TIMEOUT,
    ) as ws:
        await ws.send("hi")
        assert await ws.recv() == "ann: hi"
    for origin in ("https://example.com.evil.net", "https://evil.example.com", "null", None):
        assert await status_of(served.url, origin, cookie) == 403  # the cookie rides along
    assert await status_of(served.url, SITE, None) == 401
    assert await status_of(served.url, SITE, "sid=guessed") == 401


@pytest.mark.parametrize("origins", [None, {None}])
def test_cookie_authentication_without_an_origin_allow_list_does_not_start(
    origins: Any,
) -> None:
    with pytest.raises(ConfigurationError, match="hijacking"):
        App(define_hooks(), session_cookie="sid", origins=origins)


def test_the_cookie_is_read_from_the_cookie_header() -> None:
    def request(cookie: str | None) -> Request:
        return Request("/", "", Headers([("cookie", cookie)] if cookie else []))

    assert cookie_token(request("a=1; sid=tok; b=2"), "sid").token == "tok"  # type: ignore[union-attr]
    assert cookie_token(request("sid=tok"), "sid").source == "cookie"  # type: ignore[union-attr]
    assert cookie_token(request("a=1"), "sid") is None
    assert cookie_token(request(None), "sid") is None
    assert cookie_token(request('sid="unterminated'), "sid") is None
    assert "tok" not in repr(cookie_token(request("sid=tok"), "sid"))  # never in logs
