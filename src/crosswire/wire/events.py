"""The events dialect (seed 003): ``{"event", "data"?, "id"?}`` in JSON text frames.

Clients send ``authenticate``, ``heartbeat``, ``join``/``leave`` (``{"rooms": [...]}``) and
their own events; the server sends ``connected``, ``error`` (``{"message"}``) and whatever the
application emits. Frames are compact JSON with ``event`` first, byte for byte what the seed's
server sends. ``docs/protocol-events.md`` gives every frame.

This is also the dialect of the hooks layer's events: an event published through the Hub (by
the :class:`~crosswire.Emitter` or a seed-003 server) reaches a peer of the hooks layer in
this form.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["BadEvent", "EventFrame", "decode", "encode", "render"]


class BadEvent(ValueError):
    """A frame that is not ``{"event": str, ...}``; answered with an ``error`` event."""


class EventFrame:
    """A decoded client frame: ``event``, ``data`` (None when absent), ``id`` (None when
    absent) and ``raw``, the whole decoded object (what seed 003 hands its message handler)."""

    __slots__ = ("data", "event", "id", "raw")

    def __init__(self, event: str, data: Any, id: str | None, raw: dict[str, Any]) -> None:
        self.event = event
        self.data = data
        self.id = id
        self.raw = raw

    def __repr__(self) -> str:
        return f"<EventFrame {self.event!r}>"  # never the data: it may hold a token


def decode(frame: str | bytes) -> EventFrame:
    """Decode a client frame; :class:`BadEvent` if it is not JSON or has no string ``event``."""
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        raise BadEvent("Invalid message format") from None
    if not isinstance(obj, dict):
        raise BadEvent("Invalid message format")
    event = obj.get("event")
    if not isinstance(event, str) or not event:
        raise BadEvent("Invalid message format")
    id_ = obj.get("id")
    return EventFrame(event, obj.get("data"), id_ if isinstance(id_, str) else None, obj)


def encode(event: str, data: Any = None) -> bytes:
    """``{"event", "data"}``; ``data`` None leaves the key out (as JSON.stringify drops an
    undefined value)."""
    if data is None:
        return b'{"event":' + orjson.dumps(event) + b"}"
    return b'{"event":' + orjson.dumps(event) + b',"data":' + orjson.dumps(data) + b"}"


def render(event: str, meta: bytes | None, data: bytes | None) -> bytes:
    """A published event in this dialect, from the JSON of its data; ``meta`` has no place
    in it and is left out."""
    if data is None:
        return b'{"event":' + orjson.dumps(event) + b"}"
    return b'{"event":' + orjson.dumps(event) + b',"data":' + data + b"}"
