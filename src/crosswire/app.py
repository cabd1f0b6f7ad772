"""The App: hooks, limits and pub/sub that every server adapter serves the same way."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import multiprocessing
import os
import sys
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .eager import spawn_eager
from .endpoint import Endpoint
from .errors import ConfigurationError
from .hooks import Hooks
from .http import Accept, Request, Response, client_address
from .limits import Limits
from .peer import CloseCode, Peer, Transport
from .pubsub import Hub
from .wire import EVENTS, Dialect

__all__ = ["WORKERS_NEED_A_BUS", "App", "HookProvider", "HttpHandler"]

logger = logging.getLogger("crosswire.app")

#: The acceptance of a handshake without an upgrade hook or subprotocol: one for all (frozen;
#: each connection copies its context).
_PLAIN_ACCEPT = Accept()
#: The answer to a handshake whose Origin is not in ``App(origins=...)``.
_FORBIDDEN_ORIGIN = Response(403, "origin not allowed")

HttpHandler = Callable[[Request], Response | Awaitable[Response]]


@runtime_checkable
class HookProvider(Protocol):
    """Something that serves an App through hooks it builds for that App (a Router)."""

    @property
    def admits_on_open(self) -> bool:
        """True when the App admits each peer to its Hub (addressable by id, in the broadcast
        group) as it opens; False when the layer admits peers itself (after
        authentication)."""

    @property
    def dialects(self) -> Sequence[Dialect]:
        """The dialects it speaks by default (the first is the default of its endpoint)."""

    def hooks_for(self, app: App) -> Hooks:
        """The hooks serving ``app``; called once per endpoint, when the App is created."""

    def upgrade_is_async(self) -> bool:
        """Whether its upgrade hook must be awaited (an ``async`` handler registered now):
        servers whose handshake cannot await refuse such an App when they start."""


class App:
    """A WebSocket application: write the hooks once, serve them on any adapter.

    ``hooks`` is a :class:`~crosswire.Hooks` (see :func:`~crosswire.define_hooks`), any object
    with hook methods, or a :class:`~crosswire.Router`; anything else (None, a dict, an object
    with none of the hook methods) raises :class:`~crosswire.ConfigurationError`. It serves
    every path. Or, instead, ``endpoints``: one :class:`~crosswire.Endpoint` per path, each
    with its handler and its dialects (a handshake on another path gets 404). ``http``
    answers plain HTTP requests on the standalone servers and the ASGI adapter (the demo page,
    a health check); without it they get 426 Upgrade Required. ``origins`` lists the
    ``Origin`` values allowed to open a WebSocket (include ``None`` to let in clients that send
    none, such as non-browser ones); others get 403 before any hook runs. By default every
    origin is allowed. ``session_cookie`` names the cookie the App authenticates with
    (``crosswire.auth.cookie_token``); it requires ``origins`` with at least one browser
    origin, against cross-site WebSocket hijacking. ``trusted_proxies`` lists the reverse
    proxies whose ``X-Forwarded-For`` gives the client's address (:meth:`client_address`).
    """

    def __init__(
        self,
        hooks: object = None,
        *,
        endpoints: Sequence[Endpoint] = (),
        limits: Limits | None = None,
        hub: Hub | None = None,
        http: HttpHandler | None = None,
        origins: Collection[str | None] | None = None,
        trusted_proxies: Collection[str] = (),
        session_cookie: str | None = None,
    ) -> None:
        self.limits = limits if limits is not None else Limits()
        if isinstance(origins, str):
            raise ConfigurationError(f"origins is a collection of origins, not one: {origins!r}")
        #: The ``Origin`` values allowed to open a WebSocket (``None`` in it: requests with no
        #: Origin, from clients that are not browsers); ``None``: any.
        self.origins = frozenset(origins) if origins is not None else None
        if session_cookie is not None and (
            self.origins is None or not any(o is not None for o in self.origins)
        ):
            raise ConfigurationError(
                f"session_cookie={session_cookie!r} needs origins={{...}}: a browser sends "
                "its cookies with a WebSocket handshake whichever site's page opens it, so "
                "without an allow-list of origins any site could open WebSockets as your "
                "users (cross-site WebSocket hijacking)"
            )
        #: The cookie that authenticates connections (read it with
        #: ``crosswire.auth.cookie_token(request, app.session_cookie)``), or None.
        self.session_cookie = session_cookie
        if isinstance(trusted_proxies, str):
            raise ConfigurationError("trusted_proxies is a collection of IP addresses")
        #: The addresses of the reverse proxies whose ``X-Forwarded-For`` is believed.
        self.trusted_proxies = frozenset(trusted_proxies)
        #: Open connections per client address (for ``Limits.max_connections_per_address``).
        self._per_address: dict[str, int] = {}
        self._address_of: dict[str, str] = {}
        #: Handshakes accepted whose WebSocket is not open yet (they count against the
        #: connection limits, so that simultaneous handshakes cannot pass one together):
        #: by handshake, its address and when the reservation lapses (``open_timeout``).
        self._reserved: dict[object, tuple[str | None, float]] = {}
        self.hub = hub if hub is not None else Hub()
        self.http = http
        if endpoints and hooks is not None:
            raise ConfigurationError("App takes hooks (one endpoint) or endpoints, not both")
        if not endpoints:
            if isinstance(hooks, type) and isinstance(hooks, HookProvider):  # App(Router)
                raise ConfigurationError(
                    f"App takes a {hooks.__name__}, not the class: App({hooks.__name__}(...))"
                )
            endpoints = (Endpoint(None, hooks),)
        for endpoint in endpoints:
            handler = endpoint.handler
            if isinstance(handler, type) and isinstance(handler, HookProvider):
                raise ConfigurationError(
                    f"Endpoint takes a {handler.__name__}, not the class: {handler.__name__}(...)"
                )
        #: The endpoints by path (``None``: the one that serves every path).
        self.endpoints: dict[str | None, Endpoint] = {}
        for endpoint in endpoints:
            if endpoint.path in self.endpoints:
                raise ConfigurationError(f"two endpoints at {endpoint.path!r}")
            if None in self.endpoints or (endpoint.path is None and self.endpoints):
                raise ConfigurationError("an endpoint for every path serves an App alone")
            self._serve(endpoint)
            self.endpoints[endpoint.path] = endpoint
        self._peers: dict[str, Peer] = {}
        self._closing = False
        self._no_peers = asyncio.Event()
        self._no_peers.set()
        #: Hook tasks of peers (open or closed) that have not finished yet; see spawn.
        self._tasks: set[asyncio.Task[None]] = set()

    def _serve(self, endpoint: Endpoint) -> None:
        """Build the hooks that serve ``endpoint`` in this App (once, as the App is made)."""
        handler = endpoint.handler
        if isinstance(handler, HookProvider):
            endpoint.served(
                Hooks.of(handler.hooks_for(self)),
                dialects=handler.dialects,
                admits_on_open=handler.admits_on_open,
                upgrade_is_async=handler.upgrade_is_async,
            )
        else:
            endpoint.served(Hooks.of(handler), dialects=(EVENTS,))

    @property
    def hooks(self) -> Hooks:
        """The hooks of an App that serves one endpoint (``App(hooks)``)."""
        return self._sole().hooks

    @property
    def inline_hooks(self) -> bool:
        """Whether the hooks of an App that serves one endpoint are all plain functions
        (they then run inline, with no task per connection)."""
        return self._sole().inline

    def _sole(self) -> Endpoint:
        if len(self.endpoints) != 1:
            raise ConfigurationError("this App serves several endpoints: see App.endpoints")
        return next(iter(self.endpoints.values()))

    def endpoint_for(self, request: Request) -> Endpoint | None:
        """The endpoint that serves ``request``'s path, if any."""
        endpoints = self.endpoints
        return endpoints.get(None) or endpoints.get(request.path)

    @property
    def peers(self) -> Mapping[str, Peer]:
        """Open peers of this process, by id."""
        return self._peers

    def publish(self, topic: str, data: object) -> int:
        """Send ``data`` to every subscriber of ``topic`` (on every instance sharing the Hub's
        bus); returns how many of this process it reached."""
        return self.hub.publish(topic, data)

    # -- the seam with server adapters -----------------------------------------------------

    async def handle_upgrade(self, request: Request) -> Accept | Response:
        """Find the endpoint and the connection's dialect, check the Origin, then run the
        ``upgrade`` hook; an error in it refuses the connection with 500."""
        checked = self._check_upgrade(request)
        if isinstance(checked, Response):
            return checked
        endpoint, subprotocol = checked
        hook = endpoint.hooks.upgrade
        if hook is None:
            accept = _PLAIN_ACCEPT if subprotocol is None else Accept(subprotocol=subprotocol)
            return self._reserve(request, accept)
        try:
            result = hook(request)
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            logger.exception("upgrade hook raised; refusing %r with 500", request)
            return Response(500, "internal server error")
        return self._reserve(request, _upgrade_result(result, subprotocol))

    def upgrade_is_async(self) -> bool:
        """Whether an upgrade hook must be awaited: an ``async`` hook, or the ``async``
        ``on_upgrade`` of a Router serving the App (as registered now). Servers whose
        handshake cannot await (picows) refuse such an App when they start."""
        return any(endpoint.upgrade_is_async() for endpoint in self.endpoints.values())

    def handle_upgrade_sync(self, request: Request) -> Accept | Response:
        """``handle_upgrade`` for servers whose handshake cannot await (picows). A hook that
        returns an awaitable all the same is refused with 500 (the awaitable is closed)."""
        checked = self._check_upgrade(request)
        if isinstance(checked, Response):
            return checked
        endpoint, subprotocol = checked
        hook = endpoint.hooks.upgrade
        if hook is None:
            accept = _PLAIN_ACCEPT if subprotocol is None else Accept(subprotocol=subprotocol)
            return self._reserve(request, accept)
        try:
            result = hook(request)
        except Exception:
            logger.exception("upgrade hook raised; refusing %r with 500", request)
            return Response(500, "internal server error")
        if inspect.isawaitable(result):
            return _cannot_await("upgrade hook (or on_upgrade handler)", result, request)
        return self._reserve(request, _upgrade_result(result, subprotocol))

    def _check_upgrade(self, request: Request) -> tuple[Endpoint, str | None] | Response:
        """What every handshake goes through first: the App open, an endpoint at the path, a
        dialect it serves, an allowed Origin. The endpoint, and the subprotocol that names
        the chosen dialect (if the client chose it so), or the refusal."""
        if self._closing:
            return Response(503, "server shutting down")
        endpoint = self.endpoint_for(request)
        if endpoint is None:
            return Response(404, "no WebSocket endpoint at this path")
        chosen = endpoint.dialect_for(request)
        if chosen is None:
            served = ", ".join(d.name for d in endpoint.dialects)
            return Response(400, f"this endpoint speaks {served}")
        if self.origins is not None and request.headers.get("origin") not in self.origins:
            return _FORBIDDEN_ORIGIN
        limits = self.limits
        if limits.max_connections is None and limits.max_connections_per_address is None:
            return endpoint, chosen[1]
        retry = {"Retry-After": str(limits.connection_retry_after)}
        self._lapse_reservations()
        total = len(self._peers) + len(self._reserved)
        if limits.max_connections is not None and total >= limits.max_connections:
            return Response(503, "too many connections", retry)
        address = self.client_address(request)
        per_address = limits.max_connections_per_address
        if per_address is not None and address is not None:
            reserved = sum(1 for a, _ in self._reserved.values() if a == address)
            if self._per_address.get(address, 0) + reserved >= per_address:
                return Response(429, "too many connections from this address", retry)
        return endpoint, chosen[1]

    def _reserve(self, request: Request, result: Accept | Response) -> Accept | Response:
        """An accepted handshake counts against the limits until its WebSocket opens."""
        limits = self.limits
        if isinstance(result, Accept) and (
            limits.max_connections is not None or limits.max_connections_per_address is not None
        ):
            lapse = asyncio.get_running_loop().time() + limits.open_timeout
            self._reserved[_handshake_key(request)] = (self.client_address(request), lapse)
        return result

    def _lapse_reservations(self) -> None:
        """Forget the handshakes that never opened (the client went away after the 101)."""
        if self._reserved:
            now = asyncio.get_running_loop().time()
            for key in [k for k, (_, lapse) in self._reserved.items() if lapse < now]:
                del self._reserved[key]

    def client_address(self, request: Request) -> str | None:
        """The client's IP address: the socket's, or, when the socket is one of
        ``trusted_proxies``, the one the proxy names in ``X-Forwarded-For``
        (:func:`crosswire.http.client_address`)."""
        return client_address(request, self.trusted_proxies)

    async def handle_http(self, request: Request) -> Response:
        """Answer a plain HTTP request with the ``http`` handler, or 426."""
        if self.http is None:
            return Response(426, "this endpoint speaks WebSocket", {"Upgrade": "websocket"})
        try:
            result = self.http(request)
            if inspect.isawaitable(result):
                result = await result
        except Exception:
            logger.exception("http handler raised for %r", request)
            return Response(500, "internal server error")
        return result

    def handle_http_sync(self, request: Request) -> Response:
        """``handle_http`` for servers whose handshake cannot await (picows): a handler that
        returns an awaitable, or anything but a Response, is answered with 500."""
        if self.http is None:
            return Response(426, "this endpoint speaks WebSocket", {"Upgrade": "websocket"})
        try:
            result = self.http(request)
        except Exception:
            logger.exception("http handler raised for %r", request)
            return Response(500, "internal server error")
        if inspect.isawaitable(result):
            return _cannot_await("http handler", result, request)
        if not isinstance(result, Response):
            logger.error(
                "http handler returned %s for %r, not a Response; answering 500",
                type(result).__name__,
                request,
            )
            return Response(500, "internal server error")
        return result

    def connect(self, transport: Transport, request: Request, accept: Accept) -> Peer:
        """Create the peer of a newly opened WebSocket and run its ``open`` hook."""
        endpoint = self.endpoint_for(request)
        chosen = endpoint.dialect_for(request) if endpoint is not None else None
        if endpoint is None or chosen is None:  # (refused at the handshake: cannot happen)
            raise ConfigurationError(f"no endpoint serves {request!r}")
        peer = Peer(
            self,
            endpoint.hooks,
            endpoint.inline,
            transport,
            request.opened(),
            dialect=chosen[0],
            subprotocol=accept.subprotocol,
            context=dict(accept.context),
        )
        transport.bind(peer)
        if self._reserved:
            self._reserved.pop(_handshake_key(request), None)
        self._peers[peer.id] = peer
        over = False
        per_address = self.limits.max_connections_per_address
        if per_address is not None:
            address = self.client_address(request)
            if address is not None:
                self._address_of[peer.id] = address
                count = self._per_address[address] = self._per_address.get(address, 0) + 1
                # (known only now on a server whose handshake does not tell the address)
                over = count > per_address
        self._no_peers.clear()
        if over:  # closed before any hook sees it
            peer.close(CloseCode.TRY_AGAIN_LATER, "too many connections from this address")
            return peer
        if endpoint.admits_on_open:
            self.hub.admit(peer)
        if accept.expires_at is not None:
            peer.expire_at(accept.expires_at)
        peer._opened()
        return peer

    def spawn(self, coro: Coroutine[Any, Any, None], *, eager: bool = False) -> asyncio.Task[None]:
        """Run a task of a peer (its hooks) or of a layer serving it (a router's handler); the
        App owns it until it ends, and shutdown awaits it. ``eager`` starts it at once on
        Python 3.12+."""
        task = spawn_eager(coro) if eager else asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def startup(self) -> None:
        """Get ready to serve: connect the Hub's bus now, so that the log says at once whether
        it is reachable. The servers call it as they start (``crosswire.start``, ``serve``,
        the command, the ASGI lifespan); call it yourself when you mount the App where no
        lifespan reaches it. Idempotent; without it the bus connects when first needed.

        After :meth:`shutdown`, the App serves again: a lifespan may stop and start it any
        number of times, each time in a new event loop if need be (each
        ``with TestClient(api):`` block of a test suite)."""
        if self._closing:
            self._closing = False
            # (an asyncio primitive belongs to the loop that first waited on it)
            self._no_peers = asyncio.Event()
            if not self._peers:
                self._no_peers.set()
        workers = _worker_count()
        if workers > 1 and not self.hub.crosses_processes:
            logger.warning(
                "this process is one of %d workers: they %s", workers, WORKERS_NEED_A_BUS
            )
        await self.hub.start()

    def peer_closed(self, peer: Peer) -> None:
        """``peer`` closed: forget it (shutdown waits until every peer is forgotten)."""
        self._peers.pop(peer.id, None)
        address = self._address_of.pop(peer.id, None)
        if address is not None:
            left = self._per_address[address] - 1
            if left:
                self._per_address[address] = left
            else:
                del self._per_address[address]
        if not self._peers:
            self._no_peers.set()

    async def shutdown(
        self,
        code: int = CloseCode.GOING_AWAY,
        reason: str = "Server shutting down",
        *,
        grace_period: float = 5.0,
    ) -> None:
        """Refuse new connections, close every peer with ``code``, wait for their hooks.

        Peers still open after ``grace_period`` seconds are dropped, and hook tasks still
        running then are cancelled and awaited, so this returns in about ``grace_period``.
        """
        self._closing = True
        for peer in list(self._peers.values()):
            peer.close(code, reason)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_period
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                await self._no_peers.wait()
        for peer in list(self._peers.values()):
            peer.terminate()
        # Every hook task, including those of peers that closed just before: their close hooks
        # get the rest of the grace period, then are cancelled and awaited.
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        # What the close hooks published gets the rest of the grace period (at least a
        # second) to reach the bus.
        await self.hub.aclose(grace=max(1.0, deadline - loop.time()))


#: Why several processes serving one App need a bus between them (said when they have none).
WORKERS_NEED_A_BUS = (
    "need a bus between them: without one each worker has its own rooms, users and "
    "connections, and a message reaches only the clients of the worker that sent it. Give "
    "the App a Hub on Redis (crosswire.Hub(RedisBackend(url))), or serve with one worker."
)


def _worker_count() -> int:
    """How many workers the server that started this process runs, as its command line says
    (``uvicorn``/``hypercorn --workers N``, ``-w N``, or ``WEB_CONCURRENCY``); 1 when no
    other process started this one (``multiprocessing``, as those servers do)."""
    if multiprocessing.parent_process() is None:
        return 1
    argv = sys.argv
    for i, arg in enumerate(argv):
        if arg in ("--workers", "-w") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        else:
            continue
        return int(value) if value.isdigit() else 1
    concurrency = os.environ.get("WEB_CONCURRENCY", "")
    return int(concurrency) if concurrency.isdigit() else 1


def _cannot_await(what: str, result: Awaitable[Any], request: Request) -> Response:
    """A plain handler returned an awaitable to a server that cannot await it: close it (no
    "never awaited" warning), say what to do, and refuse with 500."""
    if inspect.iscoroutine(result):
        result.close()
    logger.error(
        "the %s returned an awaitable, which this server cannot await (its handshake is "
        "synchronous); refusing %r with 500: make it a plain function that returns the "
        "result, or serve with server='websockets'",
        what,
        request,
    )
    return Response(500, "internal server error")


def _upgrade_result(result: Any, subprotocol: str | None) -> Accept | Response:
    """What the upgrade hook returned, accepting with the dialect's ``subprotocol`` unless the
    hook chose one of its own."""
    if result is None:
        return Accept(subprotocol=subprotocol)
    if isinstance(result, Accept):
        if result.subprotocol is None and subprotocol is not None:
            return dataclasses.replace(result, subprotocol=subprotocol)
        return result
    if isinstance(result, Response):
        return result
    raise ConfigurationError(
        f"upgrade hook must return None, Accept or Response, not {type(result).__name__}"
    )


def _handshake_key(request: Request) -> object:
    """What identifies one handshake from :meth:`App.handle_upgrade` to :meth:`App.connect`
    (adapters may build the Request twice): its ``Sec-WebSocket-Key``, random per handshake;
    the object itself without one (the in-process test client)."""
    return request.headers.get("sec-websocket-key") or id(request)
