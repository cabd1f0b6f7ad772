"""The seam between the router and the wire: one :class:`Dialect` per wire format. Sans-I/O.

A dialect turns a client's frame into the :class:`~crosswire.wire.canonical.Envelope` the
router works with (``type``, ``meta``, ``payload``), and turns every frame the server sends
into bytes: messages, RPC replies, errors, progress, topic answers, heartbeats, and the
rendering of a publication (which the Hub does once per dialect, whatever the number of
recipients). The router keeps the dialect of each connection and calls it; it never calls a
codec module directly.

Three dialects ship with crosswire:

==============  ==================================================  =========================
dialect         frames                                              seed
==============  ==================================================  =========================
``canonical``   ``{"type", "meta"?, "payload"?}``                   WS-Kit (002)
``events``      ``{"event", "data"?, "id"?}``                       the Redis helper (003)
``rover``       ``{"type": event, ...fields}``                      Rover (004)
==============  ==================================================  =========================

Some frame types are *control frames* of the connection, not messages for a route:
:attr:`Dialect.controls` maps them to a :class:`Control`. A dialect that has no frame for a
control (Rover has no heartbeat) leaves it out, and an ``encode`` for it returns ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

import msgspec
import orjson
from msgspec import UNSET, UnsetType

from ..errors import ErrorCode, WsError

__all__ = [
    "NO_PAYLOAD",
    "BadFrame",
    "Control",
    "Dialect",
    "Envelope",
    "Position",
    "Render",
    "TopicAnswer",
    "TopicRequest",
    "TypedDecoder",
    "TypedEnvelope",
    "position_keys",
    "recover_request",
    "select",
]

#: Renders an event for one connection: ``(type, meta JSON or None, payload JSON or None)``
#: to the UTF-8 bytes of a text frame (a dialect's :meth:`Dialect.message`), or None when
#: the event is not for it (a router's outbound map dropped it: :mod:`crosswire.wire.maps`).
Render = Callable[[str, bytes | None, bytes | None], "bytes | None"]


class BadFrame(WsError):
    """A frame that breaks the protocol; answered with an ``INVALID_ARGUMENT`` error.

    ``correlation_id`` is the frame's ``meta.correlationId`` when it could be read, so that an
    RPC caller gets its error at once instead of waiting for its timeout.
    """

    def __init__(self, message: str, *, correlation_id: str | None = None) -> None:
        super().__init__(ErrorCode.INVALID_ARGUMENT, message)
        self.correlation_id = correlation_id


class Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """A decoded frame: what the router works with, whatever the dialect. ``payload`` is the
    raw JSON value, or ``UNSET`` when the frame has none. The canonical dialect's decoder
    reads it in one pass with msgspec (root keys and JSON types checked), the others build
    it from their frames."""

    type: str
    meta: dict[str, Any] = {}  # msgspec gives each frame its own empty dict
    payload: Any | UnsetType = UNSET

    #: Whether ``payload`` is already validated against the route's schema (never, here: see
    #: :class:`TypedEnvelope`).
    validated: ClassVar[bool] = False

    @property
    def has_payload(self) -> bool:
        """Whether the frame has a ``payload`` key (``null`` included)."""
        return self.payload is not UNSET

    @property
    def correlation_id(self) -> str | None:
        """``meta.correlationId``: valid when present (decoders refuse a bad one)."""
        cid: str | None = self.meta.get("correlationId")
        return cid

    def __repr__(self) -> str:
        return f"<Envelope {self.type} meta={sorted(self.meta)} payload={self.has_payload}>"


class TypedEnvelope(msgspec.Struct, tag_field="type", forbid_unknown_fields=True):
    """A frame decoded by a dialect's :meth:`~Dialect.typed_decoder`: one class per message
    type (the ``type`` is its tag), whose ``payload``, when :attr:`validated`, is already the
    route's value (a Struct), decoded and checked in the same call as the envelope. It reads
    like an :class:`Envelope` (``type``, ``meta``, ``payload``, ``has_payload``,
    ``correlation_id``); its ``meta`` holds only the standard keys, already checked."""

    meta: dict[str, Any] = {}
    validated: ClassVar[bool] = True
    if TYPE_CHECKING:  # a field of the subclasses with a payload; None on the others
        payload: Any = None

    @property
    def type(self) -> str:
        tag: str = self.__struct_config__.tag  # type: ignore[assignment]
        return tag

    @property
    def has_payload(self) -> bool:
        return True  # (the subclasses without a payload field say otherwise)

    @property
    def correlation_id(self) -> str | None:
        cid: str | None = self.meta.get("correlationId")
        return cid


#: In a :meth:`Dialect.typed_decoder`'s shapes: a message type that takes no payload.
NO_PAYLOAD: Any = None

#: A dialect's one-call decoder (:meth:`Dialect.typed_decoder`): the frame as a
#: :class:`TypedEnvelope`, or None when it is not one it takes whole.
TypedDecoder = Callable[[str | bytes], "TypedEnvelope | None"]


class Control(Enum):
    """What a control frame asks of the connection."""

    ABORT = "abort"  #: cancel an RPC in flight (its correlation id)
    HEARTBEAT = "heartbeat"  #: the client's heartbeat: answered when the dialect can
    HEARTBEAT_ACK = "heartbeat_ack"  #: the answer to the server's heartbeat
    JOIN = "join"  #: join one topic or several
    LEAVE = "leave"  #: leave one topic or several
    AUTHENTICATE = "authenticate"  #: in-band authentication, with the credentials
    PRESENCE = "presence"  #: who is in a topic (the connection must be in it)


class Position(NamedTuple):
    """Where a topic's history is: the offset of its last publication (0: none yet), in an
    epoch (a token that changes when the history's past is lost). See
    :mod:`crosswire.pubsub.history`."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class TopicRequest:
    """One topic a client asks to join or leave: its name, the data that came with it (for
    the join handler; ``None`` without), and the correlation id its answer carries.

    ``positioned``: the client asked for positions (its pushed frames of this topic then
    carry their offset and epoch, and the ack the topic's position); ``since``: the last
    position it saw, to recover what it missed from (None: a first join); ``presence``: it
    asked for the topic's presence events."""

    topic: str
    data: Any = None
    correlation_id: str | None = None
    positioned: bool = False
    since: Position | None = None
    #: The client asked for the topic's presence events (joins and leaves of others).
    presence: bool = False


@dataclass(frozen=True, slots=True)
class TopicAnswer:
    """The answer to one :class:`TopicRequest`: ``error`` is None when it was accepted, and
    ``data`` is what the join handler gave for the ack. ``whole``: the frame's requests were
    refused together, for one reason (too many topics), each answer carrying that error.
    For a positioned join: ``position`` (the topic's, once the client has what it missed)
    and ``recovered`` (whether what it missed since ``request.since`` was all recovered;
    False for a first join, or a topic without history)."""

    request: TopicRequest
    error: WsError | None = None
    data: Any = None
    whole: bool = False
    recovered: bool = False
    position: Position | None = None
    #: What the join handler attached to the connection's presence entry (not sent back).
    presence: Any = None


def position_keys(topic: str, position: Position, names: tuple[str, str, str]) -> bytes:
    """``,"<topic name>":T,"<offset name>":n,"<epoch name>":e``: what a dialect splices into a
    rendered frame for a connection that asked for positions."""
    topic_key, offset_key, epoch_key = names
    return (
        f',"{topic_key}":'.encode()
        + orjson.dumps(topic)
        + f',"{offset_key}":{position.offset},"{epoch_key}":'.encode()
        + orjson.dumps(position.epoch)
    )


def recover_request(value: Any, where: str) -> tuple[bool, Position | None]:
    """A join's recovery request (``{}``: positions from now; ``{"offset", "epoch"}``: from
    there) as ``(positioned, since)``; raises ``BadFrame`` when it is malformed."""
    if value is None:
        return False, None
    if type(value) is not dict:
        raise BadFrame(f'{where} is an object: {{}} or {{"offset": n, "epoch": "..."}}')
    if not value:
        return True, None
    offset, epoch = value.get("offset"), value.get("epoch")
    if (
        set(value) != {"offset", "epoch"}
        or type(offset) is not int
        or offset < 0
        or type(epoch) is not str
        or len(epoch) > 64
    ):
        raise BadFrame(
            f'{where} is {{}} or {{"offset": <an integer >= 0>, "epoch": <a string of at most 64 '
            "characters>}"
        )
    return True, Position(offset, epoch)


class Dialect(Protocol):
    """A wire format. Every method is pure: values in, bytes out (see the module docstring).

    JSON arguments (``payload``, ``meta``, ``data``) are already encoded (UTF-8 bytes of JSON,
    or ``None`` for none), so that a message is encoded once whatever the dialect.
    """

    #: Short name: ``canonical``, ``events``, ``rover``.
    name: str
    #: The WebSocket subprotocol that asks for this dialect (``crosswire.<name>``).
    subprotocol: str
    #: Frame types that are control frames, and what they ask.
    controls: Mapping[str, Control]

    @property
    def render(self) -> Render:
        """:meth:`message`, as one object for every connection of the dialect: the Hub
        renders a publication once per dialect, keyed by it."""
        ...

    def decode(self, frame: str | bytes) -> Envelope:
        """A client's frame as an envelope; raises :class:`~crosswire.wire.canonical.BadFrame`
        (an ``INVALID_ARGUMENT`` error, with the correlation id when it could be read)."""
        ...

    def typed_decoder(self, shapes: Mapping[str, Any]) -> TypedDecoder | None:
        """A decoder that reads a frame of one of the message types of ``shapes`` and checks
        its payload in one call (the router's fast lane), or None when the dialect has none.

        ``shapes`` maps each message type to its payload's type: a type msgspec decodes and
        checks (a Struct: the envelope's payload is then that value, ``validated``), ``Any``
        (left as the JSON value, for the route to check), or :data:`NO_PAYLOAD`. The decoder
        returns None for any frame that it does not take whole: another type, a payload that
        does not fit, meta keys other than the standard ones, or anything :meth:`decode`
        would refuse; the router then calls :meth:`decode`, which says what is wrong. What
        it returns, :meth:`decode` would have accepted, with the same type, meta and payload.
        """
        ...

    def message(self, type: str, meta: bytes | None, payload: bytes | None) -> bytes:
        """A message to a client (``ctx.send``) or a publication (the Hub's ``Render``)."""
        ...

    def reply(self, type: str, correlation_id: str, payload: bytes | None) -> bytes:
        """The answer to an RPC."""
        ...

    def error(self, error: WsError, correlation_id: str | None) -> bytes:
        """An error: of an RPC when ``correlation_id`` is given, else of the connection."""
        ...

    def progress(self, correlation_id: str, data: Any) -> bytes:
        """A progress frame of an RPC (``data``: any JSON-able value)."""
        ...

    def heartbeat(self) -> bytes | None:
        """The server's heartbeat, or None when the dialect has none (the server then only
        watches the client's silence)."""
        ...

    def heartbeat_ack(self, now_ms: int) -> bytes | None:
        """The answer to a client's heartbeat, or None when the dialect answers nothing."""
        ...

    def topic_requests(self, envelope: Envelope) -> list[TopicRequest]:
        """The topics a ``JOIN`` or ``LEAVE`` control frame names; raises ``BadFrame``."""
        ...

    def joined(self, answers: Sequence[TopicAnswer]) -> list[bytes]:
        """The frames that answer the topic requests of one ``JOIN`` frame."""
        ...

    def left(self, answers: Sequence[TopicAnswer]) -> list[bytes]:
        """The frames that answer the topic requests of one ``LEAVE`` frame."""
        ...

    def positioned(self, frame: bytes, topic: str, position: Position) -> bytes:
        """A publication's frame (what :meth:`message` rendered) with the topic it came from
        and its position, for a connection that asked for positions on that topic."""
        ...

    def presence(self, request: TopicRequest, members: list[dict[str, Any]]) -> bytes:
        """The answer to a ``PRESENCE`` request: who is in ``request.topic`` (each member
        ``{"clientId", "userId", "data"}``)."""
        ...

    def authenticated(
        self, session: Mapping[str, Any], correlation_id: str | None, *, first: bool
    ) -> bytes | None:
        """The answer to an accepted ``AUTHENTICATE`` frame: the first one (``first``) or a
        refresh. ``session`` is ``{"userId"?, "expiresAt"?}`` (milliseconds since the
        epoch). None: the dialect answers nothing (the app's ``on_authenticated`` does)."""
        ...


def select(
    served: Sequence[Dialect], offered: Sequence[str], asked: str | None
) -> tuple[Dialect, str | None] | None:
    """The dialect of a new connection, among those an endpoint ``served`` (the first is its
    default), and the subprotocol to answer with (None: none of the dialects').

    In order: ``asked`` (the ``dialect`` query parameter) names one by name; else the first
    subprotocol ``offered`` that names one (``crosswire.<name>``); else the default. None
    when ``asked`` names a dialect the endpoint does not serve (the handshake is refused)."""
    if asked is not None:
        for dialect in served:
            if dialect.name == asked:
                return dialect, None
        return None
    if offered:
        by_subprotocol = {dialect.subprotocol: dialect for dialect in served}
        for subprotocol in offered:
            chosen = by_subprotocol.get(subprotocol)
            if chosen is not None:
                return chosen, subprotocol
    return served[0], None
