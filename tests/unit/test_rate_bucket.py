"""The token bucket's arithmetic and the memory limiter, with a clock the test moves."""

from __future__ import annotations

import pytest

from crosswire import ConfigurationError
from crosswire.ratelimit import Decision, MemoryRateLimiter, Policy
from crosswire.ratelimit.bucket import take

POLICY = Policy(capacity=3, tokens_per_second=2)  # a token every 500 ms


def run(costs_at: list[tuple[int, float]]) -> list[Decision]:
    tokens: float | None = None
    updated = 0.0
    decisions = []
    for cost, now_ms in costs_at:
        decision, tokens = take(POLICY, tokens, updated, cost, now_ms)
        updated = now_ms
        decisions.append(decision)
    return decisions


def test_a_new_bucket_allows_a_burst_of_its_capacity_then_says_when_to_retry() -> None:
    assert run([(1, 0), (1, 0), (1, 0), (1, 0)]) == [
        Decision(True, 2),
        Decision(True, 1),
        Decision(True, 0),
        Decision(False, 0, 500),
    ]


def test_tokens_come_back_at_the_rate_and_never_past_the_capacity() -> None:
    decisions = run([(3, 0), (1, 250), (1, 500), (3, 60_000), (1, 60_000)])
    assert decisions[1] == Decision(False, 0, 250)  # half a token there: 250 ms more
    assert decisions[2] == Decision(True, 0)
    assert decisions[3] == Decision(True, 0)  # a minute refills 3, not 120
    assert decisions[4] == Decision(False, 0, 500)


def test_a_refused_message_takes_nothing() -> None:
    decisions = run([(2, 0), (2, 0), (1, 0)])
    assert decisions == [Decision(True, 1), Decision(False, 1, 500), Decision(True, 0)]


def test_a_cost_above_the_capacity_can_never_pass() -> None:
    assert run([(4, 0)]) == [Decision(False, 3, None)]


def test_a_clock_that_steps_back_refills_nothing_and_counts_on_from_there() -> None:
    decisions = run([(3, 10_000), (1, 5_000), (1, 5_500), (1, 5_600)])
    assert [d.allowed for d in decisions] == [True, False, True, False]


@pytest.mark.parametrize(
    ("capacity", "rate"), [(0, 1), (1.5, 1), (10, 0), (10, -1), (10, float("inf"))]
)
def test_a_policy_that_cannot_work_is_refused(capacity: object, rate: float) -> None:
    with pytest.raises(ConfigurationError):
        Policy(capacity, rate)  # type: ignore[arg-type]


def test_the_memory_limiter_keeps_a_bucket_per_key_and_at_most_max_keys() -> None:
    now = [0.0]
    limiter = MemoryRateLimiter(capacity=1, tokens_per_second=1, max_keys=2, clock=lambda: now[0])
    assert limiter.consume("a", 1).allowed and limiter.consume("b", 1).allowed
    assert not limiter.consume("a", 1).allowed  # a's bucket is empty; b's is its own
    assert limiter.consume("c", 1).allowed  # a third key: b, the least recently used, goes
    assert len(limiter) == 2
    assert limiter.consume("b", 1).allowed  # forgotten: a full bucket again
    assert not limiter.consume("c", 1).allowed
    now[0] = 1.0
    assert limiter.consume("c", 1) == Decision(True, 0)


def test_the_memory_limiter_needs_room_for_a_key() -> None:
    with pytest.raises(ConfigurationError):
        MemoryRateLimiter(capacity=1, tokens_per_second=1, max_keys=0)
