"""Frames as a client receives them: parsed once, typed against a schema when asked."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..errors import ErrorCode, JoinRefused, WsError, is_retryable
from ..schema import MessageSchema
from ..wire.dialect import Position

__all__ = ["Frame", "JoinAck", "error_of", "parse", "refusal", "typed"]

_read_json = msgspec.json.Decoder().decode


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame the server sent. ``payload`` is the raw JSON value, or the validated, typed
    payload in frames returned by ``request`` and ``receive_as``, and given to handlers."""

    type: str
    meta: dict[str, Any] = field(default_factory=dict)
    payload: Any = None
    #: The whole frame as parsed JSON (``None`` for binary frames and text that is not a
    #: frame of the connection's dialect).
    json: dict[str, Any] | None = None
    raw: str | bytes = b""

    @property
    def correlation_id(self) -> str | None:
        """``meta.correlationId`` if it is a string (``None`` otherwise)."""
        cid = self.meta.get("correlationId")
        return cid if isinstance(cid, str) else None


@dataclass(frozen=True, slots=True)
class JoinAck:
    """A join the server accepted: the ``topic``, the ``data`` its join handler gave
    ``ctx.accept(data)`` (``None`` when none), and the ``frame`` that said so (``None`` in the
    events dialect, which acknowledges a join with nothing).

    For a join that asked for positions (``recover``, canonical dialect): ``recovered``,
    whether every event missed since the position sent was recovered (they follow the ack),
    and ``position``, the topic's. Both ``None`` when the ack does not carry them."""

    topic: str
    data: Any = None
    frame: Frame | None = None
    recovered: bool | None = None
    position: Position | None = None


def parse(data: str | bytes, binary: bool) -> Frame:
    """A received message as a :class:`Frame`: ``type`` is ``"<binary>"`` for binary data and
    ``"<text>"`` for text that is not a JSON object with a string ``type``. Integers are read
    exactly, as the server reads them."""
    if binary:
        return Frame(type="<binary>", raw=data)
    try:
        obj = _read_json(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("type"), str):
        meta = obj.get("meta")
        return Frame(
            obj["type"], meta if isinstance(meta, dict) else {}, obj.get("payload"), obj, data
        )
    return Frame(type="<text>", payload=data, raw=data)


def typed(frame: Frame, schema: MessageSchema[Any]) -> Frame:
    """``frame`` with its payload validated against ``schema`` (raises
    :class:`~crosswire.ValidationError`)."""
    payload = schema.load_payload(frame.payload) if schema.payload is not None else None
    return Frame(frame.type, frame.meta, payload, frame.json, frame.raw)


def error_of(frame: Frame) -> WsError:
    """The :class:`~crosswire.WsError` an ``ERROR`` or ``RPC_ERROR`` frame carries. Its
    ``retryable`` is the server's, or inferred from the code when the server sent none (as
    the browser client does). What does not fit (a code outside the 13, details that are not
    an object, a ``retryAfterMs`` on a code that is not retryable) is kept in ``details`` of
    an ``INTERNAL`` error, or dropped."""
    body = frame.payload if isinstance(frame.payload, dict) else {}
    code = body.get("code")
    message = str(body.get("message", ""))
    details = body.get("details") if isinstance(body.get("details"), dict) else None
    sent = body.get("retryable")
    try:
        known = ErrorCode(str(code))  # WsError refuses what is not one of the 13
    except ValueError:
        return WsError(
            ErrorCode.INTERNAL,
            message,
            {"code": code, "details": body.get("details")},
            retryable=is_retryable(ErrorCode.INTERNAL),
        )
    retryable = sent if isinstance(sent, bool) else is_retryable(known)
    try:
        return WsError(
            known, message, details, retryable=retryable, retry_after_ms=body.get("retryAfterMs")
        )
    except (ValueError, TypeError):  # without the retry hint that broke the rules
        return WsError(known, message, details, retryable=retryable)


def refusal(topic: str, error: WsError) -> JoinRefused:
    """``error``, the server's answer to a join of ``topic``, as a :class:`JoinRefused`."""
    return JoinRefused(
        topic,
        error.code,
        error.message,
        error.details,
        retryable=error.retryable,
        retry_after_ms=error.retry_after_ms,
    )
