"""The typed router (WS-Kit's, in Python).

=============  ==========================================================================
module         what it holds
=============  ==========================================================================
``router``     :class:`Router`: options, registration (``on``, ``rpc``, ``use``, ``route``,
               ``merge``, lifecycle handlers) and ``publish``
``chain``      middleware, validation and handler composed into one runnable chain
``dispatch``   serving a router in one App: sessions, frames, the RPC lifecycle, errors,
               control frames, heartbeat
=============  ==========================================================================
"""

from .dispatch import HEARTBEAT_TIMEOUT, Dispatcher, Session
from .router import Heartbeat, LimitExceeded, RouteBuilder, Router

__all__ = [
    "HEARTBEAT_TIMEOUT",
    "Dispatcher",
    "Heartbeat",
    "LimitExceeded",
    "RouteBuilder",
    "Router",
    "Session",
]
