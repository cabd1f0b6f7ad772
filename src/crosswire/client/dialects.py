"""How a client of each dialect writes its frames and reads the server's. Sans-I/O.

The test client (:mod:`crosswire.testing`) speaks each of the three dialects; the typed client
and the browser client speak the canonical one. A :class:`ClientDialect` turns what a client
says into the text of a frame, and a frame from the server into a :class:`Frame`, the same
shape whatever the dialect:

=============  ===================================  ==============================================
dialect        the server's frame                   the :class:`Frame`
=============  ===================================  ==============================================
``canonical``  ``{"type", "meta"?, "payload"?}``    ``type``, ``meta`` and ``payload`` as they are
``events``     ``{"event", "data"?, "id"?}``        ``type`` = ``event``, ``payload`` = ``data``,
                                                    ``meta`` = ``{"correlationId": id}`` when
                                                    ``id`` is a string (else ``{}``)
``rover``      ``{"type", ...fields}``              ``type``, ``meta`` = ``{}``, ``payload`` =
                                                    the fields but ``type``; a frame whose only
                                                    other field is ``data`` holding something
                                                    that is not an object, or an object with a
                                                    ``type`` field, has that value as payload (the
                                                    inverse of how the server writes it)
=============  ===================================  ==============================================

In every dialect ``json`` is the whole frame and ``raw`` the text as it came. A binary message
is a frame of type ``"<binary>"``; text that is not a frame of the dialect is one of type
``"<text>"``, with the text as its payload.

Errors, as :meth:`ClientDialect.error` reads them: ``ERROR`` and ``RPC_ERROR`` in the canonical
dialect, ``{"type": "error", "message", "code", "details"?}`` in Rover's, and the ``error``
event ``{"message", ...details}`` in the events dialect. That one carries no code: the error
read from it is ``INTERNAL``, its other fields the ``details``.

Requests: replies, progress and errors carry the request's correlation id back in the
canonical (``meta.correlationId``) and events (``id``) dialects; Rover has no ids, so its
answer is the next frame of the response's type, ``progress``, or ``error``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import msgspec
import orjson

from ..errors import ErrorCode, JoinRefused, WsError
from ..wire import canonical, rover
from ..wire.dialect import Position
from .frames import Frame, JoinAck, error_of, parse, refusal

__all__ = [
    "CANONICAL",
    "DIALECTS",
    "EVENTS",
    "ROVER",
    "CanonicalFrames",
    "ClientDialect",
    "EventsFrames",
    "RoverFrames",
]

_read_json = msgspec.json.Decoder().decode


class ClientDialect(Protocol):
    """A dialect as a client speaks it (see the module docstring). Every method is pure."""

    #: ``canonical``, ``events`` or ``rover``: the ``dialect`` query parameter that asks for it.
    name: str
    #: Whether the answers to a request carry its correlation id back.
    correlates: bool
    #: Whether the server answers an accepted join and a leave (the events dialect does not).
    acknowledges_topics: bool
    #: Whether its error frames carry an error code (the events dialect's do not).
    error_codes: bool

    def encode(self, type: str, payload: Any, meta: Mapping[str, Any]) -> str:
        """A message: ``payload`` is JSON-able (or an ``orjson.Fragment``), ``None`` for none;
        ``meta`` may hold ``correlationId`` and ``timeoutMs``. Raises ``ValueError`` for meta
        the dialect cannot carry."""
        ...

    def parse(self, data: str | bytes, binary: bool) -> Frame:
        """A message from the server as a :class:`Frame`."""
        ...

    def error(self, frame: Frame) -> WsError | None:
        """The error ``frame`` carries, or None when it is not an error frame."""
        ...

    def progress(self, frame: Frame) -> tuple[Any] | None:
        """``(value,)`` when ``frame`` is a progress frame of a request, else None."""
        ...

    def abort(self, correlation_id: str) -> str | None:
        """The frame that cancels a request in flight; None when the dialect has none."""
        ...

    def join(self, topic: str, data: Any, correlation_id: str) -> str:
        """A join of ``topic`` with ``data`` (None: none); ``ValueError`` for data the dialect
        cannot carry."""
        ...

    def leave(self, topic: str, data: Any, correlation_id: str) -> str:
        """A leave of ``topic``, with ``data`` (None: none) for the leave handler."""
        ...

    def join_answer(
        self, frame: Frame, topic: str, correlation_id: str
    ) -> JoinAck | JoinRefused | None:
        """What ``frame`` says of the join of ``topic`` sent with ``correlation_id``: accepted,
        refused, or None when it does not answer it."""
        ...

    def leave_answer(self, frame: Frame, topic: str, correlation_id: str) -> bool | WsError:
        """True when ``frame`` acknowledges the leave, the error when it refuses the frame,
        False when it does not answer it."""
        ...


class CanonicalFrames:
    """The canonical dialect (``docs/protocol.md``): ``$ws:join``/``$ws:leave`` with a
    correlation id, answered by ``$ws:join-ack``/``$ws:join-error``/``$ws:leave-ack`` (or an
    ``RPC_ERROR`` for a frame the server could not read) that carry it back.

    A join may ask for positions (``positioned``): with ``recover: {}``, or, given ``since``,
    ``recover: {"offset", "epoch"}``; its ack then says ``recovered`` and the topic's
    position (:class:`JoinAck`). The other dialects' clients do not ask for positions."""

    name = "canonical"
    correlates = True
    acknowledges_topics = True
    error_codes = True

    def __repr__(self) -> str:
        return "<ClientDialect canonical>"

    def encode(self, type: str, payload: Any, meta: Mapping[str, Any]) -> str:
        frame: dict[str, Any] = {"type": type, "meta": dict(meta)}
        if payload is not None:
            frame["payload"] = payload
        return orjson.dumps(frame).decode()

    parse = staticmethod(parse)

    def error(self, frame: Frame) -> WsError | None:
        if frame.type in (canonical.ERROR, canonical.RPC_ERROR):
            return error_of(frame)
        return None

    def progress(self, frame: Frame) -> tuple[Any] | None:
        return (frame.payload,) if frame.type == canonical.RPC_PROGRESS else None

    def abort(self, correlation_id: str) -> str:
        return orjson.dumps(
            {"type": canonical.ABORT, "meta": {"correlationId": correlation_id}}
        ).decode()

    def join(
        self,
        topic: str,
        data: Any,
        correlation_id: str,
        *,
        positioned: bool = False,
        since: Position | None = None,
    ) -> str:
        recover: dict[str, Any] | None = None
        if positioned:
            recover = {} if since is None else {"offset": since.offset, "epoch": since.epoch}
        return _topic_frame(canonical.JOIN, topic, data, correlation_id, recover)

    def leave(self, topic: str, data: Any, correlation_id: str) -> str:
        return _topic_frame(canonical.LEAVE, topic, data, correlation_id)

    def join_answer(
        self, frame: Frame, topic: str, correlation_id: str
    ) -> JoinAck | JoinRefused | None:
        if frame.correlation_id != correlation_id:
            return None
        if frame.type == canonical.JOIN_ACK:
            body = frame.payload if isinstance(frame.payload, dict) else {}
            recovered = body.get("recovered")
            return JoinAck(
                topic,
                body.get("data"),
                frame,
                recovered if isinstance(recovered, bool) else None,
                _position(body),
            )
        if frame.type in (canonical.JOIN_ERROR, canonical.RPC_ERROR, canonical.ERROR):
            return refusal(topic, error_of(frame))
        return None

    def leave_answer(self, frame: Frame, topic: str, correlation_id: str) -> bool | WsError:
        if frame.correlation_id != correlation_id:
            return False
        if frame.type == canonical.LEAVE_ACK:
            return True
        return self.error(frame) or False

    def position_of(self, frame: Frame) -> tuple[str, Position] | None:
        """The topic and the position a pushed event carries in its meta (``topic``,
        ``offset``, ``epoch``: sent to a connection that joined the topic with ``recover``);
        None when it carries none."""
        topic = frame.meta.get("topic")
        position = _position(frame.meta)
        return (topic, position) if isinstance(topic, str) and position is not None else None


def _topic_frame(type: str, topic: str, data: Any, correlation_id: str, recover: Any = None) -> str:
    payload: dict[str, Any] = {"topic": topic}
    if data is not None:
        payload["data"] = data
    if recover is not None:
        payload["recover"] = recover
    frame = {"type": type, "meta": {"correlationId": correlation_id}, "payload": payload}
    return orjson.dumps(frame).decode()


def _position(body: Mapping[str, Any]) -> Position | None:
    """The ``offset`` and ``epoch`` of an ack or of a pushed frame's meta, when both are
    there and well formed (an offset is an int >= 0, an epoch a string)."""
    offset, epoch = body.get("offset"), body.get("epoch")
    if type(offset) is int and offset >= 0 and isinstance(epoch, str):
        return Position(offset, epoch)
    return None


class EventsFrames:
    """Seed 003's dialect (``docs/protocol-events.md``): ``join``/``leave`` events with
    ``{"rooms": [topic]}`` and no data. The server answers an accepted join or a leave with
    nothing, and a refusal with an ``error`` event listing the refused ``rooms`` (none for a
    refusal of the whole join)."""

    name = "events"
    correlates = True
    acknowledges_topics = False
    error_codes = False

    def __repr__(self) -> str:
        return "<ClientDialect events>"

    def encode(self, type: str, payload: Any, meta: Mapping[str, Any]) -> str:
        extra = set(meta) - {"correlationId"}
        if extra:
            raise ValueError(
                f"the events dialect has no meta but a correlation id (its id): {sorted(extra)}"
            )
        frame: dict[str, Any] = {"event": type}
        if payload is not None:
            frame["data"] = payload
        if "correlationId" in meta:
            frame["id"] = meta["correlationId"]
        return orjson.dumps(frame).decode()

    def parse(self, data: str | bytes, binary: bool) -> Frame:
        obj = _object(data, binary)
        if obj is None or not isinstance(obj.get("event"), str):
            return _not_a_frame(data, binary)
        cid = obj.get("id")
        meta = {"correlationId": cid} if isinstance(cid, str) else {}
        return Frame(obj["event"], meta, obj.get("data"), obj, data)

    def error(self, frame: Frame) -> WsError | None:
        if frame.type != "error":
            return None
        details = dict(frame.payload) if isinstance(frame.payload, dict) else {}
        message = details.pop("message", "")
        return WsError(ErrorCode.INTERNAL, str(message), details)

    def progress(self, frame: Frame) -> tuple[Any] | None:
        return (frame.payload,) if frame.type == "progress" else None

    def abort(self, correlation_id: str) -> None:
        return None

    def join(self, topic: str, data: Any, correlation_id: str) -> str:
        return _rooms_frame("join", topic, data)

    def leave(self, topic: str, data: Any, correlation_id: str) -> str:
        return _rooms_frame("leave", topic, data)

    def join_answer(
        self, frame: Frame, topic: str, correlation_id: str
    ) -> JoinAck | JoinRefused | None:
        error = self._refusal_of(frame, topic)
        return refusal(topic, error) if error is not None else None

    def leave_answer(self, frame: Frame, topic: str, correlation_id: str) -> bool | WsError:
        return self._refusal_of(frame, topic) or False

    def _refusal_of(self, frame: Frame, topic: str) -> WsError | None:
        """The error of ``frame`` when it concerns ``topic``: it names it among its rooms, or
        names no rooms (a refusal of the whole frame)."""
        error = self.error(frame)
        if error is None:
            return None
        rooms = error.details.pop("rooms", None)
        if isinstance(rooms, list) and topic not in rooms:
            return None
        return error


def _rooms_frame(event: str, topic: str, data: Any) -> str:
    if data is not None:
        raise ValueError(f"an events {event} carries no data: only its rooms")
    return orjson.dumps({"event": event, "data": {"rooms": [topic]}}).decode()


class RoverFrames:
    """Rover's dialect (``docs/protocol-rover.md``): ``{"type": "join", "topic": T,
    ...fields}`` answered by ``join_ack`` (the ack's data merged in) or ``join_error`` (with a
    ``reason``), and ``leave`` by ``leave_ack``. A join's or a leave's data is an object whose
    fields go beside ``topic``. There are no correlation ids, no meta and no abort."""

    name = "rover"
    correlates = False
    acknowledges_topics = True
    error_codes = True

    def __repr__(self) -> str:
        return "<ClientDialect rover>"

    def encode(self, type: str, payload: Any, meta: Mapping[str, Any]) -> str:
        if meta:
            raise ValueError(f"Rover's frames have no meta: {sorted(meta)}")
        body = None if payload is None else orjson.dumps(payload)
        return rover.render(type, None, body).decode()

    def parse(self, data: str | bytes, binary: bool) -> Frame:
        obj = _object(data, binary)
        if obj is None or not isinstance(obj.get("type"), str):
            return _not_a_frame(data, binary)
        fields = {k: v for k, v in obj.items() if k != "type"}
        return Frame(obj["type"], {}, _unflattened(fields, ("type",)), obj, data)

    def error(self, frame: Frame) -> WsError | None:
        return error_of(frame) if frame.type == "error" else None

    def progress(self, frame: Frame) -> tuple[Any] | None:
        if frame.type != "progress":
            return None
        return ((frame.json or {}).get("data"),)

    def abort(self, correlation_id: str) -> None:
        return None

    def join(self, topic: str, data: Any, correlation_id: str) -> str:
        return _flat_topic_frame("join", topic, data)

    def leave(self, topic: str, data: Any, correlation_id: str) -> str:
        return _flat_topic_frame("leave", topic, data)

    def join_answer(
        self, frame: Frame, topic: str, correlation_id: str
    ) -> JoinAck | JoinRefused | None:
        body = frame.payload if isinstance(frame.payload, dict) else {}
        if frame.type == "join_ack" and body.get("topic") == topic:
            rest = {k: v for k, v in body.items() if k != "topic"}
            return JoinAck(topic, _unflattened(rest, ("type", "topic")) if rest else None, frame)
        if frame.type == "join_error" and body.get("topic") == topic:
            try:
                code = ErrorCode(str(body.get("code")))
            except ValueError:
                code = ErrorCode.INTERNAL
            return JoinRefused(topic, code, str(body.get("reason", "")))
        error = self.error(frame)
        return refusal(topic, error) if error is not None else None

    def leave_answer(self, frame: Frame, topic: str, correlation_id: str) -> bool | WsError:
        body = frame.payload if isinstance(frame.payload, dict) else {}
        if frame.type == "leave_ack" and body.get("topic") == topic:
            return True
        return self.error(frame) or False


def _flat_topic_frame(kind: str, topic: str, data: Any) -> str:
    if data is None:
        data = {}
    if not isinstance(data, dict) or "type" in data or "topic" in data:
        raise ValueError(
            f"a Rover {kind}'s data is an object whose fields go beside its topic "
            f"(no type or topic field): {data!r}"
        )
    return orjson.dumps({"type": kind, "topic": topic, **data}).decode()


def _unflattened(fields: dict[str, Any], taken: tuple[str, ...]) -> Any:
    """The value the server flattened into ``fields`` beside the frame's own ``taken``
    fields (the inverse of Rover's rendering: a lone ``data`` holding something it could not
    flatten, not an object or an object with a taken field, is that value)."""
    if len(fields) == 1 and "data" in fields:
        value = fields["data"]
        if not isinstance(value, dict) or any(name in value for name in taken):
            return value
    return fields


def _object(data: str | bytes, binary: bool) -> dict[str, Any] | None:
    if binary:
        return None
    try:
        obj = _read_json(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return obj if isinstance(obj, dict) else None


def _not_a_frame(data: str | bytes, binary: bool) -> Frame:
    if binary:
        return Frame(type="<binary>", raw=data)
    return Frame(type="<text>", payload=data, raw=data)


#: The canonical dialect, as a client speaks it.
CANONICAL = CanonicalFrames()
#: Seed 003's events dialect, as a client speaks it.
EVENTS = EventsFrames()
#: Rover's dialect, as a client speaks it.
ROVER = RoverFrames()
#: Every dialect a client can speak, by name.
DIALECTS: dict[str, ClientDialect] = {d.name: d for d in (CANONICAL, EVENTS, ROVER)}
