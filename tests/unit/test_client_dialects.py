"""The client side of each dialect against the server side: what a client writes, the server
reads as meant; what the server writes, a client reads back as it was. And the joined topics
a client remembers. No event loop, no sockets."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson
import pytest

from crosswire import ErrorCode, JoinRefused, WsError
from crosswire.client import dialects as client
from crosswire.client.frames import Frame, JoinAck
from crosswire.client.topics import Memberships, Resync
from crosswire.wire import CANONICAL, EVENTS, ROVER, Dialect, TopicAnswer, TopicRequest
from crosswire.wire.dialect import Position

PAIRS: list[tuple[Dialect, client.ClientDialect]] = [
    (CANONICAL, client.CANONICAL),
    (EVENTS, client.EVENTS),
    (ROVER, client.ROVER),
]
IDS = [server.name for server, _ in PAIRS]

#: Payloads that each dialect carries there and back; Rover has to tuck some under data.
PAYLOADS: list[Any] = [
    {"text": "hi"},
    {"type": "x", "n": 1},  # a field named type
    {"data": {"a": 1}},  # an object under a field named data
    {"data": 5},
    [3, 1],
    "words",
    7,
]

#: What Rover's frames cannot tell apart (docs/protocol-rover.md): ``{"data": 5}`` is sent as
#: ``{"type": T, "data": 5}``, which reads as the payload 5, both ways; an object with a
#: field named type goes under ``data``, which the server reads back as ``{"data": {...}}``.
ROVER_READS: dict[str, tuple[Any, Any]] = {
    # payload: (what the server reads from the client, what the client reads from the server)
    repr({"data": 5}): (5, 5),
    repr({"type": "x", "n": 1}): ({"data": {"type": "x", "n": 1}}, {"type": "x", "n": 1}),
}


@pytest.mark.parametrize(("server", "speaks"), PAIRS, ids=IDS)
@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_message_goes_both_ways_unchanged(server: Dialect, speaks: Any, payload: Any) -> None:
    json = msgspec.json.encode(payload)  # (as a schema dumps a payload: any integer)
    read_by_server, read_by_client = payload, payload
    if speaks is client.ROVER:
        read_by_server, read_by_client = ROVER_READS.get(repr(payload), (payload, payload))
    envelope = server.decode(speaks.encode("EV", orjson.Fragment(json), {}))
    assert (envelope.type, envelope.payload) == ("EV", read_by_server)
    frame = speaks.parse(server.message("EV", None, json).decode(), False)
    assert (frame.type, frame.payload) == ("EV", read_by_client)


@pytest.mark.parametrize(("server", "speaks"), PAIRS, ids=IDS)
def test_a_client_reads_integers_of_any_size_exactly(server: Dialect, speaks: Any) -> None:
    json = msgspec.json.encode({"n": 10**30 + 1})
    assert speaks.parse(server.message("EV", None, json), False).payload == {"n": 10**30 + 1}


@pytest.mark.parametrize(("server", "speaks"), PAIRS, ids=IDS)
def test_replies_progress_and_errors_are_read_with_their_correlation(
    server: Dialect, speaks: Any
) -> None:
    reply = speaks.parse(server.reply("DONE", "c1", b'{"sum":3}').decode(), False)
    assert (reply.type, reply.payload) == ("DONE", {"sum": 3})
    progress = speaks.parse(server.progress("c1", {"n": 1}).decode(), False)
    assert speaks.progress(progress) == ({"n": 1},) and speaks.progress(reply) is None
    denied = WsError("PERMISSION_DENIED", "no", {"why": "late"})
    error = speaks.error(speaks.parse(server.error(denied, "c1").decode(), False))
    assert isinstance(error, WsError) and error.message == "no"
    assert error.details == {"why": "late"} and speaks.error(reply) is None
    if speaks.error_codes:
        assert error.code == ErrorCode.PERMISSION_DENIED
    else:  # the events dialect's errors carry no code
        assert error.code == ErrorCode.INTERNAL
    if speaks.correlates:
        assert reply.correlation_id == progress.correlation_id == "c1"


@pytest.mark.parametrize(("server", "speaks"), PAIRS, ids=IDS)
def test_join_and_leave_frames_reach_the_server_as_topic_requests(
    server: Dialect, speaks: Any
) -> None:
    data = None if speaks is client.EVENTS else {"username": "ann"}
    joined = server.topic_requests(server.decode(speaks.join("room:1", data, "j1")))
    assert [r.topic for r in joined] == ["room:1"]
    if data is not None:
        assert joined[0].data == data
    left = server.topic_requests(server.decode(speaks.leave("room:1", None, "l1")))
    assert [r.topic for r in left] == ["room:1"]


@pytest.mark.parametrize(("server", "speaks"), [PAIRS[0], PAIRS[2]], ids=["canonical", "rover"])
@pytest.mark.parametrize("data", [{"members": 2}, {"type": "x"}, {"data": {"a": 1}}, 5, None])
def test_acks_and_refusals_are_read_back(server: Dialect, speaks: Any, data: Any) -> None:
    request = TopicRequest("room:1", None, "j1")

    def answer(frame: bytes, topic: str = "room:1", cid: str = "j1") -> Any:
        return speaks.join_answer(speaks.parse(frame.decode(), False), topic, cid)

    [ack] = server.joined([TopicAnswer(request, None, data)])
    accepted = answer(ack)
    assert isinstance(accepted, JoinAck) and accepted.data == data
    assert answer(ack, "room:2", "j2") is None  # another join's
    refused = WsError("PERMISSION_DENIED", "members only")
    [error] = server.joined([TopicAnswer(request, refused)])
    refusal = answer(error)
    assert isinstance(refusal, JoinRefused)
    assert (refusal.topic, refusal.code, refusal.reason) == (
        "room:1",
        ErrorCode.PERMISSION_DENIED,
        "members only",
    )
    [left] = server.left([TopicAnswer(TopicRequest("room:1", None, "l1"))])
    assert speaks.leave_answer(speaks.parse(left.decode(), False), "room:1", "l1") is True


def test_events_refusals_name_their_rooms() -> None:
    speaks = client.EVENTS
    request = TopicRequest("a")
    [error] = EVENTS.joined([TopicAnswer(request, WsError("NOT_FOUND", "no topic 'a'"))])
    frame = speaks.parse(error.decode(), False)
    assert speaks.join_answer(frame, "b", "j") is None
    refusal = speaks.join_answer(frame, "a", "j")
    assert isinstance(refusal, JoinRefused) and refusal.reason == "no topic 'a'"
    assert refusal.details == {}  # (the rooms are the frame's, not the error's)
    too_many = WsError("RESOURCE_EXHAUSTED", "too many topics", {"limit": 4})
    [whole] = EVENTS.joined([TopicAnswer(request, too_many, whole=True)])
    refusal = speaks.join_answer(speaks.parse(whole.decode(), False), "a", "j")
    assert isinstance(refusal, JoinRefused) and refusal.details == {"limit": 4}


def test_what_is_not_a_frame_of_the_dialect() -> None:
    for speaks in (client.CANONICAL, client.EVENTS, client.ROVER):
        assert speaks.parse(b"\x00\x01", True) == Frame("<binary>", raw=b"\x00\x01")
        assert speaks.parse("hello", False).type == "<text>"
        assert speaks.parse('{"no": "type"}', False).payload == '{"no": "type"}'


def test_memberships_remember_acked_joins_and_forget_left_ones() -> None:
    topics = Memberships()
    first = topics.joining("a", {"u": 1}, recover=False)
    topics.accepted("a", first, JoinAck("a"))
    left_early = topics.joining("b", None, recover=False)
    topics.left("b")  # before its ack came
    topics.accepted("b", left_early, JoinAck("b"))
    refused = topics.joining("c", None, recover=False)
    topics.settled("c", refused)
    assert dict(topics.joined) == {"a": {"u": 1}}

    ids = iter(["r1", "r2"])
    topics.accepted("d", topics.joining("d", None, recover=False), JoinAck("d"))
    frames = topics.rejoins(lambda: next(ids))
    assert [t for t, _ in frames] == ["a", "d"]
    assert orjson.loads(frames[0][1]) == {
        "type": "$ws:join",
        "meta": {"correlationId": "r1"},
        "payload": {"topic": "a", "data": {"u": 1}},
    }
    ack = Frame("$ws:join-ack", {"correlationId": "r1"}, {"topic": "a"})
    no = Frame(
        "$ws:join-error",
        {"correlationId": "r2"},
        {"topic": "d", "code": "PERMISSION_DENIED", "message": "closed"},
    )
    assert topics.rejoin_answer(ack) is True
    assert topics.rejoin_answer(ack) is False  # answered already
    refusal = topics.rejoin_answer(no)
    assert isinstance(refusal, JoinRefused) and refusal.topic == "d"
    assert dict(topics.joined) == {"a": {"u": 1}}
    topics.clear()
    assert dict(topics.joined) == {}


def test_a_recovering_join_and_its_ack_both_ways() -> None:
    speaks = client.CANONICAL
    first = CANONICAL.decode(speaks.join("news:1", None, "j1", positioned=True).encode())
    last = Position(12, "e1")
    again = CANONICAL.decode(
        speaks.join("news:1", {"u": 1}, "j2", positioned=True, since=last).encode()
    )
    plain = CANONICAL.decode(speaks.join("news:1", None, "j3").encode())
    [asked_from_now] = CANONICAL.topic_requests(first)
    [asked_from_there] = CANONICAL.topic_requests(again)
    [asked_nothing] = CANONICAL.topic_requests(plain)
    assert (asked_from_now.positioned, asked_from_now.since) == (True, None)
    assert (asked_from_there.positioned, asked_from_there.since) == (True, last)
    assert asked_from_there.data == {"u": 1}
    assert (asked_nothing.positioned, asked_nothing.since) == (False, None)

    answer = TopicAnswer(asked_from_there, data="snap", recovered=True, position=Position(14, "e1"))
    [ack] = CANONICAL.joined([answer])
    read = speaks.join_answer(speaks.parse(ack.decode(), False), "news:1", "j2")
    assert isinstance(read, JoinAck)
    assert (read.data, read.recovered, read.position) == ("snap", True, Position(14, "e1"))
    [ack] = CANONICAL.joined([TopicAnswer(asked_nothing)])
    read = speaks.join_answer(speaks.parse(ack.decode(), False), "news:1", "j3")
    assert isinstance(read, JoinAck) and (read.recovered, read.position) == (None, None)

    event = CANONICAL.positioned(CANONICAL.message("NEWS", None, b'{"n":13}'), "news:1", last)
    assert speaks.position_of(speaks.parse(event.decode(), False)) == ("news:1", last)
    bare = CANONICAL.message("NEWS", None, b'{"n":13}')
    assert speaks.position_of(speaks.parse(bare.decode(), False)) is None
    odd = Frame("NEWS", {"topic": "news:1", "offset": True, "epoch": "e1"})
    assert speaks.position_of(odd) is None  # (a bool is not an offset)


def event(topic: str, offset: int, epoch: str = "e1") -> Frame:
    return Frame("NEWS", {"topic": topic, "offset": offset, "epoch": epoch}, {"n": offset})


def test_memberships_keep_the_position_of_a_recovering_topic_and_drop_what_was_seen() -> None:
    topics = Memberships()
    marker = topics.joining("news:1", None, recover=True)
    join = orjson.loads(topics.join_frame("news:1", marker, "j"))
    assert join["payload"] == {"topic": "news:1", "recover": {}}  # from the present
    topics.accepted("news:1", marker, JoinAck("news:1", None, None, False, Position(2, "e1")))
    plain = topics.joining("plain", None, recover=False)
    topics.accepted("plain", plain, JoinAck("plain"))
    assert topics.position("news:1") == Position(2, "e1") and topics.position("plain") is None

    seen = [n for n in (2, 3, 3, 1, 4) if topics.admit(event("news:1", n))]
    assert seen == [3, 4]  # at or before the position in the same epoch: seen already
    assert topics.position("news:1") == Position(4, "e1")
    assert topics.admit(event("plain", 1)) and topics.admit(event("plain", 1))  # not tracked
    assert topics.admit(Frame("NEWS", {}, None))

    # A reconnect: the rejoin asks from the last position; the recovered events follow.
    ids = iter(["r1", "r2"])
    rejoins = dict(topics.rejoins(lambda: next(ids)))
    assert orjson.loads(rejoins["news:1"])["payload"] == {
        "topic": "news:1",
        "recover": {"offset": 4, "epoch": "e1"},
    }
    assert "recover" not in orjson.loads(rejoins["plain"])["payload"]
    recovered = {"topic": "news:1", "recovered": True, "offset": 6, "epoch": "e1"}
    assert topics.rejoin_answer(Frame("$ws:join-ack", {"correlationId": "r1"}, recovered))
    assert topics.position("news:1") == Position(4, "e1")  # not the ack's: 5 and 6 follow
    assert topics.admit(event("news:1", 5)) and topics.admit(event("news:1", 6))

    # Another reconnect, to a server whose history has another epoch: a resync.
    ids = iter(["r3", "r4"])
    topics.rejoins(lambda: next(ids))
    lost = {"topic": "news:1", "data": "snap", "recovered": False, "offset": 1, "epoch": "e2"}
    answer = topics.rejoin_answer(Frame("$ws:join-ack", {"correlationId": "r3"}, lost))
    assert answer == Resync("news:1", "snap")
    assert topics.position("news:1") == Position(1, "e2")
    assert not topics.admit(event("news:1", 1, "e2"))
    assert topics.admit(event("news:1", 1, "e3"))  # another epoch again: taken, and followed
    assert topics.position("news:1") == Position(1, "e3")

    ids = iter(["r5", "r6"])
    topics.rejoins(lambda: next(ids))
    no = {"topic": "news:1", "code": "PERMISSION_DENIED", "message": "closed"}
    refusal = topics.rejoin_answer(Frame("$ws:join-error", {"correlationId": "r5"}, no))
    assert isinstance(refusal, JoinRefused) and refusal.topic == "news:1"
    assert topics.position("news:1") is None and topics.admit(event("news:1", 1, "e3"))

    topics.accepted("news:2", topics.joining("news:2", None, recover=True), JoinAck("news:2"))
    assert topics.admit(event("news:2", 4)) and topics.position("news:2") == Position(4, "e1")
    topics.left("news:2")
    assert topics.position("news:2") is None


def test_a_rejoin_of_a_recovering_topic_that_does_not_say_recovered_is_a_resync() -> None:
    """A server that gave no position (no ``recovered`` in the ack) cannot have recovered
    anything: never silent."""
    topics = Memberships()
    topics.accepted("t", topics.joining("t", None, recover=True), JoinAck("t"))
    assert topics.position("t") is None
    [(_, frame)] = topics.rejoins(lambda: "r1")
    assert orjson.loads(frame)["payload"] == {"topic": "t", "recover": {}}
    answer = topics.rejoin_answer(Frame("$ws:join-ack", {"correlationId": "r1"}, {"topic": "t"}))
    assert answer == Resync("t")
    topics.rejoins(lambda: "r2")
    topics.left("t")  # before the rejoin's answer: nothing to resync
    late = Frame("$ws:join-ack", {"correlationId": "r2"}, {"topic": "t", "recovered": False})
    assert topics.rejoin_answer(late) is True and topics.position("t") is None
