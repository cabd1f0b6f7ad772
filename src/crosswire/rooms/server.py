"""RoomServer: seed 003's WebSocket helper, as configuration of a :class:`~crosswire.Router`.

Serve it with ``crosswire.App(rooms, hub=Hub(RedisBackend(url)))``; its connections speak
the events dialect (:mod:`crosswire.wire.events`, ``docs/protocol-events.md``)::

    client                                   server
    {"event":"authenticate","data":{...}} ->  authenticate(client, data) -> Identity | None
                                          <-  {"event":"connected","data":{"id","userId","time"}}
    {"event":"join","data":{"rooms":[..]}} -> validate_rooms(client, [room]) -> allowed rooms
    {"event":"heartbeat"}                 ->  (keeps the connection from the heartbeat timeout)
    {"event":"chat","data":...}           ->  on_message(client, frame)

Each part is the router's, the same for every dialect: in-band authentication
(``router.authenticate``: 4001 without credentials in ``auth_timeout`` seconds, three times
that while they are checked; ``error`` and 4003 when refused), the heartbeat (``Heartbeat``:
4002 for an authenticated client silent for ``heartbeat_timeout`` seconds, within
``heartbeat_interval`` more), the rooms (topics: ``validate_rooms`` is the join handler of
every room), the error frames, the tasks of async callbacks, and encryption (``require_
encryption``: the handshake runs inside the authentication, 4004 when it fails, then every
message to the client goes through its ``peer.transform``). Once authenticated, a client is
in the Hub: addressable by id and user on every instance, in the broadcast group, in its
default rooms and in a room named after its id.

Where seed 003 is silent or loose, crosswire decides (``docs/protocol-events.md`` lists each):
a refused or malformed ``join`` gets an ``error`` event instead of silence, a client's rooms
are bounded (``Limits.max_topics``), an ``on_message`` that raises is answered
``Internal error``, ``validate_rooms`` can only narrow what was asked (and is asked one room
at a time), ``connected`` is sent in clear to an encrypted client (it carries the key
material), and a ``handshake`` that raises closes with 4004 like one that refuses.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..auth import Identity
from ..errors import ConfigurationError, ErrorCode, WsError
from ..hooks import Hooks, check_callable
from ..peer import ReadyState
from ..router import Heartbeat, Router
from ..router.context import AuthContext, CloseContext, ConnectionContext, EventContext, JoinContext
from ..wire import Dialect, events
from .client import ClientState, Handshake, RoomClient

if TYPE_CHECKING:
    from ..app import App
    from ..peer import Peer

__all__ = ["DEFAULT_ROOMS", "RoomServer"]

logger = logging.getLogger("crosswire.rooms")

#: Seed 003's default rooms, joined by every authenticated client.
DEFAULT_ROOMS = ("ws-default", "ws-notification")

ENCRYPTION_REQUIRED = 4004

Authenticate = Callable[[RoomClient, Any], "Identity | Awaitable[Identity | None] | None"]
HandshakeFn = Callable[[RoomClient, Any], "Handshake | Awaitable[Handshake | None] | None"]
ValidateRooms = Callable[[RoomClient, list[str]], "Iterable[str] | Awaitable[Iterable[str]]"]
OutboundTransformer = Callable[
    [RoomClient, str, Any], "tuple[str, Any] | Awaitable[tuple[str, Any] | None] | None"
]


class RoomServer:
    """Seed 003's server helper: in-band authentication, rooms, users, heartbeat, encryption.

    Callbacks may be plain or ``async``; each gets the :class:`RoomClient`:

    * ``authenticate(client, data)``: an :class:`Identity` to accept, None (or False) to refuse;
    * ``validate_rooms(client, rooms)``: the rooms of a ``join`` the client may enter, asked
      one room at a time (without it, every ``join`` is refused);
    * ``on_connected(client)``, ``on_disconnected(client)`` (for every connection, even one
      that never authenticated), ``on_message(client, frame)`` for the other events;
    * with ``require_encryption``: ``handshake(client, data)`` (the ``authenticate`` data) sets
      up the client's key and returns a :class:`Handshake`, and ``outbound_transformer(client,
      event, data)`` seals each message for it (:class:`crosswire.crypto.Encryption` is both).

    Times are in seconds. A RoomServer serves one App; its :attr:`router` is the Router it
    configures (add routes to it to serve typed messages beside seed 003's events).
    """

    #: Peers join the Hub when they authenticate, not when they open.
    admits_on_open = False
    #: Seed 003's clients speak the events dialect.
    dialects: Sequence[Dialect] = (events.EVENTS,)

    def __init__(
        self,
        *,
        authenticate: Authenticate,
        validate_rooms: ValidateRooms | None = None,
        on_connected: Callable[[RoomClient], Any] | None = None,
        on_disconnected: Callable[[RoomClient], Any] | None = None,
        on_message: Callable[[RoomClient, events.EventFrame], Any] | None = None,
        default_rooms: Collection[str] = DEFAULT_ROOMS,
        auth_timeout: float = 5.0,
        heartbeat_interval: float = 30.0,
        heartbeat_timeout: float = 90.0,
        require_encryption: bool = False,
        handshake: HandshakeFn | None = None,
        outbound_transformer: OutboundTransformer | None = None,
    ) -> None:
        check_callable("authenticate", authenticate, 2, "client, data")
        for name, fn, arity, params in (
            ("validate_rooms", validate_rooms, 2, "client, rooms"),
            ("on_connected", on_connected, 1, "client"),
            ("on_disconnected", on_disconnected, 1, "client"),
            ("on_message", on_message, 2, "client, frame"),
            ("handshake", handshake, 2, "client, data"),
            ("outbound_transformer", outbound_transformer, 3, "client, event, data"),
        ):
            if fn is not None:
                check_callable(name, fn, arity, params)
        if require_encryption and (handshake is None or outbound_transformer is None):
            raise ConfigurationError(
                "require_encryption needs a handshake and an outbound_transformer "
                "(crosswire.crypto.Encryption provides both)"
            )
        if min(auth_timeout, heartbeat_interval, heartbeat_timeout) <= 0:
            raise ConfigurationError("auth_timeout and the heartbeat times must be > 0")
        self.authenticate = authenticate
        self.validate_rooms = validate_rooms
        self.on_connected = on_connected
        self.on_disconnected = on_disconnected
        self.on_message = on_message
        self.default_rooms = tuple(default_rooms)
        self.require_encryption = require_encryption
        self.handshake = handshake
        self.outbound_transformer = outbound_transformer
        self._app: App | None = None
        self._clients: dict[str, RoomClient] = {}
        # A client silent for heartbeat_timeout is closed within heartbeat_interval more (the
        # seed's sweep period); the events dialect has no heartbeat frame: the silence counts.
        self.router = Router(
            heartbeat=Heartbeat(interval=heartbeat_timeout, timeout=heartbeat_interval)
        )
        self.router.authenticate(self._check, timeout=auth_timeout)
        self.router.on_authenticated(self._admitted)
        self.router.on_open(self._opened).on_close(self._closed)
        self.router.topic("{room}").on_join(self._join)
        self.router.on_unhandled(self._message)

    # -- serving ---------------------------------------------------------------------------

    def hooks_for(self, app: App) -> Hooks:
        """The hooks serving ``app`` (called by ``App(rooms)``)."""
        if self._app is not None:
            raise ConfigurationError("a RoomServer serves one App")
        if len(set(self.default_rooms)) + 1 > app.limits.max_topics:
            raise ConfigurationError(
                f"Limits.max_topics ({app.limits.max_topics}) leaves no room for a client's "
                f"own room and its {len(self.default_rooms)} default rooms"
            )
        self._app = app
        self.router.max_payload_bytes = app.limits.max_message_size
        return self.router.hooks_for(app)

    def upgrade_is_async(self) -> bool:
        """False: a RoomServer has no upgrade hook (it authenticates in band)."""
        return False

    @property
    def app(self) -> App:
        if self._app is None:
            raise ConfigurationError("the RoomServer is not served yet: crosswire.App(rooms)")
        return self._app

    async def shutdown(self, *, grace_period: float = 5.0) -> None:
        """Close every connection with 1001 ``Server shutting down`` and stop (the App's
        shutdown, which the servers also run on SIGINT/SIGTERM)."""
        await self.app.shutdown(grace_period=grace_period)

    # -- lookups (this instance) -------------------------------------------------------------

    @property
    def clients(self) -> Mapping[str, RoomClient]:
        """Every connection of this instance, by id, authenticated or not."""
        return self._clients

    def client(self, client_id: str) -> RoomClient | None:
        return self._clients.get(client_id)

    def clients_of(self, user_id: str) -> list[RoomClient]:
        """The connections of this instance authenticated as ``user_id``."""
        return [self._clients[p.id] for p in self.app.hub.clients_of(user_id)]

    def members(self, room: str) -> list[RoomClient]:
        """The connections of this instance in ``room``."""
        return [self._clients[p.id] for p in self.app.hub.members(room) if p.id in self._clients]

    # -- addressing (every instance) ---------------------------------------------------------

    def to_client(self, client_id: str, event: str, data: Any = None) -> int:
        """Send ``event`` to one client, on whichever instance it is."""
        return self.app.hub.to_client(client_id, event, data)

    def to_user(self, user_id: str, event: str, data: Any = None) -> int:
        """Send ``event`` to every connection of ``user_id`` on every instance."""
        return self.app.hub.to_user(user_id, event, data)

    def to_room(
        self, room: str, event: str, data: Any = None, *, exclude: Collection[str] = ()
    ) -> int:
        """Send ``event`` to every member of ``room`` on every instance but ``exclude``."""
        return self.app.hub.to_room(room, event, data, exclude=exclude)

    def broadcast(self, event: str, data: Any = None, *, exclude: Collection[str] = ()) -> int:
        """Send ``event`` to every authenticated client on every instance but ``exclude``."""
        return self.app.hub.broadcast(event, data, exclude=exclude)

    def join(self, client_id: str, room: str) -> bool:
        """Put a client of this instance in ``room`` (no validation); False if unknown.
        Raises :class:`~crosswire.WsError` ``RESOURCE_EXHAUSTED`` when the client is already
        in ``Limits.max_topics`` rooms."""
        client = self._clients.get(client_id)
        if client is None or client.state is not ClientState.AUTHENTICATED:
            return False
        client.peer.subscribe(room)
        return True

    def leave(self, client_id: str, room: str) -> bool:
        """Take a client of this instance out of ``room``; False if unknown."""
        client = self._clients.get(client_id)
        if client is None:
            return False
        client.peer.unsubscribe(room)
        return True

    # -- the router's handlers ----------------------------------------------------------------

    def _opened(self, ctx: ConnectionContext) -> None:
        loop = asyncio.get_running_loop()
        self._clients[ctx.peer.id] = RoomClient(ctx.peer, loop.time())

    def _closed(self, ctx: CloseContext) -> Any:
        client = self._clients.pop(ctx.peer.id, None)
        if client is None:
            return None
        client.state = ClientState.DISCONNECTED
        if self.on_disconnected is not None:
            return self.on_disconnected(client)
        return None

    async def _check(self, ctx: AuthContext) -> Identity | None:
        """The router's authentication check: ``authenticate``, then with encryption the
        handshake (still authenticating: the client gets nothing, and cannot join). A
        refresh (a session with an expiry, extended) asks ``authenticate`` only."""
        client = self._clients[ctx.peer.id]
        if not ctx.refreshing:
            client.state = ClientState.AUTHENTICATING
        identity = await _settle(self.authenticate(client, ctx.payload))
        if not identity:
            return None
        if not isinstance(identity, Identity):
            raise TypeError(f"authenticate returned {identity!r}; expected an Identity or None")
        if ctx.refreshing:
            if identity.user_id == client.user_id:
                client.metadata = identity.metadata
            return identity
        client.user_id = identity.user_id
        client.metadata = identity.metadata
        if self.require_encryption and not await self._set_up_encryption(ctx, client):
            return None
        return identity

    async def _set_up_encryption(self, ctx: AuthContext, client: RoomClient) -> bool:
        assert self.handshake is not None
        try:
            handshake = await _settle(self.handshake(client, ctx.payload))
        except Exception:
            logger.exception("the encryption handshake raised for client %s", client.id)
            handshake = None
        if ctx.peer.ready_state is not ReadyState.OPEN:
            return False
        if not isinstance(handshake, Handshake):
            ctx.error(ErrorCode.UNAUTHENTICATED, "Encryption handshake failed")
            ctx.close(ENCRYPTION_REQUIRED, "Encryption required")
            return False
        client.encrypted = True
        client.server_public_key = handshake.server_public_key
        client.salt = handshake.salt
        return True

    def _admitted(self, ctx: AuthContext) -> Any:
        """Authenticated (and admitted to the Hub by the router): its rooms, ``connected`` in
        clear, then its transform, before anything else can reach it."""
        peer = ctx.peer
        client = self._clients[peer.id]
        client.state = ClientState.AUTHENTICATED
        peer.subscribe(client.id)
        for room in self.default_rooms:
            peer.subscribe(room)
        connected: dict[str, Any] = {"id": client.id}
        if client.user_id is not None:
            connected["userId"] = client.user_id
        connected["time"] = _now_iso()
        if client.encrypted:
            connected["serverPublicKey"] = client.server_public_key
            connected["salt"] = client.salt
        self.app.hub.to_peer(peer, "connected", connected)  # (no transform yet: in clear)
        if client.encrypted:
            peer.transform = _sealing(self.outbound_transformer, client)
        if self.on_connected is not None:
            return self.on_connected(client)
        return None

    def _join(self, ctx: JoinContext) -> Any:
        """The join handler of every room: seed 003's rules, then ``validate_rooms``."""
        room = ctx.topic
        if self.validate_rooms is None or room.startswith("ws:"):
            ctx.reject("Join rejected")
            return None
        client = self._clients[ctx.peer.id]
        try:
            allowed = self.validate_rooms(client, [room])
        except Exception:
            logger.exception("validate_rooms raised for client %s", client.id)
            ctx.reject("Join rejected")
            return None
        if inspect.isawaitable(allowed):
            return _join_later(ctx, client, allowed)
        if room not in set(allowed or ()):  # validate_rooms can only narrow
            ctx.reject("Join rejected")
        return None

    def _message(self, ctx: EventContext[Any]) -> Any:
        """Every other event, to ``on_message``; one that raises is answered ``Internal
        error`` (never with what was raised)."""
        if self.on_message is None:
            return None
        client = self._clients[ctx.peer.id]
        frame = _frame_of(ctx)
        try:
            result = self.on_message(client, frame)
        except Exception:
            logger.exception("on_message raised for client %s", client.id)
            raise WsError(ErrorCode.INTERNAL, "Internal error") from None
        if inspect.isawaitable(result):
            return _internal_error_if_raises(result, client)
        return None


def _sealing(transformer: OutboundTransformer | None, client: RoomClient) -> Any:
    assert transformer is not None

    def transform(peer: Peer, event: str, data: Any) -> Any:
        return transformer(client, event, data)

    return transform


def _frame_of(ctx: EventContext[Any]) -> events.EventFrame:
    """The seed's frame of an event: ``event``, ``data``, ``id`` and the ``raw`` object."""
    id_ = ctx.meta.get("correlationId")
    raw: dict[str, Any] = {"event": ctx.type}
    if ctx.payload is not None:
        raw["data"] = ctx.payload
    if id_ is not None:
        raw["id"] = id_
    return events.EventFrame(ctx.type, ctx.payload, id_, raw)


async def _join_later(ctx: JoinContext, client: RoomClient, allowed: Awaitable[Any]) -> None:
    try:
        result = await allowed
    except Exception:
        logger.exception("validate_rooms raised for client %s", client.id)
        result = ()
    if ctx.topic not in set(result or ()):
        ctx.reject("Join rejected")


async def _internal_error_if_raises(result: Awaitable[Any], client: RoomClient) -> None:
    try:
        await result
    except Exception:
        logger.exception("on_message raised for client %s", client.id)
        raise WsError(ErrorCode.INTERNAL, "Internal error") from None


async def _settle(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


def _now_iso() -> str:
    """``2026-02-11T10:20:30.123Z``, as JavaScript's ``toISOString``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
