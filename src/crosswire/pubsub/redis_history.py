"""Topic history in Redis, shared by every instance on one Redis (``pip install
crosswire[redis]``): :class:`RedisHistory` is :class:`~crosswire.pubsub.history.MemoryHistory`'s
semantics, async.

Three keys per topic (``ws`` is the namespace, as in the channels ``ws:room:{room}``)::

    ws:epoch:{topic}     string   the stream's epoch (12 hex digits, random)
    ws:offset:{topic}    string   the offset of its last publication (0: none yet)
    ws:history:{topic}   stream   one entry per kept publication, ID ``<offset>-0``, fields
                                  ``d`` (the envelope, with "offset" and "epoch" in it) and
                                  ``t`` (Redis TIME when appended, in ms)

Each method is one Lua script (``EVALSHA``, loaded again by redis-py after ``NOSCRIPT``), so
what it reads and writes is consistent whatever other instances do meanwhile:

* :meth:`RedisHistory.append_and_publish` numbers the publication (``INCR``), keeps it
  (``XADD`` with ``MAXLEN = size``, exact) and publishes it (``PUBLISH``), in one step: a
  publication is never in the history without having been published, nor the reverse. With a
  ``ttl`` it sets the three keys to expire ``ttl`` after this publication, so an idle topic's
  whole history, epoch included, expires at once: its next publication starts a new epoch.
* :meth:`RedisHistory.since` reads the epoch, the offset and the range in one step, so a
  concurrent append cannot make a gap look covered.
* :meth:`RedisHistory.position` gives out the epoch.
* :meth:`RedisHistory.latest` reads the newest entries (``XREVRANGE ... COUNT``), those not
  older than the ``ttl``, for ``Hub.history``.

Each of the first three starts a new stream when there is none (or its offset key is gone): a
fresh epoch, offset 0, the stream key deleted. An epoch is therefore stable from the moment a
client is told it, until the history is lost (expired, deleted by :meth:`RedisHistory.forget`,
or Redis lost its data): then the epoch changes, and recovery says ``recovered: false``.

The script adds ``"offset"`` and ``"epoch"`` to the envelope by splicing them in before its
closing brace, not through Redis's ``cjson``: a cjson round trip would rewrite the
application's data (numbers past 14 significant digits rounded, ``[]`` turned into ``{}``).

Errors: what redis-py raises (Redis unreachable, refused, timed out, a key of another type) is
raised as :class:`~crosswire.BusError`. The client made by :meth:`RedisHistory.from_url` does
not retry a command (redis-py's default retries could run an append twice when its answer was
lost: a duplicate, under a new offset); its next command reconnects. Appends are therefore at
most once: after a ``BusError`` the publication may or may not have been kept and published.

**On a Redis Cluster** (a :class:`~redis.asyncio.cluster.RedisCluster` client, made by
:meth:`RedisHistory.from_cluster_url`) a topic's three keys carry a hash tag that puts them in
the slot of the topic's channel (:func:`~crosswire.pubsub.redis_slots.hash_tag`), and the
append publishes with ``SPUBLISH`` (sharded pub/sub, what
:class:`~crosswire.pubsub.redis_cluster.RedisClusterBackend` subscribes): a Lua script may
touch only keys and shard channels of one slot. Room ``lobby`` (channel ``ws:room:lobby``)
keeps ``ws:epoch:{ws:room:lobby}``, ``ws:offset:{ws:room:lobby}`` and
``ws:history:{ws:room:lobby}``; a topic whose channel has a hash tag of its own (``{`` ... ``}``
in its name) gets that tag and its name: ``ws:epoch:{tag}:topic``.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisClusterException, RedisError

from ..errors import BusError
from .envelope import channel_for
from .history import History, Position, Recovery
from .redis_slots import hash_tag

__all__ = ["RedisHistory"]

#: Connections of a history made by :meth:`RedisHistory.from_url`; more commands wait for
#: one, up to :data:`QUEUE_TIMEOUT` seconds (then ``BusError``).
MAX_CONNECTIONS = 16
QUEUE_TIMEOUT = 30.0

#: What a lost, refused or failed command raises (a cluster client whose nodes all refuse
#: raises a RedisClusterException, which is not a RedisError).
_LOST = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError)

#: KEYS[1] epoch, KEYS[2] offset, KEYS[3] stream. ``stream_epoch(fresh, ttl_ms)`` returns the
#: topic's epoch, starting a new stream (epoch ``fresh``, offset 0, no entries) when it has
#: none or its offset is gone (its past with it).
_PRELUDE = """
local function stream_epoch(fresh, ttl)
  local epoch = redis.call('GET', KEYS[1])
  if epoch and redis.call('EXISTS', KEYS[2]) == 1 then
    return epoch
  end
  redis.call('DEL', KEYS[3])
  redis.call('SET', KEYS[1], fresh)
  redis.call('SET', KEYS[2], 0)
  if ttl > 0 then
    redis.call('PEXPIRE', KEYS[1], ttl)
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  return fresh
end
local function now_ms()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end
"""

#: ARGV channel, envelope head (the object without its closing brace, with a trailing comma
#: unless empty), fresh epoch, size, ttl ms (0: none). Returns {offset, epoch}.
_APPEND = (
    _PRELUDE
    + """
local ttl = tonumber(ARGV[5])
local epoch = stream_epoch(ARGV[3], ttl)
local offset = redis.call('INCR', KEYS[2])
local envelope = ARGV[2] .. string.format('"offset":%d,"epoch":"', offset) .. epoch .. '"}'
redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[4], string.format('%d-0', offset),
           'd', envelope, 't', string.format('%d', now_ms()))
if ttl > 0 then
  for i = 1, 3 do
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
redis.call('PUBLISH', ARGV[1], envelope)
return {offset, epoch}
"""
)

#: ARGV since offset, since epoch, fresh epoch, size, ttl ms (0: none).
#: Returns {recovered (0/1), offset, epoch, envelope...}.
_SINCE = (
    _PRELUDE
    + """
local ttl = tonumber(ARGV[5])
local epoch = stream_epoch(ARGV[3], ttl)
local offset = tonumber(redis.call('GET', KEYS[2]))
local from = tonumber(ARGV[1])
if ARGV[2] ~= epoch or from < 0 or from > offset or offset - from > tonumber(ARGV[4]) then
  return {0, offset, epoch}
end
local entries = redis.call('XRANGE', KEYS[3], string.format('%d-0', from + 1),
                           string.format('%d-0', offset))
if #entries ~= offset - from then
  return {0, offset, epoch}
end
local oldest = ttl > 0 and now_ms() - ttl or nil
local out = {1, offset, epoch}
for i, entry in ipairs(entries) do
  local fields = entry[2]  -- {'d', envelope, 't', ms}
  if oldest and tonumber(fields[4]) < oldest then
    return {0, offset, epoch}
  end
  out[i + 3] = fields[2]
end
return out
"""
)

#: ARGV fresh epoch, ttl ms (0: none). Returns {offset, epoch}.
_POSITION = (
    _PRELUDE
    + """
local epoch = stream_epoch(ARGV[1], tonumber(ARGV[2]))
return {tonumber(redis.call('GET', KEYS[2])), epoch}
"""
)


#: ARGV count, ttl ms (0: none). Returns the newest ``count`` envelopes, newest first; none
#: when the stream's past is lost (no epoch or no offset: the next append starts it anew).
#: Reads only: makes no epoch and no stream.
_LATEST = """
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0 then
  return {}
end
local ttl = tonumber(ARGV[2])
local oldest = nil
if ttl > 0 then
  local clock = redis.call('TIME')
  oldest = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) - ttl
end
local entries = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', ARGV[1])
local out = {}
for _, entry in ipairs(entries) do
  local fields = entry[2]  -- {'d', envelope, 't', ms}
  if not oldest or tonumber(fields[4]) >= oldest then
    out[#out + 1] = fields[2]
  end
end
return out
"""


class RedisHistory:
    """The history of every topic, in Redis, shared by the instances that use the same Redis
    and ``namespace``.

    Give it a redis-py asyncio client (its owner closes it), or make one with
    :meth:`from_url` (closed by :meth:`aclose`). Each method is one round trip; none retries.
    The policy (:class:`~crosswire.pubsub.history.History`) is passed to each call, as to
    ``MemoryHistory``: the same topic must get the same policy everywhere.
    """

    def __init__(self, redis: Redis | RedisCluster, *, namespace: str = "ws") -> None:
        self._redis = redis
        self._namespace = namespace
        self._owned = False
        #: On a cluster: keys in their channel's slot, and sharded publishes.
        self._sharded = isinstance(redis, RedisCluster)
        append = _APPEND.replace("'PUBLISH'", "'SPUBLISH'") if self._sharded else _APPEND
        self._append = redis.register_script(append)
        self._since = redis.register_script(_SINCE)
        self._position = redis.register_script(_POSITION)
        self._latest = redis.register_script(_LATEST)

    @classmethod
    def from_url(
        cls, url: str = "redis://127.0.0.1:6379/0", *, namespace: str = "ws", timeout: float = 2.0
    ) -> RedisHistory:
        """A history on a client of its own, made from a redis-py URL
        (``redis://[[user]:password@]host:port/db``, ``rediss://`` for TLS). A command that
        gets no answer within ``timeout`` seconds fails with ``BusError``; no command is
        retried, and the next one reconnects."""
        # A bounded pool that waits for a free connection (up to ``timeout``): a burst of
        # recoveries (a thousand clients coming back at once) queues instead of failing with
        # "Too many connections".
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=QUEUE_TIMEOUT,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        redis = Redis(connection_pool=pool)
        history = cls(redis, namespace=namespace)
        history._owned = True
        return history

    @classmethod
    def from_cluster_url(
        cls, url: str = "redis://127.0.0.1:7000", *, namespace: str = "ws", timeout: float = 2.0
    ) -> RedisHistory:
        """A history on a Redis Cluster client of its own, made from the redis-py URL of any
        node. As :meth:`from_url`: ``timeout`` bounds a command, and none is retried after a
        lost connection (redirections are followed: a redirected command was not run)."""
        cluster = RedisCluster.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=MAX_CONNECTIONS,
        )
        history = cls(cluster, namespace=namespace)
        history._owned = True
        return history

    def __repr__(self) -> str:
        if isinstance(self._redis, RedisCluster):
            return f"<RedisHistory cluster namespace={self._namespace!r}>"
        kwargs = self._redis.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return f"<RedisHistory {where} namespace={self._namespace!r}>"  # never the password

    def keys(self, topic: str) -> tuple[str, str, str]:
        """The Redis keys of ``topic``'s history: its epoch, its offset and its stream."""
        ns = self._namespace
        if self._sharded:
            tag, whole = hash_tag(channel_for(ns, "room", topic))
            tail = "" if whole else f":{topic}"
            key = f"{{{tag}}}{tail}"
            return f"{ns}:epoch:{key}", f"{ns}:offset:{key}", f"{ns}:history:{key}"
        return f"{ns}:epoch:{topic}", f"{ns}:offset:{topic}", f"{ns}:history:{topic}"

    async def append_and_publish(
        self, topic: str, channel: str, envelope: bytes, policy: History
    ) -> Position:
        """Keep ``envelope`` (a JSON object) as ``topic``'s next publication and publish it
        on ``channel``, atomically, with ``"offset"`` and ``"epoch"`` added to it; returns its
        position. Raises ``ValueError`` if ``envelope`` is not a JSON object, ``BusError`` if
        Redis failed (the publication may then have been kept and published, or not).
        Cancelling it leaves the same uncertainty, never a half-done append."""
        args = [channel, _head(envelope), _epoch(), policy.size, _ms(policy.ttl)]
        reply = await self._run(self._append, topic, args, "appending to")
        return Position(int(reply[0]), _text(reply[1]))

    async def since(self, topic: str, since: Position, policy: History) -> Recovery[bytes]:
        """Every publication of ``topic`` after ``since`` (its envelopes, with offset and
        epoch, oldest first), if the history still covers them: same epoch, none trimmed,
        none older than ``policy.ttl``. Otherwise ``recovered`` is False and nothing is
        returned. Raises ``BusError`` if Redis failed; safe to cancel."""
        args = [since.offset, since.epoch, _epoch(), policy.size, _ms(policy.ttl)]
        reply = await self._run(self._since, topic, args, "reading the history of")
        now = Position(int(reply[1]), _text(reply[2]))
        return Recovery(bool(reply[0]), [_raw(item) for item in reply[3:]], now)

    async def position(self, topic: str, policy: History) -> Position:
        """Where ``topic``'s stream is now (made, empty, if it has none yet: its epoch is
        given out from now on). Raises ``BusError`` if Redis failed; safe to cancel."""
        args = [_epoch(), _ms(policy.ttl)]
        reply = await self._run(self._position, topic, args, "reading the position of")
        return Position(int(reply[0]), _text(reply[1]))

    async def latest(self, topic: str, policy: History, limit: int) -> list[bytes]:
        """The last ``limit`` publications ``topic``'s history still holds (its envelopes,
        with offset and epoch, oldest first), none older than ``policy.ttl``. Makes no epoch
        and no stream. Raises ``BusError`` if Redis failed; safe to cancel."""
        if limit < 1:
            return []
        args = [limit, _ms(policy.ttl)]
        reply = await self._run(self._latest, topic, args, "reading the history of")
        return [_raw(item) for item in reversed(reply)]

    async def forget(self, topic: str) -> None:
        """Delete ``topic``'s history: its next position or publication starts a new epoch.
        Raises ``BusError`` if Redis failed."""
        try:
            await self._redis.delete(*self.keys(topic))
        except _LOST as exc:
            raise _bus_error("deleting the history of", topic, exc) from exc

    async def aclose(self) -> None:
        """Close the client if :meth:`from_url` made it (a client given is its owner's)."""
        if not self._owned:
            return
        await self._redis.aclose()
        if isinstance(self._redis, Redis):
            await self._redis.connection_pool.disconnect()  # (a pool given is not closed)

    async def _run(self, script: AsyncScript, topic: str, args: list[Any], doing: str) -> list[Any]:
        try:
            reply: list[Any] = await script(keys=self.keys(topic), args=args)
        except _LOST as exc:
            raise _bus_error(doing, topic, exc) from exc
        return reply


def _head(envelope: bytes) -> bytes:
    """The JSON object ``envelope`` without its closing brace, ready for more keys."""
    body = envelope.strip()
    if not (body.startswith(b"{") and body.endswith(b"}")):
        raise ValueError("a history envelope must be a JSON object")
    return body[:-1] + (b"," if body[1:-1].strip() else b"")


def _epoch() -> str:
    """A fresh epoch, used only if the topic has none."""
    return uuid.uuid4().hex[:12]


def _ms(ttl: float | None) -> int:
    return 0 if ttl is None else max(1, math.ceil(ttl * 1000))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _bus_error(doing: str, topic: str, exc: BaseException) -> BusError:
    return BusError(f"redis history: {doing} topic {topic!r} failed ({type(exc).__name__}: {exc})")
