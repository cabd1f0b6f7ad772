"""What travels on the bus: a :class:`Publication`, its Redis channel and its JSON envelope.

Sans-I/O: bytes and values in, bytes and values out.

The envelope and the channel names are seed 003's, so that its servers and emitters and
crosswire's interoperate::

    channel  ws:broadcast | ws:room:{room} | ws:client:{id} | ws:user:{id}
    message  {"serverId", "type": "room"|"client"|"user"|"broadcast", "target"?,
              "event", "data"?, "exclude"?}

crosswire adds optional keys that seed-003 servers ignore: ``meta`` (the canonical dialect's
meta object, for typed router messages), ``frame`` (``"text"`` or ``"binary"``: the
publication is a raw frame of the hooks layer, whose content is ``data``, a JSON string;
base64 for binary), and ``offset`` and ``epoch`` (a room event's position in its topic's
history, added by the script that keeps it: :mod:`crosswire.pubsub.redis_history`).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any, Literal

import msgspec
import orjson

from ..errors import BusError
from ..wire.dialect import Dialect, Position, Render

__all__ = [
    "Kind",
    "Publication",
    "Render",
    "channel_for",
    "decode_envelope",
    "encode_envelope",
]

Kind = Literal["room", "client", "user", "broadcast"]


_NO_EXCLUDE: frozenset[str] = frozenset()


class Publication:
    """One message to deliver, wherever its recipients are connected.

    It is addressed by ``kind`` and ``target`` (a room, a client id, a user id; none for a
    broadcast) minus the client ids in ``exclude``, and is either an **event** (``event`` with
    ``data`` and ``meta`` as encoded JSON, rendered for each recipient's dialect) or a **raw
    frame** (``frame``: text as UTF-8, or binary; sent as is). :meth:`of_event` builds an event
    from a Python value. It is not changed once built, and renders each dialect once.
    """

    __slots__ = (
        "_positioned",
        "_rendered",
        "binary",
        "data",
        "event",
        "exclude",
        "frame",
        "kind",
        "meta",
        "position",
        "target",
    )

    def __init__(
        self,
        kind: Kind,
        target: str | None,
        *,
        event: str = "",
        data: bytes | None = None,
        meta: bytes | None = None,
        frame: bytes | None = None,
        binary: bool = False,
        exclude: frozenset[str] = _NO_EXCLUDE,
    ) -> None:
        self.kind: Kind = kind
        self.target = target
        self.event = event
        self.data = data
        self.meta = meta
        self.frame = frame
        self.binary = binary
        self.exclude = exclude
        self._rendered: dict[Render, bytes | None] = {}
        #: Its place in its topic's history (set by the Hub that kept it), or None.
        self.position: Position | None = None
        self._positioned: dict[Render, bytes] | None = None

    @classmethod
    def of_event(
        cls,
        kind: Kind,
        target: str | None,
        event: str,
        data: Any = None,
        *,
        meta: bytes | None = None,
        exclude: Iterable[str] = (),
    ) -> Publication:
        """An event whose ``data`` is any JSON-able value (encoded here, once); None means
        no data (the key is left out, as JavaScript leaves out an undefined value)."""
        return cls(
            kind,
            target,
            event=event,
            data=None if data is None else orjson.dumps(data),
            meta=meta,
            exclude=frozenset(exclude) if exclude else _NO_EXCLUDE,
        )

    def render(self, render: Render) -> bytes | None:
        """This event as a text frame of one dialect (None: not for its connections);
        computed once per render function."""
        rendered = self._rendered
        if render in rendered:
            return rendered[render]
        out = rendered[render] = render(self.event, self.meta, self.data)
        return out

    def positioned(self, render: Render, dialect: Dialect, frame: bytes) -> bytes:
        """``frame`` (this event as ``render`` rendered it) with its topic and position, for
        connections that asked for positions; computed once per render function."""
        cache = self._positioned
        if cache is None:
            cache = self._positioned = {}
        out = cache.get(render)
        if out is None:
            assert self.position is not None and self.target is not None
            out = cache[render] = dialect.positioned(frame, self.target, self.position)
        return out

    def value(self) -> Any:
        """The data as a Python value (for outbound transforms): the decoded JSON of an event,
        the text or bytes of a raw frame."""
        if self.frame is not None:
            return bytes(self.frame) if self.binary else self.frame.decode()
        return None if self.data is None else orjson.loads(self.data)

    def __repr__(self) -> str:
        # Message bodies may carry personal data: never print them.
        what = f"frame {len(self.frame)} bytes" if self.frame is not None else repr(self.event)
        return f"<Publication {self.kind} {self.target!r} {what}>"


def channel_for(namespace: str, kind: Kind, target: str | None) -> str:
    """The bus channel of an address: ``ws:broadcast``, ``ws:room:{room}``, ..."""
    if kind == "broadcast":
        return f"{namespace}:broadcast"
    return f"{namespace}:{kind}:{target}"


def encode_envelope(server_id: str, pub: Publication) -> bytes:
    """The JSON envelope of ``pub`` as published by server ``server_id``."""
    out: dict[str, Any] = {"serverId": server_id, "type": pub.kind}
    if pub.target is not None:
        out["target"] = pub.target
    out["event"] = pub.event
    if pub.frame is not None:
        out["data"] = base64.b64encode(pub.frame).decode() if pub.binary else pub.frame.decode()
    elif pub.data is not None:
        out["data"] = orjson.Fragment(pub.data)
    if pub.exclude:
        out["exclude"] = sorted(pub.exclude)
    if pub.meta is not None:
        out["meta"] = orjson.Fragment(pub.meta)
    if pub.frame is not None:
        out["frame"] = "binary" if pub.binary else "text"
    return orjson.dumps(out)


class _Envelope(msgspec.Struct):
    serverId: str  # the wire's name
    type: Kind
    event: str
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    target: str | None = None
    exclude: list[str] | None = None
    meta: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    frame: Literal["text", "binary"] | None = None
    offset: int | None = None
    epoch: str | None = None


_decoder = msgspec.json.Decoder(_Envelope)


def decode_envelope(message: bytes) -> tuple[str, Publication]:
    """``(serverId, publication)`` of an envelope read from the bus.

    Raises :class:`~crosswire.BusError` (saying what is wrong, never the body) for anything
    that is not a well-formed envelope.
    """
    try:
        env = _decoder.decode(message)
    except msgspec.DecodeError as exc:
        raise BusError(f"unreadable message on the bus: {exc}") from None
    if env.type != "broadcast" and not env.target:
        raise BusError(f"a {env.type!r} message on the bus has no target")
    data = None if env.data is msgspec.UNSET else bytes(env.data)
    meta = None if env.meta is msgspec.UNSET else bytes(env.meta)
    exclude = frozenset(env.exclude) if env.exclude else _NO_EXCLUDE
    target = None if env.type == "broadcast" else env.target
    if env.frame is None:
        pub = Publication(env.type, target, event=env.event, data=data, meta=meta, exclude=exclude)
        if env.offset is not None or env.epoch is not None:
            if env.type != "room" or env.offset is None or env.offset < 1 or not env.epoch:
                raise BusError("a position on the bus is a room event's offset (>= 1) and epoch")
            pub.position = Position(env.offset, env.epoch)
        return env.serverId, pub
    content = orjson.loads(data) if data is not None else None
    if not isinstance(content, str):
        raise BusError("a raw frame on the bus must carry its content as a JSON string")
    if env.frame == "text":
        frame = content.encode()
    else:
        try:
            frame = base64.b64decode(content, validate=True)
        except binascii.Error:
            raise BusError("a binary frame on the bus is not valid base64") from None
    pub = Publication(env.type, target, frame=frame, binary=env.frame == "binary", exclude=exclude)
    return env.serverId, pub
