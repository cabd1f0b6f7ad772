"""Topic routes: ``router.topic("lobby")`` or ``router.topic("room:{id}")``. Sans-I/O.

A route names one topic, or a pattern of them whose ``{parameters}`` each match one or more
characters (``room:{id}`` matches ``room:42`` with ``{"id": "42"}``). An exact name wins over
a pattern; patterns are tried in the order they were registered. A client can join only a
topic some route matches.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..hooks import check_callable
from ..schema import PayloadCodec
from ..schema.codecs import codec_for

if TYPE_CHECKING:
    from ..pubsub.history import History

__all__ = ["MAX_TOPIC", "JoinHandler", "LeaveHandler", "TopicRoute", "TopicTable"]

#: Longest topic name a client may ask for.
MAX_TOPIC = 256

JoinHandler = Callable[[Any], Any]
LeaveHandler = Callable[[Any], Any]

_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TopicRoute:
    """A topic (or a pattern of topics) and what joining and leaving it runs.

    ``data`` is the schema of what a join carries (a ``{"field": type}`` mapping, a
    msgspec Struct or a pydantic model, as in :func:`~crosswire.message`): a join whose data
    does not match is rejected with ``INVALID_ARGUMENT`` before its handler runs, and the
    handler reads the validated value as ``ctx.payload``. Without it, ``ctx.payload`` is what
    the client sent (an object, or None). ``history`` (a
    :class:`~crosswire.pubsub.history.History`) keeps the topics' recent events, so that a
    client that comes back recovers what it missed (``docs/delivery.md``). ``presence``
    keeps who is in each topic, on every instance (``docs/presence.md``).
    """

    __slots__ = ("_regex", "data", "history", "join", "leave", "name", "parameters", "presence")

    def __init__(
        self,
        name: str,
        *,
        data: Any = None,
        history: History | None = None,
        presence: bool = False,
    ) -> None:
        if not isinstance(name, str) or not name or len(name) > MAX_TOPIC:
            raise ConfigurationError(
                f"a topic is a non-empty string of at most {MAX_TOPIC} characters: {name!r}"
            )
        self.name = name
        self.parameters = tuple(_PARAMETER.findall(name))
        if len(set(self.parameters)) != len(self.parameters):
            raise ConfigurationError(f"topic {name!r} names a parameter twice")
        self._regex: re.Pattern[str] | None = None
        if self.parameters:
            parts = _PARAMETER.split(name)  # literal, name, literal, name, ..., literal
            regex = "".join(
                re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)"
                for i, part in enumerate(parts)
            )
            self._regex = re.compile(f"^{regex}$", re.DOTALL)
        self.data: PayloadCodec[Any] | None = (
            None if data is None else codec_for(f"topic {name}", data)
        )
        self.join: JoinHandler | None = None
        self.leave: LeaveHandler | None = None
        self.history = history
        self.presence = presence

    @property
    def is_pattern(self) -> bool:
        return self._regex is not None

    def on_join(self, handler: JoinHandler) -> TopicRoute:
        """``handler(ctx: JoinContext)`` for each join: ``ctx.accept(data)`` or
        ``ctx.reject(reason)`` (or raise a :class:`~crosswire.WsError`); returning without
        either accepts. Plain or ``async``. Without one, every join is accepted."""
        check_callable(f"topic {self.name!r} join handler", handler, 1, "ctx")
        if self.join is not None:
            raise ConfigurationError(f"topic {self.name!r} already has a join handler")
        self.join = handler
        return self

    def on_leave(self, handler: LeaveHandler) -> TopicRoute:
        """``handler(ctx: LeaveContext)`` for each leave, while the connection is still a
        member (what it publishes reaches the leaver too). A leave is never refused."""
        check_callable(f"topic {self.name!r} leave handler", handler, 1, "ctx")
        if self.leave is not None:
            raise ConfigurationError(f"topic {self.name!r} already has a leave handler")
        self.leave = handler
        return self

    def matches(self, topic: str) -> bool:
        """Whether ``topic`` is this route's (its name, or one its pattern matches)."""
        return self.match(topic) is not None

    def match(self, topic: str) -> dict[str, str] | None:
        """The parameters ``topic`` gives this route, or None when it does not match."""
        if self._regex is None:
            return {} if topic == self.name else None
        found = self._regex.match(topic)
        return found.groupdict() if found is not None else None

    def __repr__(self) -> str:
        return f"<TopicRoute {self.name!r}>"


class TopicTable:
    """A router's topic routes: exact names, then patterns in registration order."""

    __slots__ = ("_exact", "_patterns")

    def __init__(self) -> None:
        self._exact: dict[str, TopicRoute] = {}
        self._patterns: list[TopicRoute] = []

    def __bool__(self) -> bool:
        return bool(self._exact or self._patterns)

    def __iter__(self) -> Any:
        yield from self._exact.values()
        yield from self._patterns

    def add(self, route: TopicRoute) -> None:
        """Register ``route``; a name registered twice is refused."""
        if any(r.name == route.name for r in self):
            raise ConfigurationError(f"topic {route.name!r} is already registered")
        if route.is_pattern:
            self._patterns.append(route)
        else:
            self._exact[route.name] = route

    def find(self, topic: str) -> tuple[TopicRoute, dict[str, str]] | None:
        """The route of ``topic`` and its parameters, or None when no route matches."""
        route = self._exact.get(topic)
        if route is not None:
            return route, {}
        for route in self._patterns:
            params = route.match(topic)
            if params is not None:
                return route, params
        return None

    def clear(self) -> None:
        self._exact.clear()
        self._patterns.clear()
