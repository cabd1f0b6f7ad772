"""Limits that protect a server from its clients. Pure values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigurationError

__all__ = ["Limits", "message_size", "surely_within"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Per-connection limits, applied the same way on every server adapter.

    max_message_size:
        Largest incoming message in bytes, measured after decompression and reassembly of
        fragments. A larger message closes the connection with 1009; inflating a compressed
        one stops at the limit. (The websockets server also refuses a message of more than
        4,096 fragments with 1009: its own cap, see docs/servers.md.)
    send_buffer_limit:
        Bytes that may wait to be written to one peer (not yet taken by the kernel) behind
        the largest message written since its buffer last drained. A peer whose buffer
        passes it (a client that stopped reading) is closed with 1013; sends to other peers
        never wait on it. One message larger than the limit therefore does not by itself
        close a client, reading or not; what is queued behind it does. (Counted from the
        moment the buffer passes the server's high-water mark, at most 64 KiB: what was
        already buffered then counts as part of that largest write, so a client that stops
        reading is closed with at most the limit plus the largest message plus that mark
        waiting.) Control frames the
        server writes on its own count too: pongs to a client that pings and never reads
        close it the same way (websockets, picows, uvicorn; aiohttp and hypercorn stop
        reading from it instead, see docs/servers.md).
    ping_interval, ping_timeout:
        Keepalive: the server pings an idle client every ``ping_interval`` seconds and drops it
        when no pong arrives within ``ping_timeout``. ``None`` disables. ASGI servers apply
        their own setting (uvicorn ``--ws-ping-interval``), as ASGI has no ping.
    close_timeout:
        Seconds to wait for the client's close frame before dropping the TCP connection.
    open_timeout:
        Seconds a new TCP connection has to finish its HTTP request (the WebSocket handshake,
        or a plain request to the ``http`` handler). A client that sends part of a request
        and then nothing is dropped when it runs out, so that half-open connections cannot
        use up the server's file descriptors. Applied by every server crosswire starts
        (``crosswire.start``/``serve``); a server you run yourself has its own setting
        (docs/servers.md).
    inbound_queue:
        Messages that may wait for an ``async`` message hook; past it the server stops reading
        from that socket until the hook catches up (TCP backpressure, nothing is dropped). The
        messages of the socket read that filled the queue still join it (picows hands over
        every frame of a read), so the bound is this plus one read's worth.
    coalesce_writes:
        When several messages arrive in one socket read, send the first reply at once and
        hold the connection's writes until the rest are handled, so that their replies leave
        in one TCP write; a burst of publishes reaches each subscriber the same way (Linux
        ``TCP_CORK`` on websockets, aiohttp and ``server="uvicorn"``; picows' frames are
        held in user space and written in one call). Nothing waits on a timer.
        Cheaper for clients that pipeline; turn it off to have every reply leave the moment
        it is sent.
    max_topics:
        Topics (rooms) one connection may be subscribed to at once, whichever layer subscribes
        it: ``peer.subscribe``, a router's ``ctx.subscribe``, a rooms server's ``join`` (its
        own room and default rooms count too). One more raises
        :class:`~crosswire.WsError` ``RESOURCE_EXHAUSTED`` in the code that subscribes, and
        leaves the connection's topics as they were; each layer answers its client as its
        protocol documents. Each subscription costs memory in the Hub and, with a bus, a
        channel on it.
    max_connections, max_connections_per_address:
        Open connections this server (App) accepts at once, in all and from one client
        address (``App.client_address``: the socket's, or what a trusted proxy says). The
        handshake over a limit is refused before the WebSocket opens: 503 for the first, 429
        for the second, each with ``Retry-After: connection_retry_after``. None: no limit.
    max_connections_per_user:
        Open connections of one user on this server (identified by ``peer.identify`` or
        in-band authentication). The user is known only after the WebSocket opened, so the
        connection over the limit is closed with 1013 ``too many connections for this user``.
    connection_retry_after:
        Seconds the refusals above tell the client to wait (``Retry-After``).
    """

    max_message_size: int = 1024 * 1024
    send_buffer_limit: int = 1024 * 1024
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float = 5.0
    open_timeout: float = 10.0
    inbound_queue: int = 256
    coalesce_writes: bool = True
    max_topics: int = 2048
    max_connections: int | None = None
    max_connections_per_address: int | None = None
    max_connections_per_user: int | None = None
    connection_retry_after: int = 5

    def __post_init__(self) -> None:
        for name in ("max_message_size", "send_buffer_limit", "inbound_queue", "max_topics"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigurationError(f"Limits.{name} must be a positive int, got {value!r}")
        for name in (
            "max_connections",
            "max_connections_per_address",
            "max_connections_per_user",
        ):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigurationError(
                    f"Limits.{name} must be a positive int or None, got {value!r}"
                )
        if not isinstance(self.connection_retry_after, int) or self.connection_retry_after < 0:
            raise ConfigurationError("Limits.connection_retry_after is seconds, an int >= 0")
        for name in ("ping_interval", "ping_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigurationError(f"Limits.{name} must be > 0 or None, got {value!r}")
        for name in ("close_timeout", "open_timeout"):
            value = getattr(self, name)
            if value <= 0:
                raise ConfigurationError(f"Limits.{name} must be > 0, got {value!r}")


def message_size(data: str | bytes) -> int:
    """A message's size as ``Limits.max_message_size`` measures it: UTF-8 bytes for text."""
    return len(data.encode()) if isinstance(data, str) else len(data)


def surely_within(limit: int) -> int:
    """The longest ``str`` that is within ``limit`` bytes whatever its characters (a
    character is at most 4 bytes of UTF-8): adapters measure only longer messages with
    :func:`message_size`, so that the common message costs one ``len``."""
    return limit // 4
