"""Presence in Redis, shared by every instance (``pip install crosswire[redis]``).

The keys (``ws`` is the namespace)::

    ws:presence:{topic}            HASH    client id -> the entry, JSON:
                                           {"clientId", "userId", "data", "instance"}
    ws:instance:{instance}         STRING  there while the instance lives: set again every
                                           ``heartbeat`` seconds, it expires ``ttl`` seconds
                                           after the last time
    ws:instance-topics:{instance}  SET     the topics where the instance has entries
    ws:instances                   SET     the instances that may have entries (what sweeps
                                           look through)

**Liveness.** A background task (made by :meth:`RedisPresence.start`) sets the instance's key
every ``heartbeat`` seconds with an expiry of ``ttl``. An entry whose instance has no key is
dead: :meth:`~RedisPresence.members` never returns it, and removes it as it reads it. So the
entries of an instance that crashed disappear from every instance's ``members()`` within
``ttl`` seconds of its last heartbeat (15 s by default). Every heartbeat also sweeps: the
entries of every instance in ``ws:instances`` whose key is gone are removed, with its topic
set, so that a crashed instance leaves nothing behind, and each entry removed is reported as
a ``leave`` to ``changed`` by the one instance whose sweep (or read) removed it: within
``ttl + heartbeat`` seconds of the crash while some instance lives.

**This instance's entries are written back when Redis lost them.** The store keeps its own
entries in memory. When a heartbeat finds its key gone (Redis restarted and lost its data, or
this instance was too slow to beat for ``ttl`` seconds and was swept), or after a write or a
heartbeat failed, it makes Redis hold exactly its entries again: the missing ones are written
(``join`` to ``changed``), stale ones removed (``leave``). A restart of an instance with the
same name clears the entries of its previous run the same way, at :meth:`~RedisPresence.start`.

**Atomic where it matters**: each write (an add, a remove, a topic written back, a sweep of a
dead instance, a read that removes dead entries) is one Lua script; the writes of one
instance go out one at a time, in the order they were called. Reads and writes raise
:class:`~crosswire.BusError` when Redis does not answer within ``timeout`` seconds;
the heartbeat reports its failures to ``report`` (one report per outage; the Hub's
``on_error``) and keeps trying.

**On a Redis Cluster** (``cluster=True``, what
:meth:`~crosswire.pubsub.redis_cluster.RedisClusterBackend.presence` makes) every key of a
namespace carries one hash tag, ``{ws:presence}``, so they all live in one slot and the same
scripts run there (a script may touch the keys of one slot only; a sweep reads every
instance's)::

    {ws:presence}:topic:{topic}             HASH    as ws:presence:{topic}
    {ws:presence}:instance:{instance}       STRING  as ws:instance:{instance}
    {ws:presence}:instance-topics:{instance} SET    as ws:instance-topics:{instance}
    {ws:presence}:instances                 SET     as ws:instances

One master holds a namespace's presence, then: its load is the joins, leaves, reads and
heartbeats (one script per instance every ``heartbeat`` seconds), not the messages, which stay
on their channels' masters (presence events too: they are published on the bus). When that
master fails, its replica takes over; entries it had not yet copied are written back by their
instances' next heartbeat, as after a restart of a single Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import BusError, ConfigurationError
from .backend import Report
from .presence import Changed, PresenceChange, PresenceEntry, check_entry, decode_entry
from .redis_slots import hash_tag

__all__ = ["RedisPresence"]

logger = logging.getLogger("crosswire.pubsub")

#: What a lost, refused or slow connection raises (a cluster client whose nodes all refuse
#: raises a RedisClusterException, which is not a RedisError).
_LOST = (RedisError, RedisClusterException, OSError, TimeoutError)
#: Topics per script when this instance's entries are written back.
_CHUNK = 200

#: KEYS[1] this instance's key, KEYS[2] the set of instances; ARGV[1] ttl (ms), ARGV[2] the
#: instance. Returns 1 if the key was still there, 0 if it had expired or was lost.
_BEAT = """
local alive = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return alive
"""

#: KEYS[1] the topic's hash, KEYS[2] this instance's topics, KEYS[3] this instance's key,
#: KEYS[4] the set of instances; ARGV[1] the client id, ARGV[2] its entry, ARGV[3] the topic,
#: ARGV[4] ttl (ms), ARGV[5] the instance. Returns {1 if the client was not in the topic, 1 if
#: this instance's key was there}; a key that was not is set (its other entries are the
#: heartbeat's to write again).
_ADD = """
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
local alive = redis.call('EXISTS', KEYS[3])
if alive == 0 then
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
  redis.call('SADD', KEYS[4], ARGV[5])
end
return {new, alive}
"""

#: KEYS[1] the topic's hash, KEYS[2] this instance's topics; ARGV[1] the client id, ARGV[2]
#: the topic, ARGV[3] '1' if this instance has no other entry there. Returns the entry
#: removed, or nil.
_REMOVE = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value then redis.call('HDEL', KEYS[1], ARGV[1]) end
if ARGV[3] == '1' then redis.call('SREM', KEYS[2], ARGV[2]) end
return value
"""

#: KEYS[1] the topic's hash; ARGV[1] the prefix of instance keys. Returns {the entries of live
#: instances, those of dead ones (removed now)}; an unreadable entry counts as live (the
#: caller reports it).
_MEMBERS = """
local fields = redis.call('HGETALL', KEYS[1])
local live, dead, alive = {}, {}, {}
for i = 1, #fields, 2 do
  local value = fields[i + 1]
  local ok, entry = pcall(cjson.decode, value)
  local instance = ok and type(entry) == 'table' and entry.instance
  if type(instance) ~= 'string' then
    live[#live + 1] = value
  else
    if alive[instance] == nil then
      alive[instance] = redis.call('EXISTS', ARGV[1] .. instance) == 1
    end
    if alive[instance] then
      live[#live + 1] = value
    else
      redis.call('HDEL', KEYS[1], fields[i])
      dead[#dead + 1] = value
    end
  end
end
return {live, dead}
"""

#: KEYS[1] this instance's topics; ARGV[1] the instance, ARGV[2] the prefix of topic hashes,
#: then for each topic: the topic, how many entries, and that many client id, entry pairs.
#: Makes those this instance's only entries in those topics. Returns what changed, flat:
#: '+' (written) or '-' (removed), topic, client id, entry, ...
_SYNC = """
local changes = {}
local i = 3
while i <= #ARGV do
  local topic, count = ARGV[i], tonumber(ARGV[i + 1])
  local hash = ARGV[2] .. topic
  local want = {}
  for j = i + 2, i + 2 * count, 2 do want[ARGV[j]] = ARGV[j + 1] end
  local have = {}
  local fields = redis.call('HGETALL', hash)
  for j = 1, #fields, 2 do
    local client, value = fields[j], fields[j + 1]
    have[client] = value
    if want[client] == nil then
      local ok, entry = pcall(cjson.decode, value)
      if ok and type(entry) == 'table' and entry.instance == ARGV[1] then
        redis.call('HDEL', hash, client)
        changes[#changes + 1] = '-'
        changes[#changes + 1] = topic
        changes[#changes + 1] = client
        changes[#changes + 1] = value
      end
    end
  end
  for client, value in pairs(want) do
    if have[client] ~= value then
      redis.call('HSET', hash, client, value)
      if have[client] == nil then
        changes[#changes + 1] = '+'
        changes[#changes + 1] = topic
        changes[#changes + 1] = client
        changes[#changes + 1] = value
      end
    end
  end
  if count > 0 then
    redis.call('SADD', KEYS[1], topic)
  else
    redis.call('SREM', KEYS[1], topic)
  end
  i = i + 2 + 2 * count
end
return changes
"""

#: KEYS[1] the set of instances; ARGV[1] the prefix of instance keys, ARGV[2] of instances'
#: topic sets, ARGV[3] of topic hashes. Removes every entry of each instance whose key is
#: gone, and its topic set. Returns them, flat: topic, entry, ...
_SWEEP = """
local removed = {}
for _, instance in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. instance) == 0 then
    local topics = ARGV[2] .. instance
    for _, topic in ipairs(redis.call('SMEMBERS', topics)) do
      local hash = ARGV[3] .. topic
      local fields = redis.call('HGETALL', hash)
      for j = 1, #fields, 2 do
        local ok, entry = pcall(cjson.decode, fields[j + 1])
        if ok and type(entry) == 'table' and entry.instance == instance then
          redis.call('HDEL', hash, fields[j])
          removed[#removed + 1] = topic
          removed[#removed + 1] = fields[j + 1]
        end
      end
    end
    redis.call('DEL', topics)
    redis.call('SREM', KEYS[1], instance)
  end
end
return removed
"""

#: KEYS[1] this instance's key, KEYS[2] its topics, KEYS[3] the set of instances; ARGV[1]
#: the instance. This instance is gone (a clean shutdown, its entries removed).
_FORGET = """
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
"""


class RedisPresence:
    """A :class:`~crosswire.pubsub.presence.Presence` store in Redis, for every instance on
    the same Redis and ``namespace``.

    ``url`` is a redis-py URL (``redis://[[user]:password@]host:port/db``; the store makes
    its own client, and closes it in :meth:`aclose`). ``instance`` names this instance: it
    must be unique to this process's run among all instances (the Hub's ``server_id`` is);
    a name reused after a crash is fine, its previous run's entries are cleared at start.
    ``heartbeat`` is the seconds between two refreshes of this instance's key, ``ttl`` the
    seconds the key lives after one: the entries of a crashed instance disappear within
    ``ttl`` of its last heartbeat. ``timeout`` bounds each call to Redis (seconds);
    ``heartbeat + timeout`` must be under ``ttl``, or a live instance whose Redis is slow
    would be taken for dead (``ttl`` of three heartbeats or more is the advice).
    ``cluster=True``: ``url`` names any node of a Redis Cluster, and the keys share one hash
    tag (see the module's docs).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        instance: str,
        namespace: str = "ws",
        heartbeat: float = 5.0,
        ttl: float = 15.0,
        timeout: float = 2.0,
        cluster: bool = False,
    ) -> None:
        if not instance:
            raise ConfigurationError("RedisPresence(instance=...) must name the instance")
        if heartbeat <= 0 or timeout <= 0:
            raise ConfigurationError("RedisPresence: heartbeat and timeout are seconds > 0")
        if heartbeat + timeout >= ttl:
            raise ConfigurationError(
                f"RedisPresence: ttl ({ttl} s) must be longer than heartbeat + timeout "
                f"({heartbeat} + {timeout} s), or a live instance would be taken for dead; "
                "three heartbeats or more is the advice"
            )
        self._url = url
        self._instance = instance
        self._heartbeat = heartbeat
        self._ttl = ttl
        self._timeout = timeout
        self._cluster = cluster
        settings = ConnectionPool.from_url(url).connection_kwargs  # (only read)
        #: ``host:port`` of the Redis server (or the cluster's node): what messages name
        #: (never the password).
        self._where = str(settings.get("path") or f"{settings.get('host')}:{settings.get('port')}")
        if cluster:  # every key in one slot, that of the tag (see the module's docs)
            root = "{" + hash_tag(f"{namespace}:presence")[0] + "}:"
            self._presence_prefix = root + "topic:"
            self._instance_prefix = root + "instance:"
            self._topics_prefix = root + "instance-topics:"
            self._registry = root + "instances"
            self._where += " (a Redis Cluster)"
        else:
            self._presence_prefix = f"{namespace}:presence:"
            self._instance_prefix = f"{namespace}:instance:"
            self._topics_prefix = f"{namespace}:instance-topics:"
            self._registry = f"{namespace}:instances"
        self._key = self._instance_prefix + instance
        self._topics_key = self._topics_prefix + instance
        #: This instance's entries, as they should be in Redis: topic -> client id ->
        #: (entry, its JSON).
        self._own: dict[str, dict[str, tuple[PresenceEntry, bytes]]] = {}
        #: The entries whose join was announced (returned by add, or given to ``changed``)
        #: and whose leave was not yet: (topic, client id) -> the entry's JSON. What a
        #: failed write leaves unannounced, the next heartbeat announces from the difference.
        self._announced: dict[tuple[str, str], bytes] = {}
        self._changed: Changed | None = None
        self._report: Report | None = None
        self._open()

    def _open(self) -> None:
        """A client, scripts and state for a run: made anew after :meth:`aclose` (asyncio
        objects belong to the event loop that first used them)."""
        self._redis: Redis | RedisCluster
        if self._cluster:
            # redis-py's retries kept (unlike RedisHistory's appends, every script here can
            # run twice with the same result): a call that finds its master gone reads the
            # slot map again and goes to the promoted replica, within ``timeout``.
            self._redis = RedisCluster.from_url(
                self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
            )
        else:
            self._redis = Redis.from_url(
                self._url, socket_timeout=self._timeout, socket_connect_timeout=self._timeout
            )
        self._beat = self._redis.register_script(_BEAT)
        self._add = self._redis.register_script(_ADD)
        self._remove = self._redis.register_script(_REMOVE)
        self._members = self._redis.register_script(_MEMBERS)
        self._sync = self._redis.register_script(_SYNC)
        self._sweep = self._redis.register_script(_SWEEP)
        self._forget = self._redis.register_script(_FORGET)
        #: The writes of this instance, one at a time, in the order called (a FIFO lock).
        self._writing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._first_beat = asyncio.Event()
        #: Redis may not hold exactly ``self._own``: the next heartbeat writes it all again.
        #: So does the first of a run, which clears what a previous run of this name left.
        self._dirty = True
        self._down_since: float | None = None  # when the heartbeat began to fail
        self._closed = False

    @property
    def instance(self) -> str:
        """The instance whose entries this store adds."""
        return self._instance

    def __repr__(self) -> str:
        return f"<RedisPresence {self._instance} at {self._where}>"  # never the password

    def bind(self, changed: Changed, report: Report) -> None:
        """``changed`` takes the changes this store finds by itself (dead instances' entries
        removed, this instance's written back); ``report`` its errors."""
        self._changed = changed
        self._report = report

    async def start(self) -> None:
        """Announce this instance, clear what a previous run of the same name left, sweep dead
        instances, and start the heartbeat; returns after that first heartbeat, done or
        failed (then reported: the heartbeat keeps trying). Idempotent; safe to cancel (the
        heartbeat goes on). After :meth:`aclose`, opens the store again."""
        if self._closed:
            self._open()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._keep_alive(), name=f"crosswire-presence-{self._instance}"
            )
        await self._first_beat.wait()  # bounded: each call of a heartbeat is

    async def add(self, topic: str, entry: PresenceEntry) -> PresenceChange | None:
        """Put ``entry`` in ``topic`` (one round trip); a ``join`` if its connection was not
        there (or its join was never announced), None if this replaced its entry.

        Raises ``ValueError`` for another instance's entry, ``TypeError`` for data that is not
        JSON, :class:`~crosswire.BusError` if Redis did not take it within ``timeout``: the
        entry is then kept here, written when Redis answers, and its join reported to
        ``changed``. Safe to cancel (the same)."""
        raw = check_entry(self._instance, entry)
        await self._ready()
        self._own.setdefault(topic, {})[entry.client_id] = (entry, raw)
        async with self._write(f"add connection {entry.client_id!r} to topic {topic!r}"):
            new, alive = await self._add(
                keys=[self._presence_prefix + topic, self._topics_key, self._key, self._registry],
                args=[entry.client_id, raw, topic, int(self._ttl * 1000), self._instance],
            )
            key = (topic, entry.client_id)
            # New to Redis (maybe lost, or swept as dead: then its leave was announced), or
            # never announced (a previous add of it failed after all): a join.
            join = bool(new) or key not in self._announced
            self._announced[key] = raw
            if not alive:  # Redis lost this instance, or it was swept: write it all again
                self._dirty = True
        return PresenceChange("join", topic, decode_entry(raw)) if join else None

    async def remove(self, topic: str, client_id: str) -> PresenceChange | None:
        """Take this instance's ``client_id`` out of ``topic`` (one round trip); a ``leave``
        with its entry if its join was announced. Does nothing for a connection that this
        instance did not add there.

        Raises :class:`~crosswire.BusError` if Redis did not answer within ``timeout``: the
        entry is then removed when Redis answers, and its leave reported to ``changed``. Safe
        to cancel (the same)."""
        await self._ready()
        entries = self._own.get(topic)
        if entries is None or entries.pop(client_id, None) is None:
            return None
        if not entries:
            del self._own[topic]
        async with self._write(f"remove connection {client_id!r} from topic {topic!r}"):
            await self._remove(
                keys=[self._presence_prefix + topic, self._topics_key],
                args=[client_id, topic, "0" if topic in self._own else "1"],
            )
            raw = self._announced.pop((topic, client_id), None)
        return None if raw is None else PresenceChange("leave", topic, decode_entry(raw))

    async def members(self, topic: str) -> list[PresenceEntry]:
        """The entries of ``topic`` whose instance lives, sorted by client id (one round
        trip). Those of dead instances are removed as they are found (``leave`` to
        ``changed``); an unreadable entry is skipped and reported. Raises
        :class:`~crosswire.BusError` if Redis does not answer within ``timeout``. Needs no
        :meth:`start`. Safe to cancel."""
        async with self._call(f"read the members of topic {topic!r}"):
            live, dead = await self._members(
                keys=[self._presence_prefix + topic], args=[self._instance_prefix]
            )
        for raw in dead:
            self._announce("leave", topic, raw)
        entries = [entry for raw in live if (entry := self._decode(raw)) is not None]
        return sorted(entries, key=lambda entry: entry.client_id)

    async def aclose(self) -> None:
        """Stop the heartbeat, remove this instance's entries and key, close the connections.
        If Redis does not answer, that is reported, and the entries expire within ``ttl``.
        Idempotent; bounded in time (a few ``timeout``); never raises."""
        if self._closed:
            return
        self._closed = True
        self._first_beat.set()  # a start() waiting for it returns
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=self._timeout)
        count = sum(len(entries) for entries in self._own.values())
        topics = set(self._own)
        self._own.clear()
        self._announced.clear()
        try:
            if task is not None:  # started: this instance may have entries in Redis
                async with self._write("remove this instance's entries"):
                    await self._write_own(topics)
                    await self._forget(
                        keys=[self._key, self._topics_key, self._registry], args=[self._instance]
                    )
        except BusError as exc:
            self._fail(BusError(f"{exc}; its {count} entries expire within {self._ttl:g} s"))
        finally:
            await self._redis.aclose()

    # -- the heartbeat -------------------------------------------------------------------

    async def _keep_alive(self) -> None:
        """Beat every ``heartbeat`` seconds (from the start of one to the next), until
        cancelled by :meth:`aclose`."""
        loop = asyncio.get_running_loop()
        # Ends on the flag as well as on cancellation: redis-py can lose a cancellation
        # (asyncio.wait_for on Python 3.11 swallows one that arrives as a read completes).
        while not self._closed:
            began = loop.time()
            try:
                await self._tick()
            except Exception:  # a bug here must not stop the heartbeat: the instance would die
                logger.exception("presence: a heartbeat failed unexpectedly; trying again")
            self._first_beat.set()
            await asyncio.sleep(max(0.0, self._heartbeat - (loop.time() - began)))

    async def _tick(self) -> None:
        """One heartbeat: refresh this instance's key, write its entries again if Redis may
        not hold them, and sweep dead instances. Failures are reported once per outage."""
        try:
            async with self._call("refresh this instance's heartbeat"):
                alive = await self._beat(
                    keys=[self._key, self._registry],
                    args=[int(self._ttl * 1000), self._instance],
                )
            if not alive or self._dirty:
                async with self._write("write this instance's entries again"):
                    await self._resync()
            async with self._call("sweep the entries of dead instances"):
                removed = await self._sweep(
                    keys=[self._registry],
                    args=[self._instance_prefix, self._topics_prefix, self._presence_prefix],
                )
        except BusError as exc:
            self._dirty = True
            self._outage(exc)
            return
        self._back()
        for i in range(0, len(removed), 2):
            self._announce("leave", _text(removed[i]), removed[i + 1])

    async def _resync(self) -> None:
        """Make Redis hold exactly this instance's entries, and its key (the writing lock is
        held); what changed goes to ``changed``."""
        self._dirty = False  # a write that fails from now on sets it again
        await self._beat(
            keys=[self._key, self._registry], args=[int(self._ttl * 1000), self._instance]
        )
        stored = await self._redis.smembers(self._topics_key)
        changes = await self._write_own(set(self._own) | {_text(topic) for topic in stored})
        announced = self._announced
        for written, topic, client_id, raw in changes:
            key = (topic, client_id)
            if written and key in announced:  # lost, or swept as dead (its leave announced)
                self._announce("join", topic, raw)
            elif not written and key not in announced:  # a previous run's
                self._announce("leave", topic, raw)
        # What failed writes left unannounced (written or not: Redis holds it now).
        for topic, entries in self._own.items():
            for client_id, (_, raw) in entries.items():
                if (topic, client_id) not in announced:
                    announced[topic, client_id] = raw
                    self._announce("join", topic, raw)
        for key in [key for key in announced if key[1] not in self._own.get(key[0], ())]:
            self._announce("leave", key[0], announced.pop(key))

    async def _write_own(self, topics: set[str]) -> list[tuple[bool, str, str, bytes]]:
        """Make this instance's entries in ``topics`` in Redis those of ``self._own``; what
        changed: (written, not removed; topic, client id, entry)."""
        ordered = sorted(topics)
        changed: list[tuple[bool, str, str, bytes]] = []
        for i in range(0, len(ordered), _CHUNK):
            args: list[Any] = [self._instance, self._presence_prefix]
            for topic in ordered[i : i + _CHUNK]:
                entries = self._own.get(topic, {})
                args += [topic, len(entries)]
                for client_id, (_, raw) in entries.items():
                    args += [client_id, raw]
            flat = await self._sync(keys=[self._topics_key], args=args)
            for j in range(0, len(flat), 4):
                written, topic, client_id = flat[j] == b"+", flat[j + 1], flat[j + 2]
                changed.append((written, _text(topic), _text(client_id), flat[j + 3]))
        return changed

    # -- helpers -------------------------------------------------------------------------

    async def _ready(self) -> None:
        """Start the store if nothing did; BusError once closed."""
        if self._closed:
            raise BusError("presence: the store is closed (aclose() ran); start() opens it again")
        if self._task is None:
            await self.start()

    @contextlib.asynccontextmanager
    async def _call(self, what: str) -> AsyncIterator[None]:
        """Calls to Redis, bounded by ``timeout``: their failure as a BusError saying ``what``
        could not be done."""
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except _LOST as exc:
            slow = isinstance(exc, TimeoutError | RedisTimeoutError)
            why = f"no answer in {self._timeout:g} s" if slow else str(exc)
            raise BusError(f"presence: could not {what} on Redis at {self._where} ({why})") from exc

    @contextlib.asynccontextmanager
    async def _write(self, what: str) -> AsyncIterator[None]:
        """A write of this instance's entries: one at a time, in the order called, bounded by
        ``timeout`` (the wait for the previous ones included). If it fails, Redis may not
        hold this instance's entries: the next heartbeat writes them all again."""
        try:
            async with self._call(what), self._writing:
                yield
        except BusError as exc:
            self._dirty = True
            raise BusError(f"{exc}; Redis is brought in line once it answers") from exc.__cause__
        except asyncio.CancelledError:
            self._dirty = True  # the write may or may not have happened
            raise

    def _outage(self, error: BusError) -> None:
        if self._down_since is None:
            self._down_since = asyncio.get_running_loop().time()
            self._fail(
                BusError(
                    f"{error}; this instance's entries are written again once it answers, "
                    f"and other instances take them for dead after {self._ttl:g} s"
                )
            )
        else:
            logger.debug("%s", error)

    def _back(self) -> None:
        if self._down_since is not None:
            lasted = asyncio.get_running_loop().time() - self._down_since
            self._down_since = None
            logger.info(
                "presence: Redis at %s answers again after %.1f s; this instance's entries "
                "are written again",
                self._where,
                lasted,
            )

    def _announce(self, kind: str, topic: str, raw: bytes) -> None:
        """Hand a change found by the store to ``changed``."""
        entry = self._decode(raw)
        if entry is None:
            return
        change = PresenceChange("join" if kind == "join" else "leave", topic, entry)
        if self._changed is None:
            logger.debug("presence: %s", change)
            return
        try:
            self._changed(change)
        except Exception:
            logger.exception("presence: handling %s failed", change)

    def _decode(self, raw: bytes) -> PresenceEntry | None:
        try:
            return decode_entry(raw)
        except BusError as exc:
            self._fail(exc)
            return None

    def _fail(self, error: BusError) -> None:
        if self._report is not None:
            self._report(error)
        else:
            logger.warning("%s", error)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
