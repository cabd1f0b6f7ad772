"""MemoryHistory (one process's topic streams) and how each dialect writes a position."""

from __future__ import annotations

import orjson
import pytest

from crosswire import ConfigurationError, History
from crosswire.pubsub import MemoryHistory, Position
from crosswire.wire import CANONICAL, EVENTS, ROVER
from crosswire.wire.canonical import render


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_offsets_count_up_in_one_epoch_and_a_recovery_gets_exactly_what_was_missed() -> None:
    history: MemoryHistory[str] = MemoryHistory()
    policy = History(size=10, ttl=None)
    start = history.position("t", policy)
    assert start.offset == 0
    positions = [history.append("t", f"m{n}", policy) for n in range(1, 4)]
    assert [p.offset for p in positions] == [1, 2, 3]
    assert {p.epoch for p in positions} == {start.epoch}
    assert history.since("t", Position(1, start.epoch), policy) == (
        True,
        ["m2", "m3"],
        Position(3, start.epoch),
    )
    assert history.since("t", Position(3, start.epoch), policy) == (True, [], positions[-1])


def test_what_the_history_no_longer_covers_is_not_recovered() -> None:
    clock = Clock()
    history: MemoryHistory[int] = MemoryHistory(clock)
    policy = History(size=3, ttl=10)
    epoch = history.position("t", policy).epoch
    for n in range(1, 5):  # 4 kept as 3: offsets 2..4, at time 0
        history.append("t", n, policy)
    assert history.since("t", Position(0, epoch), policy).recovered is False  # 1 trimmed
    assert history.since("t", Position(1, epoch), policy).missed == [2, 3, 4]
    assert history.since("t", Position(9, epoch), policy).recovered is False  # from the future
    assert history.since("t", Position(1, "other"), policy).recovered is False
    clock.now = 8.0
    history.append("t", 5, policy)  # offsets 3..5
    clock.now = 12.0  # 3 and 4 are older than the ttl: a gap from 2; 5 is not
    assert history.since("t", Position(2, epoch), policy) == (False, [], Position(5, epoch))
    assert history.since("t", Position(4, epoch), policy).missed == [5]
    clock.now = 30.0  # not appended to for the ttl: its whole past expired, epoch included
    expired = history.since("t", Position(5, epoch), policy)
    assert expired.recovered is False and expired.position.offset == 0
    assert expired.position.epoch != epoch


def test_latest_gives_the_last_kept_oldest_first_and_none_older_than_the_ttl() -> None:
    clock = Clock()
    history: MemoryHistory[str] = MemoryHistory(clock)
    policy = History(size=3, ttl=10)
    for n in range(1, 5):  # offsets 2..4 kept, at time 0
        at = history.append("t", f"m{n}", policy)
    epoch = at.epoch
    assert history.latest("t", policy, 10) == [
        (Position(2, epoch), "m2"),
        (Position(3, epoch), "m3"),
        (Position(4, epoch), "m4"),
    ]
    assert history.latest("t", policy, 1) == [(Position(4, epoch), "m4")]
    assert history.latest("t", policy, 0) == []
    clock.now = 8.0
    history.append("t", "m5", policy)  # offsets 3..5
    clock.now = 12.0  # 3 and 4 are older than the ttl
    assert history.latest("t", policy, 10) == [(Position(5, epoch), "m5")]
    clock.now = 30.0
    assert history.latest("t", policy, 10) == []


def test_latest_makes_no_stream() -> None:
    history: MemoryHistory[str] = MemoryHistory(max_streams=1)
    policy = History(size=3, ttl=None)
    at = history.append("kept", "m1", policy)
    assert history.latest("never", policy, 10) == []
    assert history.since("kept", Position(0, at.epoch), policy).missed == ["m1"]  # not evicted


def test_streams_are_bounded_the_least_recently_used_is_forgotten() -> None:
    history: MemoryHistory[int] = MemoryHistory(max_streams=2)
    policy = History(size=10, ttl=None)
    first = history.append("a", 1, policy)
    history.append("b", 1, policy)
    history.append("a", 2, policy)  # a is used again: b is the least recently used
    history.append("c", 1, policy)
    assert history.since("a", first, policy).missed == [2]
    assert history.position("b", policy).offset == 0  # forgotten: a new stream


def test_a_forgotten_topic_starts_a_new_epoch() -> None:
    history: MemoryHistory[int] = MemoryHistory()
    policy = History()
    before = history.append("t", 1, policy)
    history.forget("t")
    after = history.append("t", 2, policy)
    assert after.offset == 1 and after.epoch != before.epoch


@pytest.mark.parametrize("bad", [{"size": 0}, {"ttl": 0}, {"ttl": -1.0}])
def test_a_history_that_keeps_nothing_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        History(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("meta", [None, b'{"k":1}'])
def test_each_dialect_writes_the_topic_and_the_position_beside_the_event(
    meta: bytes | None,
) -> None:
    at = Position(7, "e1")
    canonical = orjson.loads(CANONICAL.positioned(render("N", meta, b"{}"), "room:a", at))
    assert canonical["meta"] == {"topic": "room:a", "offset": 7, "epoch": "e1"} | (
        {"k": 1} if meta else {}
    )
    assert orjson.loads(EVENTS.positioned(EVENTS.message("N", None, b"1"), "r", at)) == {
        "event": "N",
        "data": 1,
        "room": "r",
        "offset": 7,
        "epoch": "e1",
    }
    assert orjson.loads(ROVER.positioned(ROVER.message("N", None, b'{"x":1}'), "r", at)) == {
        "type": "N",
        "x": 1,
        "$topic": "r",
        "$offset": 7,
        "$epoch": "e1",
    }
