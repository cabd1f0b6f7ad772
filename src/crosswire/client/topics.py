"""The topics a client is in, and joining them again after a reconnect. Sans-I/O.

A topic is remembered, with the data it was joined with, once the server acknowledged the
join; :meth:`Memberships.left` forgets it at once (a join still waiting for its answer then
is not remembered when the ack comes). Each new connection starts in no topic: the client
sends :meth:`Memberships.rejoins` first, and reads their answers with
:meth:`Memberships.rejoin_answer`: a topic the server refuses now is forgotten.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import JoinRefused
from .dialects import CANONICAL
from .frames import Frame

__all__ = ["Memberships"]


class Memberships:
    """The joined topics of one client (canonical dialect), and its rejoins in flight."""

    __slots__ = ("_joined", "_joining", "_rejoins")

    def __init__(self) -> None:
        #: Joined topics and their join data, in the order they were joined.
        self._joined: dict[str, Any] = {}
        #: The latest join of a topic waiting for its answer: a marker per topic.
        self._joining: dict[str, object] = {}
        #: Rejoins sent on the current connection: correlation id -> topic.
        self._rejoins: dict[str, str] = {}

    @property
    def joined(self) -> Mapping[str, Any]:
        """Topic -> the data it was joined with."""
        return self._joined

    def joining(self, topic: str) -> object:
        """A join of ``topic`` is sent: the marker to give :meth:`accepted` or
        :meth:`settled`."""
        marker = self._joining[topic] = object()
        return marker

    def accepted(self, topic: str, data: Any, marker: object) -> None:
        """The join of ``marker`` was acknowledged: remember the topic, unless it was left
        (or joined again) since."""
        if self._joining.get(topic) is marker:
            del self._joining[topic]
            self._joined[topic] = data

    def settled(self, topic: str, marker: object) -> None:
        """The join of ``marker`` ended without an ack (refused, timed out, lost)."""
        if self._joining.get(topic) is marker:
            del self._joining[topic]

    def left(self, topic: str) -> None:
        """Forget ``topic``, and the join of it waiting for an answer."""
        self._joined.pop(topic, None)
        self._joining.pop(topic, None)

    def rejoins(self, new_id: Callable[[], str]) -> list[tuple[str, str]]:
        """The joins a new connection sends first: ``(topic, frame)`` per joined topic, each
        with a correlation id from ``new_id``."""
        self._rejoins.clear()
        frames = []
        for topic, data in self._joined.items():
            cid = new_id()
            self._rejoins[cid] = topic
            frames.append((topic, CANONICAL.join(topic, data, cid)))
        return frames

    def rejoin_answer(self, frame: Frame) -> JoinRefused | bool:
        """Read ``frame`` as the answer to a rejoin: False when it is not one, True when it
        accepts, the error when it refuses (the topic is then forgotten)."""
        cid = frame.correlation_id
        topic = self._rejoins.get(cid) if cid is not None else None
        if cid is None or topic is None:
            return False
        answer = CANONICAL.join_answer(frame, topic, cid)
        if answer is None:
            return False
        del self._rejoins[cid]
        if isinstance(answer, JoinRefused):
            self._joined.pop(topic, None)
            return answer
        return True

    def lost(self) -> None:
        """The connection is gone: its rejoins will never be answered."""
        self._rejoins.clear()

    def clear(self) -> None:
        """Forget every topic (the client was closed)."""
        self._joined.clear()
        self._joining.clear()
        self._rejoins.clear()
