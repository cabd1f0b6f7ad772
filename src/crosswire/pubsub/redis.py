"""Redis pub/sub as the bus between instances (``pip install crosswire[redis]``).

Two connections per instance, made with redis-py's asyncio client from one URL:

* **the subscriber**: one connection in subscribe mode. The channels it subscribes follow
  what the Hub wants (a room's channel from its first local member to its last); after the
  connection is lost it reconnects with backoff and subscribes them all again by itself. A
  ``PING`` every ``health_check_interval`` seconds finds a dead connection that no error
  reported.
* **the publisher**: publishes leave a bounded queue in order, in pipelined batches (one round
  trip per batch). While Redis is away they wait in the queue (up to ``max_queue``) and go
  out after the reconnect; a batch that was being written when the connection broke is
  dropped and reported, never sent twice: delivery is at most once.

Every failure goes to the Hub's ``on_error`` as a :class:`~crosswire.BusError`; nothing here
raises into the server. Redis Cluster is not supported yet (its sharded pub/sub is the path).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import BusError
from .backend import BusStats, Deliver, Ledger, Report

__all__ = ["RedisBackend"]

logger = logging.getLogger("crosswire.pubsub")

#: What a lost or refused connection raises.
_LOST = (RedisError, OSError, asyncio.TimeoutError)
#: Channels per SUBSCRIBE/UNSUBSCRIBE command.
_CHUNK = 500


class RedisBackend:
    """A :class:`~crosswire.pubsub.Backend` on a Redis server.

    ``url`` is a redis-py URL (``redis://[:password@]host:port/db``, ``rediss://`` for TLS).
    ``max_queue`` bounds the messages waiting to be published (past it, publishes are dropped
    and reported); ``max_batch`` is the most sent in one round trip. ``reconnect_delay`` is
    the first and the longest wait between two attempts to reconnect (doubling, jittered).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        max_queue: int = 100_000,
        max_batch: int = 1_000,
        health_check_interval: float = 5.0,
        reconnect_delay: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        self._pool = ConnectionPool.from_url(url)  # only to make connections with its settings
        self._max_queue = max_queue
        self._max_batch = max_batch
        self._health_check_interval = health_check_interval
        self._reconnect_delay = reconnect_delay
        self._deliver: Deliver | None = None
        self._report: Report | None = None
        self._wanted: set[str] = set()  # channels the Hub wants
        self._sent: set[str] = set()  # channels SUBSCRIBEd on the current connection
        self._active: set[str] = set()  # channels Redis confirmed
        #: SUBSCRIBE/UNSUBSCRIBE confirmations still due on the current connection.
        self._unconfirmed = 0
        self._queue: deque[tuple[int, str, bytes]] = deque()
        #: The batch being written, until Redis answered it.
        self._in_flight: list[tuple[int, str, bytes]] = []
        self._ledger = Ledger()
        self._subscriptions_changed = asyncio.Event()
        self._queue_filled = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def __repr__(self) -> str:
        kwargs = self._pool.connection_kwargs  # never the password
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return f"<RedisBackend {where} db={kwargs.get('db', 0)}>"

    # -- the Backend protocol --------------------------------------------------------------

    def bind(self, deliver: Deliver, report: Report) -> None:
        self._deliver = deliver
        self._report = report

    async def start(self) -> None:
        """Start the connections' tasks now (they connect in the background)."""
        self._start()

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
        number = self._ledger.accept()
        if self._closed or len(self._queue) >= self._max_queue:
            self._ledger.drop(number)
            self._fail("the publish queue is full or closed; a message was dropped")
            return number
        self._queue.append((number, channel, message))
        self._queue_filled.set()
        self._start()
        return number

    async def flush(self, *, through: int | None = None) -> None:
        """Wait until every message published so far (or up to number ``through``) is on
        Redis and every subscription made so far is confirmed by Redis. While Redis is away
        this waits; safe to cancel."""
        self._start()
        await self._ledger.flush(self._in_line, through=through)

    def _in_line(self) -> bool:
        """Whether Redis has confirmed exactly the channels wanted, with nothing pending."""
        return self._closed or (self._unconfirmed == 0 and self._active == self._wanted)

    async def aclose(self) -> None:
        """Stop both connections, within about a second. Messages not yet on Redis (queued, or
        in a batch Redis has not answered: it may have got them) are dropped and reported.
        Idempotent."""
        self._closed = True
        self._queue_filled.set()
        self._subscriptions_changed.set()
        tasks, self._tasks = self._tasks, []
        await _stop(tasks)
        lost = [number for number, _, _ in (*self._in_flight, *self._queue)]
        self._in_flight = []
        self._queue.clear()
        # Everything accepted is settled now; what is published from here on is dropped.
        self._ledger.settle_through(self._ledger.published, dropped=lost)
        if lost:
            self._fail(f"closed with {len(lost)} messages not on Redis yet; dropped")
        self._wanted.clear()
        self._active.clear()
        await self._pool.disconnect()

    def stats(self) -> BusStats:
        """Messages published, dropped and queued so far (reconnects are not counted yet)."""
        ledger = self._ledger
        return BusStats(ledger.published, ledger.dropped, ledger.waiting, 0)

    # -- background work -------------------------------------------------------------------

    def _start(self) -> None:
        """Start the two connections' tasks, once, when first needed (inside the loop)."""
        if self._tasks or self._closed:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._subscriber(), name="crosswire-redis-subscriber"),
            loop.create_task(self._publisher(), name="crosswire-redis-publisher"),
        ]

    async def _subscriber(self) -> None:
        """Keep one subscriber connection, reconnecting and resubscribing after every loss."""
        delay = self._reconnect_delay[0]
        while not self._closed:
            conn = self._connection()
            try:
                await conn.connect()  # type: ignore[no-untyped-call]
                delay = self._reconnect_delay[0]
                await self._listen(conn)
            except _LOST as exc:
                self._fail("the subscriber connection to Redis failed; reconnecting", exc)
            finally:
                self._sent.clear()
                self._active.clear()
                self._unconfirmed = 0
                await conn.disconnect(nowait=True)
            if self._closed:
                return
            await asyncio.sleep(_jitter(delay))
            delay = min(delay * 2, self._reconnect_delay[1])

    async def _listen(self, conn: AbstractConnection) -> None:
        """Read one connection's messages while its subscriptions follow ``_wanted``; returns
        (raises) when the connection fails."""
        stopped = asyncio.Event()
        control = asyncio.create_task(self._control(conn, stopped))
        reader = asyncio.create_task(self._read(conn))
        try:
            done, _ = await asyncio.wait({control, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Told and cancelled: the control loop also ends on the flag, so that a
            # cancellation lost inside a library call cannot keep it alive.
            stopped.set()
            self._subscriptions_changed.set()
            for task in (control, reader):
                task.cancel()
            await asyncio.wait({control, reader})
        for task in done:
            task.result()  # the failure that ended the connection

    async def _control(self, conn: AbstractConnection, stopped: asyncio.Event) -> None:
        """Send SUBSCRIBE/UNSUBSCRIBE for what changed, and a PING every health check."""
        loop = asyncio.get_running_loop()
        changed = self._subscriptions_changed
        ping_due = False
        timer: asyncio.TimerHandle | None = None

        def tick() -> None:
            nonlocal ping_due, timer
            ping_due = True
            changed.set()
            timer = loop.call_later(self._health_check_interval, tick)

        # A timer, not asyncio.timeout around the wait: a timeout that expires as the task is
        # cancelled must not turn the cancellation into one more ping.
        timer = loop.call_later(self._health_check_interval, tick)
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
                if ping_due:
                    ping_due = False
                    await conn.send_command("PING", check_health=False)
                await changed.wait()
        finally:
            timer.cancel()

    async def _read(self, conn: AbstractConnection) -> None:
        # Pings keep traffic flowing: silence this long means the connection is dead.
        timeout = 2 * self._health_check_interval + 1
        deliver = self._deliver
        while True:
            # push_request: in RESP3 pub/sub messages are pushes, returned only when asked for.
            response: Any = await conn.read_response(timeout=timeout, push_request=True)
            if response is None:
                raise RedisTimeoutError(f"no answer from Redis in {timeout:.0f} s")
            if not isinstance(response, list):  # PONG outside subscribe mode
                continue
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

    def _confirmed(self) -> None:
        self._unconfirmed = max(0, self._unconfirmed - 1)
        self._ledger.wake()

    async def _publisher(self) -> None:
        """Send the queue in order, one pipelined batch per round trip."""
        delay = self._reconnect_delay[0]
        conn: AbstractConnection | None = None
        try:
            # Ends on the flag as well as on cancellation: a cancellation can be lost inside
            # redis-py (asyncio.wait_for on Python 3.11 swallows one that arrives as the
            # write completes), and aclose must not wait forever.
            while not self._closed:
                if not self._queue:
                    self._queue_filled.clear()
                    await self._queue_filled.wait()
                    continue
                if conn is None:
                    conn = self._connection()
                    try:
                        await conn.connect()  # type: ignore[no-untyped-call]
                    except _LOST as exc:
                        self._fail("cannot connect to Redis to publish; retrying", exc)
                        await conn.disconnect(nowait=True)
                        conn = None
                        await asyncio.sleep(_jitter(delay))
                        delay = min(delay * 2, self._reconnect_delay[1])
                        continue
                    delay = self._reconnect_delay[0]
                count = min(len(self._queue), self._max_batch)
                batch = self._in_flight = [self._queue.popleft() for _ in range(count)]
                try:
                    packed = conn.pack_commands([("PUBLISH", ch, msg) for _, ch, msg in batch])
                    await conn.send_packed_command(packed, check_health=False)
                    for _ in batch:
                        await conn.read_response()
                except _LOST as exc:
                    self._in_flight = []
                    self._ledger.settle_through(
                        batch[-1][0], dropped=[number for number, _, _ in batch]
                    )
                    self._fail(
                        f"lost the connection to Redis while publishing; "
                        f"{len(batch)} messages dropped",
                        exc,
                    )
                    await conn.disconnect(nowait=True)
                    conn = None
                    continue
                if self._in_flight is batch:  # (aclose settles it if it got there first)
                    self._in_flight = []
                    self._ledger.settle_through(batch[-1][0])
        finally:
            if conn is not None:
                await conn.disconnect(nowait=True)

    def _connection(self) -> AbstractConnection:
        """A new connection with the URL's settings (not pooled: each has one job)."""
        conn: AbstractConnection = self._pool.make_connection()  # type: ignore[no-untyped-call]
        return conn

    def _fail(self, what: str, exc: BaseException | None = None) -> None:
        error = BusError(f"redis: {what}" + (f" ({exc})" if exc is not None else ""))
        error.__cause__ = exc
        if self._report is not None:
            self._report(error)
        else:
            logger.warning("%s", error)


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
