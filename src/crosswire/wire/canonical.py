"""The canonical dialect: WS-Kit's ``{"type", "meta"?, "payload"?}`` in JSON text frames.

:func:`decode` checks what every frame must satisfy, whatever its type: a JSON object, a
non-empty string ``type``, no root keys but ``type``/``meta``/``payload``, ``meta`` an object
whose standard keys have the right JSON types and which carries no server-stamped key. What
depends on the message's schema (custom meta keys, the payload) is checked by the router.

The ``encode_*`` functions build every frame the server sends. Each holds exactly the keys a
strict WS-Kit client accepts, except progress frames, which carry their value under both
``payload`` and ``data``: WS-Kit's server puts it in ``payload``, its client reads ``data``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Union

import msgspec
import orjson
from msgspec import UNSET

from ..errors import WsError
from .dialect import (
    NO_PAYLOAD,
    BadFrame,
    Control,
    Envelope,
    Position,
    TopicAnswer,
    TopicRequest,
    TypedDecoder,
    TypedEnvelope,
    recover_request,
)

__all__ = [
    "ABORT",
    "AUTHENTICATE",
    "AUTHENTICATED",
    "CANONICAL",
    "HEARTBEAT",
    "HEARTBEAT_ACK",
    "JOIN",
    "JOIN_ACK",
    "JOIN_ERROR",
    "LEAVE",
    "LEAVE_ACK",
    "RPC_PROGRESS",
    "BadFrame",
    "CanonicalDialect",
    "Envelope",
    "decode",
    "encode_error",
    "encode_heartbeat",
    "encode_heartbeat_ack",
    "encode_message",
    "encode_progress",
    "render",
]

RPC_PROGRESS = "$ws:rpc-progress"
ABORT = "$ws:abort"
HEARTBEAT = "__heartbeat"
HEARTBEAT_ACK = "__heartbeat_ack"
ERROR = "ERROR"
RPC_ERROR = "RPC_ERROR"
JOIN = "$ws:join"
AUTHENTICATE = "$ws:authenticate"
LEAVE = "$ws:leave"
JOIN_ACK = "$ws:join-ack"
JOIN_ERROR = "$ws:join-error"
LEAVE_ACK = "$ws:leave-ack"
AUTHENTICATED = "$ws:authenticated"
PRESENCE = "$ws:presence"

_ROOT_KEYS = frozenset({"type", "meta", "payload"})
_RESERVED_META = frozenset({"clientId", "receivedAt"})
#: Correlation ids longer than this are refused: they are echoed in every reply.
MAX_CORRELATION_ID = 256


_decode_frame = msgspec.json.Decoder(Envelope).decode


def decode(data: str | bytes) -> Envelope:
    """Parse one frame; raises :class:`BadFrame` with a message that says what is wrong.

    A well-formed frame is decoded by msgspec straight into its shape (root keys, JSON types
    of ``type`` and ``meta``); anything msgspec refuses is decoded again by :func:`_explain`,
    which says what is wrong.
    """
    try:
        envelope = _decode_frame(data)
    except Exception:  # msgspec's errors, and UnicodeError/RecursionError on odd input
        return _explain(data)
    if not envelope.type:
        return _explain(data)
    meta = envelope.meta
    if not meta:
        return envelope
    cid = meta.get("correlationId")
    # The common cases, checked in line: no meta keys, or only a valid correlationId.
    if cid is None:
        if meta:
            _check_meta(meta, None)
    elif type(cid) is str and 0 < len(cid) <= MAX_CORRELATION_ID:
        if len(meta) > 1:
            _check_meta(meta, cid)
    else:
        _check_meta(meta, None)  # raises: a bad correlationId
    return envelope


class _WithoutPayload(TypedEnvelope):
    """A typed envelope of a message type that takes no payload (a frame with one does not
    decode: the envelope forbids unknown fields)."""

    payload = None  # (a class attribute: not a field)

    @property
    def has_payload(self) -> bool:
        return False


class _Unchecked(TypedEnvelope):
    """A typed envelope whose payload is left as JSON for the route to check."""

    validated: ClassVar[bool] = False


_STANDARD_META = frozenset({"correlationId", "timeoutMs", "timestamp"})


def typed_decoder(shapes: Mapping[str, Any]) -> TypedDecoder | None:
    """:meth:`~crosswire.wire.Dialect.typed_decoder` for this dialect: one msgspec Decoder of
    the union of a :class:`TypedEnvelope` per message type, tagged by ``type``, so that the
    envelope and a Struct payload are decoded and checked in one C call. Frames with meta keys
    other than the standard ones, or with a bad value for one, are left to :func:`decode`."""
    variants: list[type[TypedEnvelope]] = []
    for kind, shape in shapes.items():
        name = f"Typed{len(variants)}"
        # (``type`` a class attribute of each: read without a call)
        if shape is NO_PAYLOAD:
            variant = msgspec.defstruct(
                name, [], bases=(_WithoutPayload,), tag=kind, namespace={"type": kind}
            )
        else:
            base = _Unchecked if shape is Any else TypedEnvelope
            variant = msgspec.defstruct(
                name,
                [("payload", shape)],
                bases=(base,),
                tag=kind,
                kw_only=True,
                namespace={"type": kind},
            )
        variants.append(variant)  # type: ignore[arg-type]  # (defstruct says Struct)
    if not variants:
        return None
    decode_union = msgspec.json.Decoder(Union[tuple(variants)]).decode  # noqa: UP007

    def decode_typed(frame: str | bytes) -> TypedEnvelope | None:
        try:
            envelope: TypedEnvelope = decode_union(frame)
        except Exception:  # msgspec's errors, and UnicodeError/RecursionError on odd input
            return None
        meta = envelope.meta
        if meta:
            cid = meta.get("correlationId")
            # The common case in line: only a valid correlation id.
            if not (len(meta) == 1 and type(cid) is str and 0 < len(cid) <= MAX_CORRELATION_ID):
                if not _STANDARD_META.issuperset(meta):
                    return None
                try:
                    _check_meta(meta, None)
                except BadFrame:
                    return None
        return envelope

    return decode_typed


def _explain(data: str | bytes) -> Envelope:
    """Decode a frame msgspec refused, checking each rule in turn to say which one it breaks
    (it returns an Envelope only where msgspec is stricter than JSON, which cannot happen for
    well-formed UTF-8 JSON)."""
    try:
        obj = _read_any(data)  # integers as exact as in a frame msgspec accepts
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        try:  # orjson reads deeper (1,024 levels), and its errors say where the JSON breaks
            obj = _loads(data)
        except orjson.JSONDecodeError as exc:
            raise _unreadable(data, exc) from None
    if type(obj) is not dict:
        raise BadFrame('a frame is a JSON object: {"type": ..., "meta"?: {...}, "payload"?: ...}')
    kind = obj.get("type")
    meta = obj.get("meta")
    cid = None
    if type(meta) is dict:
        cid = meta.get("correlationId")
        if cid is not None and (type(cid) is not str or not 0 < len(cid) <= MAX_CORRELATION_ID):
            cid = None
        _check_meta(meta, cid)
    elif meta is None:
        if "meta" in obj:
            raise BadFrame("meta must be an object, not null")
        meta = {}
    else:
        raise BadFrame("meta must be an object")
    if type(kind) is not str or not kind:
        raise BadFrame('missing "type": a frame needs a non-empty string type', correlation_id=cid)
    if len(obj) > 1 and not _ROOT_KEYS.issuperset(obj):
        extra = sorted(set(obj) - _ROOT_KEYS)
        raise BadFrame(
            f"unknown key(s) {extra} at the root: a frame has only type, meta and payload",
            correlation_id=cid,
        )
    return Envelope(kind, meta, obj.get("payload", UNSET))


_loads = orjson.loads
_read_any = msgspec.json.Decoder().decode


class _Outline(msgspec.Struct):
    """A frame's envelope, its values left unread (``Raw`` checks the JSON syntax only)."""

    type: Any = None
    meta: msgspec.Raw = msgspec.Raw(b"{}")
    payload: msgspec.Raw = msgspec.Raw(b"null")


class _OutlineMeta(msgspec.Struct):
    correlationId: Any = None


_decode_outline = msgspec.json.Decoder(_Outline).decode
_decode_outline_meta = msgspec.json.Decoder(_OutlineMeta).decode


def _unreadable(data: str | bytes, exc: orjson.JSONDecodeError) -> BadFrame:
    """The error for a frame orjson cannot read. A frame that is well-formed JSON is refused
    for one of its values: a number out of range (an integer longer than Python reads from
    text, ``sys.get_int_max_str_digits()``, or a number past a double's range, such as
    ``1e400``), or a binary frame that is not UTF-8. When its ``type`` and
    ``meta.correlationId`` can still be read, the error carries the correlation id, so that
    an RPC caller gets it at once."""
    try:
        outline = _decode_outline(data)
    # not JSON, not an object, or nested past what msgspec reads either; or (in memory only:
    # sockets check UTF-8) a str holding a lone surrogate
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeError):
        return BadFrame(f"malformed JSON: {exc}")
    if str(exc).startswith("depth limit"):  # orjson reads 1,024 levels at most
        return BadFrame(f"malformed JSON: {exc}", correlation_id=_outline_correlation_id(outline))
    cid = _outline_correlation_id(outline)
    if isinstance(data, bytes) and not _is_utf8(data):
        return BadFrame(f"malformed JSON: {exc}", correlation_id=cid)
    digits = sys.get_int_max_str_digits()
    longest = f"integers may have at most {digits} digits, and " if digits else ""
    return BadFrame(
        f"a number is out of range: {longest}other numbers must be finite (as doubles)",
        correlation_id=cid,
    )


def _outline_correlation_id(outline: _Outline) -> str | None:
    """The frame's valid ``meta.correlationId``, if it has a type and one."""
    if type(outline.type) is not str or not outline.type:
        return None
    try:
        cid = _decode_outline_meta(outline.meta).correlationId
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):  # not an object
        return None
    return cid if type(cid) is str and 0 < len(cid) <= MAX_CORRELATION_ID else None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


def _check_meta(meta: dict[str, Any], cid: str | None) -> None:
    """Check the standard meta keys; ``cid`` is the correlation id once known to be valid."""
    if cid is None and "correlationId" in meta:
        value = meta["correlationId"]
        if type(value) is not str or not value or len(value) > MAX_CORRELATION_ID:
            raise BadFrame(
                f"meta.correlationId must be a non-empty string of at most "
                f"{MAX_CORRELATION_ID} characters"
            )
    if "timeoutMs" in meta:
        value = meta["timeoutMs"]
        if type(value) is not int or value <= 0:
            raise BadFrame("meta.timeoutMs must be a positive integer", correlation_id=cid)
    if "timestamp" in meta:
        value = meta["timestamp"]
        if type(value) not in (int, float):
            raise BadFrame("meta.timestamp must be a number", correlation_id=cid)
    stamped = _RESERVED_META.intersection(meta)
    if stamped:
        raise BadFrame(
            f"meta.{min(stamped)} is stamped by the server and cannot be sent",
            correlation_id=cid,
        )


def encode_message(
    type: str, meta: dict[str, Any] | None, payload: orjson.Fragment | None
) -> bytes:
    """``{"type", "meta", "payload"?}``; ``payload`` is already validated JSON."""
    if payload is None:
        return orjson.dumps({"type": type, "meta": meta or {}})
    return orjson.dumps({"type": type, "meta": meta or {}, "payload": payload})


def render(event: str, meta: bytes | None, data: bytes | None) -> bytes:
    """A published event in this dialect, ``{"type", "meta", "payload"?}``, joined from the
    JSON of its parts (the Hub's :data:`~crosswire.pubsub.envelope.Render` for the dialect)."""
    head = b'{"type":' + orjson.dumps(event) + b',"meta":' + (meta or b"{}")
    if data is None:
        return head + b"}"
    return head + b',"payload":' + data + b"}"


def encode_reply(type: str, correlation_id: str, payload: bytes | None) -> bytes:
    """An RPC reply ``{"type", "meta": {"correlationId"}, "payload"?}``, from the payload's
    JSON: joined from bytes, as it is sent once per call."""
    prefix = _REPLY_PREFIX.get(type)
    if prefix is None:
        prefix = _REPLY_PREFIX[type] = (
            b'{"type":' + orjson.dumps(type) + b',"meta":{"correlationId":'
        )
    if payload is None:
        return prefix + orjson.dumps(correlation_id) + b"}}"
    return prefix + orjson.dumps(correlation_id) + b'},"payload":' + payload + b"}"


#: ``{"type":"<T>","meta":{"correlationId":`` per response type (bounded by the schemas).
_REPLY_PREFIX: dict[str, bytes] = {}


def encode_error(error: WsError, correlation_id: str | None) -> bytes:
    """``ERROR`` (no correlation id) or ``RPC_ERROR`` (with ``meta.correlationId``)."""
    if correlation_id is None:
        return orjson.dumps({"type": ERROR, "meta": {}, "payload": error.to_payload()})
    return orjson.dumps(
        {
            "type": RPC_ERROR,
            "meta": {"correlationId": correlation_id},
            "payload": error.to_payload(),
        }
    )


def encode_progress(correlation_id: str, data: Any) -> bytes:
    """A progress frame of an RPC, the value under both ``payload`` and ``data``."""
    return orjson.dumps(
        {
            "type": RPC_PROGRESS,
            "meta": {"correlationId": correlation_id},
            "payload": data,
            "data": data,
        }
    )


def encode_heartbeat() -> bytes:
    """The server's heartbeat; a client answers ``__heartbeat_ack``."""
    return b'{"type":"__heartbeat"}'


def encode_heartbeat_ack(now_ms: int) -> bytes:
    """The answer to a client's ``__heartbeat``, with the server's clock."""
    return orjson.dumps({"type": HEARTBEAT_ACK, "meta": {"ts": now_ms}})


class CanonicalDialect:
    """WS-Kit's dialect (see the module docstring), as a :class:`~crosswire.wire.Dialect`.

    Topic control frames, answered only to clients that send them (a strict WS-Kit client
    that never joins never sees one)::

        {"type": "$ws:join", "meta": {"correlationId"?},
         "payload": {"topic": T, "data"?: any, "recover"?: {} | {"offset": n, "epoch": e}}}
          -> {"type": "$ws:join-ack", "meta": {...}, "payload": {"topic": T, "data"?: any,
              "recovered"?, "offset"?, "epoch"? (with recover)}}
          -> {"type": "$ws:join-error", "meta": {...},
              "payload": {"topic": T, "code", "message", "details"?, ...}}
        {"type": "$ws:leave", "meta": {...}, "payload": {"topic": T}}
          -> {"type": "$ws:leave-ack", "meta": {...}, "payload": {"topic": T}}

    In-band authentication (a router with ``authenticate``), first and refresh alike::

        {"type": "$ws:authenticate", "meta": {"correlationId"?}, "payload": credentials}
          -> {"type": "$ws:authenticated", "meta": {...},
              "payload": {"userId"?: str, "expiresAt"?: ms}}
    """

    name = "canonical"
    subprotocol = "crosswire.canonical"
    controls: Mapping[str, Control] = {
        ABORT: Control.ABORT,
        HEARTBEAT: Control.HEARTBEAT,
        HEARTBEAT_ACK: Control.HEARTBEAT_ACK,
        JOIN: Control.JOIN,
        LEAVE: Control.LEAVE,
        AUTHENTICATE: Control.AUTHENTICATE,
        PRESENCE: Control.PRESENCE,
    }

    def __repr__(self) -> str:
        return "<Dialect canonical>"

    # The module's functions themselves (no Python frame of this class on the hot path).
    decode = staticmethod(decode)
    typed_decoder = staticmethod(typed_decoder)
    message = staticmethod(render)
    render = staticmethod(render)
    reply = staticmethod(encode_reply)
    error = staticmethod(encode_error)
    progress = staticmethod(encode_progress)
    heartbeat = staticmethod(encode_heartbeat)
    heartbeat_ack = staticmethod(encode_heartbeat_ack)

    def authenticated(
        self, session: Mapping[str, Any], correlation_id: str | None, *, first: bool
    ) -> bytes:
        meta = {"correlationId": correlation_id} if correlation_id is not None else {}
        return orjson.dumps({"type": AUTHENTICATED, "meta": meta, "payload": session})

    def topic_requests(self, envelope: Envelope) -> list[TopicRequest]:
        body: Any = envelope.payload
        topic = body.get("topic") if type(body) is dict else None
        cid = envelope.correlation_id
        if type(topic) is not str or not topic:
            raise BadFrame(
                f'{envelope.type} needs a payload {{"topic": <a non-empty string>}}',
                correlation_id=cid,
            )
        extra = set(body) - {"topic", "data", "recover", "presence"}
        if extra:
            raise BadFrame(
                f"unknown key(s) {sorted(extra)} in the payload of {envelope.type}: "
                "only topic, data, recover and presence",
                correlation_id=cid,
            )
        presence = body.get("presence", False)
        if type(presence) is not bool:
            raise BadFrame("payload.presence is true or false", correlation_id=cid)
        try:
            positioned, since = recover_request(body.get("recover"), "payload.recover")
        except BadFrame as exc:
            raise BadFrame(exc.message, correlation_id=cid) from None
        if positioned and envelope.type == LEAVE:
            raise BadFrame(f"{LEAVE} takes no recover", correlation_id=cid)
        return [TopicRequest(topic, body.get("data"), cid, positioned, since, presence)]

    def joined(self, answers: Sequence[TopicAnswer]) -> list[bytes]:
        return [self._answer(JOIN_ACK, JOIN_ERROR, answer) for answer in answers]

    def left(self, answers: Sequence[TopicAnswer]) -> list[bytes]:
        return [self._answer(LEAVE_ACK, ERROR, answer) for answer in answers]

    @staticmethod
    def _answer(ack: str, refusal: str, answer: TopicAnswer) -> bytes:
        request = answer.request
        meta = {"correlationId": request.correlation_id} if request.correlation_id else {}
        payload: dict[str, Any] = {"topic": request.topic}
        if answer.error is not None:
            return orjson.dumps(
                {"type": refusal, "meta": meta, "payload": payload | answer.error.to_payload()}
            )
        if answer.data is not None:
            payload["data"] = answer.data
        if answer.position is not None:
            payload["recovered"] = answer.recovered
            payload["offset"], payload["epoch"] = answer.position
        return orjson.dumps({"type": ack, "meta": meta, "payload": payload})

    @staticmethod
    def presence(request: TopicRequest, members: list[dict[str, Any]]) -> bytes:
        cid = request.correlation_id
        return orjson.dumps(
            {
                "type": PRESENCE,
                "meta": {"correlationId": cid} if cid else {},
                "payload": {"topic": request.topic, "members": members},
            }
        )

    @staticmethod
    def positioned(frame: bytes, topic: str, position: Position) -> bytes:
        # A rendered publication starts {"type":<T>,"meta":{ (render's shape): the position
        # goes first in meta. (A JSON string cannot hold the unescaped ,"meta":{ itself.)
        at = frame.index(b',"meta":{') + 9
        keys = (
            b'"topic":'
            + orjson.dumps(topic)
            + b',"offset":'
            + str(position.offset).encode()
            + b',"epoch":'
            + orjson.dumps(position.epoch)
        )
        return frame[:at] + keys + (b"" if frame[at : at + 1] == b"}" else b",") + frame[at:]


#: The canonical dialect.
CANONICAL = CanonicalDialect()
