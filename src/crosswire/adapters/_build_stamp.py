"""What crosswire's C extension was built from, and whether it still fits: ``setup.py``
compiles :func:`build_stamp` into ``_picows_read`` (as ``BUILT_FOR``), and the picows adapter
compares it with the picows it runs with and the source beside it before using the extension.

The extension cimports picows' types, so it fits only the picows release it was built
against: Cython's own import check sees only the size of those types, not their layout. And
an editable install compiles in place, where the source can change after the build. No
imports beyond the standard library: ``setup.py`` loads this file on its own."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["SOURCES", "build_stamp"]

#: The files the extension is compiled from, beside this one.
SOURCES = ("_picows_read.py", "_picows_read.pxd")


def build_stamp(picows_version: str, folder: Path) -> str:
    """``"picows <version>; source <digest>"``, the digest of :data:`SOURCES` in ``folder``
    (``source ?`` where they cannot be read)."""
    try:
        data = b"".join((folder / name).read_bytes() for name in SOURCES)
    except OSError:
        return f"picows {picows_version}; source ?"
    return f"picows {picows_version}; source {hashlib.sha256(data).hexdigest()[:16]}"
