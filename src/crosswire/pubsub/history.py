"""Topic history: each publication to a topic that keeps history gets an offset, and a client
that comes back with the last offset it saw gets what it missed. No I/O in this module.

A topic's history is a **stream**: publications numbered 1, 2, 3, ... (the *offset*, one more
per publication) within an **epoch**, a token that changes whenever the stream's past is lost
(a process restarted, Redis lost its data, the stream expired). A :class:`Position` is an
(offset, epoch) pair. Recovery from a position succeeds when the epoch is the stream's and
every publication after the offset is still kept; then the client gets exactly those, in
order. Otherwise it is told ``recovered: false`` and must resync by itself: never a silent gap.

:class:`History` is the policy of a topic (how many publications, for how long);
:class:`MemoryHistory` keeps the streams of one process (a bounded ring per topic). The Redis
store (Streams, appended and published in one script) has the same methods, async.

Besides recovery, an application reads what a topic's history still holds with
``Hub.history(topic, limit=...)``: its events as :class:`HistoryEntry` values, oldest first.
"""

from __future__ import annotations

import collections
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from ..errors import ConfigurationError
from ..wire.dialect import Position

__all__ = ["History", "HistoryEntry", "MemoryHistory", "Position", "Recovery"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class History:
    """How much of a topic's past to keep: at most ``size`` publications, none older than
    ``ttl`` seconds (None: no age limit). Memory is ``size`` times the size of a message,
    per topic that has been published to."""

    size: int = 100
    ttl: float | None = 300.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigurationError("History(size=...) keeps at least one publication")
        if self.ttl is not None and self.ttl <= 0:
            raise ConfigurationError("History(ttl=...) is a number of seconds > 0, or None")


class Recovery(NamedTuple, Generic[T]):
    """What a recovery from a position found: whether it ``recovered`` (then ``missed`` holds
    every publication after the position, oldest first; else nothing), and the stream's
    position now (where the client is once it has ``missed``)."""

    recovered: bool
    missed: list[T]
    position: Position


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One event a topic's history holds (what ``Hub.history`` returns): its type
    (``event``), its data (decoded JSON; None without), its meta (the canonical dialect's
    meta object, as a router's typed message was published with; None without) and its
    ``position`` in the topic's stream."""

    event: str
    data: Any
    meta: dict[str, Any] | None
    position: Position


class _Stream(Generic[T]):
    __slots__ = ("entries", "epoch", "offset", "touched")

    def __init__(self, size: int, now: float) -> None:
        self.epoch = uuid.uuid4().hex[:12]
        self.offset = 0
        #: When it was last appended to (or made).
        self.touched = now
        #: (offset, time appended, publication), oldest first.
        self.entries: collections.deque[tuple[int, float, T]] = collections.deque(maxlen=size)


class MemoryHistory(Generic[T]):
    """The streams of one process, at most ``max_streams`` of them (past it, the one used
    least recently is forgotten: its next use starts a new epoch). A stream with a ``ttl``
    that was not appended to for ``ttl`` seconds is forgotten when next used (as Redis
    expires an idle topic's keys). ``clock`` (seconds, monotonic) is for tests."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, *, max_streams: int = 10_000
    ) -> None:
        self._streams: dict[str, _Stream[T]] = {}
        self._clock = clock
        self._max_streams = max_streams

    def append(self, topic: str, item: T, policy: History) -> Position:
        """Keep ``item`` as the topic's next publication; returns its position."""
        stream = self._stream(topic, policy)
        stream.offset += 1
        stream.touched = now = self._clock()
        stream.entries.append((stream.offset, now, item))
        return Position(stream.offset, stream.epoch)

    def position(self, topic: str, policy: History) -> Position:
        """Where ``topic``'s stream is now (made, empty, if it has none yet: its epoch is
        given out from now on)."""
        return Position(self._stream(topic, policy).offset, self._stream(topic, policy).epoch)

    def since(self, topic: str, since: Position, policy: History) -> Recovery[T]:
        """Every publication of ``topic`` after ``since``, if the history still covers them."""
        stream = self._stream(topic, policy)
        now = Position(stream.offset, stream.epoch)
        if since.epoch != stream.epoch or not 0 <= since.offset <= stream.offset:
            return Recovery(False, [], now)
        oldest = self._clock() - policy.ttl if policy.ttl is not None else None
        missed = [
            item
            for offset, at, item in stream.entries
            if offset > since.offset and (oldest is None or at >= oldest)
        ]
        if len(missed) != stream.offset - since.offset:  # trimmed or expired: a gap
            return Recovery(False, [], now)
        return Recovery(True, missed, now)

    def latest(self, topic: str, policy: History, limit: int) -> list[tuple[Position, T]]:
        """The last ``limit`` publications ``topic``'s history still holds (none older than
        ``policy.ttl``), oldest first, each with its position. Makes no stream."""
        stream = self._streams.get(topic)
        if stream is None or limit < 1:
            return []
        oldest = self._clock() - policy.ttl if policy.ttl is not None else None
        kept = [
            (Position(offset, stream.epoch), item)
            for offset, at, item in stream.entries
            if oldest is None or at >= oldest
        ]
        return kept[-limit:]

    def _stream(self, topic: str, policy: History) -> _Stream[T]:
        """``topic``'s stream, made when it has none (or its past expired); the most
        recently used last, so that the first is the one to forget."""
        streams = self._streams
        now = self._clock()
        stream = streams.pop(topic, None)
        if stream is not None and policy.ttl is not None and now - stream.touched > policy.ttl:
            stream = None  # idle past its ttl: its whole past is gone, epoch included
        if stream is None:
            stream = _Stream(policy.size, now)
            if len(streams) >= self._max_streams:
                del streams[next(iter(streams))]
        streams[topic] = stream
        return stream

    def forget(self, topic: str) -> None:
        """Drop ``topic``'s stream: its next publication starts a new epoch."""
        self._streams.pop(topic, None)
