"""RPC bookkeeping of one connection: which calls are in flight, and their deadlines. Sans-I/O:
times are passed in (``now``, in seconds of the event loop's clock), nothing here awaits.

Bounded: at most ``limit`` calls per connection are in flight. Past it a new call is refused
with ``RESOURCE_EXHAUSTED``; a second call with the ``correlationId`` of one still in flight is
refused with ``ALREADY_EXISTS`` (its replies could not be told apart).
"""

from __future__ import annotations

from typing import TypeVar

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
    if timeout_ms >= MAX_TIMEOUT * 1000:  # (any int: a huge one would overflow a float)
        return now + MAX_TIMEOUT
    return now + timeout_ms / 1000.0


class CallTable(dict[str, C]):
    """The calls in flight on one connection, by correlation id: a dict (``get``, ``pop``,
    ``len`` are the dict's own, with no Python frame on the hot path) that knows its limit.

    Admitting a call is :meth:`admit`, or in line on a hot path::

        if cid in table or len(table) >= table.limit:
            table.check_room(cid)  # raises
        table[cid] = call
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def check_room(self, correlation_id: str) -> None:
        """Raise the error for a new call that cannot be admitted, if any."""
        if correlation_id in self:
            raise WsError(
                ErrorCode.ALREADY_EXISTS,
                f"an RPC with correlationId {correlation_id!r} is already in flight",
            )
        if len(self) >= self.limit:
            raise self.exhausted()

    def exhausted(self) -> WsError:
        """The error refusing a call past the limit (``RESOURCE_EXHAUSTED``, retry in 100 ms)."""
        return WsError(
            ErrorCode.RESOURCE_EXHAUSTED,
            f"too many RPCs in flight on this connection (limit {self.limit})",
            retry_after_ms=100,
        )

    def admit(self, correlation_id: str, call: C) -> None:
        """Add a call, or raise the error that refuses it (:meth:`check_room`)."""
        if correlation_id in self or len(self) >= self.limit:
            self.check_room(correlation_id)
        self[correlation_id] = call

    def drain(self) -> list[C]:
        """Forget every call and return them (the connection is gone)."""
        calls = list(self.values())
        self.clear()
        return calls
