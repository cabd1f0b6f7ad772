"""The Hub: who is connected here, what they subscribe, and fan-out that never waits.

Every App has one. It indexes the peers of this process by client id, by user id (once a peer
is identified), by room (topic) and as the broadcast group, and delivers a
:class:`~crosswire.pubsub.envelope.Publication` to the matching ones: rendered once per dialect
and written to each recipient's send buffer, so that a slow peer, closed by its own buffer
limit, never delays the others.

With a :class:`~crosswire.pubsub.Backend` the Hub also delivers across processes: every
publication is delivered here first, then published on the bus in seed 003's envelope; what
arrives from the bus is delivered here unless this Hub sent it (``serverId``). A channel is
subscribed while some local peer wants it: a room's from its first local member to its last,
a user's while one of its connections is here, each admitted client's own, and the broadcast
channel while the broadcast group is not empty.

Peers with an outbound transform (per-client encryption) are written to one by one, in order,
by a task per peer, with at most ``transform_concurrency`` transforms running at once in the
whole Hub; the others keep the fast path.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import os
import uuid
import weakref
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from ..cork import WriteBatch
from ..errors import BusError, ConfigurationError
from ..peer import ReadyState, Transform, encode
from ..wire.maps import DROPPED, MappedRender
from .backend import Backend, BusStats
from .envelope import Kind, Publication, channel_for, decode_envelope, encode_envelope
from .history import History, HistoryEntry, MemoryHistory, Position, Recovery
from .presence import MemoryPresence, Presence, PresenceChange, PresenceEntry

if TYPE_CHECKING:
    from ..peer import Peer

__all__ = ["Hub", "Transform"]

logger = logging.getLogger("crosswire.pubsub")

_OPEN = ReadyState.OPEN
_NO_EXCLUDE: frozenset[str] = frozenset()


class SharedHistory(Protocol):
    """Topic history shared by every instance on a bus
    (:class:`~crosswire.pubsub.redis_history.RedisHistory`)."""

    async def append_and_publish(
        self, topic: str, channel: str, envelope: bytes, policy: History
    ) -> Position: ...

    async def since(self, topic: str, since: Position, policy: History) -> Recovery[bytes]: ...

    async def position(self, topic: str, policy: History) -> Position: ...

    async def latest(self, topic: str, policy: History, limit: int) -> list[bytes]: ...

    async def aclose(self) -> None: ...


#: An event as a topic's history keeps it: (event, meta JSON, data JSON, excluded ids).
_Kept = tuple[str, bytes | None, bytes | None, frozenset[str]]

#: The topic on which a topic's presence events go to the connections that asked for them.
PRESENCE_PREFIX = "$presence:"
#: The event types of presence events, in every dialect.
PRESENCE_JOIN = "$ws:presence-join"
PRESENCE_LEAVE = "$ws:presence-leave"

#: Seconds a recovering join waits for the shared history (then: recovered: false).
RECOVERY_TIMEOUT = 5.0

#: Events waiting to be kept in a shared history (past it, new ones are dropped and reported).
MAX_HISTORY_QUEUE = 100_000


class Hub:
    """Local subscriptions and fan-out for one App, and the bridge to a bus between processes.

    ``backend`` is the bus (:class:`~crosswire.pubsub.MemoryBackend`,
    :class:`~crosswire.pubsub.RedisBackend`); without one the Hub serves this process alone.
    ``namespace`` prefixes the bus channels (seed 003's ``ws``). ``on_error`` receives every
    :class:`~crosswire.BusError` (default: logged on ``crosswire.pubsub``).
    ``transform_concurrency`` bounds the outbound transforms running at once, and
    ``transform_queue`` the messages waiting for one peer's transform (past it, the peer is
    closed as a slow consumer, 1013). What comes from the bus that is not a well-formed
    envelope, or is larger than ``max_bus_message`` bytes, is dropped, counted in
    :attr:`rejected` and reported, never delivered.
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        namespace: str = "ws",
        on_error: Callable[[BusError], None] | None = None,
        transform_concurrency: int = 10,
        transform_queue: int = 1024,
        max_bus_message: int = 2 * 1024 * 1024,
    ) -> None:
        if transform_concurrency < 1 or transform_queue < 1:
            raise ValueError("transform_concurrency and transform_queue must be at least 1")
        #: This Hub's id on the bus; what it receives back with this id it already delivered.
        #: A process forked after the Hub was made (``crosswire run --workers``, gunicorn
        #: ``--preload``) gets a new one, or the processes would drop each other's messages.
        self.server_id = str(uuid.uuid4())
        #: Messages from the bus larger than this (bytes) are dropped, never delivered.
        self.max_bus_message = max_bus_message
        #: Messages from the bus dropped as malformed or too large (each also reported).
        self.rejected = 0
        _HUBS.add(self)
        self.namespace = namespace
        self._backend = backend
        self._on_error = on_error
        self._topics: dict[str, dict[Peer, None]] = {}
        self._clients: dict[str, Peer] = {}
        self._users: dict[str, dict[Peer, None]] = {}
        self._everyone: dict[Peer, None] = {}
        self._transform_concurrency = transform_concurrency
        self._transform_slots = asyncio.Semaphore(transform_concurrency)
        self._transform_queue = transform_queue
        self._outbox: dict[Peer, collections.deque[Publication]] = {}
        self._closed = False  # aclose() ran: start() opens it again
        self._tasks: set[asyncio.Task[None]] = set()
        #: The sockets held during this turn of the event loop (crosswire.cork): server
        #: adapters open it when a read brings several messages, and a fan-out meanwhile
        #: holds every socket it writes to, so that a burst leaves in one write per socket.
        self.writes = WriteBatch()
        #: Topic history (issue 16): the rules (which topics keep history, and how much),
        #: the policy found for each topic, the streams, and per topic the peers that asked
        #: for positions.
        self._history_rules: list[tuple[Callable[[str], bool], History]] = []
        self._policies: dict[str, History | None] = {}
        #: (Kept as (event, meta, data, exclude): bytes and strings, which the garbage
        #: collector does not walk, unlike Publications with their caches.)
        self._history: MemoryHistory[_Kept] = MemoryHistory()
        self._positioned: dict[str, set[Peer]] = {}
        #: With a bus: the history every instance shares (None until a topic keeps one), the
        #: events waiting to be kept there (in order), per topic the last position delivered
        #: here, the topics whose gap is being filled (and what came meanwhile), and the
        #: peers recovering a topic (and what came for them meanwhile).
        self._shared: SharedHistory | None = None
        self._to_keep: collections.deque[tuple[str, str, bytes, History]] = collections.deque()
        self._keeper: asyncio.Task[None] | None = None
        self._keeping_failed = False
        #: Events queued to be kept, and done with (kept or failed), since the start; the
        #: readers of :meth:`history` waiting for the count done to reach theirs.
        self._queued = 0
        self._done = 0
        self._kept_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._last: dict[str, Position] = {}
        self._filling: dict[str, list[Publication]] = {}
        self._recovering: dict[tuple[Peer, str], list[Publication]] = {}
        self._readers: set[asyncio.Task[Any]] = set()  # (cancelled by aclose)
        self._reading: dict[
            tuple[str, Position], asyncio.Future[tuple[bool, Position, list[Publication]]]
        ] = {}
        #: Presence (issue 16): the store (None until a topic tracks presence), which topics
        #: track it, and the store's writes waiting, in order.
        self._presence: Presence | None = None
        self._presence_rules: list[Callable[[str], bool]] = []
        self._tracked: dict[str, bool] = {}
        self._presence_ops: collections.deque[tuple[str, str, Any]] = collections.deque()
        self._presence_worker: asyncio.Task[None] | None = None
        if backend is not None:
            backend.bind(self._from_bus, self._report)

    @property
    def backend(self) -> Backend | None:
        """The bus between processes, or None (one process)."""
        return self._backend

    @property
    def crosses_processes(self) -> bool:
        """Whether the bus reaches other processes (not so without one, or on a
        :class:`~crosswire.pubsub.MemoryBackend`): what several workers need."""
        from .memory import MemoryBackend

        return self._backend is not None and not isinstance(self._backend, MemoryBackend)

    def __repr__(self) -> str:
        return (
            f"<Hub {self.server_id[:8]} clients={len(self._clients)} "
            f"rooms={len(self._topics)} backend={self._backend!r}>"
        )

    # -- membership (the App and the Peer call these) ---------------------------------------

    def admit(self, peer: Peer) -> None:
        """Make ``peer`` addressable by its id and a member of the broadcast group. The App
        admits a peer when it opens; a layer with its own admission (the seed-003 rooms,
        after authentication) admits it then."""
        if peer.id in self._clients or peer.ready_state is not _OPEN:
            return
        self._clients[peer.id] = peer
        self._bus_subscribe("client", peer.id)
        if not self._everyone:
            self._bus_subscribe("broadcast", None)
        self._everyone[peer] = None

    def remove(self, peer: Peer) -> None:
        """Forget ``peer`` everywhere (it closed)."""
        for topic in peer.topics:
            self.unsubscribe(peer, topic)
        self.identify(peer, None)
        if self._clients.pop(peer.id, None) is not None:
            self._bus_unsubscribe("client", peer.id)
        if self._everyone.pop(peer, 0) is None and not self._everyone:
            self._bus_unsubscribe("broadcast", None)
        self._outbox.pop(peer, None)

    def subscribe(self, peer: Peer, topic: str) -> None:
        members = self._topics.get(topic)
        if members is None:
            members = self._topics[topic] = {}
            self._bus_subscribe("room", topic)
        members[peer] = None

    def unsubscribe(self, peer: Peer, topic: str) -> None:
        if self._positioned:
            self._unposition(peer, topic)
        if self._presence_rules and self.tracks_presence(topic):
            self._presence_op("remove", topic, peer.id)
            peer.unsubscribe(PRESENCE_PREFIX + topic)
        members = self._topics.get(topic)
        if members is not None:
            members.pop(peer, None)
            if not members:
                del self._topics[topic]
                self._last.pop(topic, None)
                self._bus_unsubscribe("room", topic)

    def identify(self, peer: Peer, user_id: str | None) -> None:
        """Index ``peer`` under ``user_id`` (None: under no user)."""
        old = peer.user_id
        if old == user_id:
            return
        if old is not None:
            members = self._users.get(old)
            if members is not None:
                members.pop(peer, None)
                if not members:
                    del self._users[old]
                    self._bus_unsubscribe("user", old)
        if user_id is not None:
            members = self._users.get(user_id)
            if members is None:
                members = self._users[user_id] = {}
                self._bus_subscribe("user", user_id)
            members[peer] = None

    # -- lookups -------------------------------------------------------------------------

    def client(self, client_id: str) -> Peer | None:
        """The admitted peer of this process with this id, if any."""
        return self._clients.get(client_id)

    def clients_of(self, user_id: str) -> list[Peer]:
        """The peers of this process identified as ``user_id``."""
        return list(self._users.get(user_id, ()))

    def members(self, topic: str) -> list[Peer]:
        """The peers of this process subscribed to ``topic``."""
        return list(self._topics.get(topic, ()))

    def subscriber_count(self, topic: str) -> int:
        """How many local peers are subscribed to ``topic``."""
        return len(self._topics.get(topic, ()))

    def topics(self) -> list[str]:
        """Topics with at least one local subscriber."""
        return list(self._topics)

    # -- history ---------------------------------------------------------------------------

    def keep_history(self, matches: Callable[[str], bool], policy: History) -> None:
        """Keep ``policy``'s history for every topic ``matches(topic)`` says (a router does
        this for its topics declared with ``history=``). The first rule that matches a topic
        is its policy. Events published to such a topic (not raw frames) get a position.

        Without a bus the history is this process's (:class:`MemoryHistory`). With a bus it
        is the bus's, shared by every instance (``RedisBackend.history``: Redis Streams);
        a bus that keeps none (:class:`~crosswire.pubsub.MemoryBackend`) refuses it."""
        if self._backend is not None and self._shared is None:
            make = getattr(self._backend, "history", None)
            if make is None:
                raise ConfigurationError(
                    f"topic history needs a bus that keeps it ({type(self._backend).__name__} "
                    "does not; RedisBackend does), or no bus (one process)"
                )
            self._shared = make(self.namespace)
        self._history_rules.append((matches, policy))
        self._policies.clear()

    @property
    def shares_history(self) -> bool:
        """Whether topic history is kept on the bus (every instance numbers alike), so that
        reading it takes a round trip (:meth:`recover_shared`)."""
        return self._shared is not None

    def history_policy(self, topic: str) -> History | None:
        """The history ``topic`` keeps, or None."""
        try:
            return self._policies[topic]
        except KeyError:
            found = next((p for match, p in self._history_rules if match(topic)), None)
            if len(self._policies) < 100_000:  # (a cache: bounded, whatever the topics)
                self._policies[topic] = found
            return found

    def recover(
        self, peer: Peer, topic: str, since: Position | None
    ) -> tuple[bool, Position, list[Publication]]:
        """``peer`` (subscribed to ``topic``) asked for positions on it, from ``since`` (None:
        from now): from now on its frames of ``topic`` carry their position. Returns whether
        the history covers all it missed since ``since`` (``recovered``), the topic's
        position now, and what it missed (oldest first), for :meth:`replay` in this same
        turn of the event loop (so that nothing published meanwhile can come in between). A
        topic without history has position ``(0, "")`` and never recovers."""
        self._positioned.setdefault(topic, set()).add(peer)
        policy = self.history_policy(topic)
        if policy is None:
            return False, Position(0, ""), []
        if since is None:
            return False, self._history.position(topic, policy), []
        recovery = self._history.since(topic, since, policy)
        epoch = recovery.position.epoch
        first = recovery.position.offset - len(recovery.missed) + 1
        missed = []
        for offset, (event, meta, data, exclude) in enumerate(recovery.missed, first):
            pub = Publication("room", topic, event=event, meta=meta, data=data, exclude=exclude)
            pub.position = Position(offset, epoch)
            missed.append(pub)
        return recovery.recovered, recovery.position, missed

    async def history(self, topic: str, limit: int | None = None) -> list[HistoryEntry]:
        """The events ``topic``'s history still holds, oldest first: all of them, or the
        last ``limit``; none older than its policy's ``ttl``. Events sent with ``exclude``
        are in it too (this is the server's read, for no connection in particular).

        With a bus, the history shared by every instance, read in one round trip, once the
        events this Hub sent before the call are kept there (waiting at most
        :data:`RECOVERY_TIMEOUT` seconds for them). Raises ``ValueError`` for a topic that
        keeps no history or a negative ``limit``, :class:`~crosswire.BusError` when the
        history cannot be read (Redis away). Safe to cancel."""
        policy = self.history_policy(topic)
        if policy is None:
            raise ValueError(
                f"topic {topic!r} keeps no history: declare it with "
                "router.topic(..., history=History(...)) (or Hub.keep_history)"
            )
        if limit is not None and limit < 0:
            raise ValueError(f"history(limit={limit!r}): a number of events >= 0, or None (all)")
        count = policy.size if limit is None else min(limit, policy.size)
        if self._shared is None:
            kept = self._history.latest(topic, policy, count)
            return [_entry(event, meta, data, at) for at, (event, meta, data, _) in kept]
        await self._kept_so_far()
        entries = []
        for envelope in await self._shared.latest(topic, policy, count):
            pub = decode_envelope(envelope)[1]
            if pub.position is None or pub.frame is not None:
                raise BusError(f"topic {topic!r}: an entry of its history is not a kept event")
            entries.append(_entry(pub.event, pub.meta, pub.data, pub.position))
        return entries

    async def _kept_so_far(self) -> None:
        """Wait until the events queued for the shared history before now are done with
        (kept or failed), at most :data:`RECOVERY_TIMEOUT` seconds; not while keeping
        fails (the read will say why)."""
        if self._done >= self._queued or self._keeping_failed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._kept_waiters.append((self._queued, waiter))
        try:
            with contextlib.suppress(TimeoutError):  # then read what is kept by now
                async with asyncio.timeout(RECOVERY_TIMEOUT):
                    await waiter
        finally:
            waiter.cancel()  # (done: no effect; else dropped at the next wake)

    def _wake_kept(self, every: bool = False) -> None:
        """Wake the readers waiting for the events kept so far (``every``: all of them)."""
        waiting = []
        for target, waiter in self._kept_waiters:
            if waiter.done():
                continue
            if every or target <= self._done:
                waiter.set_result(None)
            else:
                waiting.append((target, waiter))
        self._kept_waiters = waiting

    def replay(self, peer: Peer, missed: Iterable[Publication]) -> None:
        """Send ``peer`` what :meth:`recover` found it missed, in order, with positions."""
        for pub in missed:
            self._fan_out((peer,), pub)

    def hold(self, peer: Peer, topic: str) -> None:
        """``peer`` (just subscribed to ``topic``) is about to recover it from the shared
        history: from now on its events of ``topic`` carry positions and wait for
        :meth:`finish_recovery`, so that none can reach it before its ack or its replay.
        Called before any await, in the turn of the event loop that subscribed it."""
        self._positioned.setdefault(topic, set()).add(peer)
        if self.history_policy(topic) is not None and self._shared is not None:
            self._recovering.setdefault((peer, topic), [])

    async def recover_shared(
        self, peer: Peer, topic: str, since: Position | None
    ) -> tuple[bool, Position, list[Publication]]:
        """:meth:`recover`, when the history is on the bus (after :meth:`hold`). The
        subscription is in effect on the bus before the history is read, so nothing
        published after the read can be missed; what both bring is sent once
        (:meth:`finish_recovery`). Bounded by :data:`RECOVERY_TIMEOUT`: a history that does
        not answer (Redis away) gives ``recovered: false`` and no position."""
        policy = self.history_policy(topic)
        if policy is None or self._shared is None or (peer, topic) not in self._recovering:
            return False, Position(0, ""), []
        try:
            async with asyncio.timeout(RECOVERY_TIMEOUT):
                if self._backend is not None:
                    await self._backend.flush()
                if since is None:
                    return False, await self._shared.position(topic, policy), []
                return await asyncio.shield(self._shared_read(topic, since, policy))
        except (BusError, TimeoutError) as exc:
            self._report(BusError(f"recovering topic {topic!r}: {exc or 'no answer'}"))
            return False, Position(0, ""), []

    def _shared_read(
        self, topic: str, since: Position, policy: History
    ) -> asyncio.Future[tuple[bool, Position, list[Publication]]]:
        """The read of ``topic`` after ``since`` that this peer shares with the others
        recovering from there in the same turn of the event loop (a burst of reconnections):
        a read not sent yet, so that it happens after every sharer's subscription took
        effect. The publications are shared too, so each is rendered once."""
        key = (topic, since)
        reading = self._reading.get(key)
        if reading is None:
            task = asyncio.get_running_loop().create_task(self._read_since(key, policy))
            self._reading[key] = reading = task
            self._readers.add(task)
            task.add_done_callback(self._readers.discard)
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # (retrieved)
        return reading

    async def _read_since(
        self, key: tuple[str, Position], policy: History
    ) -> tuple[bool, Position, list[Publication]]:
        await asyncio.sleep(0)  # the sharers of this turn join; later ones read again
        if self._reading.get(key) is not None:
            del self._reading[key]
        assert self._shared is not None
        topic, since = key
        found = await self._shared.since(topic, since, policy)
        missed = [decode_envelope(envelope)[1] for envelope in found.missed]
        return found.recovered, found.position, missed

    def finish_recovery(
        self, peer: Peer, topic: str, missed: list[Publication], position: Position
    ) -> None:
        """Send ``peer`` what it missed, then what came for it meanwhile (past ``position``,
        the topic's when the history was read), in order, once each; then the live stream."""
        waiting = self._recovering.pop((peer, topic), None)
        if waiting is None:  # it left the topic, or closed, meanwhile
            return
        for pub in missed:
            self._fan_out((peer,), pub)
        for pub in waiting:
            at = pub.position
            if at is None or at.epoch != position.epoch or at.offset > position.offset:
                self._fan_out((peer,), pub)

    def _keep_shared(self, pub: Publication, policy: History) -> int:
        """Queue ``pub`` to be kept and published by the shared history (in order); it is
        delivered here when it comes back from the bus, with its position, like everywhere
        else. Returns how many peers of this process are subscribed."""
        topic: str = pub.target  # type: ignore[assignment]
        if len(self._to_keep) >= MAX_HISTORY_QUEUE:
            self._report(BusError(f"history queue full: an event to {topic!r} was dropped"))
            return 0
        channel = channel_for(self.namespace, "room", topic)
        self._to_keep.append((topic, channel, encode_envelope(self.server_id, pub), policy))
        self._queued += 1
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep())
            self._tasks.add(self._keeper)
        return len(self._topics.get(topic, ()))

    async def _keep(self) -> None:
        """Keep the queued events, in order, one script each (at most once: one that fails
        is reported, not retried, since it may have been kept)."""
        assert self._shared is not None
        try:
            while self._to_keep:
                topic, channel, envelope, policy = self._to_keep[0]
                try:
                    await self._shared.append_and_publish(topic, channel, envelope, policy)
                except BusError as exc:
                    if not self._keeping_failed:  # once per run of failures
                        self._keeping_failed = True
                        self._report(exc)
                else:
                    if self._keeping_failed:
                        self._keeping_failed = False
                        logger.info("history on the bus: keeping events again")
                self._to_keep.popleft()
                self._done += 1
                if self._kept_waiters:
                    self._wake_kept()
        finally:
            if self._keeper is not None:
                self._tasks.discard(self._keeper)
            self._keeper = None
            if self._kept_waiters:  # (cancelled: what is still queued will not be kept)
                self._wake_kept(every=True)

    def _sequenced(self, pub: Publication) -> None:
        """Deliver an event of a shared history in its topic's order: once each, and a gap
        (the bus lost some while this instance was away from it) filled from the history."""
        topic: str = pub.target  # type: ignore[assignment]
        at: Position = pub.position  # type: ignore[assignment]
        if topic not in self._topics:
            return
        filling = self._filling.get(topic)
        if filling is not None:
            filling.append(pub)
            return
        last = self._last.get(topic)
        if last is not None and last.epoch == at.epoch:
            if at.offset <= last.offset:
                return  # delivered already
            if at.offset > last.offset + 1:
                self._filling[topic] = [pub]
                task = asyncio.get_running_loop().create_task(self._fill(topic, last))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
        self._last[topic] = at
        self._deliver(pub)

    async def _fill(self, topic: str, last: Position) -> None:
        policy = self.history_policy(topic)
        missed: list[Publication] = []
        if policy is not None and self._shared is not None:
            try:
                found = await self._shared.since(topic, last, policy)
            except BusError as exc:
                self._report(exc)
            else:
                if found.recovered:
                    missed = [decode_envelope(envelope)[1] for envelope in found.missed]
                else:
                    logger.warning(
                        "topic %r: events %d and on were lost on the bus and are no longer "
                        "in its history; its subscribers here will see the gap",
                        topic,
                        last.offset + 1,
                    )
        waiting = self._filling.pop(topic, [])
        events = sorted(missed + waiting, key=lambda p: p.position.offset)  # type: ignore[union-attr]
        if events and not missed:  # the gap cannot be filled: go on past it (never loop)
            first: Position = events[0].position  # type: ignore[assignment]
            self._last[topic] = Position(first.offset - 1, first.epoch)
        for pub in events:
            self._sequenced(pub)

    # -- presence ----------------------------------------------------------------------------

    def track_presence(self, matches: Callable[[str], bool]) -> None:
        """Keep presence for every topic ``matches(topic)`` says (a router does this for its
        topics declared with ``presence=True``): who is in it, on every instance.

        Without a bus, in this process (:class:`~crosswire.pubsub.presence.MemoryPresence`);
        with one, on the bus (``RedisBackend.presence``, ``RedisClusterBackend.presence``: a
        crashed instance's entries expire within its ``ttl``); a bus that keeps none refuses
        it."""
        if self._presence is None:
            if self._backend is None:
                self._presence = MemoryPresence(instance=self.server_id)
            else:
                make = getattr(self._backend, "presence", None)
                if make is None:
                    raise ConfigurationError(
                        f"presence needs a bus that keeps it ({type(self._backend).__name__} "
                        "does not; RedisBackend and RedisClusterBackend do), or no bus (one "
                        "process)"
                    )
                self._presence = make(self.namespace, self.server_id)
            self._presence.bind(self._announce, self._report)
        self._presence_rules.append(matches)
        self._tracked.clear()

    def tracks_presence(self, topic: str) -> bool:
        """Whether ``topic`` keeps presence."""
        try:
            return self._tracked[topic]
        except KeyError:
            found = any(match(topic) for match in self._presence_rules)
            if len(self._tracked) < 100_000:
                self._tracked[topic] = found
            return found

    def present(self, peer: Peer, topic: str, data: Any = None) -> None:
        """``peer`` (subscribed to ``topic``, which tracks presence) is in it, with ``data``
        (JSON): its entry is written, and the join announced to those who asked."""
        assert self._presence is not None
        entry = PresenceEntry(peer.id, peer.user_id, data, self._presence.instance)
        self._presence_op("add", topic, entry)

    async def presence(self, topic: str) -> list[PresenceEntry]:
        """Who is in ``topic``, on every instance (sorted by client id); raises
        :class:`~crosswire.BusError` when the store cannot answer."""
        if self._presence is None:
            return []
        return await self._presence.members(topic)

    def _presence_op(self, kind: str, topic: str, what: Any) -> None:
        self._presence_ops.append((kind, topic, what))
        if self._presence_worker is None:
            self._presence_worker = asyncio.get_running_loop().create_task(self._presence_run())
            self._tasks.add(self._presence_worker)

    async def _presence_run(self) -> None:
        """Write presence in the order it changed; announce what changed."""
        assert self._presence is not None
        try:
            while self._presence_ops:
                kind, topic, what = self._presence_ops.popleft()
                try:
                    if kind == "add":
                        change = await self._presence.add(topic, what)
                    else:
                        change = await self._presence.remove(topic, what)
                except BusError as exc:  # written later by the store, and reported then
                    self._report(exc)
                    continue
                except Exception:  # one entry lost, never the others
                    logger.exception("presence: writing an entry of topic %r failed", topic)
                    continue
                if change is not None:
                    self._announce(change)
        finally:
            if self._presence_worker is not None:
                self._tasks.discard(self._presence_worker)
            self._presence_worker = None

    def _announce(self, change: PresenceChange) -> None:
        """A presence change, to the connections (on every instance) that asked for them."""
        entry = change.entry
        data = {
            "topic": change.topic,
            "clientId": entry.client_id,
            "userId": entry.user_id,
            "data": entry.data,
        }
        event = PRESENCE_JOIN if change.kind == "join" else PRESENCE_LEAVE
        self.send(Publication.of_event("room", PRESENCE_PREFIX + change.topic, event, data))

    def _unposition(self, peer: Peer, topic: str) -> None:
        self._recovering.pop((peer, topic), None)
        peers = self._positioned.get(topic)
        if peers is not None:
            peers.discard(peer)
            if not peers:
                del self._positioned[topic]

    # -- addressing: deliver here, then on the bus ------------------------------------------

    def publish(self, topic: str, data: object, *, exclude: Collection[str] = ()) -> int:
        """Send ``data`` as a raw frame (as :meth:`~crosswire.Peer.send` would) to every
        subscriber of ``topic`` on every instance, but the client ids in ``exclude``.

        Encoded once. Returns how many peers of this process it was written to.
        """
        if topic not in self._topics and self._backend is None:
            return 0
        payload, text = encode(data)
        return self.send(
            Publication("room", topic, frame=payload, binary=not text, exclude=_ids(exclude))
        )

    def to_room(
        self, room: str, event: str, data: Any = None, *, exclude: Collection[str] = ()
    ) -> int:
        """Send the event ``event`` with ``data`` to every member of ``room`` (a topic) on
        every instance, but the client ids in ``exclude``; returns the local count."""
        return self.send(Publication.of_event("room", room, event, data, exclude=exclude))

    def to_client(self, client_id: str, event: str, data: Any = None) -> int:
        """Send an event to one connection, on whichever instance it is; returns 1 if it is
        here (and open), else 0."""
        return self.send(Publication.of_event("client", client_id, event, data))

    def to_user(
        self, user_id: str, event: str, data: Any = None, *, exclude: Collection[str] = ()
    ) -> int:
        """Send an event to every connection of ``user_id`` on every instance."""
        return self.send(Publication.of_event("user", user_id, event, data, exclude=exclude))

    def broadcast(self, event: str, data: Any = None, *, exclude: Collection[str] = ()) -> int:
        """Send an event to every admitted connection on every instance."""
        return self.send(Publication.of_event("broadcast", None, event, data, exclude=exclude))

    def to_peer(self, peer: Peer, event: str, data: Any = None) -> bool:
        """Send an event to ``peer`` of this process (admitted or not), rendered in its
        dialect and through its transform; False if it is not open."""
        return self._fan_out((peer,), Publication.of_event("client", peer.id, event, data)) == 1

    def to_peer_frame(self, peer: Peer, frame: bytes, *, binary: bool = False) -> bool:
        """Send a frame (text as UTF-8 bytes) to ``peer`` of this process as it is, through
        its transform, in order with the rest; False if it is not open."""
        pub = Publication("client", peer.id, frame=frame, binary=binary)
        return self._fan_out((peer,), pub) == 1

    def send(self, pub: Publication) -> int:
        """Deliver ``pub`` to its recipients here, then on the bus; returns the local count.

        A message to one client that is connected here does not go on the bus. An event to
        a topic that keeps history is kept there first, and gets its position.
        """
        if self._history_rules and pub.kind == "room" and pub.frame is None:
            policy = self.history_policy(pub.target)  # type: ignore[arg-type]
            if policy is not None:
                if self._shared is not None:
                    return self._keep_shared(pub, policy)
                kept = (pub.event, pub.meta, pub.data, pub.exclude)
                pub.position = self._history.append(pub.target, kept, policy)  # type: ignore[arg-type]
        count = self._deliver(pub)
        backend = self._backend
        if backend is not None and not (pub.kind == "client" and count):
            backend.publish(
                channel_for(self.namespace, pub.kind, pub.target),
                encode_envelope(self.server_id, pub),
            )
        return count

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect to the bus now, so that the log says at once whether it is reachable
        (``App.startup()`` calls it as a server starts). Never raises for a bus that is not
        there: that goes to ``on_error``, and the bus keeps trying. Idempotent and safe to
        cancel; without it the bus connects when first needed. After :meth:`aclose`, opens
        the Hub and its bus again, in this event loop."""
        if self._closed:
            self._closed = False
            # (an asyncio primitive belongs to the loop that first waited on it)
            self._transform_slots = asyncio.Semaphore(self._transform_concurrency)
        if self._backend is not None:
            await self._backend.start()
        if self._presence is not None:
            await self._presence.start()

    def bus_stats(self) -> BusStats:
        """What the bus did: messages published, dropped and queued, and how many times it
        came back after an outage (all zero without a bus)."""
        if self._backend is None:
            return BusStats(0, 0, 0, 0)
        return self._backend.stats()

    async def flush(self) -> None:
        """Wait until what was published is on the bus and what was subscribed is in effect
        there (at once without a bus). Raises :class:`~crosswire.BusError` if a message was
        dropped since the last flush. Safe to cancel."""
        await self._drain_transforms()
        if self._backend is not None:
            await self._backend.flush()

    async def aclose(self, *, grace: float = 5.0) -> None:
        """Send what is still waiting (transforms, the bus queue) for up to ``grace``
        seconds, then stop the transform tasks and close the bus connection. What could not
        be sent by then is dropped and reported to ``on_error``."""
        with contextlib.suppress(TimeoutError, BusError):  # drops are reported already
            async with asyncio.timeout(grace):
                await self.flush()
        for reader in list(self._readers):
            reader.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._closed = True
        if self._presence is not None:
            await self._presence.aclose()
        if self._shared is not None:
            with contextlib.suppress(BusError):
                await self._shared.aclose()
        if self._backend is not None:
            await self._backend.aclose()

    # -- delivery ----------------------------------------------------------------------------

    def _deliver(self, pub: Publication) -> int:
        kind = pub.kind
        members: Iterable[Peer] | None
        if kind == "room":
            members = self._topics.get(pub.target)  # type: ignore[arg-type]
        elif kind == "client":
            peer = self._clients.get(pub.target)  # type: ignore[arg-type]
            members = (peer,) if peer is not None else None
        elif kind == "user":
            members = self._users.get(pub.target)  # type: ignore[arg-type]
        else:
            members = self._everyone
        if not members:
            return 0
        return self._fan_out(tuple(members), pub)

    def _fan_out(self, members: tuple[Peer, ...], pub: Publication) -> int:
        # A fan-out to thousands of peers is this loop's cost: keep it lean.
        # ``members`` is a copy: a write may close a slow peer, which leaves its rooms.
        exclude = pub.exclude
        frame = pub.frame
        text = not pub.binary
        payload = frame
        last_render = None
        positioned = self._positioned.get(pub.target) if pub.position is not None else None  # type: ignore[arg-type]
        positioned_render = None
        positioned_payload = b""
        count = 0
        writes = self.writes
        batch = writes.held
        for peer in members:
            if peer.ready_state is not _OPEN or (exclude and peer.id in exclude):
                continue
            if positioned and self._recovering and peer in positioned:
                waiting = self._recovering.get((peer, pub.target))  # type: ignore[arg-type]
                if waiting is not None:  # it is recovering: this comes after its replay
                    count += 1
                    waiting.append(pub)
                    continue
            if peer.transform is not None:
                count += 1
                self._queue_transform(peer, pub)
                continue
            if frame is None:
                render = peer.render
                if render is not last_render:
                    payload = pub.render(render)
                    last_render = render
                if payload is None:  # a map of the peer's router dropped it
                    continue
            count += 1
            if batch is not None:
                cork = peer.cork
                if cork is not None and not cork.held:
                    writes.hold(cork)  # until the batch ends
            if frame is None:
                if positioned and peer in positioned:  # it asked for positions
                    if render is not positioned_render:  # once per render, as payload is
                        positioned_payload = pub.positioned(render, peer.dialect, payload)  # type: ignore[arg-type]
                        positioned_render = render
                    peer.write_text(positioned_payload)
                else:
                    peer.write_text(payload)  # type: ignore[arg-type]
            elif text:
                peer.write_text(frame)
            else:
                peer.write(frame, False)
        return count

    def _from_bus(self, channel: str, message: bytes, more: bool = False) -> None:
        if more and self.writes.held is None:  # a burst from the bus: one write per socket
            self.writes.open()
        if len(message) > self.max_bus_message:
            self.rejected += 1
            self._report(
                BusError(
                    f"a message of {len(message):,} bytes on the bus, past "
                    f"max_bus_message ({self.max_bus_message:,}): dropped (channel {channel!r})"
                )
            )
            return
        try:
            server_id, pub = decode_envelope(message)
        except BusError as exc:
            self.rejected += 1
            self._report(BusError(f"{exc} (channel {channel!r})"))
            return
        try:
            if pub.position is not None:  # kept in the shared history: in its order, ours too
                self._sequenced(pub)
                return
            if server_id == self.server_id:
                return  # delivered here when it was sent
            self._deliver(pub)
        except Exception:
            logger.exception("delivering %r from the bus failed", pub)

    # -- outbound transforms -----------------------------------------------------------------

    def _queue_transform(self, peer: Peer, pub: Publication) -> None:
        queue = self._outbox.get(peer)
        if queue is None:
            queue = self._outbox[peer] = collections.deque()
            task = asyncio.get_running_loop().create_task(self._transform_all(peer, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if len(queue) >= self._transform_queue:
            peer.close_overflowed()
            return
        queue.append(pub)

    async def _transform_all(self, peer: Peer, queue: collections.deque[Publication]) -> None:
        """Transform and send ``peer``'s queue in order; ends when it is empty."""
        try:
            while queue and peer.ready_state is _OPEN:
                pub = queue[0]
                async with self._transform_slots:
                    out = await self._transform_one(peer, pub)
                queue.popleft()
                if out is not None and peer.ready_state is _OPEN:
                    if pub.position is not None and out[1]:
                        positioned = self._positioned.get(pub.target, ())  # type: ignore[arg-type]
                        if peer in positioned:
                            out = (peer.dialect.positioned(out[0], pub.target, pub.position), True)  # type: ignore[arg-type]
                    peer.write(*out)
        finally:
            if self._outbox.get(peer) is queue:
                del self._outbox[peer]

    async def _transform_one(self, peer: Peer, pub: Publication) -> tuple[bytes, bool] | None:
        """What to write to ``peer`` for ``pub``: ``(payload, is_text)``, or None to drop it."""
        transform = peer.transform
        assert transform is not None
        event = pub.event
        render = peer.render
        try:
            value = pub.value()
            mapped = pub.frame is None and isinstance(render, MappedRender)
            if mapped:
                assert isinstance(render, MappedRender)
                value = render.apply(event, value)  # the router's map comes first
                if value is DROPPED:
                    return None
            result = transform(peer, event, value)
            if inspect.isawaitable(result):
                result = await result
            if result is None:  # send the original, as the seed's transformer contract says
                if pub.frame is not None:
                    return pub.frame, not pub.binary
                if mapped:
                    original = peer.dialect.render(event, pub.meta, orjson.dumps(value))
                else:
                    original = pub.render(render)
                return None if original is None else (original, True)
            new_event, new_data = result
            out = peer.dialect.render(new_event, None, orjson.dumps(new_data))
            return None if out is None else (out, True)
        except Exception:
            # One message is lost, never the peer's queue: the next ones are transformed.
            logger.exception(
                "peer %s: the outbound transform raised or returned something that is not "
                "(event, JSON-able data); message dropped",
                peer.id,
            )
            return None

    async def _drain_transforms(self) -> None:
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    # -- the bus -----------------------------------------------------------------------------

    def _bus_subscribe(self, kind: Kind, target: str | None) -> None:
        if self._backend is not None:
            self._backend.subscribe(channel_for(self.namespace, kind, target))

    def _bus_unsubscribe(self, kind: Kind, target: str | None) -> None:
        if self._backend is not None:
            self._backend.unsubscribe(channel_for(self.namespace, kind, target))

    def _report(self, error: BusError) -> None:
        if self._on_error is None:
            logger.error("pub/sub bus: %s", error)
            return
        try:
            self._on_error(error)
        except Exception:
            logger.exception("the hub's on_error callback raised")


def _entry(event: str, meta: bytes | None, data: bytes | None, at: Position) -> HistoryEntry:
    return HistoryEntry(
        event,
        None if data is None else orjson.loads(data),
        None if meta is None else orjson.loads(meta),
        at,
    )


def _ids(exclude: Collection[str]) -> frozenset[str]:
    return frozenset(exclude) if exclude else _NO_EXCLUDE


#: The Hubs of this process, each given a new ``server_id`` in a forked child.
_HUBS: weakref.WeakSet[Hub] = weakref.WeakSet()


def _renew_ids() -> None:
    for hub in list(_HUBS):
        hub.server_id = str(uuid.uuid4())


if hasattr(os, "register_at_fork"):  # once for the process, whatever the number of Hubs
    os.register_at_fork(after_in_child=_renew_ids)
