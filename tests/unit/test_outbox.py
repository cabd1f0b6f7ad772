"""The publish queue the Redis backends share (crosswire.pubsub.outbox): bounded, in order,
batches settled on the ledger, drops reported once per run. No I/O. The backends' behaviour
over a real redis-server (outages, a full queue, aclose) is in tests/integration."""

from __future__ import annotations

import logging

import pytest

from crosswire.pubsub.outbox import Outbox


def outbox(max_queue: int = 3, max_batch: int = 2) -> tuple[Outbox, list[str]]:
    reports: list[str] = []
    return Outbox(max_queue, max_batch, reports.append, "Redis"), reports


def test_messages_are_numbered_queued_and_taken_in_order_in_batches() -> None:
    box, reports = outbox()
    assert [box.put(f"c{i}", b"m", closed=False) for i in range(3)] == [1, 2, 3]
    assert box.filled.is_set() and box.ledger.waiting == 3
    first = box.take()
    assert [n for n, _, _ in first] == [1, 2] and box.in_flight is first
    assert box.settle(first) and box.ledger.waiting == 1 and not box.in_flight
    assert [n for n, _, _ in box.take()] == [3]
    assert reports == []


def test_a_full_queue_drops_with_one_report_and_says_when_it_has_room(
    caplog: pytest.LogCaptureFixture,
) -> None:
    box, reports = outbox(max_queue=2)
    numbers = [box.put("c", b"m", closed=False) for _ in range(5)]
    assert [box.ledger.was_dropped(n) for n in numbers] == [False, False, True, True, True]
    assert len(reports) == 1 and "publish queue is full (2 messages)" in reports[0]
    assert "until Redis takes some" in reports[0]
    with caplog.at_level(logging.WARNING, logger="crosswire.pubsub"):
        box.take()
    assert "3 messages were dropped while it was full" in caplog.text
    box.put("c", b"m", closed=False)  # room again: queued, nothing reported
    assert len(reports) == 1 and len(box.queue) == 1


def test_what_is_published_after_close_is_dropped_and_reported() -> None:
    box, reports = outbox()
    number = box.put("c", b"m", closed=True)
    assert box.ledger.was_dropped(number) and not box.queue
    assert reports == ["closed: a message published after aclose() was dropped"]


def test_part_of_a_batch_goes_again_at_the_head_and_the_ledger_stops_before_it() -> None:
    box, _ = outbox(max_queue=10, max_batch=4)
    for i in range(5):
        box.put(f"c{i}", b"m", closed=False)
    batch = box.take()  # 1-4; 5 still queued
    assert box.settle(batch, dropped=[2], again=[batch[2], batch[3]])
    assert [n for n, _, _ in box.queue] == [3, 4, 5]
    assert box.ledger.was_dropped(2) and not box.ledger.was_dropped(1)
    assert box.ledger.waiting == 3  # settled through 2


def test_close_drops_what_is_queued_and_in_flight_and_a_late_settle_is_refused() -> None:
    box, _ = outbox(max_queue=10, max_batch=2)
    for _ in range(3):
        box.put("c", b"m", closed=False)
    batch = box.take()
    assert box.close() == 3
    assert not box.settle(batch)  # the publisher came back after aclose: already settled
    assert box.ledger.waiting == 0 and box.stats(reconnects=2) == (3, 3, 0, 2)
    box.open()
    assert not box.queue and not box.filled.is_set()
    assert box.put("c", b"m", closed=False) == 4  # numbering goes on across runs
