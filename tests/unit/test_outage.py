"""What a backend's log says about the bus coming and going (crosswire.pubsub.outage): one
report when an outage begins, DEBUG for each failed attempt after it, a WARNING summary every
minute, one INFO line when it ends."""

from __future__ import annotations

import logging

import pytest

from crosswire.pubsub.outage import Outage


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    found = [(r.levelname, r.getMessage()) for r in caplog.records]
    caplog.clear()
    return found


def test_an_outage_is_reported_once_summarized_every_minute_and_its_end_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "crosswire.pubsub")
    reports: list[str] = []
    outage = Outage("Redis", "10.0.0.7:6379", lambda what, exc: reports.append(what))
    refused = ConnectionRefusedError("refused")

    outage.connected(100.0, queued=0, dropped=0)
    assert lines(caplog) == [("INFO", "bus reachable at 10.0.0.7:6379")]

    outage.failed(200.0, "lost the connection", refused, queued=0, dropped=2)
    for n in range(2, 62):  # an attempt every second for a minute
        outage.failed(199.0 + n, "ignored", refused, queued=n, dropped=2 + n)
    assert reports == ["lost the connection"]
    logged = lines(caplog)
    assert logged[0] == ("DEBUG", "attempt 2 to reach Redis at 10.0.0.7:6379 failed (refused)")
    assert [level for level, _ in logged] == ["DEBUG"] * 60 + ["WARNING"]
    assert logged[-1] == (
        "WARNING",
        "Redis at 10.0.0.7:6379 is still not reachable after 60 s (61 attempts); "
        "61 messages queued, 61 dropped",
    )

    outage.connected(263.25, queued=61, dropped=64)
    assert lines(caplog) == [
        (
            "INFO",
            "reconnected to Redis at 10.0.0.7:6379 after 63.2 s; 61 messages were queued, "
            "62 dropped",
        )
    ]
    assert outage.reconnects == 1
    outage.connected(264.0, queued=0, dropped=64)  # the other connection: nothing to say
    assert lines(caplog) == []


def test_a_bus_unreachable_at_start_says_so_then_says_when_it_is_reachable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, "crosswire.pubsub")
    reports: list[str] = []
    outage = Outage("Redis", "redis.internal:6380", lambda what, exc: reports.append(what))
    outage.failed(5.0, "not reachable", OSError("no route"), queued=0, dropped=0)
    outage.failed(5.5, "not reachable", OSError("no route"), queued=3, dropped=0)
    assert reports == ["not reachable"]
    outage.connected(7.0, queued=3, dropped=0)
    assert lines(caplog)[-1] == (
        "INFO",
        "bus reachable at redis.internal:6380 after 2.0 s unreachable; 3 messages were queued",
    )
    assert outage.reconnects == 1
