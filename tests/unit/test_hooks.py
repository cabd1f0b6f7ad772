"""Hooks: only the ones defined are kept, and each is checked when the App is built."""

from __future__ import annotations

from typing import Any

import pytest

from crosswire import App, ConfigurationError, Hooks, Message, Peer, Router, define_hooks


def test_define_hooks_keeps_only_what_is_given() -> None:
    def message(peer: Peer, msg: Message) -> None:
        pass

    hooks = define_hooks(message=message)
    assert hooks.message is message
    assert (hooks.open, hooks.close, hooks.error, hooks.upgrade, hooks.drain) == (None,) * 5


def test_plain_object_with_hook_methods() -> None:
    class Chat:
        def open(self, peer: Peer) -> None:
            pass

        async def message(self, peer: Peer, msg: Message) -> None:
            pass

        def helper(self) -> None:
            pass

    hooks = Hooks.of(Chat())
    assert hooks.open is not None and hooks.message is not None and hooks.close is None
    assert hooks.is_async("message") and not hooks.is_async("open")
    assert not hooks.is_async("close")


def test_callable_object_with_async_call_is_async() -> None:
    class Handler:
        async def __call__(self, peer: Peer, msg: Message) -> None:
            pass

    assert define_hooks(message=Handler()).is_async("message")


def test_app_runs_plain_hooks_inline_and_async_ones_in_a_task() -> None:
    assert App(define_hooks(message=lambda peer, msg: None)).inline_hooks

    async def open_(peer: Peer) -> None:
        pass

    assert not App(define_hooks(open=open_, message=lambda peer, msg: None)).inline_hooks


@pytest.mark.parametrize(
    ("name", "hook", "expected"),
    [
        ("message", lambda peer: None, "hook 'message' must accept 2 positional argument(s)"),
        ("close", lambda peer, code: None, "(peer, code, reason)"),
        ("open", lambda: None, "hook 'open' must accept 1"),
        ("upgrade", lambda request, extra: None, "(request)"),
        ("error", "not callable", "hook 'error' must be callable"),
    ],
)
def test_malformed_hooks_fail_at_startup_with_the_hook_named(
    name: str, hook: Any, expected: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        define_hooks(**{name: hook})
    assert expected in str(refused.value)


def test_hooks_with_defaults_or_varargs_are_accepted() -> None:
    def close(peer: Peer, code: int = 1000, reason: str = "", *rest: Any) -> None:
        pass

    assert define_hooks(close=close, message=lambda *args: None).close is close


def test_objects_are_checked_too() -> None:
    class Broken:
        def message(self, peer: Peer) -> None:
            pass

    with pytest.raises(ConfigurationError, match="'message'"):
        App(Broken())


class CallbackStyle:
    """Hooks named as other libraries name their callbacks."""

    def on_message(self, peer: Peer, message: Any) -> None:
        peer.send(message)

    def onOpen(self, peer: Peer) -> None:
        pass


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ({"message": lambda peer, msg: None}, "not a dict: crosswire.define_hooks(**hooks)"),
        (None, "App needs hooks"),
        (CallbackStyle(), "has onOpen, on_message: hook methods are named open, message"),
        (object(), "object has none of the hook methods"),
        (Router, "App takes a Router, not the class"),
    ],
)
def test_what_is_not_hooks_is_refused_with_what_to_write_instead(source: Any, says: str) -> None:
    """Issue 14: these were accepted, and the App ignored every message."""
    with pytest.raises(ConfigurationError) as refused:
        App(source)
    assert says in str(refused.value)


def test_hooks_as_static_methods_of_a_class_and_empty_define_hooks_are_accepted() -> None:
    class Static:
        @staticmethod
        def message(peer: Peer, message: Any) -> None:
            pass

    assert App(Static).hooks.message is Static.message
    assert App(define_hooks()).hooks == define_hooks()
