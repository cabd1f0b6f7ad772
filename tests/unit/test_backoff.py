"""Reconnection backoff: doubling from initial_delay, capped, with full jitter or none."""

from __future__ import annotations

import pytest

from crosswire import ConfigurationError
from crosswire.client import Reconnect


def test_delays_double_up_to_the_cap() -> None:
    policy = Reconnect(initial_delay=0.5, max_delay=3, jitter="none")
    assert [policy.delay(n, 0.9) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3, 3]
    assert policy.delay(10_000, 0.0) == 3  # no overflow however long it has been down


def test_full_jitter_is_a_random_part_of_the_delay() -> None:
    policy = Reconnect(initial_delay=1, max_delay=8)
    assert policy.delay(3, 0.0) == 0.0 and policy.delay(3, 0.5) == 2.0


def test_attempts_allowed() -> None:
    assert Reconnect().allows(1_000_000)
    three = Reconnect(max_attempts=3)
    assert three.allows(3) and not three.allows(4)
    assert not Reconnect(enabled=False).allows(1)


@pytest.mark.parametrize(
    "options",
    [
        {"initial_delay": 0},
        {"initial_delay": 2, "max_delay": 1},
        {"max_attempts": -1},
        {"jitter": "some"},
    ],
)
def test_policies_that_cannot_work_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Reconnect(**options)  # type: ignore[arg-type]
