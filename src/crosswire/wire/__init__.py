"""The wire: bytes <-> envelopes, one :class:`Dialect` per wire format. Sans-I/O.

``CANONICAL`` is WS-Kit's ``{"type", "meta"?, "payload"?}`` (``docs/protocol.md``), ``EVENTS``
seed 003's ``{"event", "data"?}`` (``docs/protocol-events.md``), ``ROVER`` Rover's flat
``{"type": event, ...fields}`` (``docs/protocol-rover.md``). :mod:`crosswire.wire.dialect`
says what a dialect does; the router calls the dialect of each connection.
"""

from .canonical import (
    ABORT,
    CANONICAL,
    HEARTBEAT,
    HEARTBEAT_ACK,
    RPC_PROGRESS,
    BadFrame,
    Envelope,
    decode,
    encode_error,
    encode_heartbeat,
    encode_heartbeat_ack,
    encode_message,
    encode_progress,
)
from .dialect import Control, Dialect, TopicAnswer, TopicRequest
from .events import EVENTS
from .rover import ROVER

#: Every dialect crosswire ships, by name.
DIALECTS: dict[str, Dialect] = {d.name: d for d in (CANONICAL, EVENTS, ROVER)}

__all__ = [
    "ABORT",
    "CANONICAL",
    "DIALECTS",
    "EVENTS",
    "HEARTBEAT",
    "HEARTBEAT_ACK",
    "ROVER",
    "RPC_PROGRESS",
    "BadFrame",
    "Control",
    "Dialect",
    "Envelope",
    "TopicAnswer",
    "TopicRequest",
    "decode",
    "encode_error",
    "encode_heartbeat",
    "encode_heartbeat_ack",
    "encode_message",
    "encode_progress",
]
