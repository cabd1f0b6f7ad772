"""The Rover dialect (seed 004): flat JSON objects ``{"type": event, ...fields}``. Sans-I/O.

Both ways, an event is one JSON object: its ``type`` and the fields of its payload side by
side. A payload that is not an object (an array, a string, a number), or an object with a
field named ``type``, travels under ``data``: ``{"type": "scores", "data": [3, 1]}``. Reading
it back is the same rule turned round: the fields but ``type`` are the payload, except that a
frame whose only other field is ``data`` holding something that is not an object has that
value as its payload.

Rover has no meta, no correlation ids and no heartbeat frames. Its control frames are the
topic requests, answered as Rover's client expects::

    {"type": "join", "topic": T, ...fields}   ->  {"type": "join_ack", "topic": T, ...data}
                                              ->  {"type": "join_error", "topic": T,
                                                   "reason": R, "code": C}
    {"type": "leave", "topic": T, ...fields}  ->  {"type": "leave_ack", "topic": T}

The fields of a join (but ``topic``) are the data its join handler reads; what an accepting
handler gives for the ack is merged into ``join_ack`` (an object) or put under ``data``.
Errors are ``{"type": "error", "message": M, "code": C, "details"?: {...}}``.
``docs/protocol-rover.md`` has every frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import orjson
from msgspec import UNSET

from ..errors import WsError
from .canonical import BadFrame, Envelope
from .dialect import (
    Control,
    Position,
    TopicAnswer,
    TopicRequest,
    position_keys,
    recover_request,
)

__all__ = ["ROVER", "RoverDialect", "decode", "render"]

_loads = orjson.loads
_dumps = orjson.dumps
#: Reads a client's frame as the canonical dialect reads its payload (msgspec): an integer is
#: exact up to Python's 4,300 digits (orjson would read one past 64 bits as a float).
_read = msgspec.json.Decoder().decode


def decode(frame: str | bytes) -> Envelope:
    """A Rover frame as an envelope (see the module docstring); raises ``BadFrame``."""
    try:
        obj = _read(frame)
    except msgspec.DecodeError as exc:  # (a number out of range included)
        raise BadFrame(f"malformed JSON: {exc}") from None
    except RecursionError:  # msgspec stops near Python's recursion limit; orjson reads 1,024
        try:
            obj = _loads(frame)
        except orjson.JSONDecodeError as exc:
            raise BadFrame(f"malformed JSON: {exc}") from None
    except UnicodeError:  # a str holding a lone surrogate (only in memory: sockets check UTF-8)
        raise BadFrame("malformed JSON: not UTF-8") from None
    if type(obj) is not dict:
        raise BadFrame('a frame is a JSON object: {"type": <event>, ...fields}')
    kind = obj.pop("type", None)
    if type(kind) is not str or not kind:
        raise BadFrame('missing "type": a frame needs a non-empty string type')
    if not obj:  # an event without fields: no payload (a schema without one matches)
        return Envelope(kind, {}, UNSET)
    if len(obj) == 1 and "data" in obj and type(obj["data"]) is not dict:
        return Envelope(kind, {}, obj["data"])
    return Envelope(kind, {}, obj)


def render(type: str, meta: bytes | None, payload: bytes | None) -> bytes:
    """An event as a Rover frame, from the JSON of its payload (``meta``: no place in it)."""
    head = b'{"type":' + _dumps(type)
    if payload is None or payload == b"{}":
        return head + b"}"
    if payload[:1] == b"{" and not _has_type_field(payload):
        return head + b"," + payload[1:]
    return head + b',"data":' + payload + b"}"


def _has_type_field(payload: bytes) -> bool:
    """Whether a JSON object has a top-level ``type`` field (then it cannot be flattened)."""
    if b'"type"' not in payload:
        return False
    obj = _loads(payload)
    return isinstance(obj, dict) and "type" in obj


class RoverDialect:
    """Rover's dialect (see the module docstring), as a :class:`~crosswire.wire.Dialect`."""

    name = "rover"
    subprotocol = "crosswire.rover"
    controls: Mapping[str, Control] = {
        "join": Control.JOIN,
        "leave": Control.LEAVE,
        "presence": Control.PRESENCE,
        "authenticate": Control.AUTHENTICATE,
    }

    def __repr__(self) -> str:
        return "<Dialect rover>"

    def decode(self, frame: str | bytes) -> Envelope:
        return decode(frame)

    message = staticmethod(render)
    render = staticmethod(render)

    def reply(self, type: str, correlation_id: str, payload: bytes | None) -> bytes:
        return render(type, None, payload)

    def error(self, error: WsError, correlation_id: str | None) -> bytes:
        out: dict[str, Any] = {
            "type": "error",
            "message": error.message,
            "code": error.code.value,
        }
        if error.details:
            out["details"] = error.details
        if error.retry_after_ms is not None:
            out["retryAfterMs"] = error.retry_after_ms
        return _dumps(out)

    def progress(self, correlation_id: str, data: Any) -> bytes:
        return _dumps({"type": "progress", "data": data})

    def heartbeat(self) -> None:
        return None

    def heartbeat_ack(self, now_ms: int) -> None:
        return None

    def authenticated(
        self, session: Mapping[str, Any], correlation_id: str | None, *, first: bool
    ) -> bytes:
        return _dumps({"type": "authenticated", **session})

    @staticmethod
    def typed_decoder(shapes: Mapping[str, Any]) -> None:
        """None: this dialect has no one-call decoder (its frames take the router's usual
        path, :meth:`decode` then the route's validation)."""
        return None

    def topic_requests(self, envelope: Envelope) -> list[TopicRequest]:
        body: Any = envelope.payload
        topic = body.get("topic") if type(body) is dict else None
        if type(topic) is not str or not topic:
            raise BadFrame(f'{envelope.type} needs "topic": a non-empty string')
        data = {k: v for k, v in body.items() if k not in ("topic", "$recover", "$presence")}
        positioned, since = recover_request(body.get("$recover"), '"$recover"')
        if positioned and envelope.type == "leave":
            raise BadFrame('leave takes no "$recover"')
        presence = body.get("$presence", False)
        if type(presence) is not bool:
            raise BadFrame('"$presence" is true or false')
        return [TopicRequest(topic, data, None, positioned, since, presence)]

    def joined(self, answers: Sequence[TopicAnswer]) -> list[bytes]:
        frames = []
        for answer in answers:
            topic = answer.request.topic
            error = answer.error
            if error is not None:
                frames.append(
                    _dumps(
                        {
                            "type": "join_error",
                            "topic": topic,
                            "reason": error.message,
                            "code": error.code.value,
                        }
                    )
                )
                continue
            ack: dict[str, Any] = {"type": "join_ack", "topic": topic}
            data = answer.data
            if type(data) is dict and "type" not in data and "topic" not in data:
                ack.update(data)
            elif data is not None:
                ack["data"] = data
            if answer.position is not None:
                ack["$recovered"] = answer.recovered
                ack["$offset"], ack["$epoch"] = answer.position
            frames.append(_dumps(ack))
        return frames

    @staticmethod
    def presence(request: TopicRequest, members: list[dict[str, Any]]) -> bytes:
        return _dumps({"type": "presence", "topic": request.topic, "members": members})

    @staticmethod
    def positioned(frame: bytes, topic: str, position: Position) -> bytes:
        return frame[:-1] + position_keys(topic, position, _POSITION) + b"}"

    def left(self, answers: Sequence[TopicAnswer]) -> list[bytes]:
        frames = []
        for answer in answers:
            topic = answer.request.topic
            if answer.error is not None:
                frames.append(self.error(answer.error, None))
            else:
                frames.append(_dumps({"type": "leave_ack", "topic": topic}))
        return frames


#: Where a Rover frame says its topic and position ($: crosswire's keys, not the payload's).
_POSITION = ("$topic", "$offset", "$epoch")

#: The Rover dialect.
ROVER = RoverDialect()
