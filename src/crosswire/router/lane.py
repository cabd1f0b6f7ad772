"""The fast lane: a frame decoded and its payload checked in one call.

A dialect that has a :meth:`~crosswire.wire.Dialect.typed_decoder` (the canonical one) reads
a frame of a routed message type straight into a :class:`~crosswire.wire.TypedEnvelope`
whose payload is already the route's value when the schema is a msgspec Struct (a
``{"field": type}`` mapping, or a Struct that forbids unknown fields): one msgspec call
instead of decoding the envelope, then converting the payload. A pydantic payload stays JSON
in the envelope and is validated by the route as before.

What the fast lane does not take whole (another type, a control frame, a payload that does
not fit, meta keys other than the standard ones, a route with a meta schema, anything
malformed) goes the usual way, :meth:`~crosswire.wire.Dialect.decode` then the route's
validation, which says what is wrong: answers and errors are the same either way. A payload
that fits is checked before the route's middleware instead of after it, so middleware sees
``ctx.payload`` already set on such routes.

One :class:`Lane` per dialect per served router, built on the first frame and rebuilt after
the routes change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..schema import MessageSchema
from ..wire import Dialect
from ..wire.dialect import NO_PAYLOAD, TypedDecoder, TypedEnvelope

__all__ = ["Lane", "payload_shape"]


class _Routed(Protocol):
    """A route, as the lane reads it (the router's ``_Route``)."""

    schema: MessageSchema[Any]


class Lane:
    """One dialect's fast lane for one served router: its decoder (:attr:`decode`) and the
    compiled route of each of its envelope classes (:attr:`runs`)."""

    __slots__ = ("_dialect", "_routes", "decode", "runs")

    def __init__(self, dialect: Dialect, routes: Mapping[str, _Routed]) -> None:
        self._dialect = dialect
        self._routes = routes  # the router's, read when the lane is (re)built
        #: The frame as a typed envelope, or None: the frame goes the usual way.
        self.decode: TypedDecoder = self._build
        #: Per envelope class (one per message type), its route and the chain that runs it.
        self.runs: dict[type[TypedEnvelope], tuple[Any, Callable[[Any], Any]]] = {}

    def reset(self) -> None:
        """Forget the decoder and the compiled routes (the router's routes changed)."""
        self.decode = self._build
        self.runs.clear()

    def _build(self, frame: str | bytes) -> TypedEnvelope | None:
        """Build the decoder from the routes of now, then decode ``frame`` with it."""
        controls = self._dialect.controls
        shapes = {}
        for kind, route in self._routes.items():
            shape = payload_shape(route.schema)
            if shape is not _LEFT_OUT and kind not in controls:
                shapes[kind] = shape
        decoder = self._dialect.typed_decoder(shapes) if shapes else None
        self.decode = _not_taken if decoder is None else decoder
        return self.decode(frame)


#: A message type the fast lane leaves out (its schema has custom meta keys).
_LEFT_OUT: Any = object()


def payload_shape(schema: MessageSchema[Any]) -> Any:
    """What the fast lane decodes as the payload of ``schema``'s messages: the codec's
    :attr:`~crosswire.schema.PayloadCodec.decode_type`, ``Any`` (JSON, for the route to
    validate), :data:`~crosswire.wire.dialect.NO_PAYLOAD`; or ``_LEFT_OUT`` for a schema with
    custom meta keys, which the route checks with the payload."""
    if schema.meta is not None:
        return _LEFT_OUT
    codec = schema.payload
    if codec is None:
        return NO_PAYLOAD
    exact = codec.decode_type
    return Any if exact is None else exact


def _not_taken(frame: str | bytes) -> None:
    """The decoder of a lane without routes it can take."""
    return None
