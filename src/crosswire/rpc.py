"""RPC bookkeeping of one connection: which calls are in flight, and their deadlines. Sans-I/O:
times are passed in (``now``, in seconds of the event loop's clock), nothing here awaits.

Bounded: at most ``limit`` calls per connection are in flight. Past it a new call is refused
with ``RESOURCE_EXHAUSTED``; a second call with the ``correlationId`` of one still in flight is
refused with ``ALREADY_EXISTS`` (its replies could not be told apart).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from .errors import ErrorCode, WsError

__all__ = ["CallTable", "deadline_for"]

C = TypeVar("C")

#: The longest deadline a client may ask for with ``meta.timeoutMs`` (one day).
MAX_TIMEOUT = 86_400.0


def deadline_for(now: float, timeout_ms: int | None, default_timeout: float) -> float:
    """When a call received at ``now`` must be answered: the client's ``timeoutMs`` if it sent
    one (capped at a day), else the router's default."""
    if timeout_ms is None:
        return now + default_timeout
    return now + min(timeout_ms / 1000.0, MAX_TIMEOUT)


class CallTable(Generic[C]):
    """The calls in flight on one connection, by correlation id."""

    __slots__ = ("_calls", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._calls: dict[str, C] = {}

    def check_room(self, correlation_id: str) -> None:
        """Raise the error for a new call that cannot be admitted, if any."""
        if correlation_id in self._calls:
            raise WsError(
                ErrorCode.ALREADY_EXISTS,
                f"an RPC with correlationId {correlation_id!r} is already in flight",
            )
        if len(self._calls) >= self.limit:
            raise WsError(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"too many RPCs in flight on this connection (limit {self.limit})",
                retry_after_ms=100,
            )

    def add(self, correlation_id: str, call: C) -> None:
        """Admit a call (after :meth:`check_room`)."""
        self._calls[correlation_id] = call

    def admit(self, correlation_id: str, call: C) -> None:
        """:meth:`check_room`, then :meth:`add`: one step for the common case."""
        calls = self._calls
        if correlation_id in calls or len(calls) >= self.limit:
            self.check_room(correlation_id)
        calls[correlation_id] = call

    def pop(self, correlation_id: str) -> C | None:
        """Forget a call; returns it, or None if it was not in flight."""
        return self._calls.pop(correlation_id, None)

    def get(self, correlation_id: str) -> C | None:
        return self._calls.get(correlation_id)

    def drain(self) -> list[C]:
        """Forget every call and return them (the connection is gone)."""
        calls = list(self._calls.values())
        self._calls.clear()
        return calls

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[C]:
        return iter(list(self._calls.values()))
