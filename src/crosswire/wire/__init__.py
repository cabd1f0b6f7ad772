"""The wire: bytes <-> envelopes, one codec per dialect. Sans-I/O: nothing here awaits.

``canonical`` is WS-Kit's JSON envelope ``{"type", "meta"?, "payload"?}``;
``docs/protocol.md`` gives every frame.
"""

from .canonical import (
    ABORT,
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

__all__ = [
    "ABORT",
    "HEARTBEAT",
    "HEARTBEAT_ACK",
    "RPC_PROGRESS",
    "BadFrame",
    "Envelope",
    "decode",
    "encode_error",
    "encode_heartbeat",
    "encode_heartbeat_ack",
    "encode_message",
    "encode_progress",
]
