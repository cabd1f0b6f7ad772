"""Outbound maps: what a router does to its events on their way out, before encoding. Sans-I/O.

``router.map(Schema, fn)`` (Rover's ``ws.map.{event}``) runs ``fn(payload)`` on every event of
that type that goes to one of the router's connections: a direct send as well as a
publication, wherever it was published from. ``payload`` is the event's JSON value (already
validated against its schema: a map may add what the schema does not have, such as a server
time); ``fn`` returns the value to send, or ``None`` to drop the event for that connection.
Errors, acknowledgements and RPC replies are not mapped.

:class:`MappedRender` is a dialect's render with a router's maps in front; connections of a
router with maps render through it, so that a publication is still mapped and encoded once
per (router, dialect), whatever the number of recipients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from .dialect import Render

__all__ = ["DROPPED", "Map", "MappedRender"]

#: A map: the event's payload (a JSON value) to the payload to send, or None to drop it.
Map = Callable[[Any], Any]


class _Dropped:
    def __repr__(self) -> str:
        return "DROPPED"


#: What :meth:`MappedRender.apply` returns for an event a map dropped.
DROPPED: Any = _Dropped()


class MappedRender:
    """``render`` (a dialect's) with ``maps`` (by event type) applied first. Called as a
    render, it returns the frame, or None when a map dropped the event."""

    __slots__ = ("_maps", "_render")

    def __init__(self, render: Render, maps: Mapping[str, Map]) -> None:
        self._render = render
        self._maps = maps

    def __call__(self, type: str, meta: bytes | None, payload: bytes | None) -> bytes | None:
        fn = self._maps.get(type)
        if fn is None:
            return self._render(type, meta, payload)
        value = fn(None if payload is None else orjson.loads(payload))
        if value is None:
            return None
        return self._render(type, meta, orjson.dumps(value))

    def apply(self, type: str, value: Any) -> Any:
        """``value`` mapped for an event of ``type`` (:data:`DROPPED` when the map dropped
        it): for a connection whose events go through a transform before they are
        rendered."""
        fn = self._maps.get(type)
        if fn is None:
            return value
        mapped = fn(value)
        return DROPPED if mapped is None else mapped

    def __repr__(self) -> str:
        return f"<MappedRender {sorted(self._maps)}>"
