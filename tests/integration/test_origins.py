"""``App(origins=...)``: the handshake's Origin is checked on every server before any hook."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from crosswire import App, ConfigurationError, Peer, define_hooks
from tests.support import TIMEOUT


async def test_only_listed_origins_open_a_websocket(kind: str, start_server: Any) -> None:
    upgrades: list[str | None] = []

    def upgrade(request: Any) -> None:
        upgrades.append(request.headers.get("origin"))

    def message(peer: Peer, msg: Any) -> None:
        peer.send(msg.text())

    app = App(define_hooks(upgrade=upgrade, message=message), origins={"https://app.example", None})
    served = await start_server(app, kind)
    for origin in ("https://app.example", None):  # a listed origin; a client that sends none
        async with connect(served.url, origin=origin, open_timeout=TIMEOUT) as ws:  # type: ignore[arg-type]
            await ws.send("hi")
            assert await ws.recv() == "hi"
    for origin in ("https://evil.example", "null", "https://app.example.evil"):
        with pytest.raises(InvalidStatus) as refused:
            await connect(served.url, origin=origin, open_timeout=TIMEOUT)  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
    assert upgrades == ["https://app.example", None]  # refused before the hook ran


async def test_without_none_a_client_must_send_an_origin(start_server: Any) -> None:
    served = await start_server(App(define_hooks(), origins=["https://app.example"]), "websockets")
    with pytest.raises(InvalidStatus) as refused:
        await connect(served.url, open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 403


def test_one_origin_given_as_a_string_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="collection"):
        App(define_hooks(), origins="https://app.example")
