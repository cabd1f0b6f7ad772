"""crosswire: typed real-time WebSocket backends for Python.

Write WebSocket hooks once (:func:`define_hooks`) or a typed :class:`Router` (schemas from
:func:`message` and :func:`rpc`), wrap either in an :class:`App`, and serve it on the
standalone server (:func:`serve`), under any ASGI server (:func:`asgi`) or in aiohttp
(:func:`aiohttp_handler`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .app import App
from .auth import Identity
from .endpoint import Endpoint
from .errors import (
    BusError,
    ConfigurationError,
    CrosswireError,
    ErrorCode,
    JoinRefused,
    ValidationError,
    WorkerError,
    WsError,
    is_retryable,
)
from .hooks import Hooks, define_hooks
from .http import Accept, Headers, QueryParams, Request, Response
from .limits import Limits
from .peer import CloseCode, Message, Peer, ReadyState
from .pubsub import Emitter, History, HistoryEntry, Hub, Position
from .router import Heartbeat, LimitExceeded, Router
from .router.context import (
    AuthContext,
    CloseContext,
    ConnectionContext,
    EventContext,
    JoinContext,
    LeaveContext,
    PublishResult,
    RpcContext,
)
from .schema import MessageSchema, message, rpc
from .server import RunningServer, serve, start

if TYPE_CHECKING:
    from .adapters.asgi import ASGIApp

__all__ = [
    "Accept",
    "App",
    "AuthContext",
    "BusError",
    "CloseCode",
    "CloseContext",
    "ConfigurationError",
    "ConnectionContext",
    "CrosswireError",
    "Emitter",
    "Endpoint",
    "ErrorCode",
    "EventContext",
    "Headers",
    "Heartbeat",
    "History",
    "HistoryEntry",
    "Hooks",
    "Hub",
    "Identity",
    "JoinContext",
    "JoinRefused",
    "LeaveContext",
    "LimitExceeded",
    "Limits",
    "Message",
    "MessageSchema",
    "Peer",
    "Position",
    "PublishResult",
    "QueryParams",
    "ReadyState",
    "Request",
    "Response",
    "Router",
    "RpcContext",
    "RunningServer",
    "ValidationError",
    "WorkerError",
    "WsError",
    "__version__",
    "aiohttp_handler",
    "asgi",
    "define_hooks",
    "is_retryable",
    "message",
    "rpc",
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
