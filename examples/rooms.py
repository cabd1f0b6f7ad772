"""Rooms across instances, in seed 003's dialect: authenticate, join rooms, talk.

    crosswire run examples.rooms:app                      # one process, nothing to install
    CROSSWIRE_REDIS_URL=redis://127.0.0.1:6379/0 crosswire run examples.rooms:app --port 8001
    CROSSWIRE_REDIS_URL=redis://127.0.0.1:6379/0 crosswire run examples.rooms:app --port 8002

A client sends ``{"event":"authenticate","data":{"token":"demo-token-ann"}}`` (one of the demo
tokens below), joins with ``{"event":"join","data":{"rooms":["lobby"]}}`` and talks with
``{"event":"say","data":{"room":"lobby","text":"hi"}}``: every member of the room, on every
instance, gets ``{"event":"said","data":{"room":"lobby","from":"ann","text":"hi"}}``. The
token only proves who the client is: frames, logs and Redis channels carry the user's name.
A ``say`` that is not ``{"room": <a room you are in>, "text": <a string>}``, or another event,
gets ``{"event":"error","data":{"message":...}}``.
"""

import os
from typing import Any

import crosswire
from crosswire.rooms import Identity, RoomClient, RoomServer
from crosswire.wire.events import EventFrame

PUBLIC_ROOMS = {"lobby", "dev", "random"}

#: Demo tokens and the users they belong to. A real server asks its session store, or checks
#: a signed token (a JWT), and never uses the token itself as a name.
DEMO_USERS = {"demo-token-ann": "ann", "demo-token-ben": "ben", "demo-token-cy": "cy"}


def authenticate(client: RoomClient, data: Any) -> Identity | None:
    token = data.get("token") if isinstance(data, dict) else None
    user = DEMO_USERS.get(token) if isinstance(token, str) else None
    return Identity(user_id=user) if user is not None else None


def validate_rooms(client: RoomClient, rooms: list[str]) -> list[str]:
    return [room for room in rooms if room in PUBLIC_ROOMS]


def on_message(client: RoomClient, frame: EventFrame) -> None:
    said = frame.data if isinstance(frame.data, dict) else {}
    room, text = said.get("room"), said.get("text")
    if frame.event != "say":
        problem = "unknown event: send say"
    elif not isinstance(room, str) or not isinstance(text, str):
        problem = "say needs a room and a text, both strings"
    elif room not in client.rooms:
        problem = "say needs a room you are in"
    else:
        rooms.to_room(room, "said", {"room": room, "from": client.user_id, "text": text})
        return
    rooms.to_client(client.id, "error", {"message": problem})


rooms = RoomServer(authenticate=authenticate, validate_rooms=validate_rooms, on_message=on_message)


def make_hub() -> crosswire.Hub:
    """Alone, a process needs no bus; with CROSSWIRE_REDIS_URL, instances share rooms."""
    url = os.environ.get("CROSSWIRE_REDIS_URL")
    if not url:
        return crosswire.Hub()
    from crosswire.pubsub.redis import RedisBackend

    return crosswire.Hub(RedisBackend(url))


app = crosswire.App(rooms, hub=make_hub())
