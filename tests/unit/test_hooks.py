"""Hooks: only the ones defined are kept, and each is checked when the App is built."""

from __future__ import annotations

from typing import Any

import pytest

from crosswire import App, ConfigurationError, Hooks, Message, Peer, define_hooks


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
