"""Exceptions raised by crosswire, and the error codes sent to clients.

The tree::

    CrosswireError              root: catch this to catch anything crosswire raises
     ├── ConfigurationError     hooks, schemas, handlers, limits or server options that cannot
     │                          work; raised at startup (registration), never while serving
     ├── ValidationError        a payload does not match its schema; ``issues`` says where
     ├── BusError               the pub/sub bus (Redis) failed, refused or sent something
     │                          unreadable; handed to the Hub's ``on_error``, raised only by
     │                          ``flush()``, the reads ``presence()`` and ``history()``, and
     │                          the ``Emitter``
     ├── WorkerError            ``serve(..., workers=N)`` could not go on: a worker failed
     │                          before it was listening, or kept dying (too many restarts)
     └── WsError                an error to send to a client: ``code`` (an ErrorCode),
          │                     ``message``, ``details``, retry hints; raise it in a handler
          │                     or build one with ``WsError.wrap(exc, code, ...)``
          └── JoinRefused       a client's join that the server refused: ``topic``, and the
                                server's ``code`` and ``reason``; raised by the clients'
                                and the test client's ``join``

Errors raised *inside* user hooks and handlers are never swallowed: the hooks layer hands them
to the ``error`` hook, the router turns them into an ``INTERNAL`` error reply (details only with
``expose_error_details``) and passes them to ``on_error``.

The 13 error codes and their retry semantics are WS-Kit's (seed 002); ``docs/errors.md`` has the
table. Nothing here does I/O.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

__all__ = [
    "RETRYABLE_CODES",
    "BusError",
    "ConfigurationError",
    "CrosswireError",
    "ErrorCode",
    "JoinRefused",
    "ValidationError",
    "WorkerError",
    "WsError",
    "is_retryable",
]


class CrosswireError(Exception):
    """Root of every exception crosswire raises."""


class ConfigurationError(CrosswireError):
    """Hooks, schemas, handlers, limits or server options that cannot work, detected before
    serving."""


class ValidationError(CrosswireError):
    """A payload (or meta) does not match its schema.

    ``issues`` lists what is wrong, each ``{"path": [...], "message": ...}``, in the form sent
    to clients in an ``INVALID_ARGUMENT`` error's details.
    """

    def __init__(self, message: str, issues: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.issues: list[dict[str, Any]] = issues or []


class BusError(CrosswireError):
    """The pub/sub bus failed: a connection to Redis was lost or refused, messages were
    dropped, or a message on the bus could not be read. Serving goes on: the Hub reports these
    to its ``on_error`` callback and reconnects by itself."""


class WorkerError(CrosswireError):
    """The workers of ``serve(..., workers=N)`` could not go on serving: one failed before
    it was listening, or one died more often than it may be restarted. Every worker has
    been stopped when this is raised; the message says which and how (exit code or
    signal)."""


class ErrorCode(StrEnum):
    """The 13 error codes, aligned with gRPC's."""

    # Terminal: do not retry.
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    CANCELLED = "CANCELLED"
    # Transient: retry with backoff.
    ABORTED = "ABORTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    # Server / evolution: do not retry.
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"


#: Codes a client retries (with backoff) when the server does not say otherwise.
RETRYABLE_CODES = frozenset(
    {
        ErrorCode.ABORTED,
        ErrorCode.DEADLINE_EXCEEDED,
        ErrorCode.RESOURCE_EXHAUSTED,
        ErrorCode.UNAVAILABLE,
    }
)


def is_retryable(code: ErrorCode | str) -> bool:
    """Whether a client should retry an error with ``code`` (the inference table of seed 002)."""
    return code in RETRYABLE_CODES


class WsError(CrosswireError):
    """An error for a client. Raise it in a handler, or pass its parts to ``ctx.error``.

    ``WsError(code, message, details)`` is WS-Kit's ``WsKitError.from(...)``;
    :meth:`wrap` keeps another exception as the cause. ``retryable`` overrides the code's
    inferred retry semantics; ``retry_after_ms`` is a backoff hint and is refused for codes that
    are not retryable.
    """

    def __init__(
        self,
        code: ErrorCode | str,
        message: str = "",
        details: Mapping[str, Any] | None = None,
        *,
        retryable: bool | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        try:
            self.code = ErrorCode(code)
        except ValueError:
            raise ValueError(
                f"unknown error code {code!r}; use one of: {', '.join(ErrorCode)}"
            ) from None
        if retry_after_ms is not None:
            if retry_after_ms < 0:
                raise ValueError(f"retry_after_ms must be >= 0, got {retry_after_ms}")
            if not (retryable if retryable is not None else is_retryable(self.code)):
                raise ValueError(
                    f"retry_after_ms is only allowed on retryable errors, not {self.code}"
                )
        super().__init__(message or self.code.value)
        self.message = message or self.code.value
        self.details: dict[str, Any] = dict(details or {})
        self.retryable = retryable
        self.retry_after_ms = retry_after_ms

    @classmethod
    def wrap(
        cls,
        error: BaseException,
        code: ErrorCode | str = ErrorCode.INTERNAL,
        message: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> WsError:
        """``error`` as a WsError: itself if it is one, else a new one with it as the cause."""
        if isinstance(error, WsError):
            return error
        wrapped = cls(code, message if message is not None else str(error), details)
        wrapped.__cause__ = error
        return wrapped

    @property
    def original_error(self) -> BaseException | None:
        """The exception this one wraps, if any."""
        return self.__cause__

    def to_payload(self) -> dict[str, Any]:
        """The error as sent to a client: no cause, no stack."""
        payload: dict[str, Any] = {"code": self.code.value, "message": self.message}
        if self.details:
            payload["details"] = self.details
        if self.retryable is not None:
            payload["retryable"] = self.retryable
        if self.retry_after_ms is not None:
            payload["retryAfterMs"] = self.retry_after_ms
        return payload

    def to_json(self) -> dict[str, Any]:
        """The error for structured logs: code, message, details, stack and cause."""
        out: dict[str, Any] = {
            "code": self.code.value,
            "message": self.message,
            "details": self.details,
            "stack": "".join(traceback.format_exception(self)) if self.__traceback__ else None,
        }
        cause = self.__cause__
        if cause is not None:
            out["cause"] = {
                "name": type(cause).__name__,
                "message": str(cause),
                "stack": "".join(traceback.format_exception(cause))
                if cause.__traceback__
                else None,
            }
        return out

    def __repr__(self) -> str:
        return f"WsError({self.code.value}, {self.message!r})"


class JoinRefused(WsError):
    """The server refused a client's join of ``topic``: ``code`` and ``reason`` (the
    ``message``) are the server's, ``details`` what else it said. Raised by
    ``Client.join`` (:mod:`crosswire.client`) and ``TestConnection.join``
    (:mod:`crosswire.testing`)."""

    def __init__(
        self,
        topic: str,
        code: ErrorCode | str,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
        *,
        retryable: bool | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(code, reason, details, retryable=retryable, retry_after_ms=retry_after_ms)
        self.topic = topic

    @property
    def reason(self) -> str:
        """Why the server refused (its ``reason``; the same as ``message``)."""
        return self.message

    def __repr__(self) -> str:
        return f"JoinRefused({self.topic!r}, {self.code.value}, {self.message!r})"
