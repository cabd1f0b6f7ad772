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

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import orjson
from msgspec import UNSET

from ..errors import WsError
from .canonical import BadFrame, Envelope
from .dialect import Control, Position, TopicAnswer, TopicRequest, position_keys, recover_request

__all__ = ["EVENTS", "BadEvent", "EventFrame", "EventsDialect", "decode", "encode", "render"]


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


#: Reads a client's frame as the canonical dialect reads its payload (msgspec): an integer is
#: exact up to Python's 4,300 digits (orjson would read one past 64 bits as a float).
_read = msgspec.json.Decoder().decode


def decode(frame: str | bytes) -> EventFrame:
    """Decode a client frame; :class:`BadEvent` if it is not JSON or has no string ``event``."""
    try:
        obj = _read(frame)
    except (msgspec.DecodeError, UnicodeError):
        raise BadEvent("Invalid message format") from None
    except RecursionError:  # msgspec stops near Python's recursion limit; orjson reads 1,024
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


class EventsDialect:
    """Seed 003's dialect as a :class:`~crosswire.wire.Dialect`.

    A client frame ``{"event", "data"?, "id"?}`` is the envelope ``type`` = event, ``payload``
    = data (absent when the frame has none), ``meta`` = ``{"correlationId": id}`` when ``id``
    is a string (an RPC's answers carry it back as ``id``; seed 003 has no RPC). Control
    frames: ``authenticate``, ``heartbeat`` (answered with nothing), ``join`` and ``leave``
    with ``{"rooms": [...]}``. An accepted join or a leave is answered with nothing; the
    rooms refused for one reason share one ``error`` event, ``{"message", "rooms", ...}``.
    Errors are ``{"event": "error", "data": {"message", ...details}}``, as the seed's.
    """

    name = "events"
    subprotocol = "crosswire.events"
    controls: Mapping[str, Control] = {
        "authenticate": Control.AUTHENTICATE,
        "heartbeat": Control.HEARTBEAT,
        "join": Control.JOIN,
        "leave": Control.LEAVE,
        "presence": Control.PRESENCE,
    }

    def __repr__(self) -> str:
        return "<Dialect events>"

    message = staticmethod(render)
    render = staticmethod(render)

    def decode(self, frame: str | bytes) -> Envelope:
        try:
            event = decode(frame)
        except BadEvent as exc:
            raise BadFrame(str(exc)) from None
        meta = {"correlationId": event.id} if event.id is not None else {}
        payload = event.raw.get("data", UNSET)
        return Envelope(event.event, meta, payload)

    def reply(self, type: str, correlation_id: str, payload: bytes | None) -> bytes:
        return render(type, None, payload)[:-1] + b',"id":' + orjson.dumps(correlation_id) + b"}"

    def error(self, error: WsError, correlation_id: str | None) -> bytes:
        data = {"message": error.message, **error.details}
        frame = encode("error", data)
        if correlation_id is None:
            return frame
        return frame[:-1] + b',"id":' + orjson.dumps(correlation_id) + b"}"

    def progress(self, correlation_id: str, data: Any) -> bytes:
        return orjson.dumps({"event": "progress", "data": data, "id": correlation_id})

    def heartbeat(self) -> None:
        return None

    def heartbeat_ack(self, now_ms: int) -> None:
        return None

    @staticmethod
    def typed_decoder(shapes: Mapping[str, Any]) -> None:
        """None: this dialect has no one-call decoder (its frames take the router's usual
        path, :meth:`decode` then the route's validation)."""
        return None

    def topic_requests(self, envelope: Envelope) -> list[TopicRequest]:
        body: Any = envelope.payload
        rooms = body.get("rooms") if isinstance(body, dict) else None
        if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
            raise BadFrame("Invalid rooms")
        cid = envelope.correlation_id
        recover = body.get("recover", {})
        if type(recover) is not dict or (recover and envelope.type == "leave"):
            raise BadFrame("Invalid recover")
        presence = body.get("presence", [])
        if not isinstance(presence, list) or not all(isinstance(r, str) for r in presence):
            raise BadFrame("Invalid presence")
        requests = []
        for room in rooms:
            positioned, since = recover_request(recover.get(room), f"recover[{room!r}]")
            requests.append(TopicRequest(room, None, cid, positioned, since, room in presence))
        return requests

    def joined(self, answers: Sequence[TopicAnswer]) -> list[bytes]:
        frames = _refusals(answers)
        for answer in answers:
            if answer.error is None and answer.position is not None:
                offset, epoch = answer.position
                joined = {"room": answer.request.topic, "recovered": answer.recovered}
                frames.append(encode("joined", joined | {"offset": offset, "epoch": epoch}))
        return frames

    def presence(self, request: TopicRequest, members: list[dict[str, Any]]) -> bytes:
        frame = encode("presence", {"room": request.topic, "members": members})
        if request.correlation_id is None:
            return frame
        return frame[:-1] + b',"id":' + orjson.dumps(request.correlation_id) + b"}"

    def positioned(self, frame: bytes, topic: str, position: Position) -> bytes:
        return frame[:-1] + position_keys(topic, position, _POSITION) + b"}"

    def authenticated(
        self, session: Mapping[str, Any], correlation_id: str | None, *, first: bool
    ) -> bytes | None:
        if first:  # seed 003's answer is ``connected``, the app's (a RoomServer sends it)
            return None
        frame = encode("authenticated", dict(session))
        if correlation_id is None:
            return frame
        return frame[:-1] + b',"id":' + orjson.dumps(correlation_id) + b"}"

    def left(self, answers: Sequence[TopicAnswer]) -> list[bytes]:
        return _refusals(answers)


def _refusals(answers: Sequence[TopicAnswer]) -> list[bytes]:
    """One ``error`` event per distinct refusal, naming its rooms (but for a refusal of the
    whole join: ``{"message", ...details}``); nothing for the rest."""
    refused: dict[str, tuple[TopicAnswer, list[str]]] = {}
    for answer in answers:
        if answer.error is not None:
            refused.setdefault(answer.error.message, (answer, []))[1].append(answer.request.topic)
    frames = []
    for answer, rooms in refused.values():
        error = answer.error
        assert error is not None
        named = {} if answer.whole else {"rooms": rooms}
        frames.append(encode("error", {"message": error.message, **named, **error.details}))
    return frames


#: Where an events frame says its room and position.
_POSITION = ("room", "offset", "epoch")

#: The events dialect.
EVENTS = EventsDialect()
