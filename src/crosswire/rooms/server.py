"""RoomServer: seed 003's WebSocket helper on crosswire's hooks and Hub.

Serve it with ``crosswire.App(rooms, hub=Hub(RedisBackend(url)))``; its connections speak
the events dialect (:mod:`crosswire.wire.events`, ``docs/protocol-events.md``)::

    client                                   server
    {"event":"authenticate","data":{...}} ->  authenticate(client, data) -> Identity | None
                                          <-  {"event":"connected","data":{"id","userId","time"}}
    {"event":"join","data":{"rooms":[..]}} -> validate_rooms(client, rooms) -> allowed rooms
    {"event":"heartbeat"}                 ->  (keeps the connection from the heartbeat sweep)
    {"event":"chat","data":...}           ->  on_message(client, frame)

A connection has ``auth_timeout`` seconds to send ``authenticate`` (three times that while an
async ``authenticate`` runs) or is closed with 4001; a refused one gets an ``error`` event and
4003; an authenticated one silent for ``heartbeat_timeout`` is closed with 4002 by a sweep
every ``heartbeat_interval``; with ``require_encryption`` a failed ``handshake`` closes with
4004. Once authenticated, a client is in the Hub: addressable by id and user on every
instance, in the broadcast group, in its default rooms and in a room named after its id.

Where seed 003 is silent or loose, crosswire decides (``docs/protocol-events.md`` lists each):
a refused or malformed ``join`` gets an ``error`` event instead of silence, a client's rooms
are bounded (``Limits.max_topics``), an ``on_message`` that raises is answered
``Internal error``, ``validate_rooms`` can only narrow what was asked, ``connected`` is sent in
clear to an encrypted client (it carries the key material), and a ``handshake`` that raises
closes with 4004 like one that refuses.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..hooks import Hooks, check_callable
from ..peer import ReadyState
from ..wire import Dialect, events
from .client import ClientState, Handshake, Identity, RoomClient

if TYPE_CHECKING:
    from ..app import App
    from ..peer import Peer

__all__ = ["DEFAULT_ROOMS", "RoomServer"]

logger = logging.getLogger("crosswire.rooms")

#: Seed 003's default rooms, joined by every authenticated client.
DEFAULT_ROOMS = ("ws-default", "ws-notification")

AUTH_TIMEOUT = 4001
HEARTBEAT_TIMEOUT = 4002
AUTH_FAILED = 4003
ENCRYPTION_REQUIRED = 4004

#: Longest room name a client may ask for.
MAX_ROOM_NAME = 256

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
    * ``validate_rooms(client, rooms)``: the rooms of a ``join`` the client may enter (without
      it, every ``join`` is refused);
    * ``on_connected(client)``, ``on_disconnected(client)`` (for every connection, even one
      that never authenticated), ``on_message(client, frame)`` for the other events;
    * with ``require_encryption``: ``handshake(client, data)`` (the ``authenticate`` data) sets
      up the client's key and returns a :class:`Handshake`, and ``outbound_transformer(client,
      event, data)`` seals each message for it (:class:`crosswire.crypto.Encryption` is both).

    Times are in seconds. A RoomServer serves one App.
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
        self.auth_timeout = auth_timeout
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.require_encryption = require_encryption
        self.handshake = handshake
        self.outbound_transformer = outbound_transformer
        self._app: App | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: dict[str, RoomClient] = {}
        self._sweep: asyncio.TimerHandle | None = None

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
        return Hooks(open=self._open, close=self._close)

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

    # -- the connection ------------------------------------------------------------------

    def _open(self, peer: Peer) -> None:
        loop = self._loop = asyncio.get_running_loop()
        client = RoomClient(peer, loop.time())
        peer._session = client
        peer._on_data = self._frame
        self._clients[peer.id] = client
        client._auth_timer = loop.call_later(
            self.auth_timeout, self._auth_expired, client, ClientState.UNAUTHORIZED
        )
        if self._sweep is None:
            self._sweep = loop.call_later(self.heartbeat_interval, self._sweep_idle)

    def _close(self, peer: Peer, code: int, reason: str) -> None:
        client: RoomClient | None = peer._session
        if client is None or self._clients.pop(peer.id, None) is None:
            return
        if client._auth_timer is not None:
            client._auth_timer.cancel()
        if client._auth_task is not None:  # authenticate or handshake still running
            client._auth_task.cancel()
        client.state = ClientState.DISCONNECTED
        if self.on_disconnected is not None:
            self._call(client, self.on_disconnected, client)

    def _frame(self, peer: Peer, data: str | bytes, is_binary: bool) -> None:
        client: RoomClient = peer._session
        assert self._loop is not None
        client.last_activity = self._loop.time()
        try:
            frame = events.decode(data)
        except events.BadEvent as exc:
            self._error(client, str(exc))
            return
        event = frame.event
        if event == "heartbeat":
            return
        if event == "authenticate":
            self._authenticate(client, frame.data)
        elif client.state is not ClientState.AUTHENTICATED:
            self._error(client, "Not authenticated")
        elif event == "join":
            self._join(client, frame.data)
        elif event == "leave":
            self._leave(client, frame.data)
        elif self.on_message is not None:
            self._call(client, self.on_message, client, frame, failed=self._internal_error)

    # -- authentication ----------------------------------------------------------------------

    def _authenticate(self, client: RoomClient, data: Any) -> None:
        if client.state is not ClientState.UNAUTHORIZED:
            self._error(client, "Already authenticated")
            return
        client.state = ClientState.AUTHENTICATING
        assert self._loop is not None
        if client._auth_timer is not None:
            client._auth_timer.cancel()
        client._auth_timer = self._loop.call_later(
            self.auth_timeout * 3, self._auth_expired, client, ClientState.AUTHENTICATING
        )
        client._auth_task = self.app._spawn(
            self._run_authentication(client, {} if data is None else data)
        )

    def _auth_expired(self, client: RoomClient, state: ClientState) -> None:
        if client.state is state:
            client.peer.close(AUTH_TIMEOUT, "Authentication timeout")

    async def _run_authentication(self, client: RoomClient, data: Any) -> None:
        peer = client.peer
        try:
            identity = await _settle(self.authenticate(client, data))
        except Exception:
            logger.exception("authenticate raised for client %s", client.id)
            self._refuse(client, "Authentication error")
            return
        if peer._state is not ReadyState.OPEN:
            return
        if not identity:
            self._refuse(client, "Authentication failed")
            return
        if not isinstance(identity, Identity):
            logger.error("authenticate returned %r; expected an Identity or None", identity)
            self._refuse(client, "Authentication error")
            return
        client.user_id = identity.user_id
        client.metadata = identity.metadata
        # Still AUTHENTICATING during the handshake: no join, no message, nothing sent to
        # it in clear, and the authentication timer still runs.
        if self.require_encryption and not await self._set_up_encryption(client, data):
            return
        self._admit(client)
        if self.on_connected is not None:
            self._call(client, self.on_connected, client)

    async def _set_up_encryption(self, client: RoomClient, data: Any) -> bool:
        assert self.handshake is not None and self.outbound_transformer is not None
        peer = client.peer
        try:
            handshake = await _settle(self.handshake(client, data))
        except Exception:
            logger.exception("the encryption handshake raised for client %s", client.id)
            handshake = None
        if peer._state is not ReadyState.OPEN:
            return False
        if not isinstance(handshake, Handshake):
            self._error(client, "Encryption handshake failed")
            peer.close(ENCRYPTION_REQUIRED, "Encryption required")
            return False
        client.encrypted = True
        client.server_public_key = handshake.server_public_key
        client.salt = handshake.salt
        transformer = self.outbound_transformer

        def transform(peer: Peer, event: str, data: Any) -> Any:
            return transformer(client, event, data)

        peer._transform = transform
        return True

    def _admit(self, client: RoomClient) -> None:
        """Make an authenticated client addressable, put it in its rooms, say ``connected``."""
        peer = client.peer
        client.state = ClientState.AUTHENTICATED
        if client.user_id is not None:
            peer.identify(client.user_id)
        self.app.hub.admit(peer)
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
        # In clear even for an encrypted client: it needs the key material to read the rest.
        peer._send_json(events.encode("connected", connected))

    def _refuse(self, client: RoomClient, message: str) -> None:
        self._error(client, message)
        client.peer.close(AUTH_FAILED, "Authentication failed")

    # -- rooms -------------------------------------------------------------------------------

    def _join(self, client: RoomClient, data: Any) -> None:
        rooms = _rooms_of(data)
        if rooms is None:
            self._error(client, "Invalid rooms")
            return
        if not rooms:
            return
        wanted = list(
            dict.fromkeys(
                r for r in rooms if 0 < len(r) <= MAX_ROOM_NAME and not r.startswith("ws:")
            )
        )
        if self.validate_rooms is None or not wanted:
            self._error(client, "Join rejected", rooms)
            return
        if self._too_many(client, wanted):  # before validate_rooms: it gets a bounded list
            return
        try:
            allowed = self.validate_rooms(client, wanted)
        except Exception:
            logger.exception("validate_rooms raised for client %s", client.id)
            self._error(client, "Join rejected", rooms)
            return
        if inspect.isawaitable(allowed):
            self._track(client, self._join_later(client, rooms, wanted, allowed))
        else:
            self._enter(client, rooms, wanted, allowed)

    async def _join_later(
        self, client: RoomClient, rooms: list[str], wanted: list[str], allowed: Awaitable[Any]
    ) -> None:
        try:
            result = await allowed
        except Exception:
            logger.exception("validate_rooms raised for client %s", client.id)
            result = ()
        self._enter(client, rooms, wanted, result)

    def _enter(self, client: RoomClient, rooms: list[str], wanted: list[str], allowed: Any) -> None:
        peer = client.peer
        if peer._state is not ReadyState.OPEN:
            return
        permitted = set(allowed or ()) & set(wanted)  # validate_rooms can only narrow
        entering = [room for room in wanted if room in permitted]
        if self._too_many(client, entering):  # (another join may have ended meanwhile)
            return
        for room in entering:
            peer.subscribe(room)
        rejected = [r for r in rooms if r not in permitted]
        if rejected:
            self._error(client, "Join rejected", rejected)

    def _too_many(self, client: RoomClient, rooms: list[str]) -> bool:
        """Refuse a join whose ``rooms`` (distinct) would take the client past
        ``Limits.max_topics``: an error ``Too many rooms``, and none of them is joined."""
        joined = client.rooms
        limit = self.app.limits.max_topics
        if len(joined) + sum(room not in joined for room in rooms) <= limit:
            return False
        self._error(client, "Too many rooms", limit=limit)
        return True

    def _leave(self, client: RoomClient, data: Any) -> None:
        rooms = _rooms_of(data)
        if rooms is None:
            self._error(client, "Invalid rooms")
            return
        for room in rooms:
            client.peer.unsubscribe(room)  # its default rooms and its own too, as the seed

    # -- heartbeat ---------------------------------------------------------------------------

    def _sweep_idle(self) -> None:
        self._sweep = None
        assert self._loop is not None
        now = self._loop.time()
        for client in list(self._clients.values()):
            if (
                client.state is ClientState.AUTHENTICATED
                and now - client.last_activity > self.heartbeat_timeout
            ):
                client.peer.close(HEARTBEAT_TIMEOUT, "Heartbeat timeout")
        if self._clients:
            self._sweep = self._loop.call_later(self.heartbeat_interval, self._sweep_idle)

    # -- sending and running callbacks -------------------------------------------------------

    def _error(
        self,
        client: RoomClient,
        message: str,
        rooms: list[str] | None = None,
        *,
        limit: int | None = None,
    ) -> None:
        """An ``error`` event, through the client's transform once it is encrypted."""
        data: dict[str, Any] = {"message": message}
        if rooms is not None:
            data["rooms"] = rooms
        if limit is not None:
            data["limit"] = limit
        peer = client.peer
        if peer._transform is None:
            peer._send_json(events.encode("error", data))
        else:
            self.app.hub.to_peer(peer, "error", data)

    def _call(
        self,
        client: RoomClient,
        fn: Callable[..., Any],
        *args: Any,
        failed: Callable[[RoomClient], None] | None = None,
    ) -> None:
        """Run a callback (in a task if it is async); an exception is logged, then
        ``failed(client)`` runs."""
        try:
            result = fn(*args)
        except Exception:
            logger.exception("%r raised for client %s", fn, client.id)
            if failed is not None:
                failed(client)
            return
        if inspect.isawaitable(result):
            self._track(client, _logged(result, fn, client, failed))

    def _internal_error(self, client: RoomClient) -> None:
        """``on_message`` raised: tell the client (never what was raised)."""
        self._error(client, "Internal error")

    def _track(self, client: RoomClient, work: Awaitable[None]) -> None:
        """Run ``work`` as a task of the App; a client with too many running pauses reading."""

        async def run() -> None:
            try:
                await work
            finally:
                client._handlers_running -= 1
                if client._reading_paused and client._handlers_running <= limit // 2:
                    client._reading_paused = False
                    if peer._state is not ReadyState.CLOSED:
                        peer._transport.resume_reading()

        peer = client.peer
        limit = self.app.limits.inbound_queue
        client._handlers_running += 1
        if client._handlers_running >= limit and not client._reading_paused:
            client._reading_paused = True
            peer._transport.pause_reading()
        self.app._spawn(run())


async def _settle(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


async def _logged(
    result: Awaitable[Any],
    fn: Callable[..., Any],
    client: RoomClient,
    failed: Callable[[RoomClient], None] | None,
) -> None:
    try:
        await result
    except Exception:
        logger.exception("%r raised for client %s", fn, client.id)
        if failed is not None:
            failed(client)


def _rooms_of(data: Any) -> list[str] | None:
    """The ``rooms`` of a join/leave, or None when they are not a list of strings."""
    rooms = data.get("rooms") if isinstance(data, dict) else None
    if not isinstance(rooms, list) or not all(isinstance(r, str) for r in rooms):
        return None
    return rooms


def _now_iso() -> str:
    """``2026-02-11T10:20:30.123Z``, as JavaScript's ``toISOString``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
