"""The WriteBatch's rule for holding a reading connection (crosswire/cork.py), driven by hand
the way a server adapter drives it: a turn of the event loop reads from some connections,
each read's messages are reported with ``after_message``, and the batch ends with the turn."""

from __future__ import annotations

import socket
from typing import Any

from crosswire.cork import SOLO_AFTER, SOLO_FLUSH, Cork, WriteBatch


class RecordingSocket:
    """Stands in for a TCP socket: records the TCP_CORK values set."""

    def __init__(self) -> None:
        self.corked: list[int] = []

    def setsockopt(self, level: int, option: int, value: Any) -> None:
        assert (level, option) == (socket.IPPROTO_TCP, getattr(socket, "TCP_CORK", 3))
        self.corked.append(value)


def turn(batch: WriteBatch, *reads: tuple[Cork, int]) -> None:
    """One turn of the loop: each (connection, n) is a read of n messages, reported for every
    message (adapters may skip the reports that change nothing); then the batch ends."""
    for cork, n in reads:
        for i in range(n):
            more = i < n - 1
            if more and batch.held is None:
                batch.open()
            batch.after_message(cork, more)
    if batch.held is not None:  # (the batch ends with the turn only if it was opened)
        batch.release()


async def test_reads_are_held_whole_until_the_server_has_served_one_client_for_a_while() -> None:
    batch = WriteBatch()
    sock = RecordingSocket()
    cork = Cork(sock)
    for _ in range(SOLO_AFTER - 1):
        turn(batch, (cork, 10))
        assert sock.corked == [1, 0]  # held after the first message, released after the last
        sock.corked.clear()
    assert not batch.solo
    turn(batch, (cork, 10))
    assert batch.solo
    sock.corked.clear()
    turn(batch, (cork, 10))
    # One reply at once, then 9 held and let go every SOLO_FLUSH (4: after 4, after 8, at 9).
    assert SOLO_FLUSH == 4
    assert sock.corked == [1, 0, 1, 0, 1, 0]


async def test_a_turn_that_reads_from_two_connections_ends_solo_mode() -> None:
    batch = WriteBatch()
    a, b = RecordingSocket(), RecordingSocket()
    cork_a, cork_b = Cork(a), Cork(b)
    for _ in range(SOLO_AFTER):
        turn(batch, (cork_a, 3))
    assert batch.solo
    turn(batch, (cork_a, 3), (cork_b, 3))  # still solo during this turn: a's flushes apply
    assert not batch.solo
    a.corked.clear()
    turn(batch, (cork_a, 10))
    assert a.corked == [1, 0]  # the whole read held again
    assert not batch.solo  # and one turn with one read is not enough to go back


async def test_lone_messages_and_publish_bursts_do_not_count_as_reads() -> None:
    batch = WriteBatch()
    sock = RecordingSocket()
    cork = Cork(sock)
    for _ in range(2 * SOLO_AFTER):
        turn(batch, (cork, 1))  # a read of one message opens no batch and holds nothing
        batch.open()  # a burst from the bus opens one and holds no reading connection
        batch.release()
    assert sock.corked == []
    assert not batch.solo
