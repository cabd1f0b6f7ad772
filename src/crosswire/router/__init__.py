"""The typed router (WS-Kit's, in Python), serving every wire dialect.

=============  ==========================================================================
module         what it holds
=============  ==========================================================================
``router``     :class:`Router`: options, registration (``on``, ``rpc``, ``use``, ``route``,
               ``topic``, ``map``, ``authenticate``, lifecycle handlers) and ``publish``
``chain``      middleware, validation and handler composed into one runnable chain
``dispatch``   serving a router in one App: the per-frame pipeline, the RPC lifecycle,
               errors, control frames, heartbeat
``topics``     the dispatcher's desk for topic joins and leaves (acks, refusals, limits)
``inband``     the dispatcher's desk for in-band authentication (seed 003's scheme)
``session``    :class:`Session`: the router's state for one connection
``context``    what handlers receive (the contexts, :class:`LimitExceeded`), and the
               dispatcher's interface that contexts and desks use (``Desk``, ``Serving``)
=============  ==========================================================================

Imports go one way: ``router`` -> ``dispatch`` -> ``topics``/``inband`` -> ``context`` ->
``session``; the lower modules see the dispatcher only through the ``Serving`` protocol.
"""

from .context import LimitExceeded
from .dispatch import HEARTBEAT_TIMEOUT, Dispatcher
from .router import Heartbeat, RouteBuilder, Router
from .session import Session

__all__ = [
    "HEARTBEAT_TIMEOUT",
    "Dispatcher",
    "Heartbeat",
    "LimitExceeded",
    "RouteBuilder",
    "Router",
    "Session",
]
