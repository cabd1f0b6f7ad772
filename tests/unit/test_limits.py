"""Limits are checked when created, so a bad setting fails at startup."""

from __future__ import annotations

import pytest

from crosswire import ConfigurationError, CrosswireError, Limits


def test_defaults() -> None:
    limits = Limits()
    assert limits.max_message_size == 1024 * 1024
    assert limits.send_buffer_limit == 1024 * 1024
    assert (limits.ping_interval, limits.ping_timeout) == (20.0, 20.0)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_message_size", 0),
        ("max_message_size", 1.5),
        ("send_buffer_limit", -1),
        ("inbound_queue", 0),
        ("max_topics", 0),
        ("ping_interval", 0),
        ("ping_timeout", -2.0),
        ("close_timeout", 0),
        ("open_timeout", -1.0),
    ],
)
def test_bad_values_are_refused_with_the_option_named(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"Limits.{option}") as refused:
        Limits(**{option: value})  # type: ignore[arg-type]
    assert isinstance(refused.value, CrosswireError)


def test_keepalive_can_be_disabled() -> None:
    limits = Limits(ping_interval=None, ping_timeout=None)
    assert limits.ping_interval is None


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Limits(1000)  # type: ignore[call-arg]
