"""The topics a client is in, their positions, and joining them again after a reconnect.
Sans-I/O.

A topic is remembered, with the data it was joined with, once the server acknowledged the
join; :meth:`Memberships.left` forgets it at once (a join still waiting for its answer then
is not remembered when the ack comes). Each new connection starts in no topic: the client
sends :meth:`Memberships.rejoins` first, and reads their answers with
:meth:`Memberships.rejoin_answer`: a topic the server refuses now is forgotten.

A topic joined with ``recover`` also has a position: the ack's, then the ``offset`` and
``epoch`` of each event of that topic the client lets through (:meth:`Memberships.admit`,
which turns away an event at or before the position in the same epoch: one seen already).
Its rejoin sends the position; an ack that does not say ``recovered: true`` resets it to the
ack's and is a :class:`Resync`: the client may have missed events of that topic.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import JoinRefused
from ..wire.dialect import Position
from .dialects import CANONICAL
from .frames import Frame, JoinAck

__all__ = ["Joining", "Memberships", "Resync"]


@dataclass(frozen=True, slots=True)
class Resync:
    """A topic joined with ``recover`` was joined again after a reconnect without what was
    published to it meanwhile (the history no longer covers the gap, or it is another epoch:
    the server restarted, or its history was lost). The application reloads the topic's
    state; the events that follow are live. ``data`` is what the join handler gave the
    rejoin's ack (``ctx.accept(data)``: a snapshot, for example)."""

    topic: str
    data: Any = None


class Joining:
    """A join of a topic waiting for its answer: the data it was sent with, and whether it
    asked for positions. Compared by identity: the latest join of a topic wins."""

    __slots__ = ("data", "recover")

    def __init__(self, data: Any, recover: bool) -> None:
        self.data = data
        self.recover = recover


class Memberships:
    """The joined topics of one client (canonical dialect), their positions, and its rejoins
    in flight."""

    __slots__ = ("_joined", "_joining", "_positions", "_rejoins")

    def __init__(self) -> None:
        #: Joined topics and their join data, in the order they were joined.
        self._joined: dict[str, Any] = {}
        #: The latest join of a topic waiting for its answer.
        self._joining: dict[str, Joining] = {}
        #: The joined topics that asked for positions: the last one seen (None: the server
        #: gave none).
        self._positions: dict[str, Position | None] = {}
        #: Rejoins sent on the current connection: correlation id -> topic.
        self._rejoins: dict[str, str] = {}

    @property
    def joined(self) -> Mapping[str, Any]:
        """Topic -> the data it was joined with."""
        return self._joined

    def position(self, topic: str) -> Position | None:
        """The last position seen of ``topic``, if it was joined with ``recover``."""
        return self._positions.get(topic)

    def joining(self, topic: str, data: Any, *, recover: bool) -> Joining:
        """A join of ``topic`` is sent: the marker to give :meth:`accepted` or
        :meth:`settled`."""
        marker = self._joining[topic] = Joining(data, recover)
        return marker

    def join_frame(self, topic: str, marker: Joining, correlation_id: str) -> str:
        """The ``$ws:join`` of ``marker`` (``recover: {}`` when it asks for positions: a join
        called by the application starts from the topic's present)."""
        return CANONICAL.join(topic, marker.data, correlation_id, positioned=marker.recover)

    def accepted(self, topic: str, marker: Joining, ack: JoinAck) -> None:
        """The join of ``marker`` was acknowledged: remember the topic (and its position from
        the ack), unless it was left (or joined again) since."""
        if self._joining.get(topic) is not marker:
            return
        del self._joining[topic]
        self._joined[topic] = marker.data
        if marker.recover:
            self._positions[topic] = ack.position
        else:
            self._positions.pop(topic, None)

    def settled(self, topic: str, marker: Joining) -> None:
        """The join of ``marker`` ended without an ack (refused, timed out, lost)."""
        if self._joining.get(topic) is marker:
            del self._joining[topic]

    def left(self, topic: str) -> None:
        """Forget ``topic``, its position, and the join of it waiting for an answer."""
        self._joined.pop(topic, None)
        self._joining.pop(topic, None)
        self._positions.pop(topic, None)

    def rejoins(self, new_id: Callable[[], str]) -> list[tuple[str, str]]:
        """The joins a new connection sends first: ``(topic, frame)`` per joined topic, each
        with a correlation id from ``new_id``, and the last position seen of those that
        asked for positions."""
        self._rejoins.clear()
        frames = []
        for topic, data in self._joined.items():
            cid = new_id()
            self._rejoins[cid] = topic
            positioned = topic in self._positions
            since = self._positions.get(topic)
            frame = CANONICAL.join(topic, data, cid, positioned=positioned, since=since)
            frames.append((topic, frame))
        return frames

    def rejoin_answer(self, frame: Frame) -> JoinRefused | Resync | bool:
        """Read ``frame`` as the answer to a rejoin: False when it is not one; True when it
        accepts (and recovered what was missed, if the topic asked for it); a
        :class:`Resync` when it accepts a topic that asked to recover without saying it
        recovered (its position is now the ack's); the error when it refuses (the topic is
        then forgotten)."""
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
            self._positions.pop(topic, None)
            return answer
        if topic not in self._positions or answer.recovered is True:
            return True  # (what was missed follows the ack: admit() moves the position)
        self._positions[topic] = answer.position
        return Resync(topic, answer.data)

    def admit(self, frame: Frame) -> bool | Resync:
        """Whether to hand an event to the application: False for an event of a positioned
        topic at or before its position in the same epoch (seen already). An event of
        another epoch, or past the position, moves the position to it; one of another epoch
        (the history's past was lost while the client stayed connected) comes with a
        :class:`Resync`, and is handed over too. (Skipped offsets are not a gap: an event
        published with ``exclude`` never reaches the excluded, its own publisher say.)"""
        carried = CANONICAL.position_of(frame)
        if carried is None or carried[0] not in self._positions:
            return True
        topic, position = carried
        last = self._positions[topic]
        if last is not None and last.epoch == position.epoch and position.offset <= last.offset:
            return False
        self._positions[topic] = position
        if (
            last is not None
            and last.epoch
            and (last.epoch != position.epoch or position.offset > last.offset + 1)
        ):
            return Resync(topic)
        return True

    def lost(self) -> None:
        """The connection is gone: its rejoins will never be answered."""
        self._rejoins.clear()

    def clear(self) -> None:
        """Forget every topic (the client was closed)."""
        self._joined.clear()
        self._joining.clear()
        self._positions.clear()
        self._rejoins.clear()
