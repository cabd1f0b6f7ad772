"""Run an App on a server: ``serve()`` blocks until SIGINT/SIGTERM, ``start()`` is the async
building block (tests, embedding).

Servers, chosen with ``server=``:

* ``"websockets"`` (default): the ``websockets`` library, conformant (Autobahn-tested,
  permessage-deflate) and fast enough for most;
* ``"picows"``: about 4x the messages per second, no compression, plain ``upgrade`` hook;
* ``"aiohttp"``, ``"uvicorn"``, ``"hypercorn"``: the same App through those servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal, cast

from .app import WORKERS_NEED_A_BUS, App
from .errors import ConfigurationError
from .logs import library_logger
from .peer import CloseCode
from .workers import WorkerPool

__all__ = ["SERVERS", "RunningServer", "ServerName", "listen", "serve", "start"]

logger = logging.getLogger("crosswire.server")

ServerName = Literal["websockets", "picows", "aiohttp", "uvicorn", "hypercorn"]
SERVERS: tuple[ServerName, ...] = ("websockets", "picows", "aiohttp", "uvicorn", "hypercorn")


class RunningServer:
    """A listening server. ``port`` is the bound port (useful with ``port=0``)."""

    def __init__(
        self, app: App, name: ServerName, sock: socket.socket, stop: Callable[[], Awaitable[None]]
    ) -> None:
        self.app = app
        self.name = name
        self.host, self.port = sock.getsockname()[:2]
        self._sock = sock
        self._stop = stop
        self._closed = asyncio.Event()

    @property
    def url(self) -> str:
        """``ws://host:port`` of this server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    async def aclose(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "Server shutting down"
    ) -> None:
        """Close every peer with ``code`` (1001 by default), then stop listening."""
        if self._closed.is_set():
            return
        self._closed.set()
        await self.app.shutdown(code, reason)
        await self._stop()

    async def wait_closed(self) -> None:
        await self._closed.wait()


def listen(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port=0``: a free one), for ``sock=``.

    ``reuse_port``: set ``SO_REUSEPORT``, so that other sockets with it (of the same user)
    may listen on the same port, the kernel spreading connections between them."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on accepted
    # sockets whose proto says TCP. With proto 0 every small frame waited for the client's
    # delayed ACK: milliseconds of latency per message.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


#: Whether the kernel spreads a port's connections across the sockets that share it with
#: ``SO_REUSEPORT`` (Linux 3.9+). Elsewhere (macOS, the BSDs' plain ``SO_REUSEPORT``) one
#: socket would take them all: the workers share one socket instead.
_SPREADS_REUSEPORT = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")


def _worker_listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """One listening socket per worker on ``host:port``: ``SO_REUSEPORT`` sockets where the
    kernel spreads connections across them, else the same socket ``count`` times."""
    if not _SPREADS_REUSEPORT:
        return [listen(host, port)] * count
    if port != 0:
        # A port another server listens on, even one with SO_REUSEPORT (another crosswire
        # with workers), is refused as it would be to one process, not silently shared.
        listen(host, port).close()
    listeners = [listen(host, port, reuse_port=True)]
    try:
        port = listeners[0].getsockname()[1]
        listeners.extend(listen(host, port, reuse_port=True) for _ in range(count - 1))
    except BaseException:
        for sock in listeners:
            sock.close()
        raise
    return listeners


async def start(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    server: ServerName = "websockets",
    sock: socket.socket | None = None,
) -> RunningServer:
    """Start serving ``app`` on ``host:port`` with ``server``; returns once listening.

    ``sock``: a listening socket to serve on instead of ``host:port`` (see :func:`listen`);
    it is closed when the server stops."""
    if server not in SERVERS:
        raise ConfigurationError(f"unknown server {server!r}; choose one of {SERVERS}")
    sock = sock if sock is not None else listen(host, port)
    try:
        stop = await _STARTERS[server](app, sock)
    except ModuleNotFoundError as exc:
        sock.close()
        raise ConfigurationError(
            f"the {server} server needs what crosswire's {server!r} extra installs "
            f'(no module named {exc.name!r}): pip install "crosswire[{server}]"'
        ) from exc
    except BaseException:
        sock.close()
        raise
    # After the server: a server that cannot start leaves no bus connection behind, and says
    # so at once. Connections are accepted only once this awaits, and the App is open again
    # (after an earlier shutdown) before it does; the bus connects meanwhile.
    try:
        await app.startup()
    except BaseException:
        await stop()
        raise
    return RunningServer(app, server, sock, stop)


async def _start_websockets(app: App, sock: socket.socket) -> Callable[[], Awaitable[None]]:
    from .adapters.websockets import create_server

    srv = await create_server(app, None, None, sock=sock)

    async def stop() -> None:
        await _stop_accepting(sock)
        srv.close(close_connections=True)
        await srv.wait_closed()

    return stop


async def _start_picows(app: App, sock: socket.socket) -> Callable[[], Awaitable[None]]:
    from .adapters.picows import create_server

    srv = await create_server(app, None, None, sock=sock)

    async def stop() -> None:
        await _stop_accepting(sock)
        srv.close()
        await srv.wait_closed()

    return stop


async def _start_aiohttp(app: App, sock: socket.socket) -> Callable[[], Awaitable[None]]:
    from aiohttp import web

    from .adapters.aiohttp import handler

    web_app = web.Application()
    web_app.router.add_route("GET", "/{tail:.*}", handler(app))
    # aiohttp's keep-alive timer also runs from the accept to the first whole request: the
    # open timeout (its default, about an hour, lets half-sent requests hold descriptors).
    runner = web.AppRunner(
        web_app,
        handle_signals=False,
        access_log=None,
        keepalive_timeout=app.limits.open_timeout,
        logger=library_logger("aiohttp"),
    )
    await runner.setup()
    await web.SockSite(runner, sock).start()

    async def stop() -> None:
        await _stop_accepting(sock)
        await runner.cleanup()

    return stop


async def _start_uvicorn(app: App, sock: socket.socket) -> Callable[[], Awaitable[None]]:
    import uvicorn

    from .adapters._uvicorn import http_protocol, websocket_protocol
    from .adapters.asgi import ASGIApp

    limits = app.limits
    config = uvicorn.Config(
        # uvicorn calls it with its protocol's own send (no middleware: no proxy headers, no
        # trace logging), a coroutine that touches no context variable: trusted.
        ASGIApp(app, trusted_send=True),
        http=http_protocol(limits.open_timeout),
        ws=websocket_protocol(limits),
        lifespan="off",
        # uvicorn must not configure logging (the application does); its per-connection INFO
        # lines are not wanted, and access lines carry the query string.
        log_config=None,
        log_level="warning",
        access_log=False,
        ws_max_size=limits.max_message_size,  # a frame declaring more: 1009 at its header
        ws_ping_interval=limits.ping_interval,
        ws_ping_timeout=limits.ping_timeout,
        # The client's address is the socket's; App(trusted_proxies=...) decides whose
        # X-Forwarded-For to believe (uvicorn's default would believe any from 127.0.0.1).
        proxy_headers=False,
    )
    srv = _uvicorn_server(config)
    task = asyncio.get_running_loop().create_task(srv.serve(sockets=[sock]))
    await _check_started(task)

    async def stop() -> None:
        if not task.done():  # (a server that ended has closed the socket: its number is free)
            await _stop_accepting(sock)
        srv.should_exit = True
        await task

    return stop


async def _stop_accepting(listening: socket.socket | int) -> None:
    """Take no more connections on the ``listening`` socket (or descriptor), and let those
    already taken get their transports, before the server stops and closes it.

    asyncio accepts a connection in one turn of the loop and makes its transport in a task
    that runs in the next. A server closed in between leaves that connection unserved and
    open until garbage collection (CPython gh-109564, open; gh-155934, after 3.11.7): its
    client waits on a TCP connection that never answers, until its own timeout. With
    accepting stopped first, one turn lets those tasks run; the connections are then answered
    (503, as the App is closing), reset, or closed with the rest. Only the server's accept
    callback is removed here (nothing, under an event loop that accepts otherwise, such as
    uvloop); the server closes the socket. (The turn is given even when asyncio had removed
    the callback itself, for a while, after running out of descriptors.)"""
    fd = listening if isinstance(listening, int) else listening.fileno()
    if fd >= 0:
        asyncio.get_running_loop().remove_reader(fd)
    await asyncio.sleep(0)


async def _check_started(task: asyncio.Task[None]) -> None:
    """Let a server task begin; raise at once if it failed to start.

    The socket already listens, so the kernel queues connections until the server takes them:
    there is no need to wait for it to be "ready".
    """
    await asyncio.sleep(0)
    if task.done():
        task.result()


def _uvicorn_server(config: Any) -> Any:
    """A uvicorn.Server without its own signal handlers: crosswire's ``serve`` owns signals."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server(config)


async def _start_hypercorn(app: App, sock: socket.socket) -> Callable[[], Awaitable[None]]:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config

    from .adapters import _hypercorn
    from .adapters.asgi import ASGIApp

    _hypercorn.install()  # its size limit mended: bounded inflation, 1009 that ends the stream
    config = Config()
    # Read by _hypercorn.WSStream (an attribute of crosswire's, not hypercorn's).
    config.websocket_close_timeout = app.limits.close_timeout  # type: ignore[attr-defined]
    # hypercorn owns (and closes) the descriptor it is given: give it a duplicate.
    listening = os.dup(sock.fileno())
    config.bind = [f"fd://{listening}"]
    config.websocket_max_message_size = app.limits.max_message_size
    # hypercorn pings but never checks for pongs, so its pings cannot drop a dead client; and
    # each connection's ping task sleeps out its interval after the socket closes, delaying
    # every shutdown. Without them shutdown is prompt (docs/servers.md).
    config.websocket_ping_interval = None
    config.graceful_timeout = app.limits.close_timeout
    # hypercorn drops a connection that is idle before its first request after this.
    config.keep_alive_timeout = app.limits.open_timeout
    config.accesslog = None
    config.errorlog = library_logger("hypercorn")
    shutdown = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        hypercorn_serve(
            # (hypercorn calls the app with its stream's own send: trusted, as uvicorn's)
            cast(Any, ASGIApp(app, trusted_send=True)),
            config,
            shutdown_trigger=shutdown.wait,
            mode="asgi",
        )
    )
    await _check_started(task)

    async def stop() -> None:
        if not task.done():  # (a server that ended has closed the socket: its number is free)
            await _stop_accepting(listening)  # (hypercorn's socket has the duplicate's number)
        shutdown.set()
        await task
        sock.close()

    return stop


_STARTERS: dict[str, Callable[[App, socket.socket], Awaitable[Callable[[], Awaitable[None]]]]] = {
    "websockets": _start_websockets,
    "picows": _start_picows,
    "aiohttp": _start_aiohttp,
    "uvicorn": _start_uvicorn,
    "hypercorn": _start_hypercorn,
}


def serve(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    server: ServerName = "websockets",
    on_start: Callable[[RunningServer], None] | None = None,
    workers: int = 1,
) -> None:
    """Serve ``app`` until SIGINT or SIGTERM, then close every connection with 1001 and return.

    Logs one INFO line on ``crosswire.server`` once listening (``on_start``, if given, is
    called instead, to announce it some other way), one as shutdown begins, with the number
    of connections being closed, and one when it is done.

    ``workers`` > 1 serves the port from that many processes (forked, POSIX only; call it
    from the main thread), each with its own copy of ``app`` and, on Linux, its own
    ``SO_REUSEPORT`` socket (:mod:`crosswire.workers`). They share rooms, users and
    connections only through the App's bus: without one (``Hub()``, or ``MemoryBackend``,
    which does not cross processes) a message would reach the clients of one worker only, so
    this raises :class:`~crosswire.ConfigurationError`. The start line (or ``on_start``)
    comes once every worker is listening. A worker that dies is replaced; one that dies too
    often, or fails to start, stops them all and raises :class:`~crosswire.WorkerError` (or
    its :class:`~crosswire.ConfigurationError`). SIGINT or SIGTERM stops every worker, each
    closing its connections with 1001.
    """
    if workers == 1:
        asyncio.run(_serve(app, sock=listen(host, port), server=server, on_start=on_start))
        return
    _check_workers(app, workers)
    _serve_workers(app, _worker_listeners(host, port, workers), server, on_start)


def _check_workers(app: App, workers: int) -> None:
    if workers < 1:
        raise ConfigurationError(f"workers must be at least 1, got {workers}")
    if not hasattr(os, "fork"):
        raise ConfigurationError("several workers need os.fork (POSIX)")
    if not app.hub.crosses_processes:
        raise ConfigurationError(f"{workers} workers {WORKERS_NEED_A_BUS}")


def _serve_workers(
    app: App,
    listeners: list[socket.socket],
    server: ServerName,
    on_start: Callable[[RunningServer], None] | None,
) -> None:
    """Serve ``app`` from one worker per listening socket until SIGINT or SIGTERM."""

    def work(sock: socket.socket, lifeline: int, ready: Callable[[], None]) -> None:
        def started(running: RunningServer) -> None:
            ready()

        asyncio.run(_serve(app, sock=sock, server=server, on_start=started, lifeline=lifeline))

    def announce() -> None:
        running = RunningServer(app, server, listeners[0], _nothing_to_stop)
        if on_start is not None:
            on_start(running)
        else:
            logger.info("serving on %s with %s, %d workers", running.url, server, len(listeners))

    WorkerPool(listeners, work).run(announce)
    logger.info("stopped (%d workers)", len(listeners))


async def _nothing_to_stop() -> None:
    """The parent of workers serves nothing itself."""


async def _serve(
    app: App,
    *,
    sock: socket.socket,
    server: ServerName,
    on_start: Callable[[RunningServer], None] | None,
    lifeline: int | None = None,
) -> None:
    running = await start(app, sock=sock, server=server)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if lifeline is not None:  # a worker: the parent's end closing (it ended) stops it too
        loop.add_reader(lifeline, stop.set)
    if on_start is not None:
        on_start(running)
    else:
        logger.info("serving on %s with %s", running.url, server)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if lifeline is not None:
            loop.remove_reader(lifeline)
        count = len(app.peers)
        logger.info(
            "shutting down: closing %d connection%s with 1001", count, "" if count == 1 else "s"
        )
        await running.aclose()
        logger.info("stopped")
