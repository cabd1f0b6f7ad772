"""Whole, unmasked WebSocket frames from server to client, for adapters that write frames
themselves: the picows adapter's write batches (:mod:`crosswire.cork`), and hypercorn's
direct sends (``adapters/_hypercorn.py``).

Only writing, and only the simplest frame: FIN set, no reserved bit (no extension), no mask
(RFC 6455 5.1: a server never masks), the payload whole. Every frame that needs more
(compressed, fragmented, a control frame) is the server library's to make. The tests read
what these produce with websockets' own parser (``tests/unit/test_server_frames.py``).
"""

from __future__ import annotations

import struct

__all__ = ["FIN_BINARY", "FIN_TEXT", "server_frame"]

#: First header byte of a whole (FIN) text and binary frame.
FIN_TEXT = 0x81
FIN_BINARY = 0x82

_header_16 = struct.Struct("!BBH").pack
_header_64 = struct.Struct("!BBQ").pack


def server_frame(first: int, payload: bytes) -> bytes:
    """An unmasked frame (server to client) carrying ``payload`` whole; ``first`` is
    :data:`FIN_TEXT` or :data:`FIN_BINARY`."""
    size = len(payload)
    if size < 126:
        return bytes((first, size)) + payload
    if size < 65536:
        return _header_16(first, 126, size) + payload
    return _header_64(first, 127, size) + payload
