"""Presence: who is in a topic, on every instance, with what each connection said of itself.

A :class:`Presence` store keeps one :class:`PresenceEntry` per connection and topic: the
connection's id, its user id, the data its join handler attached (JSON), and the instance
(server process) it is connected to. The Hub adds an entry when one of its connections joins a
topic and removes it when it leaves or closes; :meth:`~Presence.members` lists every
instance's entries of a topic.

How the Hub learns what changed, to send join/leave presence events to the subscribers who
ask for them:

* what it did itself: :meth:`~Presence.add` returns a ``join`` :class:`PresenceChange` when the
  connection was not in the topic yet (None when it replaced the connection's entry, new data
  and all), :meth:`~Presence.remove` a ``leave`` when there was an entry to remove. The Hub
  publishes those on the bus like any other message;
* what the store found by itself: entries of a dead instance that it removed (``leave``);
  this instance's own entries that it wrote back after Redis lost them (``join``: Redis
  restarted, or this instance was taken for dead and swept); the joins and leaves of writes
  that raised (``BusError``) and were done later. Those go to the ``changed`` callback given
  to :meth:`~Presence.bind`. Each is reported by one instance only, the one that removed or
  wrote it; a join may come twice (an entry Redis lost while nobody announced it leaving),
  so subscribers keep presence keyed by client id.

The contract, which ``tests/contract/test_presence.py`` runs against every store:

* ``bind(changed, report)`` is called once, before anything else (optional: without it,
  changes found by the store are dropped and errors logged on ``crosswire.pubsub``);
* ``instance`` names this store's instance: every entry it adds must carry it (``ValueError``
  otherwise), and ``data`` must be JSON (``TypeError`` otherwise). What :meth:`members`
  returns has been through JSON, on every store: a tuple comes back as a list;
* ``start()`` makes the store ready; the first ``add`` or ``remove`` starts it if nothing did.
  It never raises for a Redis that is not there: that is reported, and the store keeps trying;
* ``add``, ``remove`` and ``members`` raise :class:`~crosswire.BusError` when the store
  cannot do it (Redis away or too slow). An entry added or removed meanwhile is still
  recorded here, and written when Redis is back; its change is then reported to ``changed``.
  The writes of one instance reach the store in the order they were called;
* ``remove`` of a connection that is not in the topic does nothing (and returns None);
* ``aclose()`` removes this instance's entries (a clean shutdown: the entries of an instance
  that crashed expire instead, see :class:`~crosswire.pubsub.redis_presence.RedisPresence`),
  without reporting them: the Hub removes its connections' entries as they close, and those
  are the leaves it announces. Idempotent, bounded in time, never raises; ``add`` and
  ``remove`` then raise ``BusError`` until ``start()`` opens the store again.

:class:`MemoryPresence` keeps presence in this process (several Apps of one process share a
:class:`MemoryRoster`); :class:`~crosswire.pubsub.redis_presence.RedisPresence` keeps it in
Redis for every instance. No I/O in this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import orjson

from ..errors import BusError
from .backend import Report

__all__ = [
    "Changed",
    "MemoryPresence",
    "MemoryRoster",
    "Presence",
    "PresenceChange",
    "PresenceEntry",
    "check_entry",
    "decode_entry",
    "encode_entry",
]


@dataclass(frozen=True, slots=True)
class PresenceEntry:
    """One connection in one topic: its id, its user's id (None: not identified), what its
    join handler attached (``data``, JSON), and the instance it is connected to."""

    client_id: str
    user_id: str | None
    data: Any
    instance: str


class PresenceChange(NamedTuple):
    """A connection joined or left a topic (what the Hub announces to presence subscribers)."""

    kind: Literal["join", "leave"]
    topic: str
    entry: PresenceEntry


#: Takes a change the store found by itself (not one returned by ``add`` or ``remove``).
Changed = Callable[[PresenceChange], None]


@runtime_checkable
class Presence(Protocol):
    """Who is in which topic, across instances; see the module docstring for the contract."""

    @property
    def instance(self) -> str:
        """The instance whose entries this store adds (every entry added carries it)."""
        ...

    def bind(self, changed: Changed, report: Report) -> None:
        """Where to report the changes the store finds by itself, and its errors."""
        ...

    async def start(self) -> None:
        """Make the store ready (connect, announce this instance); never raises."""
        ...

    async def add(self, topic: str, entry: PresenceEntry) -> PresenceChange | None:
        """Put ``entry`` in ``topic`` (replacing the connection's entry there, if any); a
        ``join`` if the connection was not in the topic."""
        ...

    async def remove(self, topic: str, client_id: str) -> PresenceChange | None:
        """Take this instance's connection ``client_id`` out of ``topic``; a ``leave`` if it
        was there, else nothing happens."""
        ...

    async def members(self, topic: str) -> list[PresenceEntry]:
        """Every live instance's entries in ``topic``, sorted by client id."""
        ...

    async def aclose(self) -> None:
        """Remove this instance's entries and stop; idempotent, bounded, never raises."""
        ...


def encode_entry(entry: PresenceEntry) -> bytes:
    """``entry`` as stored in Redis: ``{"clientId", "userId", "data", "instance"}`` (JSON).
    Raises ``TypeError`` if its data is not JSON."""
    try:
        return orjson.dumps(
            {
                "clientId": entry.client_id,
                "userId": entry.user_id,
                "data": entry.data,
                "instance": entry.instance,
            }
        )
    except TypeError as exc:  # orjson.JSONEncodeError is one
        raise TypeError(
            f"the presence data of connection {entry.client_id!r} is not JSON ({exc}): "
            "use dicts, lists, strings, numbers, booleans and None"
        ) from exc


def decode_entry(raw: bytes | str) -> PresenceEntry:
    """An entry read back from :func:`encode_entry`'s JSON; :class:`~crosswire.BusError` if
    it is not one."""
    try:
        value = orjson.loads(raw)
        client_id, user_id = value["clientId"], value["userId"]
        data, instance = value["data"], value["instance"]
    except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
        raise BusError(f"presence: an unreadable entry was skipped ({exc}): {raw!r:.200}") from exc
    if not isinstance(client_id, str) or not isinstance(instance, str):
        raise BusError(f"presence: an entry without clientId or instance was skipped: {raw!r:.200}")
    if user_id is not None and not isinstance(user_id, str):
        raise BusError(f"presence: an entry whose userId is not a string was skipped: {raw!r:.200}")
    return PresenceEntry(client_id, user_id, data, instance)


def check_entry(instance: str, entry: PresenceEntry) -> bytes:
    """``entry`` encoded, if a store of ``instance`` may add it: else ``ValueError`` (another
    instance's) or ``TypeError`` (data not JSON)."""
    if entry.instance != instance:
        raise ValueError(
            f"presence entry of connection {entry.client_id!r} names instance "
            f"{entry.instance!r}, but this store adds entries of {instance!r} "
            "(build it with PresenceEntry(..., instance=presence.instance))"
        )
    return encode_entry(entry)


class MemoryRoster:
    """The presence of one process: what the :class:`MemoryPresence` stores sharing it see.
    One per process is enough; several Apps in a process (on a
    :class:`~crosswire.pubsub.MemoryBus`) share one to see each other's connections."""

    def __init__(self) -> None:
        #: topic -> client id -> entry.
        self.topics: dict[str, dict[str, PresenceEntry]] = {}


class MemoryPresence:
    """Presence in this process, on ``roster`` (a new one by default), as ``instance`` (a new
    UUID by default). Nothing is lost but by :meth:`aclose`: instances of one process do not
    crash one by one, so ``changed`` is never called."""

    def __init__(self, roster: MemoryRoster | None = None, *, instance: str | None = None) -> None:
        self._roster = roster if roster is not None else MemoryRoster()
        self._instance = instance if instance is not None else uuid.uuid4().hex
        self._closed = False

    @property
    def instance(self) -> str:
        """The instance whose entries this store adds."""
        return self._instance

    def __repr__(self) -> str:
        return f"<MemoryPresence {self._instance}>"

    def bind(self, changed: Changed, report: Report) -> None:
        """Nothing to report: a store in memory finds no change by itself and cannot fail."""

    async def start(self) -> None:
        """Open the store (again, after :meth:`aclose`)."""
        self._closed = False

    async def add(self, topic: str, entry: PresenceEntry) -> PresenceChange | None:
        """Put ``entry`` in ``topic``; a ``join`` if its connection was not there."""
        raw = check_entry(self._instance, entry)
        self._check_open()
        entries = self._roster.topics.setdefault(topic, {})
        new = entry.client_id not in entries
        entries[entry.client_id] = decode_entry(raw)  # as Redis would give it back
        return PresenceChange("join", topic, entries[entry.client_id]) if new else None

    async def remove(self, topic: str, client_id: str) -> PresenceChange | None:
        """Take this instance's ``client_id`` out of ``topic``; a ``leave`` if it was there."""
        self._check_open()
        entries = self._roster.topics.get(topic, {})
        entry = entries.get(client_id)
        if entry is None or entry.instance != self._instance:
            return None
        del entries[client_id]
        if not entries:
            del self._roster.topics[topic]
        return PresenceChange("leave", topic, entry)

    async def members(self, topic: str) -> list[PresenceEntry]:
        """Every entry of ``topic``, sorted by client id."""
        entries = self._roster.topics.get(topic, {})
        return [entries[client_id] for client_id in sorted(entries)]

    async def aclose(self) -> None:
        """Remove this instance's entries. Idempotent."""
        self._closed = True
        for topic, entries in list(self._roster.topics.items()):
            for client_id, entry in list(entries.items()):
                if entry.instance == self._instance:
                    del entries[client_id]
            if not entries:
                del self._roster.topics[topic]

    def _check_open(self) -> None:
        if self._closed:
            raise BusError("presence: the store is closed (aclose() ran); start() opens it again")
