"""In-process topics: who is subscribed to what, and fan-out that never waits.

A publish encodes its message once and writes it to each subscriber's send buffer; a slow
subscriber is closed by its own buffer limit and never delays the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..peer import ReadyState, encode

if TYPE_CHECKING:
    from ..peer import Peer

__all__ = ["Hub"]


class Hub:
    """Topic subscriptions of the peers of one process."""

    __slots__ = ("_topics",)

    def __init__(self) -> None:
        self._topics: dict[str, dict[Peer, None]] = {}

    def subscribe(self, peer: Peer, topic: str) -> None:
        self._topics.setdefault(topic, {})[peer] = None

    def unsubscribe(self, peer: Peer, topic: str) -> None:
        members = self._topics.get(topic)
        if members is not None:
            members.pop(peer, None)
            if not members:
                del self._topics[topic]

    def subscriber_count(self, topic: str) -> int:
        """How many local peers are subscribed to ``topic``."""
        return len(self._topics.get(topic, ()))

    def topics(self) -> list[str]:
        """Topics with at least one local subscriber."""
        return list(self._topics)

    def publish(self, topic: str, data: object, *, exclude: Peer | None = None) -> int:
        """Write ``data`` to every open subscriber of ``topic`` but ``exclude``.

        ``data`` is encoded once (see :func:`~crosswire.peer.encode`). Returns how many peers it
        was written to.
        """
        if topic not in self._topics:
            return 0
        payload, text = encode(data)
        return self.publish_frame(topic, payload, text=text, exclude=exclude)

    def publish_frame(
        self, topic: str, payload: bytes, *, text: bool, exclude: Peer | None = None
    ) -> int:
        """Write an encoded frame (UTF-8 ``payload`` for text) to every open subscriber of
        ``topic`` but ``exclude``; returns how many peers it was written to."""
        members = self._topics.get(topic)
        if not members:
            return 0
        count = 0
        open_ = ReadyState.OPEN
        # Copy: a write may close a slow peer, which unsubscribes it. The loop is Peer._write
        # inlined: a fan-out to thousands of peers is this loop's cost.
        for peer in tuple(members):
            if peer is not exclude and peer._state is open_:
                transport = peer._transport
                if text:
                    transport.send_text(payload)
                else:
                    transport.send_binary(payload)
                if peer._write_paused:
                    peer._check_buffer()
                count += 1
        return count
