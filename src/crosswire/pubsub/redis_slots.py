"""Redis Cluster's hash slots: which master serves a channel, and key names that share a
channel's slot. Sans-I/O: values in, values out (the slot function is redis-py's CRC16).

A name's slot is ``CRC16(tag) mod 16384``, where ``tag`` is the part between the name's first
``{`` and the first ``}`` after it, if that part is not empty, and the whole name otherwise.
:func:`hash_tag` gives a tag that puts other names in the slot of a given one: a topic's
history keys are ``ws:history:{<tag>}``, in the slot of the topic's channel, so that one Lua
script can keep an event and ``SPUBLISH`` it.
"""

from __future__ import annotations

import functools
from typing import Any

from redis.crc import key_slot

__all__ = ["SLOTS", "Addr", "SlotMap", "hash_tag", "slot_of"]

#: Hash slots of a Redis Cluster.
SLOTS = 16384

#: A node: (host, port).
Addr = tuple[str, int]


def slot_of(name: str) -> int:
    """The hash slot of a key or shard channel."""
    return int(key_slot(name.encode()))


def _own_tag(name: str) -> str:
    """What Redis hashes of ``name``: its hash tag, or all of it."""
    start = name.find("{")
    if start >= 0:
        end = name.find("}", start + 1)
        if end > start + 1:
            return name[start + 1 : end]
    return name


def hash_tag(name: str) -> tuple[str, bool]:
    """A tag ``t`` such that ``{t}`` in a key puts the key in ``name``'s slot, and whether it
    is all of ``name`` (then ``{t}`` alone names it; otherwise several names share ``t``).
    Usually the part of ``name`` that Redis hashes; for a name with a ``}`` that is not part
    of a tag, a short tag found for its slot."""
    tag = _own_tag(name)
    if "}" not in tag:
        return tag, tag == name
    return _tag_for_slot(slot_of(name)), False


@functools.lru_cache(maxsize=1024)
def _tag_for_slot(slot: int) -> str:
    """The first of ``s0``, ``s1``, ... that hashes to ``slot`` (about 16,000 tries)."""
    i = 0
    while slot_of(f"s{i}") != slot:
        i += 1
    return f"s{i}"


class SlotMap:
    """Which master serves each slot, from a ``CLUSTER SLOTS`` reply (RESP2, as read from a
    connection: ``[[start, end, [host, port, id, ...], replica...], ...]``). A node that
    announces no host (``""`` or ``"?"``) is on ``default_host``, the one asked."""

    __slots__ = ("_owners", "masters", "nodes")

    def __init__(self, reply: Any, *, default_host: str) -> None:
        self._owners: list[Addr | None] = [None] * SLOTS
        #: Every node named, masters first: where to ask for the next map.
        self.nodes: list[Addr] = []
        masters: list[Addr] = []
        replicas: list[Addr] = []
        for start, end, master, *copies in reply:
            owner = _addr(master, default_host)
            masters.append(owner)
            replicas.extend(_addr(copy, default_host) for copy in copies)
            self._owners[int(start) : int(end) + 1] = [owner] * (int(end) - int(start) + 1)
        #: The masters that serve slots.
        self.masters = list(dict.fromkeys(masters))
        self.nodes = list(dict.fromkeys(masters + replicas))

    @property
    def complete(self) -> bool:
        """Whether every slot has a master."""
        return None not in self._owners

    def owner(self, name: str) -> Addr | None:
        """The master serving ``name``'s slot, or None if no master does."""
        return self._owners[slot_of(name)]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlotMap) and self._owners == other._owners

    __hash__ = None  # type: ignore[assignment]


def _addr(node: Any, default_host: str) -> Addr:
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
    return (host if host not in ("", "?") else default_host, int(node[1]))
