"""Endpoints: the paths an App serves, each with its hooks (or router) and its wire dialects.

::

    app = crosswire.App(
        endpoints=[
            Endpoint("/chat", chat_router, dialects=[ROVER]),
            Endpoint("/echo", echo_router, dialects=[ROVER, CANONICAL]),
        ]
    )

A handshake on a path no endpoint serves is refused with 404 before any hook runs.
``App(handler)`` is one endpoint that serves every path.

The dialect of a connection is chosen at the handshake, among its endpoint's (the first is the
default): a ``dialect`` query parameter names one (``/echo?dialect=canonical``; one the
endpoint does not serve is refused with 400), else the first subprotocol the client offers
that names one (``crosswire.rover``; the server answers with it, unless the upgrade hook
accepts with a subprotocol of its own), else the default. Without ``dialects``, an endpoint
speaks what its handler does: a Router canonical, a RoomServer the events dialect; plain hooks
read frames themselves, and receive publications in the events dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .errors import ConfigurationError
from .hooks import HOOK_NAMES, Hooks
from .http import Request
from .wire import EVENTS, Dialect
from .wire.dialect import select

__all__ = ["Endpoint"]


class Endpoint:
    """What one path serves: ``handler`` (a :class:`~crosswire.Router`, a RoomServer,
    :class:`~crosswire.Hooks`, or an object with hook methods) in ``dialects``.

    ``path`` is matched exactly against the request's path (no query, no trailing-slash
    folding); ``None`` matches every path (what ``App(handler)`` makes).
    """

    def __init__(
        self,
        path: str | None,
        handler: object,
        *,
        dialects: Sequence[Dialect] | None = None,
    ) -> None:
        if path is not None and not path.startswith("/"):
            raise ConfigurationError(f"an endpoint's path starts with '/': {path!r}")
        if dialects is not None and not dialects:
            raise ConfigurationError("an endpoint serves at least one dialect")
        self.path = path
        self.handler = handler
        self._dialects = tuple(dialects) if dialects is not None else None
        #: Set when the App is built (:meth:`served`).
        self.hooks = Hooks()
        self.inline = True
        self.admits_on_open = True
        self.dialects: tuple[Dialect, ...] = (EVENTS,)
        self._upgrade_is_async: Callable[[], bool] = lambda: False

    def __repr__(self) -> str:
        names = ", ".join(d.name for d in self.dialects)
        return f"<Endpoint {self.path or '*'} {type(self.handler).__name__} [{names}]>"

    def served(
        self,
        hooks: Hooks,
        *,
        dialects: Sequence[Dialect],
        admits_on_open: bool = True,
        upgrade_is_async: Callable[[], bool] | None = None,
    ) -> None:
        """What serves this endpoint (set once, by the App as it is made): ``hooks`` (those
        its handler built for the App), and its handler's default ``dialects`` (used unless
        the endpoint names its own)."""
        self.hooks = hooks
        self.inline = not any(hooks.is_async(n) for n in HOOK_NAMES if n != "upgrade")
        self.admits_on_open = admits_on_open
        self.dialects = self._dialects if self._dialects is not None else tuple(dialects)
        if upgrade_is_async is not None:
            self._upgrade_is_async = upgrade_is_async
        else:
            self._upgrade_is_async = lambda: hooks.is_async("upgrade")

    def upgrade_is_async(self) -> bool:
        """Whether the upgrade hook must be awaited (see :meth:`crosswire.App.upgrade_is_async`)."""
        return self._upgrade_is_async()

    def dialect_for(self, request: Request) -> tuple[Dialect, str | None] | None:
        """The dialect of a connection opened with ``request``, and the subprotocol that
        says so (None: none); None when the request asks for one not served here."""
        return select(self.dialects, request.subprotocols, request.query.get("dialect"))
