"""The read path of the picows adapter: ``on_ws_frame``, compiled when crosswire is built.

picows calls its listener's ``on_ws_frame`` from C for every frame. Declared as a Cython
``cdef class`` (``_picows_read.pxd``, beside this file), this module compiles to an extension
that overrides that method in C: picows' call reaches it without a Python frame, and the
frame's fields (``msg_type``, ``fin``, the reserved bits, ``last_in_buffer``) are read from
picows' struct instead of through attribute lookups. That is 0.3 µs of the 0.6 µs that the
hooks layer used to add to a raw picows echo per message (``docs/performance.md``).

The same file is the plain-Python version, used when the extension is not built (no C
compiler, ``CROSSWIRE_NO_EXTENSIONS=1`` at install), cannot be loaded (built against another
picows), or is turned off with ``CROSSWIRE_NO_EXTENSIONS=1`` at run time: one source, so
both behave alike (``tests/integration/test_picows_read.py`` runs the adapter both ways).

Only the whole-text-message path is here; every other frame goes to the adapter's
``_frame`` (``adapters/picows.py``), which subclasses :class:`FrameReader`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

try:
    import cython
except ImportError:  # plain Python, without Cython installed
    from . import _cython_stub as cython

if not cython.compiled:  # (compiled, _picows_read.pxd cimports them)
    from picows import WSFrame, WSListener, WSMsgType, WSTransport

    CROSSWIRE_BUILT_FOR = b""  # (compiled, a C string setup.py defines: _build_stamp.py)

if TYPE_CHECKING:
    from ..cork import Hold, WriteBatch

__all__ = ["BUILT_FOR", "COMPILED", "FrameReader"]

#: Whether this module runs compiled.
COMPILED: bool = cython.compiled
#: Compiled, what it was built from (:func:`~crosswire.adapters._build_stamp.build_stamp`).
BUILT_FOR: str = CROSSWIRE_BUILT_FOR.decode("ascii")
_TEXT = WSMsgType.TEXT


class FrameReader(WSListener):
    """picows' listener, reading: a whole text message goes to the peer as ``str``, in a write
    batch when its read holds more frames (:mod:`crosswire.cork`); other frames go to
    :meth:`_frame`."""

    if not cython.compiled:  # (compiled, declared in the .pxd)
        _cork: Hold | None
        _writes: WriteBatch
        _receive: Callable[[str | bytes, bool], None]
        _parts: list[bytes]
        # The adapter's (adapters/picows.py, which subclasses this): every frame but a
        # whole text message, and a text message that is not UTF-8 (1007).
        _frame: Callable[[WSTransport, WSFrame], None]
        _invalid_utf8: Callable[[], None]

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        # Several frames in one read: their replies, and what they fan out, leave together
        # (crosswire.cork); while the server serves one client, every few frames (every
        # frame is reported then). If picows takes a read's last frame itself (a ping or a
        # pong), the connection is released at the end of the turn instead.
        cork = self._cork
        last = frame.last_in_buffer  # (the only frame of its read, for one request in flight)
        if not last and cork is not None and self._writes.held is None:
            self._writes.open()  # more frames in this read: what this one fans out is held
        try:
            if (  # the hot path: a whole text message, no reserved bit (no extension here)
                frame.msg_type == _TEXT
                and frame.fin
                and not (frame.rsv1 or frame.rsv2 or frame.rsv3 or self._parts)
            ):
                try:
                    text = frame.get_payload_as_utf8_text()
                except UnicodeDecodeError:
                    self._invalid_utf8()
                else:
                    self._receive(text, False)
            else:
                self._frame(transport, frame)
        finally:
            if cork is not None:
                if last:
                    if cork.held:  # the read's earlier frames held it: release
                        self._writes.after_message(cork, False)
                elif not cork.held or self._writes.solo:
                    self._writes.after_message(cork, True)
