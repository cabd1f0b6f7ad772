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

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import ConfigurationError
from .hooks import HOOK_NAMES, HookProvider, Hooks
from .http import Request
from .wire import EVENTS, Dialect
from .wire.dialect import select

if TYPE_CHECKING:
    from .app import App

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
        if isinstance(handler, type) and isinstance(handler, HookProvider):
            raise ConfigurationError(
                f"Endpoint takes a {handler.__name__}, not the class: {handler.__name__}(...)"
            )
        if dialects is not None and not dialects:
            raise ConfigurationError("an endpoint serves at least one dialect")
        self.path = path
        self.handler = handler
        self._dialects = tuple(dialects) if dialects is not None else None
        #: Set when the App is built (:meth:`serve`).
        self.hooks = Hooks()
        self.inline = True
        self.admits_on_open = True
        self.dialects: tuple[Dialect, ...] = (EVENTS,)
        self.provider: HookProvider | None = None

    def __repr__(self) -> str:
        names = ", ".join(d.name for d in self.dialects)
        return f"<Endpoint {self.path or '*'} {type(self.handler).__name__} [{names}]>"

    def serve(self, app: App) -> None:
        """Build the hooks that serve this endpoint in ``app`` (once, as the App is made)."""
        handler = self.handler
        if isinstance(handler, HookProvider):
            self.provider = handler
            self.admits_on_open = handler.admits_on_open
            default = handler.dialects
            handler = handler.hooks_for(app)
        else:
            default = (EVENTS,)
        self.hooks = Hooks.of(handler)
        self.inline = not any(self.hooks.is_async(n) for n in HOOK_NAMES if n != "upgrade")
        self.dialects = self._dialects if self._dialects is not None else tuple(default)

    def upgrade_is_async(self) -> bool:
        """Whether the upgrade hook must be awaited (see :meth:`crosswire.App.upgrade_is_async`)."""
        if self.provider is not None:
            return self.provider.upgrade_is_async()
        return self.hooks.is_async("upgrade")

    def dialect_for(self, request: Request) -> tuple[Dialect, str | None] | None:
        """The dialect of a connection opened with ``request``, and the subprotocol that
        says so (None: none); None when the request asks for one not served here."""
        return select(self.dialects, request.subprotocols, request.query.get("dialect"))
