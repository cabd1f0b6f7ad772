"""Redis pub/sub as the bus between instances (``pip install crosswire[redis]``).

Two connections per instance, made with redis-py's asyncio client from one URL:

* **the publisher**, made by :meth:`RedisBackend.start` (or the first publish or subscribe).
  Publishes leave a bounded queue in order, in pipelined batches (one round trip per batch).
  A batch is written only to a connection known to be good: one that Redis closed or reset
  (Redis restarted, or closed it as idle under its ``timeout``) is never written to, and one
  that sat idle for half a second or more is first checked with a ``PING``; a bad one is
  replaced, the batch waiting meanwhile: a publish once Redis is back is never lost. While
  Redis is away publishes wait in the queue (up to ``max_queue``; past it new ones are
  dropped and reported) and go out after the reconnect. Besides those, only a batch being
  written as the connection breaks (Redis died during the write) is dropped and reported,
  never sent twice: delivery is at most once.
* **the subscriber**, made when the Hub first wants a channel: one connection in subscribe
  mode, whose channels follow what the Hub wants (a room's channel from its first local
  member to its last). After a loss it reconnects with backoff and subscribes them all again
  by itself. A ``PING`` every ``health_check_interval`` seconds finds a dead connection that
  no error reported.

What the log says (``crosswire.pubsub``, see :mod:`crosswire.pubsub.outage`): at start, INFO
``bus reachable at host:port``, or an ERROR that it is not; when Redis goes away, one ERROR
(not one per attempt to reconnect: those are DEBUG, with a WARNING summary every minute while
it lasts), and INFO when it is back (``reconnected to Redis at host:port after 3.2 s; 5
messages were queued``). The ERRORs, and the drops, are :class:`~crosswire.BusError` reports,
which go to the Hub's ``on_error`` (logged without one); nothing here raises into the server.
Never a password. :meth:`RedisBackend.stats` counts messages published, dropped and queued,
and reconnects.

On a Redis Cluster, use :class:`~crosswire.pubsub.redis_cluster.RedisClusterBackend` (sharded
pub/sub).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:  # the sentinel redis-py's hiredis parser gets for "no whole reply yet"
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
except ImportError:  # pragma: no cover - another redis-py: every reply through read_response
    _NOT_ENOUGH_DATA = None

from ..errors import BusError
from .backend import BusStats, Deliver, Report
from .outage import Outage
from .outbox import Outbox

if TYPE_CHECKING:
    from .redis_history import RedisHistory
    from .redis_presence import RedisPresence

__all__ = ["RedisBackend"]

logger = logging.getLogger("crosswire.pubsub")

#: What a lost or refused connection raises.
_LOST = (RedisError, OSError, asyncio.TimeoutError)
#: Channels per SUBSCRIBE/UNSUBSCRIBE command.
_CHUNK = 500
#: Seconds a publisher connection may sit idle before a PING checks it. Redis closes a
#: connection idle for more than ``timeout`` whole seconds (1 at least): one idle for less
#: than half a second cannot be closed under our write.
_IDLE_PING = 0.5
#: Seconds ``start()`` waits for Redis to answer before it says that Redis does not.
_START_WAIT = 5.0


class RedisBackend:
    """A :class:`~crosswire.pubsub.Backend` on a Redis server.

    ``url`` is a redis-py URL (``redis://[[user]:password@]host:port/db``, ``rediss://`` for
    TLS). ``max_queue`` bounds the messages waiting to be published (past it, new publishes
    are dropped and reported); ``max_batch`` is the most sent in one round trip.
    ``health_check_interval`` is the seconds between two PINGs of the subscriber connection.
    ``reconnect_delay`` is the first and the longest wait between two attempts to reconnect
    (doubling, jittered). ``presence_heartbeat`` and ``presence_ttl`` are the presence
    store's (:meth:`presence`): a crashed instance's entries expire ``presence_ttl`` seconds
    after its last heartbeat.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
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
        self._pool = ConnectionPool.from_url(url)  # only to make connections with its settings
        self._health_check_interval = health_check_interval
        #: Seconds Redis has to answer a PING before the connection counts as dead.
        self._answer_within = 2 * health_check_interval + 1
        self._reconnect_delay = reconnect_delay
        self._deliver: Deliver | None = None
        self._report: Report | None = None
        self._wanted: set[str] = set()  # channels the Hub wants
        self._sent: set[str] = set()  # channels SUBSCRIBEd on the current connection
        self._active: set[str] = set()  # channels Redis confirmed
        #: SUBSCRIBE/UNSUBSCRIBE confirmations still due on the current connection.
        self._unconfirmed = 0
        #: What was published and is not on Redis yet.
        self._outbox = Outbox(max_queue, max_batch, self._fail, "Redis")
        #: When the publisher connection last carried something (loop time).
        self._publisher_used = 0.0
        #: ``host:port`` (or the socket's path) of the Redis server: what the log names.
        self._where = _where(self._pool.connection_kwargs)
        self._outage = Outage("Redis", self._where, self._fail)
        self._known = asyncio.Event()  # the first attempt to connect has ended, either way
        self._subscriptions_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def history(self, namespace: str) -> RedisHistory:
        """A store of topic history on the same Redis (a client of its own): what a Hub on
        this backend keeps its topics' history in, shared by every instance."""
        from .redis_history import RedisHistory

        return RedisHistory.from_url(self._url, namespace=namespace)

    def presence(self, namespace: str, instance: str) -> RedisPresence:
        """A presence store on the same Redis (a client of its own), for the Hub of
        ``instance``: shared by every instance, a crashed one's entries expiring."""
        from .redis_presence import RedisPresence

        heartbeat, ttl = self._presence_times
        return RedisPresence(
            self._url, instance=instance, namespace=namespace, heartbeat=heartbeat, ttl=ttl
        )

    def _reopen(self) -> None:
        """Open again after :meth:`aclose`, maybe in another event loop: the events are made
        anew (an asyncio primitive belongs to the loop that first waited on it)."""
        self._closed = False
        self._known = asyncio.Event()
        self._subscriptions_changed = asyncio.Event()
        self._outbox.open()

    def __repr__(self) -> str:
        db = self._pool.connection_kwargs.get("db", 0)
        return f"<RedisBackend {self._where} db={db}>"  # never the password

    # -- the Backend protocol --------------------------------------------------------------

    def bind(self, deliver: Deliver, report: Report) -> None:
        self._deliver = deliver
        self._report = report

    async def start(self) -> None:
        """Connect now and log whether Redis is reachable; returns once it answered or
        refused, or after 5 s without an answer (it keeps trying). Idempotent; safe to
        cancel (the connections are made in the background all the same). After
        :meth:`aclose`, opens the backend again."""
        if self._closed:
            self._reopen()
        self._start()
        if self._known.is_set():
            return
        try:
            async with asyncio.timeout(_START_WAIT):
                await self._known.wait()
        except TimeoutError:
            self._attempt_failed(TimeoutError(f"no answer in {_START_WAIT:.0f} s"))

    def subscribe(self, channel: str) -> None:
        if self._closed or channel in self._wanted:
            return
        self._wanted.add(channel)
        self._subscriptions_changed.set()
        self._start()

    def unsubscribe(self, channel: str) -> None:
        if channel in self._wanted:
            self._wanted.discard(channel)
            self._subscriptions_changed.set()

    def publish(self, channel: str, message: bytes) -> int:
        number = self._outbox.put(channel, message, closed=self._closed)
        self._start()
        return number

    async def flush(self, *, through: int | None = None) -> None:
        """Wait until every message published so far (or up to number ``through``) is on
        Redis and every subscription made so far is confirmed by Redis. While Redis is away
        this waits; safe to cancel."""
        self._start()
        await self._outbox.ledger.flush(self._in_line, through=through)

    def _in_line(self) -> bool:
        """Whether Redis has confirmed exactly the channels wanted, with nothing pending."""
        return self._closed or (self._unconfirmed == 0 and self._active == self._wanted)

    async def aclose(self) -> None:
        """Stop both connections, within about a second. Messages not yet on Redis (queued, or
        in a batch Redis has not answered: it may have got them) are dropped and reported.
        Idempotent."""
        self._closed = True
        self._known.set()
        self._outbox.filled.set()
        self._subscriptions_changed.set()
        tasks, self._tasks = self._tasks, []
        await _stop(tasks)
        # Everything accepted is settled now; what is published from here on is dropped.
        lost = self._outbox.close()
        if lost:
            self._fail(f"closed with {lost} messages not on Redis yet; dropped")
        self._wanted.clear()
        self._active.clear()
        await self._pool.disconnect()

    def stats(self) -> BusStats:
        """Messages published, dropped and queued so far, and how many times Redis came back
        after an outage."""
        return self._outbox.stats(self._outage.reconnects)

    # -- connecting ------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the two connections' tasks, once, when first needed (inside the loop)."""
        if self._tasks or self._closed:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._subscriber(), name="crosswire-redis-subscriber"),
            loop.create_task(self._publisher(), name="crosswire-redis-publisher"),
        ]

    async def _connect(self) -> AbstractConnection | None:
        """A new connection, attempted again with backoff until one is made; None once the
        backend is closed."""
        delay = self._reconnect_delay[0]
        while not self._closed:
            # Not pooled: each connection has one job.
            conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
            except _LOST as exc:
                await conn.disconnect(nowait=True)
                self._attempt_failed(exc)
                await asyncio.sleep(_jitter(delay))
                delay = min(delay * 2, self._reconnect_delay[1])
                continue
            queued, dropped = len(self._outbox.queue), self._outbox.ledger.dropped
            self._outage.connected(self._now(), queued=queued, dropped=dropped)
            self._known.set()
            return conn
        return None

    def _attempt_failed(self, exc: BaseException) -> None:
        self._outage.failed(
            self._now(),
            f"Redis at {self._where} is not reachable ({exc}); retrying, and publishes wait "
            f"in the queue (up to {self._outbox.max_queue} messages)",
            exc,
            queued=len(self._outbox.queue),
            dropped=self._outbox.ledger.dropped,
        )
        self._known.set()

    # -- the subscriber ----------------------------------------------------------------------

    async def _subscriber(self) -> None:
        """Keep one subscriber connection while channels are wanted, made again after every
        loss, with every wanted channel subscribed again."""
        while not self._closed:
            if not self._wanted:  # nothing to subscribe: no connection to keep
                self._subscriptions_changed.clear()
                await self._subscriptions_changed.wait()
                continue
            conn = await self._connect()
            if conn is None:
                return
            try:
                await self._listen(conn)
            except _LOST as exc:
                if not self._subscriber_lost(exc):
                    continue  # a connection without channels, closed while idle: nothing missed
            finally:
                self._sent.clear()
                self._active.clear()
                self._unconfirmed = 0
                await conn.disconnect(nowait=True)
            await asyncio.sleep(_jitter(self._reconnect_delay[0]))

    def _subscriber_lost(self, exc: BaseException) -> bool:
        """Say that the subscriber connection was lost; False if that did not matter (it had
        no channels: Redis closes such a connection when idle, and nothing was missed)."""
        if not (self._sent or self._active):
            logger.debug("Redis at %s closed the idle subscriber connection (%s)", self._where, exc)
            return False
        self._outage.failed(
            self._now(),
            f"lost the connection to Redis at {self._where} ({exc}); reconnecting, and until "
            "then this instance misses what is published on Redis",
            exc,
            queued=len(self._outbox.queue),
            dropped=self._outbox.ledger.dropped,
        )
        return True

    async def _listen(self, conn: AbstractConnection) -> None:
        """Read one connection's messages while its subscriptions follow ``_wanted``; returns
        (raises) when the connection fails."""
        stopped = asyncio.Event()
        await _both(
            self._control(conn, stopped), self._read(conn), stopped, self._subscriptions_changed
        )

    async def _control(self, conn: AbstractConnection, stopped: asyncio.Event) -> None:
        """Send SUBSCRIBE/UNSUBSCRIBE for what changed, and a PING every health check."""
        changed = self._subscriptions_changed
        pings = PingTimer(self._health_check_interval, changed)
        try:
            while not stopped.is_set():
                changed.clear()
                added = sorted(self._wanted - self._sent)
                removed = sorted(self._sent - self._wanted)
                for i in range(0, len(added), _CHUNK):
                    chunk = added[i : i + _CHUNK]
                    self._sent.update(chunk)
                    self._unconfirmed += len(chunk)
                    await conn.send_command("SUBSCRIBE", *chunk, check_health=False)
                for i in range(0, len(removed), _CHUNK):
                    chunk = removed[i : i + _CHUNK]
                    self._sent.difference_update(chunk)
                    self._unconfirmed += len(chunk)
                    await conn.send_command("UNSUBSCRIBE", *chunk, check_health=False)
                if pings.take():
                    await conn.send_command("PING", check_health=False)
                await changed.wait()
        finally:
            pings.cancel()

    async def _read(self, conn: AbstractConnection) -> None:
        # Pings keep traffic flowing: silence this long means the connection is dead.
        timeout = self._answer_within
        deliver = self._deliver
        while True:
            response: Any = await _read_reply(conn, timeout)
            while response is not _NO_REPLY:  # this one, then those already read (a burst)
                if isinstance(response, list):  # (not a PONG outside subscribe mode)
                    kind = response[0]
                    if kind == b"message":
                        if deliver is not None:
                            try:
                                deliver(response[1].decode(), response[2], _buffered(conn))
                            except Exception:
                                logger.exception("delivering a message from Redis failed")
                    elif kind == b"subscribe":
                        self._active.add(response[1].decode())
                        self._confirmed()
                    elif kind == b"unsubscribe":
                        self._active.discard(response[1].decode())
                        self._confirmed()
                response = await _read_buffered(conn)

    def _confirmed(self) -> None:
        self._unconfirmed = max(0, self._unconfirmed - 1)
        self._outbox.ledger.wake()

    # -- the publisher -----------------------------------------------------------------------

    async def _publisher(self) -> None:
        """Send the queue in order, one pipelined batch per round trip, each on a connection
        known to be good."""
        conn: AbstractConnection | None = None
        try:
            # Ends on the flag as well as on cancellation: a cancellation can be lost inside
            # redis-py (asyncio.wait_for on Python 3.11 swallows one that arrives as the
            # write completes), and aclose must not wait forever.
            while not self._closed:
                if conn is None:
                    conn = await self._connect()
                    self._publisher_used = self._now()
                elif not self._outbox.queue:
                    self._outbox.filled.clear()
                    await self._outbox.filled.wait()
                elif not await self._still_good(conn) or not await self._send_batch(conn):
                    await conn.disconnect(nowait=True)
                    conn = None
        finally:
            if conn is not None:
                await conn.disconnect(nowait=True)

    async def _still_good(self, conn: AbstractConnection) -> bool:
        """Whether ``conn`` can take a batch: Redis has not closed or reset it, and if it sat
        idle long enough for Redis to close it as idle, it answers a PING. Nothing of the
        queue is written to a connection that fails this."""
        if _closed_by_redis(conn):
            logger.debug("Redis at %s closed the publisher connection; making another", self._where)
            return False
        if self._now() - self._publisher_used < _IDLE_PING:
            return True
        self._publisher_used = self._now()
        try:
            await conn.send_command("PING", check_health=False)
            pong = await conn.read_response(timeout=self._answer_within)
        except _LOST as exc:
            pong = exc
        if pong in (b"PONG", "PONG"):
            return True
        why = pong if pong is not None else f"no answer in {self._answer_within:.0f} s"
        logger.debug("the idle publisher connection failed a PING (%s); making another", why)
        return False

    async def _send_batch(self, conn: AbstractConnection) -> bool:
        """Write the next batch and read Redis's answers; False if the connection broke
        meanwhile (the batch is then dropped and reported: Redis may have got some of it)."""
        batch = self._outbox.take()
        self._publisher_used = self._now()
        try:
            packed = conn.pack_commands([("PUBLISH", ch, msg) for _, ch, msg in batch])
            await conn.send_packed_command(packed, check_health=False)
            for _ in batch:
                await _next_reply(conn)
        except _LOST as exc:
            self._outbox.settle(batch, dropped=[number for number, _, _ in batch])
            self._fail(
                f"lost the connection to Redis at {self._where} while publishing ({exc}); "
                f"{len(batch)} messages dropped",
                exc,
            )
            return False
        self._outbox.settle(batch)  # (unless aclose settled it first)
        return True

    # -- helpers -----------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _fail(self, what: str, exc: BaseException | None = None) -> None:
        _report_failure(self._report, f"redis: {what}", exc)


def _where(kwargs: dict[str, Any]) -> str:
    """Where a connection made with ``kwargs`` goes, without the credentials."""
    return str(kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}")


def _closed_by_redis(conn: AbstractConnection) -> bool:
    """Whether Redis closed or reset ``conn``: its stream saw the end or an error, so nothing
    written to it would arrive. asyncio tells only the stream (redis-py's, private) at once;
    the kernel would accept the write and lose it. False when it cannot tell (a redis-py
    without those attributes): the PING before an idle connection's next batch decides."""
    if not (hasattr(conn, "_reader") and hasattr(conn, "_writer")):
        return False
    reader, writer = conn._reader, conn._writer
    if reader is None or writer is None:  # redis-py disconnected it
        return True
    return bool(reader.at_eof() or reader.exception() is not None or writer.transport.is_closing())


def _report_failure(report: Report | None, what: str, exc: BaseException | None) -> None:
    """A bus backend's failure, as a BusError caused by ``exc``: to ``report`` (the Hub's
    ``on_error``), or logged when the backend is not bound to a Hub."""
    error = BusError(what)
    error.__cause__ = exc
    if report is not None:
        report(error)
    else:
        logger.warning("%s", error)


class PingTimer:
    """A subscriber connection's health check: every ``interval`` seconds it marks a PING due
    and sets ``changed``, the control loop's cue (:meth:`take` says whether one is due).

    A timer, not ``asyncio.timeout`` around the control loop's wait: a timeout that expires
    as the task is cancelled must not turn the cancellation into one more ping."""

    __slots__ = ("_changed", "_due", "_handle", "_interval", "_loop")

    def __init__(self, interval: float, changed: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._interval = interval
        self._changed = changed
        self._due = False
        self._handle = self._loop.call_later(interval, self._tick)

    def _tick(self) -> None:
        self._due = True
        self._changed.set()
        self._handle = self._loop.call_later(self._interval, self._tick)

    def take(self) -> bool:
        """Whether a PING is due (and it is not any more)."""
        due, self._due = self._due, False
        return due

    def cancel(self) -> None:
        self._handle.cancel()


async def _both(
    control: Coroutine[Any, Any, None],
    reader: Coroutine[Any, Any, None],
    stopped: asyncio.Event,
    changed: asyncio.Event,
) -> None:
    """Run a subscriber connection's control loop and its reader until either ends, then stop
    both; raises what ended it (the connection's failure)."""
    tasks = {asyncio.create_task(control), asyncio.create_task(reader)}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Told and cancelled: the control loop also ends on the flag, so that a cancellation
        # lost inside a library call cannot keep it alive.
        stopped.set()
        changed.set()
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
    for task in done:
        task.result()


#: What :func:`_read_buffered` returns when no whole reply is there.
_NO_REPLY: Any = object()


#: The pub/sub replies a subscriber connection reads (RESP3 sends them as pushes).
_PUBSUB = frozenset(
    {b"message", b"smessage", b"subscribe", b"unsubscribe", b"ssubscribe", b"sunsubscribe"}
)


async def _read_reply(conn: AbstractConnection, within: float) -> Any:
    """The next reply on a subscriber connection, read as redis-py reads it (``push_request``:
    in RESP3 pub/sub messages are pushes, returned only when asked for); raises
    ``RedisTimeoutError`` when Redis sends nothing for ``within`` seconds.

    redis-py's ``read_response`` returns None when its timeout expires, and also right after a
    RESP3 push that is not pub/sub (a client-tracking ``invalidate``, a maintenance
    notification), which it hands to its own handler. A None before the deadline is such a
    push, not silence: the read goes on, until the same deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    response = await conn.read_response(timeout=within, push_request=True)
    while response is None:
        left = deadline - loop.time()
        if left <= 0:
            raise RedisTimeoutError(f"no answer from Redis in {within:.0f} s")
        response = await conn.read_response(timeout=left, push_request=True)
    return response


async def _read_buffered(conn: AbstractConnection) -> Any:
    """The next reply that the connection's hiredis parser already holds whole, as redis-py's
    ``read_response(push_request=True)`` would return it (error replies raised), or
    :data:`_NO_REPLY`.

    A burst of pub/sub messages arrives in one read from the socket: taking the rest from the
    parser here skips most of redis-py's per-reply path (a timeout, a fork check, the push
    handler's logger lookup), which is most of what a subscribing instance spends per
    message. A push that is not pub/sub (a client-tracking ``invalidate``, a maintenance
    notification) still goes to redis-py's handler, as ``read_response`` would send it, and
    the next reply is taken. Reads redis-py's private parser state: when it is not what this
    expects (another parser, another redis-py), :data:`_NO_REPLY`, and ``read_response``
    reads every reply.
    """
    parser: Any = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    if reader is None or _NOT_ENOUGH_DATA is None or not getattr(parser, "_connected", False):
        return _NO_REPLY
    push = getattr(parser, "_hiredis_PushNotificationType", None)
    while True:
        reply = reader.gets()
        if reply is _NOT_ENOUGH_DATA:
            return _NO_REPLY
        if push is None or not isinstance(reply, push) or (reply and reply[0] in _PUBSUB):
            break
        await parser.handle_push_response(reply)  # not ours: redis-py's
    if isinstance(reply, RedisConnectionError):
        raise reply
    if isinstance(reply, list) and reply and isinstance(reply[0], RedisConnectionError):
        raise reply[0]
    if isinstance(reply, ResponseError):
        raise reply
    return reply


async def _next_reply(conn: AbstractConnection) -> Any:
    """The next reply: from the parser's buffer when it holds it whole (a pipeline's answers
    come in a few reads), else read as redis-py reads it. Error replies are raised."""
    reply = await _read_buffered(conn)
    if reply is _NO_REPLY:
        reply = await conn.read_response()
    return reply


def _buffered(conn: AbstractConnection) -> bool:
    """Whether the connection's parser holds more of what Redis sent (more messages to
    deliver at once); False when it cannot tell. Reads redis-py's private parser state."""
    parser = getattr(conn, "_parser", None)
    reader = getattr(parser, "_reader", None)
    if reader is not None and hasattr(reader, "has_data"):  # hiredis
        return bool(reader.has_data())
    buffer = getattr(parser, "_buffer", None)
    return isinstance(buffer, bytes) and getattr(parser, "_pos", 0) < len(buffer)


async def _stop(tasks: list[asyncio.Task[None]], patience: float = 1.0) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again while they run (a library call
    may lose a cancellation); gives up on them after ``patience`` seconds."""
    deadline = asyncio.get_running_loop().time() + patience
    pending = set(tasks)
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.05)
        if pending and asyncio.get_running_loop().time() > deadline:
            logger.warning("redis: %d background tasks did not stop; leaving them", len(pending))
            return


def _jitter(delay: float) -> float:
    return delay * (0.5 + random.random() / 2)
