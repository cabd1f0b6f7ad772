"""Redis Cluster as the bus between instances, over sharded pub/sub (Redis 7+, ``pip install
crosswire[redis]``).

A channel lives on the master that serves its hash slot (:mod:`crosswire.pubsub.redis_slots`):
``SPUBLISH`` goes to that master, which carries the message to its shard's subscribers only,
and ``SSUBSCRIBE`` is made there. The backend keeps, from one URL (any node of the cluster):

* **the slot map**, read with ``CLUSTER SLOTS`` from any node that answers (the URL's, or one
  learned from an earlier map), at start and again whenever something says it changed: a node
  that cannot be reached, a connection lost, a ``MOVED``/``ASK``/``TRYAGAIN``/``CLUSTERDOWN``
  answer, or Redis unsubscribing a channel by itself (its slot moved to another master);
* **one subscriber connection per master** that serves a wanted channel, in subscribe mode,
  whose channels follow what the Hub wants (one ``SSUBSCRIBE`` per slot: a command's channels
  must share one). When the map moves a channel to another master (a failover promoted a
  replica, a slot was migrated), it is subscribed there; a connection lost is made again, and
  its channels subscribed again, once the map says where they live now;
* **the publisher**: publishes leave one bounded queue in order, in batches; a batch is split
  by master and each part pipelined on that master's publisher connection (the parts in
  parallel). A message Redis refused with a redirection (``MOVED`` and its kin) was not
  published, and is sent again once the map is read again; one whose part could not be sent
  (its master unreachable) waits, with all that follows, until the map names a master that
  answers. Only the messages written to a connection that broke before Redis answered them
  are dropped and reported: delivery is at most once, as on one Redis.

Order: the messages of one publisher on one channel arrive in order. Channels on different
masters travel on different connections: across them there is no order (on one Redis there
is). ``flush()`` waits until every wanted channel is subscribed on the master the map names.

Failover: when a master dies, its shard's channels are missed (an ERROR, once, says so) until
the cluster promotes a replica (about twice ``cluster-node-timeout``) and this backend reads
the new map and subscribes there; publishes to that shard wait meanwhile (up to ``max_queue``).
The end of the outage is logged at INFO with what was queued and dropped, and counted in
``stats().reconnects``, as for :class:`~crosswire.pubsub.RedisBackend`
(:mod:`crosswire.pubsub.outage`).

Topic history lives in the cluster too (:meth:`RedisClusterBackend.history`): each topic's keys
carry a hash tag that puts them in the slot of the topic's channel, so one Lua script keeps an
event and publishes it. So does presence (:meth:`RedisClusterBackend.presence`): a namespace's
presence keys share one slot (:mod:`crosswire.pubsub.redis_presence`), and its join and leave
events travel on the topics' channels like any other message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import AskError, ClusterDownError, ResponseError, TryAgainError

from ..errors import BusError, ConfigurationError
from .backend import BusStats, Deliver, Report
from .outage import Outage
from .outbox import Item, Outbox
from .redis import (
    _CHUNK,
    _IDLE_PING,
    _LOST,
    _NO_REPLY,
    _START_WAIT,
    PingTimer,
    _both,
    _buffered,
    _closed_by_redis,
    _jitter,
    _next_reply,
    _read_buffered,
    _read_reply,
    _report_failure,
)
from .redis import _stop as _stop_tasks
from .redis_slots import Addr, SlotMap, slot_of

if TYPE_CHECKING:
    from .redis_history import RedisHistory
    from .redis_presence import RedisPresence

__all__ = ["RedisClusterBackend"]

logger = logging.getLogger("crosswire.pubsub")

#: What Redis answers a command sent to a master that does not serve its slot (now): the
#: command was not run.
_REDIRECTED = (AskError, TryAgainError, ClusterDownError)
#: Seconds between two reads of the slot map, at least.
_REMAP_GAP = 0.05


class _Shard:
    """The subscriber connection to one master, and the channels wanted there."""

    __slots__ = (
        "active",
        "addr",
        "changed",
        "leaving",
        "sent",
        "task",
        "unconfirmed",
        "up",
        "wanted",
    )

    def __init__(self, addr: Addr) -> None:
        self.addr = addr
        self.wanted: set[str] = set()  # channels of this master's slots that the Hub wants
        self.sent: set[str] = set()  # SSUBSCRIBEd on the current connection
        self.active: set[str] = set()  # confirmed by Redis
        self.leaving: dict[str, int] = {}  # SUNSUBSCRIBEs not confirmed yet, per channel
        self.unconfirmed = 0  # SSUBSCRIBE/SUNSUBSCRIBE confirmations still due
        self.up = False  # a connection is open
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def in_line(self) -> bool:
        return self.unconfirmed == 0 and self.active == self.wanted

    def reset(self) -> None:
        self.sent.clear()
        self.active.clear()
        self.leaving.clear()
        self.unconfirmed = 0
        self.up = False


class _Link:
    """A publisher connection to one master."""

    __slots__ = ("conn", "used")

    def __init__(self, conn: AbstractConnection, used: float) -> None:
        self.conn = conn
        self.used = used  # when it last carried something (loop time)


class RedisClusterBackend:
    """A :class:`~crosswire.pubsub.Backend` on a Redis Cluster (Redis 7 or later), over
    sharded pub/sub.

    ``url`` is a redis-py URL of any node (``redis://[[user]:password@]host:port``,
    ``rediss://`` for TLS); the others are found from it, and their connections use its
    credentials and TLS settings. ``max_queue``, ``max_batch``, ``health_check_interval`` and
    ``reconnect_delay`` are :class:`~crosswire.pubsub.RedisBackend`'s: the bound of the
    publish queue (past it, new publishes are dropped and reported), the most messages sent in
    one round trip, the seconds between two PINGs of each subscriber connection, and the first
    and longest wait between two attempts to reach a node (doubling, jittered).
    ``presence_heartbeat`` and ``presence_ttl`` are the presence store's (:meth:`presence`),
    as on :class:`~crosswire.pubsub.RedisBackend`.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:7000",
        *,
        max_queue: int = 100_000,
        max_batch: int = 1_000,
        health_check_interval: float = 5.0,
        reconnect_delay: tuple[float, float] = (0.05, 2.0),
        presence_heartbeat: float = 5.0,
        presence_ttl: float = 15.0,
    ) -> None:
        self._url = url
        self._presence_times = (presence_heartbeat, presence_ttl)
        self._template = ConnectionPool.from_url(url)  # only for its connection settings
        kwargs = self._template.connection_kwargs
        if kwargs.get("path"):
            raise ConfigurationError("RedisClusterBackend: a cluster is reached over TCP")
        if int(kwargs.get("db") or 0) != 0:
            raise ConfigurationError("RedisClusterBackend: a Redis Cluster has database 0 only")
        self._seed: Addr = (str(kwargs.get("host") or "127.0.0.1"), int(kwargs.get("port") or 6379))
        #: Nodes to ask for the slot map: the URL's, and every node a map named.
        self._nodes: list[Addr] = [self._seed]
        self._where = f"{self._seed[0]}:{self._seed[1]}"
        self._health_check_interval = health_check_interval
        #: Seconds a node has to answer (a PING, a connect) before it counts as dead.
        self._answer_within = 2 * health_check_interval + 1
        self._reconnect_delay = reconnect_delay
        self._deliver: Deliver | None = None
        self._report: Report | None = None
        #: What was published and is not on the cluster yet.
        self._outbox = Outbox(max_queue, max_batch, self._fail, "the cluster")
        self._outage = Outage("Redis Cluster", self._where, self._fail)
        self._open()

    def _open(self) -> None:
        """State for a run: made anew by a :meth:`start` after :meth:`aclose`, maybe in another
        event loop (an asyncio primitive belongs to the loop that first waited on it)."""
        self._closed = False
        self._map: SlotMap | None = None
        self._wanted: set[str] = set()  # channels the Hub wants
        self._owner: dict[str, Addr] = {}  # wanted channel -> the master it is wanted on
        self._shards: dict[Addr, _Shard] = {}
        self._outbox.open()
        self._publisher_waits = False  # part of the last batch found no master to take it
        self._moved_reported = False  # a channel Redis dropped (its slot moved) was reported
        self._known = asyncio.Event()  # the first read of the map has ended, either way
        self._remap = asyncio.Event()  # the map must be read again
        self._mapped = asyncio.Event()  # a map was read
        self._tasks: list[asyncio.Task[None]] = []

    def history(self, namespace: str) -> RedisHistory:
        """A store of topic history in the same cluster (a cluster client of its own): each
        topic's keys share its channel's slot, so that its events are kept and published in
        one step. What a Hub on this backend keeps its topics' history in."""
        from .redis_history import RedisHistory

        return RedisHistory.from_cluster_url(self._url, namespace=namespace)

    def presence(self, namespace: str, instance: str) -> RedisPresence:
        """A presence store in the same cluster (a cluster client of its own), for the Hub of
        ``instance``: the namespace's keys in one slot, a crashed instance's entries
        expiring as on one Redis."""
        from .redis_presence import RedisPresence

        heartbeat, ttl = self._presence_times
        return RedisPresence(
            self._url,
            instance=instance,
            namespace=namespace,
            heartbeat=heartbeat,
            ttl=ttl,
            cluster=True,
        )

    def __repr__(self) -> str:
        return f"<RedisClusterBackend {self._where}>"  # never the password

    # -- the Backend protocol --------------------------------------------------------------

    def bind(self, deliver: Deliver, report: Report) -> None:
        self._deliver = deliver
        self._report = report

    async def start(self) -> None:
        """Read the slot map now and log whether the cluster is reachable; returns once a node
        answered or none did, or after 5 s without an answer (it keeps trying). Idempotent;
        safe to cancel. After :meth:`aclose`, opens the backend again."""
        if self._closed:
            self._open()
        self._start()
        if self._known.is_set():
            return
        try:
            async with asyncio.timeout(_START_WAIT):
                await self._known.wait()
        except TimeoutError:
            self._attempt_failed(self._seed, TimeoutError(f"no answer in {_START_WAIT:.0f} s"))

    def subscribe(self, channel: str) -> None:
        if self._closed or channel in self._wanted:
            return
        self._wanted.add(channel)
        self._start()
        self._place(channel)

    def unsubscribe(self, channel: str) -> None:
        if channel not in self._wanted:
            return
        self._wanted.discard(channel)
        owner = self._owner.pop(channel, None)
        if owner is not None:
            shard = self._shards[owner]
            shard.wanted.discard(channel)
            shard.changed.set()

    def publish(self, channel: str, message: bytes) -> int:
        number = self._outbox.put(channel, message, closed=self._closed)
        self._start()
        return number

    async def flush(self, *, through: int | None = None) -> None:
        """Wait until every message published so far (or up to number ``through``) is on the
        cluster and every channel wanted so far is subscribed on the master that serves it.
        While a master is away this waits; safe to cancel."""
        self._start()
        await self._outbox.ledger.flush(self._in_line, through=through)

    def _in_line(self) -> bool:
        """Whether every wanted channel is placed and confirmed on its master, and nothing
        else is subscribed."""
        if self._closed:
            return True
        return len(self._owner) == len(self._wanted) and all(
            shard.in_line() for shard in self._shards.values()
        )

    async def aclose(self) -> None:
        """Stop every connection, within about a second. Messages not yet on the cluster
        (queued, or written and not answered: Redis may have got them) are dropped and
        reported. Idempotent."""
        self._closed = True
        for event in (self._known, self._remap, self._mapped, self._outbox.filled):
            event.set()
        for shard in self._shards.values():
            shard.changed.set()
        tasks = self._tasks + [s.task for s in self._shards.values() if s.task is not None]
        self._tasks = []
        await _stop_tasks(tasks)
        # Everything accepted is settled now; what is published from here on is dropped.
        lost = self._outbox.close()
        if lost:
            self._fail(f"closed with {lost} messages not on the cluster yet; dropped")
        self._wanted.clear()
        self._owner.clear()
        self._shards.clear()

    def stats(self) -> BusStats:
        """Messages published, dropped and queued so far, and how many times the cluster came
        back whole after an outage."""
        return self._outbox.stats(self._outage.reconnects)

    # -- the slot map --------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the map reader and the publisher, once, when first needed (in the loop)."""
        if self._tasks or self._closed:
            return
        loop = asyncio.get_running_loop()
        self._remap.set()
        self._tasks = [
            loop.create_task(self._mapper(), name="crosswire-cluster-map"),
            loop.create_task(self._publisher(), name="crosswire-cluster-publisher"),
        ]

    def _request_remap(self) -> None:
        self._remap.set()

    async def _mapper(self) -> None:
        """Read the slot map whenever asked, and place the wanted channels on its masters;
        again with backoff while no node answers or some slot has no master."""
        delay = self._reconnect_delay[0]
        while not self._closed:
            await self._remap.wait()
            self._remap.clear()  # asked again during the read: read again
            slots = await self._read_map()
            self._known.set()
            if slots is not None:
                self._apply(slots)
            if slots is None or not slots.complete:
                await asyncio.sleep(_jitter(delay))
                delay = min(delay * 2, self._reconnect_delay[1])
                self._remap.set()
                continue
            delay = self._reconnect_delay[0]
            await asyncio.sleep(_REMAP_GAP)

    async def _read_map(self) -> SlotMap | None:
        """The map as the first node that answers says it; None if none did (reported)."""
        failure: BaseException | None = None
        for addr in list(self._nodes):
            conn = self._make(addr)
            try:
                async with asyncio.timeout(self._answer_within):
                    await conn.connect()  # type: ignore[no-untyped-call]
                    await conn.send_command("CLUSTER", "SLOTS", check_health=False)
                    reply = await conn.read_response()
            except _LOST as exc:
                failure = exc
                continue
            finally:
                await conn.disconnect(nowait=True)
            slots = SlotMap(reply, default_host=addr[0])
            if slots.nodes:
                return slots
            failure = BusError(f"{addr[0]}:{addr[1]} knows no master (a cluster still forming)")
        self._attempt_failed(self._seed, failure or BusError("no node to ask"))
        return None

    def _apply(self, slots: SlotMap) -> None:
        """Take a new map: every wanted channel is wanted on the master that serves it."""
        self._map = slots
        self._nodes = list(dict.fromkeys([*slots.nodes, *self._nodes, self._seed]))
        self._moved_reported = False
        for channel in self._wanted:
            self._place(channel)
        self._mapped.set()
        self._maybe_whole()

    def _place(self, channel: str) -> None:
        """Want ``channel`` on the master the map names (nowhere while it names none)."""
        owner = self._map.owner(channel) if self._map is not None else None
        old = self._owner.get(channel)
        if old == owner:
            return
        if old is not None:
            shard = self._shards[old]
            shard.wanted.discard(channel)
            shard.changed.set()
        if owner is None:
            self._owner.pop(channel, None)
            return
        self._owner[channel] = owner
        shard = self._shard(owner)
        shard.wanted.add(channel)
        shard.changed.set()

    def _shard(self, addr: Addr) -> _Shard:
        shard = self._shards.get(addr)
        if shard is None:
            shard = self._shards[addr] = _Shard(addr)
            shard.task = asyncio.get_running_loop().create_task(
                self._subscriber(shard), name=f"crosswire-cluster-subscriber-{addr[1]}"
            )
        return shard

    # -- connections and outages -------------------------------------------------------------

    def _make(self, addr: Addr) -> AbstractConnection:
        """A connection (not connected) to ``addr`` with the URL's settings."""
        kwargs = {**self._template.connection_kwargs, "host": addr[0], "port": addr[1]}
        conn: AbstractConnection = self._template.connection_class(**kwargs)
        return conn

    async def _connect(self, addr: Addr) -> AbstractConnection | None:
        """A connection to ``addr``, one attempt; None if it failed (reported)."""
        conn = self._make(addr)
        try:
            async with asyncio.timeout(self._answer_within):
                await conn.connect()  # type: ignore[no-untyped-call]
        except _LOST as exc:
            await conn.disconnect(nowait=True)
            self._attempt_failed(addr, exc)
            return None
        return conn

    def _attempt_failed(self, addr: Addr, exc: BaseException) -> None:
        self._outage.failed(
            self._now(),
            f"Redis Cluster node {addr[0]}:{addr[1]} is not reachable ({exc}); retrying "
            "where the cluster's map says, and publishes wait in the queue (up to "
            f"{self._outbox.max_queue} messages)",
            exc,
            queued=len(self._outbox.queue),
            dropped=self._outbox.ledger.dropped,
        )

    def _maybe_whole(self) -> None:
        """If every wanted channel has a connected master and the publisher reaches every
        master it needs, the cluster is whole: the end of an outage, if one was on."""
        if self._map is None or len(self._owner) != len(self._wanted) or self._publisher_waits:
            return
        if any(shard.wanted and not shard.up for shard in self._shards.values()):
            return
        outbox = self._outbox
        self._outage.connected(self._now(), queued=len(outbox.queue), dropped=outbox.ledger.dropped)

    # -- the subscribers (one per master) ----------------------------------------------------

    async def _subscriber(self, shard: _Shard) -> None:
        """Keep a connection to ``shard``'s master while channels are wanted there, made
        again after every loss (once the map was read again), its channels subscribed again."""
        delay = self._reconnect_delay[0]
        while not self._closed:
            if not shard.wanted:  # nothing to subscribe here: no connection to keep
                shard.changed.clear()
                await shard.changed.wait()
                continue
            conn = await self._connect(shard.addr)
            if conn is None:  # that master may be gone: ask the cluster where its slots are
                self._request_remap()
                await asyncio.sleep(_jitter(delay))
                delay = min(delay * 2, self._reconnect_delay[1])
                continue
            delay = self._reconnect_delay[0]
            shard.up = True
            self._maybe_whole()
            try:
                await self._listen(shard, conn)
            except _LOST as exc:
                if self._subscriber_lost(shard, exc):
                    self._request_remap()
            finally:
                shard.reset()
                self._outbox.ledger.wake()
                await conn.disconnect(nowait=True)
            await asyncio.sleep(_jitter(self._reconnect_delay[0]))

    def _subscriber_lost(self, shard: _Shard, exc: BaseException) -> bool:
        """Say that ``shard``'s connection was lost; False if that did not matter (it had no
        channels: Redis may close such a connection when idle, and nothing was missed)."""
        where = f"{shard.addr[0]}:{shard.addr[1]}"
        if not (shard.sent or shard.active):
            logger.debug("Redis at %s closed an idle subscriber connection (%s)", where, exc)
            return False
        self._outage.failed(
            self._now(),
            f"lost the connection to Redis Cluster node {where} ({exc}); until its slots are "
            f"served again (a replica promoted), this instance misses what is published on "
            f"its {len(shard.wanted)} channels there",
            exc,
            queued=len(self._outbox.queue),
            dropped=self._outbox.ledger.dropped,
        )
        return True

    async def _listen(self, shard: _Shard, conn: AbstractConnection) -> None:
        """Read one connection's messages while its subscriptions follow ``shard.wanted``;
        returns (raises) when the connection fails."""
        stopped = asyncio.Event()
        await _both(
            self._control(shard, conn, stopped), self._read(shard, conn), stopped, shard.changed
        )

    async def _control(
        self, shard: _Shard, conn: AbstractConnection, stopped: asyncio.Event
    ) -> None:
        """Send SSUBSCRIBE/SUNSUBSCRIBE for what changed (one command per slot, all pipelined),
        and a PING every health check."""
        changed = shard.changed
        pings = PingTimer(self._health_check_interval, changed)
        try:
            while not stopped.is_set():
                changed.clear()
                commands: list[tuple[str, ...]] = []
                added = shard.wanted - shard.sent
                removed = shard.sent - shard.wanted
                for chunk in _by_slot(added):
                    shard.sent.update(chunk)
                    shard.unconfirmed += len(chunk)
                    commands.append(("SSUBSCRIBE", *chunk))
                for chunk in _by_slot(removed):
                    shard.sent.difference_update(chunk)
                    shard.unconfirmed += len(chunk)
                    for channel in chunk:
                        shard.leaving[channel] = shard.leaving.get(channel, 0) + 1
                    commands.append(("SUNSUBSCRIBE", *chunk))
                if pings.take():
                    commands.append(("PING",))
                if commands:
                    await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                await changed.wait()
        finally:
            pings.cancel()

    async def _read(self, shard: _Shard, conn: AbstractConnection) -> None:
        timeout = self._answer_within  # pings keep traffic flowing: silence means death
        deliver = self._deliver
        while True:
            try:
                response: Any = await _read_reply(conn, timeout)
            except _REDIRECTED:
                # An SSUBSCRIBE reached a master that no longer serves its slot: the map is
                # old. This connection is made again once it is read again.
                self._request_remap()
                raise
            while response is not _NO_REPLY:  # this one, then those already read (a burst)
                if isinstance(response, list):
                    kind = response[0]
                    if kind == b"smessage":
                        if deliver is not None:
                            try:
                                deliver(response[1].decode(), response[2], _buffered(conn))
                            except Exception:
                                logger.exception("delivering a message from Redis failed")
                    elif kind == b"ssubscribe":
                        shard.active.add(response[1].decode())
                        self._confirmed(shard)
                    elif kind == b"sunsubscribe":
                        self._unsubscribed(shard, response[1].decode())
                try:
                    response = await _read_buffered(conn)
                except _REDIRECTED:
                    self._request_remap()
                    raise

    def _confirmed(self, shard: _Shard) -> None:
        shard.unconfirmed = max(0, shard.unconfirmed - 1)
        self._outbox.ledger.wake()

    def _unsubscribed(self, shard: _Shard, channel: str) -> None:
        """Redis says ``channel`` is no longer subscribed: as asked, or by itself, because its
        slot left this master (then it is wanted nowhere until the map is read again)."""
        shard.active.discard(channel)
        pending = shard.leaving.get(channel, 0)
        if pending:
            if pending == 1:
                del shard.leaving[channel]
            else:
                shard.leaving[channel] = pending - 1
            self._confirmed(shard)
            return
        shard.sent.discard(channel)
        if self._owner.get(channel) == shard.addr:
            del self._owner[channel]
            shard.wanted.discard(channel)
        if not self._moved_reported:
            self._moved_reported = True
            self._fail(
                f"Redis Cluster node {shard.addr[0]}:{shard.addr[1]} unsubscribed channel "
                f"{channel!r} (its slot moved to another master); subscribing it where the "
                "cluster's map says: what is published on it meanwhile is missed"
            )
        self._request_remap()
        self._outbox.ledger.wake()

    # -- the publisher ---------------------------------------------------------------------

    async def _publisher(self) -> None:
        """Send the queue in order, in batches split by master; wait and read the map again
        when part of a batch found no master to take it."""
        links: dict[Addr, _Link] = {}
        delay = self._reconnect_delay[0]
        try:
            # Ends on the flag as well as on cancellation (redis-py can lose a cancellation).
            while not self._closed:
                if not self._outbox.queue:
                    self._outbox.filled.clear()
                    await self._outbox.filled.wait()
                elif self._map is None:
                    self._request_remap()
                    self._mapped.clear()
                    await self._mapped.wait()
                elif await self._send_batch(links, self._map):
                    delay = self._reconnect_delay[0]
                else:
                    self._request_remap()
                    await asyncio.sleep(_jitter(delay))
                    delay = min(delay * 2, self._reconnect_delay[1])
        finally:
            for link in links.values():
                await link.conn.disconnect(nowait=True)

    async def _send_batch(self, links: dict[Addr, _Link], slots: SlotMap) -> bool:
        """Send the next batch, each master's part on its connection, all at once; False if
        some of it must wait (put back at the head of the queue, in order)."""
        outbox = self._outbox
        batch = outbox.take()
        parts: dict[Addr | None, list[Item]] = {}
        for item in batch:
            parts.setdefault(slots.owner(item[1]), []).append(item)
        outcomes = await asyncio.gather(
            *(self._send_part(links, addr, items) for addr, items in parts.items())
        )
        if outbox.in_flight is not batch:  # aclose settled it meanwhile
            return True
        again = sorted(item for waiting, _ in outcomes for item in waiting)
        dropped = [number for _, lost in outcomes for number in lost]
        outbox.settle(batch, dropped=dropped, again=again)
        self._publisher_waits = bool(again)
        if not again:
            self._maybe_whole()
        return not again

    async def _send_part(
        self, links: dict[Addr, _Link], addr: Addr | None, items: list[Item]
    ) -> tuple[list[Item], list[int]]:
        """SPUBLISH ``items`` on ``addr``'s connection; what must wait (not sent, or refused
        with a redirection: not published) and the numbers of those dropped."""
        if addr is None:  # no master serves their slot now
            return items, []
        link = links.get(addr)
        if link is not None and not await self._still_good(link, addr):
            await link.conn.disconnect(nowait=True)
            del links[addr]
            link = None
        if link is None:
            conn = await self._connect(addr)
            if conn is None:
                return items, []
            link = links[addr] = _Link(conn, self._now())
        conn = link.conn
        link.used = self._now()
        waiting: list[Item] = []
        refused: list[tuple[int, ResponseError]] = []
        answered = 0
        try:
            packed = conn.pack_commands([("SPUBLISH", ch, msg) for _, ch, msg in items])
            await conn.send_packed_command(packed, check_health=False)
            for item in items:
                try:
                    await _next_reply(conn)
                except _REDIRECTED:
                    waiting.append(item)
                except ResponseError as exc:
                    refused.append((item[0], exc))
                answered += 1
        except _LOST as exc:
            await conn.disconnect(nowait=True)
            links.pop(addr, None)
            lost = [number for number, _, _ in items[answered:]]
            self._fail(
                f"lost the connection to Redis Cluster node {addr[0]}:{addr[1]} while "
                f"publishing ({exc}); {len(lost)} messages dropped",
                exc,
            )
            return waiting, [number for number, _ in refused] + lost
        if refused:
            self._fail(
                f"Redis Cluster node {addr[0]}:{addr[1]} refused {len(refused)} messages "
                f"({refused[0][1]}); dropped",
                refused[0][1],
            )
        if waiting:
            logger.debug("%d messages redirected by %s:%d; sent again", len(waiting), *addr)
        return waiting, [number for number, _ in refused]

    async def _still_good(self, link: _Link, addr: Addr) -> bool:
        """Whether ``link`` can take a part: Redis has not closed it, and if it sat idle long
        enough to be closed as idle, it answers a PING (as RedisBackend's publisher)."""
        conn = link.conn
        if _closed_by_redis(conn):
            return False
        if self._now() - link.used < _IDLE_PING:
            return True
        link.used = self._now()
        try:
            await conn.send_command("PING", check_health=False)
            pong = await conn.read_response(timeout=self._answer_within)
        except _LOST as exc:
            pong = exc
        if pong in (b"PONG", "PONG"):
            return True
        logger.debug("an idle publisher connection to %s:%d failed a PING (%s)", *addr, pong)
        return False

    # -- helpers -----------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _fail(self, what: str, exc: BaseException | None = None) -> None:
        _report_failure(self._report, f"redis cluster: {what}", exc)


def _by_slot(channels: set[str]) -> list[list[str]]:
    """``channels`` in groups of one slot (a sharded (un)subscribe takes one slot's), at most
    :data:`_CHUNK` each, in a stable order."""
    slots: dict[int, list[str]] = {}
    for channel in sorted(channels):
        slots.setdefault(slot_of(channel), []).append(channel)
    return [
        group[i : i + _CHUNK]
        for _, group in sorted(slots.items())
        for i in range(0, len(group), _CHUNK)
    ]
