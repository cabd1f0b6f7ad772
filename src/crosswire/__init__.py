"""crosswire: typed real-time WebSocket backends for Python.

Write WebSocket hooks once (:func:`define_hooks`), wrap them in an :class:`App`, and serve it
on the standalone server (:func:`serve`), under any ASGI server (:func:`asgi`) or in aiohttp
(:func:`aiohttp_handler`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .app import App
from .errors import ConfigurationError, CrosswireError
from .hooks import Hooks, define_hooks
from .http import Accept, Headers, QueryParams, Request, Response
from .limits import Limits
from .peer import CloseCode, Message, Peer, ReadyState
from .pubsub import Hub
from .server import RunningServer, serve, start

if TYPE_CHECKING:
    from .adapters.asgi import ASGIApp

__all__ = [
    "Accept",
    "App",
    "CloseCode",
    "ConfigurationError",
    "CrosswireError",
    "Headers",
    "Hooks",
    "Hub",
    "Limits",
    "Message",
    "Peer",
    "QueryParams",
    "ReadyState",
    "Request",
    "Response",
    "RunningServer",
    "__version__",
    "aiohttp_handler",
    "asgi",
    "define_hooks",
    "serve",
    "start",
]

__version__ = "0.1.0"


def asgi(app: App) -> ASGIApp:
    """``app`` as an ASGI application (uvicorn, hypercorn; mountable in Starlette/FastAPI)."""
    from .adapters.asgi import ASGIApp

    return ASGIApp(app)


def aiohttp_handler(app: App) -> Any:
    """An aiohttp web handler serving ``app`` (needs ``crosswire[aiohttp]``)."""
    from .adapters.aiohttp import handler

    return handler(app)
