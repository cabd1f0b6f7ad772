"""When a worker that died is replaced: at once, then after doubling delays, and not past the
limit of restarts in the window (a crash loop stops the server)."""

from __future__ import annotations

from crosswire.restarts import RestartBudget


def test_the_first_restart_is_at_once_then_delays_double_up_to_the_cap() -> None:
    budget = RestartBudget(limit=6, window=60, first_delay=0.1, max_delay=0.3)
    assert [budget.next_delay(1.0) for _ in range(6)] == [0.0, 0.1, 0.2, 0.3, 0.3, 0.3]


def test_past_the_limit_in_the_window_there_is_no_restart() -> None:
    budget = RestartBudget(limit=2, window=10)
    assert budget.next_delay(0.0) == 0.0
    assert budget.next_delay(1.0) is not None
    assert budget.next_delay(2.0) is None
    assert budget.next_delay(3.0) is None  # a refusal is not a restart made


def test_restarts_older_than_the_window_are_forgotten() -> None:
    budget = RestartBudget(limit=2, window=10)
    budget.next_delay(0.0)
    budget.next_delay(5.0)
    assert budget.next_delay(10.5) == 0.1  # the one at 0 is forgotten; the one at 5.1 is not
    assert budget.next_delay(30.0) == 0.0  # up for a whole window: the count starts again
