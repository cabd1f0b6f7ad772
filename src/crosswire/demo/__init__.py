"""The demo: a small chat room served by ``crosswire demo``.

It runs on the embedded in-memory hub, so it needs nothing but crosswire. ``GET /`` serves the
page (``index.html``); the page opens a WebSocket on ``/ws?name=...``. Frames are JSON text:

=============================================  ===============================================
client sends                                   server answers
=============================================  ===============================================
(connects)                                     ``{"type": "welcome", "you", "online"}`` to it,
                                               ``{"type": "joined", "name", "online"}`` to the
                                               others
``{"type": "say", "text": str}``               ``{"type": "said", "from", "text", "at"}`` to
                                               everyone, the sender included
anything else                                  ``{"type": "error", "message"}`` to the sender
(disconnects)                                  ``{"type": "left", "name", "online"}``
=============================================  ===============================================
"""

from __future__ import annotations

import time
from importlib.resources import files
from typing import Any

from ..app import App
from ..hooks import define_hooks
from ..http import Accept, Request, Response
from ..peer import Message, Peer

__all__ = ["PATH", "ROOM", "app", "create_app"]

#: Where the chat's WebSocket is.
PATH = "/ws"
ROOM = "chat"
MAX_NAME = 32
MAX_TEXT = 1000


def create_app() -> App:
    """A fresh demo App (each has its own room)."""
    page = files(__package__).joinpath("index.html").read_bytes()

    def http(request: Request) -> Response:
        if request.path == "/":
            return Response(200, page, content_type="text/html; charset=utf-8")
        return Response(404, "not found")

    def upgrade(request: Request) -> Accept | Response:
        if request.path != PATH:
            return Response(404, f"the chat WebSocket is at {PATH}")
        name = request.query.get("name", "").strip()[:MAX_NAME]
        return Accept(context={"name": name or None})

    def open_(peer: Peer) -> None:
        name = peer.context["name"] or f"guest-{peer.id[:4]}"
        peer.context["name"] = name
        peer.subscribe(ROOM)
        online = app.hub.subscriber_count(ROOM)
        peer.send({"type": "welcome", "you": name, "online": online})
        peer.publish(ROOM, {"type": "joined", "name": name, "online": online})

    def message(peer: Peer, msg: Message) -> None:
        text = _said_text(msg)
        if text is None:
            peer.send({"type": "error", "message": 'send {"type": "say", "text": "..."}'})
        elif len(text) > MAX_TEXT:
            peer.send({"type": "error", "message": f"text longer than {MAX_TEXT} characters"})
        else:
            said = {"type": "said", "from": peer.context["name"], "text": text, "at": _now_ms()}
            app.publish(ROOM, said)

    def close(peer: Peer, code: int, reason: str) -> None:
        online = app.hub.subscriber_count(ROOM)
        app.publish(ROOM, {"type": "left", "name": peer.context["name"], "online": online})

    app = App(define_hooks(upgrade=upgrade, open=open_, message=message, close=close), http=http)
    return app


def _said_text(msg: Message) -> str | None:
    """The text of a valid ``say`` frame, else ``None``."""
    if msg.is_binary:
        return None
    try:
        body: Any = msg.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("type") != "say" or set(body) != {"type", "text"}:
        return None
    text = body["text"]
    return text if isinstance(text, str) else None


def _now_ms() -> int:
    return int(time.time() * 1000)


#: The App ``crosswire demo`` serves (``crosswire run crosswire.demo:app`` does the same).
app = create_app()
