"""Message schemas: ``message()`` and ``rpc()`` (WS-Kit's, in Python). Sans-I/O.

A schema names a message ``type`` and says what its ``payload`` and custom ``meta`` hold::

    Ping = message("PING")                                  # no payload
    Chat = message("CHAT", {"text": str, "room": str})      # a plain field mapping
    Chat = message("CHAT", ChatPayload)                     # a msgspec.Struct or pydantic model
    Traced = message("TRACED", {"action": str}, meta={"traceId": str})
    Add = message("ADD", {"a": int, "b": int}, response=message("ADD_RESULT", {"sum": int}))
    Add = rpc("ADD", {"a": int, "b": int}, "ADD_RESULT", {"sum": int})   # the same

A schema with a ``response`` is an RPC request (``router.rpc``); the response schema is
``Add.response``. Schemas are checked when created: reserved type prefixes (``$ws:``, ``__``)
and reserved meta keys (``clientId``, ``receivedAt``, and the standard ``correlationId``,
``timeoutMs``, ``timestamp``) are refused with a :class:`~crosswire.ConfigurationError`.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

import orjson

from ..errors import ConfigurationError, ValidationError
from .codecs import PayloadCodec, PydanticCodec, StructCodec, codec_for

__all__ = [
    "RESERVED_META_KEYS",
    "RESERVED_PREFIXES",
    "STANDARD_META_KEYS",
    "MessageSchema",
    "PayloadCodec",
    "PydanticCodec",
    "StructCodec",
    "message",
    "rpc",
    "within",
]

P = TypeVar("P")

#: Message types starting with these are crosswire's own control frames.
RESERVED_PREFIXES = ("$ws:", "__")

#: Meta keys the server stamps (``clientId``, ``receivedAt``); never accepted from a client.
RESERVED_META_KEYS = frozenset({"clientId", "receivedAt"})

#: Meta keys every message may carry, with their JSON types: (type check, description).
STANDARD_META_KEYS: Mapping[str, str] = {
    "correlationId": "string: ties an RPC's request, progress and reply together",
    "timeoutMs": "positive integer: the RPC's deadline, in milliseconds from receipt",
    "timestamp": "number: the sender's clock, in ms since the epoch (display only)",
}


@dataclass(frozen=True, eq=False, slots=True)
class MessageSchema(Generic[P]):
    """A message type with its payload and meta schemas; see :func:`message`."""

    type: str
    payload: PayloadCodec[P] | None = None
    meta: PayloadCodec[Any] | None = None
    response: MessageSchema[Any] | None = None
    #: Names of the custom meta keys (those of ``meta``), for quick checks.
    meta_keys: frozenset[str] = field(default=frozenset())
    #: Every meta key a received message of this type may carry.
    allowed_meta: frozenset[str] = field(default=frozenset())

    def __post_init__(self) -> None:
        allowed = frozenset(STANDARD_META_KEYS) | RESERVED_META_KEYS | self.meta_keys
        object.__setattr__(self, "allowed_meta", allowed)

    @property
    def is_rpc(self) -> bool:
        """Whether this is an RPC request (it has a ``response``)."""
        return self.response is not None

    def load_payload(self, obj: Any) -> P:
        """Validate a received payload; raises :class:`~crosswire.ValidationError`."""
        if self.payload is None:
            raise ValidationError(
                f"{self.type} has no payload",
                [{"path": ["payload"], "message": f"{self.type} takes no payload"}],
            )
        try:
            return self.payload.load(obj)
        except ValidationError as exc:
            raise within("payload", exc) from None

    def dump_payload_json(self, value: Any) -> bytes | None:
        """:meth:`dump_payload`, as bytes."""
        if self.payload is None or value is None:
            fragment = self.dump_payload(value)  # raises the right error, or None
            return None if fragment is None else orjson.dumps(fragment)
        return self.payload.dump_json(value)

    def dump_payload(self, value: Any) -> orjson.Fragment | None:
        """Validate a payload to send and return it as JSON (None when there is none)."""
        if self.payload is None:
            if value is not None:
                raise ValidationError(
                    f"{self.type} takes no payload",
                    [{"path": ["payload"], "message": f"{self.type} takes no payload"}],
                )
            return None
        if value is None:
            raise ValidationError(
                f"{self.type} needs a payload",
                [{"path": ["payload"], "message": "required"}],
            )
        return self.payload.dump(value)

    def __repr__(self) -> str:
        kind = "rpc" if self.response is not None else "message"
        fields = self.payload.describe() if self.payload is not None else {}
        inner = ", ".join(f"{k}: {v}" for k, v in fields.items())
        text = f"{kind}({self.type!r}, {{{inner}}})"
        if self.response is not None:
            text += f" -> {self.response!r}"
        return text


def within(part: str, exc: ValidationError) -> ValidationError:
    """``exc`` (from a payload or meta codec) with its paths starting at ``part``."""
    issues = [{"path": [part, *i["path"]], "message": i["message"]} for i in exc.issues]
    return ValidationError(f"invalid {part}: {exc}", issues)


@overload
def message(
    type: str,
    payload: None = None,
    *,
    meta: Mapping[str, Any] | None = None,
    response: MessageSchema[Any] | None = None,
) -> MessageSchema[None]: ...
@overload
def message(
    type: str,
    payload: builtins.type[P],
    *,
    meta: Mapping[str, Any] | None = None,
    response: MessageSchema[Any] | None = None,
) -> MessageSchema[P]: ...
@overload
def message(
    type: str,
    payload: Mapping[str, Any],
    *,
    meta: Mapping[str, Any] | None = None,
    response: MessageSchema[Any] | None = None,
) -> MessageSchema[Any]: ...
def message(
    type: str,
    payload: Any = None,
    *,
    meta: Mapping[str, Any] | None = None,
    response: MessageSchema[Any] | None = None,
) -> MessageSchema[Any]:
    """A message schema.

    ``payload`` is ``None`` (no payload), a ``{"field": type}`` mapping, a ``msgspec.Struct``
    class or a pydantic ``BaseModel`` class. ``meta`` adds custom meta keys (a field mapping).
    ``response`` makes it an RPC request answered by that schema.
    """
    _check_type(type, "message type")
    if response is not None and not isinstance(response, MessageSchema):
        raise ConfigurationError(
            f"{type}: response must be a schema, e.g. response=message('{type}_RESULT', {{...}})"
        )
    meta_codec: PayloadCodec[Any] | None = None
    meta_keys: frozenset[str] = frozenset()
    if meta:
        if not isinstance(meta, Mapping):
            raise ConfigurationError(f"{type}: meta must be a {{'key': type}} mapping")
        taken = (set(meta) & RESERVED_META_KEYS) | (set(meta) & set(STANDARD_META_KEYS))
        if taken:
            raise ConfigurationError(
                f"{type}: meta keys {sorted(taken)} are reserved "
                f"(clientId and receivedAt are stamped by the server; correlationId, timeoutMs "
                f"and timestamp are standard)"
            )
        meta_codec = StructCodec.from_fields(f"{type}_meta", meta)
        meta_keys = frozenset(meta)
    payload_codec = None if payload is None else codec_for(type, payload)
    return MessageSchema(type, payload_codec, meta_codec, response, meta_keys)


def rpc(
    request_type: str,
    request_payload: Any,
    response_type: str,
    response_payload: Any,
    *,
    meta: Mapping[str, Any] | None = None,
) -> MessageSchema[Any]:
    """An RPC schema: ``message(request_type, request_payload, meta=meta,
    response=message(response_type, response_payload))``."""
    _check_type(response_type, "response type")
    return message(
        request_type,
        request_payload,
        meta=meta,
        response=message(response_type, response_payload),
    )


def _check_type(type: Any, what: str) -> None:
    if not isinstance(type, str) or not type:
        raise ConfigurationError(f"{what} must be a non-empty string, got {type!r}")
    if type.startswith(RESERVED_PREFIXES):
        raise ConfigurationError(
            f"{what} {type!r} uses a reserved prefix ({' and '.join(RESERVED_PREFIXES)} are "
            "crosswire's control frames)"
        )
