"""The hooks a user writes once and every server adapter drives.

Six hooks, all optional, each a plain function or a coroutine function:

=========  ==============================  =========================================
hook       called with                     when
=========  ==============================  =========================================
upgrade    ``(request)``                   before the WebSocket opens; return ``None``
                                           or :class:`~crosswire.Accept` to open,
                                           :class:`~crosswire.Response` to refuse
open       ``(peer)``                      the WebSocket is open
message    ``(peer, message)``             a whole message arrived
close      ``(peer, code, reason)``        the connection ended (exactly once)
error      ``(peer, exc)``                 another hook raised ``exc``
drain      ``(peer)``                      the peer's send buffer drained below its
                                           low-water mark after having been full
=========  ==============================  =========================================

Only the hooks a user defines are called. Hooks can be given with :func:`define_hooks` or as
any object with methods of these names.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .http import Accept, Request, Response

if TYPE_CHECKING:
    from .peer import Message, Peer

__all__ = [
    "HOOK_NAMES",
    "Hooks",
    "check_callable",
    "define_hooks",
    "is_async_callable",
]

HOOK_NAMES = ("upgrade", "open", "message", "close", "error", "drain")

_ARITY = {"upgrade": 1, "open": 1, "message": 2, "close": 3, "error": 2, "drain": 1}

UpgradeResult = Accept | Response | None
UpgradeHook = Callable[[Request], UpgradeResult | Awaitable[UpgradeResult]]
OpenHook = Callable[["Peer"], Any]
MessageHook = Callable[["Peer", "Message"], Any]
CloseHook = Callable[["Peer", int, str], Any]
ErrorHook = Callable[["Peer", BaseException], Any]
DrainHook = Callable[["Peer"], Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Hooks:
    """A set of hooks; ``None`` means "not defined, never called"."""

    upgrade: UpgradeHook | None = None
    open: OpenHook | None = None
    message: MessageHook | None = None
    close: CloseHook | None = None
    error: ErrorHook | None = None
    drain: DrainHook | None = None

    @classmethod
    def of(cls, source: object) -> Hooks:
        """Collect the hooks of ``source``: a :class:`Hooks`, or any object with hook methods.

        Each hook is checked once here, so a hook with the wrong number of parameters fails at
        startup with a message that names it, not on the first connection. So does a source
        that is not hooks at all (None, a dict, an object with none of the hook methods), which
        would otherwise be served and ignore every message.
        """
        if isinstance(source, Hooks):
            hooks = source
        else:
            found = {name: getattr(source, name, None) for name in HOOK_NAMES}
            found = {k: v for k, v in found.items() if v is not None}
            if not found:
                raise ConfigurationError(_not_hooks(source))
            hooks = cls(**found)
        for name in HOOK_NAMES:
            _check_signature(name, getattr(hooks, name))
        return hooks

    def is_async(self, name: str) -> bool:
        """Whether hook ``name`` is a coroutine function (must be awaited)."""
        fn = getattr(self, name)
        return fn is not None and _is_coroutine_function(fn)


def define_hooks(
    *,
    upgrade: UpgradeHook | None = None,
    open: OpenHook | None = None,
    message: MessageHook | None = None,
    close: CloseHook | None = None,
    error: ErrorHook | None = None,
    drain: DrainHook | None = None,
) -> Hooks:
    """Define WebSocket hooks; only the ones given are ever called.

    >>> hooks = define_hooks(message=lambda peer, msg: peer.send(msg.text()))
    """
    return Hooks.of(
        Hooks(upgrade=upgrade, open=open, message=message, close=close, error=error, drain=drain)
    )


def _not_hooks(source: object) -> str:
    """Why ``source`` is not hooks, and what to write instead."""
    names = ", ".join(HOOK_NAMES)
    usage = "crosswire.define_hooks(message=...), an object with hook methods, or a Router"
    if source is None:
        return f"App needs hooks: {usage}; got None"
    if isinstance(source, Mapping):
        return (
            f"App takes hooks, not a {type(source).__name__}: "
            f"crosswire.define_hooks(**hooks) makes hooks of one whose keys are {names}"
        )
    similar = {
        attr: name
        for attr in dir(source)
        for name in HOOK_NAMES
        if attr.lower().replace("_", "") in (f"on{name}", f"handle{name}")
    }
    if similar:
        found = ", ".join(sorted(similar))
        meant = ", ".join(similar[attr] for attr in sorted(similar))
        return (
            f"{type(source).__name__} has none of the hook methods ({names}), but has "
            f"{found}: hook methods are named {meant}, without a prefix"
        )
    return (
        f"App takes hooks: {usage}; {type(source).__name__} has none of the hook methods ({names})"
    )


def _is_coroutine_function(fn: object) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def _check_signature(name: str, fn: object) -> None:
    if fn is not None:
        check_callable(f"hook {name!r}", fn, _ARITY[name], _describe(name))


def check_callable(what: str, fn: object, arity: int, params: str) -> None:
    """Fail now, with a message naming ``what``, unless ``fn`` can be called with ``arity``
    positional arguments (``params`` names them for the message)."""
    if not callable(fn):
        raise ConfigurationError(f"{what} must be callable, got {fn!r}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: trust them
        return
    try:
        signature.bind(*([None] * arity))
    except TypeError as exc:
        raise ConfigurationError(
            f"{what} must accept {arity} positional argument(s) ({params}), "
            f"but {fn!r} has signature {signature}"
        ) from exc


def is_async_callable(fn: object) -> bool:
    """Whether calling ``fn`` returns a coroutine (async functions and async ``__call__``)."""
    return _is_coroutine_function(fn)


def _describe(name: str) -> str:
    return {
        "upgrade": "request",
        "open": "peer",
        "message": "peer, message",
        "close": "peer, code, reason",
        "error": "peer, exc",
        "drain": "peer",
    }[name]
