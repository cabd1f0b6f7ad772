"""The demo: a chat served by ``crosswire demo`` (``docs/demo.md``).

Rooms to join and leave, who is online in each (live), who is typing, the room's recent
messages on joining and the ones missed during a reconnect, an export of the last messages
with progress, and the connection's state: the browser client (``/crosswire/client.js``)
against a typed router, in the canonical dialect. Alone it runs on the embedded in-memory
hub; with ``CROSSWIRE_REDIS_URL`` set, every instance started with it is one chat (rooms,
presence and history in Redis)::

    crosswire demo                                    # http://127.0.0.1:8000/
    CROSSWIRE_REDIS_URL=redis://127.0.0.1:6379/0 crosswire run crosswire.demo:app --port 8001
    CROSSWIRE_REDIS_URL=redis://127.0.0.1:6379/0 crosswire run crosswire.demo:app --port 8002

``GET /`` serves the page (``index.html``, ``demo.js``, ``demo.css``); its WebSocket is
``/ws?name=<name>``. Per room ``<room>`` the page joins two topics: ``room:<room>`` (the
messages: kept in history, with presence) and ``typing:<room>`` (typing notices, kept
nowhere). The messages:

============================================  =================================================
client sends                                  server answers
============================================  =================================================
(connects)                                    ``WELCOME {you}``: the name it goes by
``$ws:join room:<room>``                      an ack with ``{room}``; ``INVALID_ARGUMENT`` for a
                                              bad name, ``PERMISSION_DENIED`` for ``staff``
``SAY {room, text}``                          ``SAID {room, from, text, at}`` to the room;
                                              ``FAILED_PRECONDITION`` outside it,
                                              ``INVALID_ARGUMENT`` for an empty or long text
``TYPING {room}``                             ``USER_TYPING {room, from}`` to the others
RPC ``HISTORY {room, limit}``                 ``HISTORY_RESULT {messages}``: the last ones kept
RPC ``EXPORT {room, last}``                   progress ``{done, total}``, then
                                              ``EXPORT_RESULT {count, text}``: a transcript
============================================  =================================================
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from importlib.resources import files
from typing import Any

from ..app import App
from ..client.browser import browser_module
from ..endpoint import Endpoint
from ..http import Accept, Request, Response
from ..pubsub.history import History
from ..pubsub.hub import Hub
from ..router import Router
from ..router.context import ConnectionContext, EventContext, JoinContext, RpcContext
from ..schema import message, rpc

__all__ = ["PATH", "app", "create_app", "create_router"]

#: Where the chat's WebSocket is.
PATH = "/ws"
MAX_NAME = 32
MAX_TEXT = 1000
#: How many messages each room keeps (and how long): what a reconnect recovers, what the
#: page shows on joining, what an export can reach.
KEPT = History(size=500, ttl=24 * 3600)
#: Room names: lowercase letters, digits and dashes.
ROOM_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,23}")
#: A room that refuses everyone, so that the page has a join error to show.
STAFF_ROOM = "staff"
#: Messages an export formats between two progress reports.
EXPORT_CHUNK = 25

Welcome = message("WELCOME", {"you": str})
Say = message("SAY", {"room": str, "text": str})
Said = message("SAID", {"room": str, "from": str, "text": str, "at": int})
Typing = message("TYPING", {"room": str})
UserTyping = message("USER_TYPING", {"room": str, "from": str})
Recent = rpc("HISTORY", {"room": str, "limit": int}, "HISTORY_RESULT", {"messages": list})
Export = rpc("EXPORT", {"room": str, "last": int}, "EXPORT_RESULT", {"count": int, "text": str})

_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/demo.js": ("demo.js", "text/javascript; charset=utf-8"),
    "/demo.css": ("demo.css", "text/css; charset=utf-8"),
}


def create_router(hub: Hub) -> Router:
    """The chat's router, reading history from ``hub`` (the App's; a router serves one App:
    make one per App)."""

    async def recent(ctx: RpcContext[Any]) -> None:
        messages = await _kept(hub, ctx, ctx.payload.room, ctx.payload.limit)
        if messages is not None:
            ctx.reply({"messages": messages})

    async def export(ctx: RpcContext[Any]) -> None:
        messages = await _kept(hub, ctx, ctx.payload.room, ctx.payload.last)
        if messages is not None:
            await _export(ctx, messages)

    router = Router()
    router.on_upgrade(_upgrade)
    router.on_open(_welcome)
    router.topic("room:{room}", history=KEPT, presence=True).on_join(_join_room)
    router.topic("typing:{room}").on_join(_join_typing)
    router.on(Say, _say).on(Typing, _typing)
    router.rpc(Recent, recent).rpc(Export, export)
    return router


def create_app(redis_url: str | None = None) -> App:
    """A fresh demo App: on the in-memory hub, or on Redis at ``redis_url``."""
    folder = files(__package__)
    assets = {
        path: (folder.joinpath(name).read_bytes(), kind) for path, (name, kind) in _ASSETS.items()
    }

    def http(request: Request) -> Response:
        if request.path == "/crosswire/client.js":
            return browser_module()
        if request.path in assets:
            body, kind = assets[request.path]
            return Response(200, body, content_type=kind)
        return Response(404, "not found")

    hub = Hub()
    if redis_url:
        from ..pubsub.redis import RedisBackend

        hub = Hub(RedisBackend(redis_url))
    return App(endpoints=[Endpoint(PATH, create_router(hub))], http=http, hub=hub)


def _upgrade(request: Request) -> Accept:
    name = " ".join(request.query.get("name", "").split())[:MAX_NAME]
    return Accept(context={"name": name or None})


def _welcome(ctx: ConnectionContext) -> None:
    if not ctx.data.get("name"):
        ctx.data["name"] = f"guest-{ctx.client_id[:4]}"
    ctx.send(Welcome, {"you": ctx.data["name"]})


def _room(ctx: JoinContext) -> str | None:
    """The room a join names, or None after refusing it."""
    room = ctx.params["room"]
    if not ROOM_NAME.fullmatch(room):
        ctx.reject("Room names are lowercase letters, digits and dashes", code="INVALID_ARGUMENT")
        return None
    if room == STAFF_ROOM:
        ctx.reject("Staff only", code="PERMISSION_DENIED")
        return None
    return room


def _join_room(ctx: JoinContext) -> None:
    room = _room(ctx)
    if room is not None:
        ctx.accept({"room": room}, presence={"name": ctx.data["name"]})


def _join_typing(ctx: JoinContext) -> None:
    if _room(ctx) is not None:
        ctx.accept()


def _member(ctx: EventContext[Any], room: str) -> bool:
    """Whether the connection is in ``room``; if not, it is told so."""
    if f"room:{room}" in ctx.peer.topics:
        return True
    if isinstance(ctx, RpcContext):
        ctx.error("FAILED_PRECONDITION", f"join {room} first")
    else:
        ctx.error("FAILED_PRECONDITION", f"join {room} first", {"room": room})
    return False


def _say(ctx: EventContext[Any]) -> None:
    room, text = ctx.payload.room, ctx.payload.text.strip()
    if not _member(ctx, room):
        return
    if not text or len(text) > MAX_TEXT:
        ctx.error("INVALID_ARGUMENT", f"a message has 1 to {MAX_TEXT} characters", {"room": room})
        return
    said = {"room": room, "from": ctx.data["name"], "text": text, "at": int(time.time() * 1000)}
    ctx.publish(f"room:{room}", Said, said)


def _typing(ctx: EventContext[Any]) -> None:
    room = ctx.payload.room
    if f"typing:{room}" in ctx.peer.topics:
        notice = {"room": room, "from": ctx.data["name"]}
        ctx.publish(f"typing:{room}", UserTyping, notice, exclude_self=True)


async def _kept(
    hub: Hub, ctx: RpcContext[Any], room: str, last: int
) -> list[dict[str, Any]] | None:
    """The last ``last`` messages ``room`` keeps, oldest first (None: refused)."""
    if not _member(ctx, room):
        return None
    if not 1 <= last <= KEPT.size:
        ctx.error("INVALID_ARGUMENT", f"ask for 1 to {KEPT.size} messages")
        return None
    kept = await hub.history(f"room:{room}", last)
    return [
        {**event.data, "offset": event.position.offset, "epoch": event.position.epoch}
        for event in kept
        if event.event == Said.type and isinstance(event.data, dict)
    ]


async def _export(ctx: RpcContext[Any], messages: list[dict[str, Any]]) -> None:
    """A transcript of ``messages``, reporting progress as it is written. The pause between
    chunks stands for the work of a real export (a file, a mail), and lets people see the
    progress bar move."""
    lines = [f"# {ctx.payload.room}: the last {len(messages)} messages"]
    for done in range(0, len(messages), EXPORT_CHUNK):
        ctx.progress({"done": done, "total": len(messages)})
        await asyncio.sleep(0.05)  # cancelled if the client aborts or the deadline passes
        for said in messages[done : done + EXPORT_CHUNK]:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(said["at"] / 1000))
            lines.append(f"{at} UTC  {said['from']}: {said['text']}")
    ctx.progress({"done": len(messages), "total": len(messages)})
    ctx.reply({"count": len(messages), "text": "\n".join(lines) + "\n"})


#: The App ``crosswire demo`` serves (``crosswire run crosswire.demo:app`` does the same); on
#: Redis when ``CROSSWIRE_REDIS_URL`` is set.
app = create_app(os.environ.get("CROSSWIRE_REDIS_URL") or None)
