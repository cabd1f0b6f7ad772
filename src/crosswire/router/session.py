"""The router's state for one connection (:class:`Session`), which the dispatcher keeps and
the contexts read. No I/O of its own."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..rpc import CallTable
from ..wire import Control, Dialect, Envelope
from ..wire.dialect import Render

if TYPE_CHECKING:
    from ..peer import Peer
    from .lane import Lane

__all__ = ["Compiled", "Session"]

#: A route, and the callable that runs its middleware, validation and handler.
Compiled = tuple[Any, Callable[[Any], Any]]


class Session:
    """The router's state for one connection."""

    __slots__ = (
        "auth",
        "auth_task",
        "auth_timer",
        "authenticated",
        "calls",
        "decode",
        "dialect",
        "events_running",
        "heartbeat",
        "lane",
        "last_seen",
        "next_id",
        "peer",
        "render",
        "rpcs_running",
        "runs",
        "topic_backlog",
        "waiting_ack",
    )

    def __init__(
        self,
        peer: Peer,
        max_inflight: int,
        dialect: Dialect,
        runs: dict[str, Compiled],
        lane: Lane,
    ) -> None:
        self.peer = peer
        #: The connection's dialect, and its decoder (read once: the hot path calls it).
        self.dialect = dialect
        self.decode = dialect.decode
        #: How the connection's events are rendered: its dialect's, behind the router's maps.
        self.render: Render = dialect.render
        #: The compiled routes of this connection's dialect (see Dispatcher._runs).
        self.runs = runs
        #: The dialect's fast lane (:mod:`crosswire.router.lane`), when it has one.
        self.lane = lane
        self.calls: CallTable[Any] = CallTable(max_inflight)
        #: None: not checked yet; True/False: the verdict; a task: the check is running.
        self.auth: bool | asyncio.Task[bool] | None = None
        #: In-band authentication: whether it is done (True without one), its timer, and the
        #: check still running.
        self.authenticated = True
        self.auth_timer: asyncio.TimerHandle | None = None
        self.auth_task: asyncio.Task[None] | None = None
        self.next_id = 0
        self.last_seen = 0.0
        self.waiting_ack = False
        self.heartbeat: asyncio.TimerHandle | None = None
        #: Tasks of this connection's async event handlers, and of its RPC handlers (whether
        #: or not their call has been answered), still running.
        self.events_running = 0
        self.rpcs_running = 0
        #: Topic frames waiting while one of this connection's is being served (None: none
        #: is being served).
        self.topic_backlog: collections.deque[tuple[Envelope, Control]] | None = None
