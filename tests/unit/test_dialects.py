"""The three dialects behind one interface: decode to the envelope, encode every frame."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from msgspec import UNSET

from crosswire import WsError
from crosswire.wire import (
    CANONICAL,
    DIALECTS,
    EVENTS,
    ROVER,
    BadFrame,
    Control,
    Dialect,
    TopicAnswer,
    TopicRequest,
)

#: mypy checks that each one is a Dialect.
EVERY: tuple[Dialect, ...] = (CANONICAL, EVENTS, ROVER)


def loads(frame: bytes) -> Any:
    return orjson.loads(frame)


def test_every_dialect_is_registered_by_name_with_its_subprotocol() -> None:
    assert DIALECTS == {"canonical": CANONICAL, "events": EVENTS, "rover": ROVER}
    for dialect in EVERY:
        assert dialect.subprotocol == f"crosswire.{dialect.name}"
        assert dialect.render is dialect.render  # one object: the Hub's cache key


@pytest.mark.parametrize(
    ("dialect", "frame", "type_", "meta", "payload"),
    [
        (
            CANONICAL,
            '{"type":"ADD","meta":{"correlationId":"c"},"payload":{"a":1}}',
            "ADD",
            {"correlationId": "c"},
            {"a": 1},
        ),
        (
            EVENTS,
            '{"event":"say","data":{"text":"hi"},"id":"m1"}',
            "say",
            {"correlationId": "m1"},
            {"text": "hi"},
        ),
        (EVENTS, '{"event":"heartbeat"}', "heartbeat", {}, UNSET),
        (EVENTS, '{"event":"x","data":null,"id":7}', "x", {}, None),
        (
            ROVER,
            '{"type":"chat_message","user":"a","text":"hi"}',
            "chat_message",
            {},
            {"user": "a", "text": "hi"},
        ),
        (ROVER, '{"type":"typing"}', "typing", {}, UNSET),
        (ROVER, '{"type":"scores","data":[3,1]}', "scores", {}, [3, 1]),
        (ROVER, '{"type":"wrapped","data":{"a":1}}', "wrapped", {}, {"data": {"a": 1}}),
    ],
)
def test_a_frame_becomes_an_envelope(
    dialect: Dialect, frame: str, type_: str, meta: dict[str, Any], payload: Any
) -> None:
    envelope = dialect.decode(frame)
    assert (envelope.type, envelope.meta, envelope.payload) == (type_, meta, payload)


@pytest.mark.parametrize("dialect", EVERY, ids=lambda d: d.name)
@pytest.mark.parametrize("frame", ["{nope", "[1]", '"x"', "{}", '{"type":""}', '{"event":5}'])
def test_a_frame_that_is_not_one_is_a_bad_frame(dialect: Dialect, frame: str) -> None:
    with pytest.raises(BadFrame) as bad:
        dialect.decode(frame)
    assert bad.value.code == "INVALID_ARGUMENT"


def test_messages_and_publications_in_each_dialect() -> None:
    meta, payload = b'{"timestamp":1}', b'{"text":"hi"}'
    assert loads(CANONICAL.message("NEWS", meta, payload)) == {
        "type": "NEWS",
        "meta": {"timestamp": 1},
        "payload": {"text": "hi"},
    }
    assert EVENTS.message("news", meta, payload) == b'{"event":"news","data":{"text":"hi"}}'
    assert ROVER.message("news", meta, payload) == b'{"type":"news","text":"hi"}'
    # Rover: what cannot be flattened goes under data.
    assert ROVER.message("n", None, b"[1]") == b'{"type":"n","data":[1]}'
    assert ROVER.message("n", None, b'{"type":"x"}') == b'{"type":"n","data":{"type":"x"}}'
    assert ROVER.message("n", None, None) == b'{"type":"n"}'
    assert ROVER.message("n", None, b"{}") == b'{"type":"n"}'


def test_replies_errors_progress_and_heartbeats() -> None:
    error = WsError("NOT_FOUND", "no such room", {"room": "a"})
    assert loads(CANONICAL.reply("ADD_RESULT", "c1", b'{"sum":3}')) == {
        "type": "ADD_RESULT",
        "meta": {"correlationId": "c1"},
        "payload": {"sum": 3},
    }
    assert loads(EVENTS.reply("sum", "m1", b"3")) == {"event": "sum", "data": 3, "id": "m1"}
    assert loads(ROVER.reply("sum", "srv-1", b'{"sum":3}')) == {"type": "sum", "sum": 3}
    assert loads(CANONICAL.error(error, None))["payload"]["code"] == "NOT_FOUND"
    assert loads(EVENTS.error(error, None)) == {
        "event": "error",
        "data": {"message": "no such room", "room": "a"},
    }
    assert loads(ROVER.error(error, None)) == {
        "type": "error",
        "message": "no such room",
        "code": "NOT_FOUND",
        "details": {"room": "a"},
    }
    assert loads(ROVER.progress("c", {"n": 1})) == {"type": "progress", "data": {"n": 1}}
    assert CANONICAL.heartbeat() == b'{"type":"__heartbeat"}'
    for quiet in (EVENTS, ROVER):
        assert quiet.heartbeat() is None and quiet.heartbeat_ack(1) is None


def test_control_frames_per_dialect() -> None:
    assert CANONICAL.controls["$ws:join"] is Control.JOIN
    assert CANONICAL.controls["$ws:abort"] is Control.ABORT
    assert EVENTS.controls["authenticate"] is Control.AUTHENTICATE
    assert EVENTS.controls["join"] is Control.JOIN
    assert ROVER.controls == {
        "join": Control.JOIN,
        "leave": Control.LEAVE,
        "authenticate": Control.AUTHENTICATE,
        "presence": Control.PRESENCE,
    }
    assert CANONICAL.controls["$ws:authenticate"] is Control.AUTHENTICATE


def test_topic_requests_and_their_answers() -> None:
    join = CANONICAL.decode(
        '{"type":"$ws:join","meta":{"correlationId":"j1"},"payload":{"topic":"room:1","data":{"k":1}}}'
    )
    (request,) = CANONICAL.topic_requests(join)
    assert request == TopicRequest("room:1", {"k": 1}, "j1")
    refused = WsError("PERMISSION_DENIED", "members only")
    assert [loads(f) for f in CANONICAL.joined([TopicAnswer(request, data={"n": 2})])] == [
        {
            "type": "$ws:join-ack",
            "meta": {"correlationId": "j1"},
            "payload": {"topic": "room:1", "data": {"n": 2}},
        }
    ]
    assert loads(CANONICAL.joined([TopicAnswer(request, refused)])[0])["payload"] == {
        "topic": "room:1",
        "code": "PERMISSION_DENIED",
        "message": "members only",
    }
    assert loads(CANONICAL.left([TopicAnswer(request)])[0])["type"] == "$ws:leave-ack"

    (rover,) = ROVER.topic_requests(ROVER.decode('{"type":"join","topic":"room","username":"a"}'))
    assert rover == TopicRequest("room", {"username": "a"})
    assert [loads(f) for f in ROVER.joined([TopicAnswer(rover, data={"members": 3})])] == [
        {"type": "join_ack", "topic": "room", "members": 3}
    ]
    assert loads(
        ROVER.joined([TopicAnswer(rover, WsError("INVALID_ARGUMENT", "Username required"))])[0]
    ) == {
        "type": "join_error",
        "topic": "room",
        "reason": "Username required",
        "code": "INVALID_ARGUMENT",
    }
    assert loads(ROVER.left([TopicAnswer(rover)])[0]) == {"type": "leave_ack", "topic": "room"}

    rooms = EVENTS.topic_requests(EVENTS.decode('{"event":"join","data":{"rooms":["a","b","c"]}}'))
    assert [r.topic for r in rooms] == ["a", "b", "c"]
    rejected = WsError("PERMISSION_DENIED", "Join rejected")
    answers = [
        TopicAnswer(rooms[0]),
        TopicAnswer(rooms[1], rejected),
        TopicAnswer(rooms[2], rejected),
    ]
    assert [loads(f) for f in EVENTS.joined(answers)] == [
        {"event": "error", "data": {"message": "Join rejected", "rooms": ["b", "c"]}}
    ]
    assert EVENTS.joined([TopicAnswer(rooms[0])]) == []


@pytest.mark.parametrize(
    ("dialect", "frame"),
    [
        (CANONICAL, '{"type":"$ws:join","payload":{}}'),
        (CANONICAL, '{"type":"$ws:join","payload":{"topic":"a","extra":1}}'),
        (EVENTS, '{"event":"join","data":{"rooms":"a"}}'),
        (EVENTS, '{"event":"join"}'),
        (ROVER, '{"type":"join"}'),
        (ROVER, '{"type":"join","topic":5}'),
    ],
)
def test_a_topic_request_without_a_topic_is_a_bad_frame(dialect: Dialect, frame: str) -> None:
    with pytest.raises(BadFrame):
        dialect.topic_requests(dialect.decode(frame))
