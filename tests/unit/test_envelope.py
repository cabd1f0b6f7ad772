"""The bus envelope and the dialect renderers: seed 003's bytes, crosswire's extensions, and
clear errors for anything else (no event loop needed)."""

from __future__ import annotations

import orjson
import pytest

from crosswire import BusError
from crosswire.pubsub.envelope import Publication, channel_for, decode_envelope, encode_envelope
from crosswire.wire import canonical, events


def test_channels_are_seed_003s() -> None:
    assert channel_for("ws", "broadcast", None) == "ws:broadcast"
    assert channel_for("ws", "room", "lobby") == "ws:room:lobby"
    assert channel_for("ws", "client", "c1") == "ws:client:c1"
    assert channel_for("ws", "user", "u1") == "ws:user:u1"


def test_an_event_envelope_is_the_seed_emitters_json() -> None:
    pub = Publication.of_event("room", "lobby", "news", {"text": "hi"}, exclude=["c2", "c1"])
    assert encode_envelope("emitter", pub) == (
        b'{"serverId":"emitter","type":"room","target":"lobby","event":"news",'
        b'"data":{"text":"hi"},"exclude":["c1","c2"]}'
    )
    broadcast = Publication.of_event("broadcast", None, "tick", 1)
    assert encode_envelope("s1", broadcast) == (
        b'{"serverId":"s1","type":"broadcast","event":"tick","data":1}'
    )


def test_envelopes_survive_the_round_trip() -> None:
    pub = Publication("user", "u1", event="E", data=b'{"a":[1,2]}', meta=b'{"timestamp":5}')
    server_id, back = decode_envelope(encode_envelope("s1", pub))
    assert server_id == "s1"
    assert (back.kind, back.target, back.event, back.data, back.meta) == (
        "user",
        "u1",
        "E",
        b'{"a":[1,2]}',
        b'{"timestamp":5}',
    )
    for frame, binary in ((b"caf\xc3\xa9", False), (bytes(range(256)), True)):
        raw = Publication("room", "r", frame=frame, binary=binary, exclude=frozenset({"x"}))
        _, back = decode_envelope(encode_envelope("s1", raw))
        assert (back.frame, back.binary, back.exclude) == (frame, binary, frozenset({"x"}))


def test_an_envelope_from_another_implementation_is_read_with_unknown_keys_ignored() -> None:
    message = b'{"serverId":"node-1","type":"client","target":"c9","event":"e","extra":true}'
    server_id, pub = decode_envelope(message)
    assert (server_id, pub.kind, pub.target, pub.event, pub.data) == (
        "node-1",
        "client",
        "c9",
        "e",
        None,
    )


@pytest.mark.parametrize(
    ("message", "says"),
    [
        (b"not json", "unreadable"),
        (b"[1]", "unreadable"),
        (b'{"serverId":"x","type":"room","event":"e"}', "no target"),
        (b'{"serverId":"x","type":"planet","target":"t","event":"e"}', "unreadable"),
        (b'{"serverId":1,"type":"broadcast","event":"e"}', "unreadable"),
        (b'{"serverId":"x","type":"broadcast","event":"e","data":5,"frame":"text"}', "JSON string"),
        (b'{"serverId":"x","type":"broadcast","event":"","data":"@@","frame":"binary"}', "base64"),
    ],
)
def test_a_malformed_envelope_raises_a_bus_error_that_says_what_is_wrong(
    message: bytes, says: str
) -> None:
    with pytest.raises(BusError, match=says):
        decode_envelope(message)


def test_each_dialect_renders_an_event_once() -> None:
    pub = Publication.of_event("room", "r", "NEWS", {"text": "a"})
    assert pub.render(events.render) == b'{"event":"NEWS","data":{"text":"a"}}'
    assert orjson.loads(pub.render(canonical.render) or b"") == {
        "type": "NEWS",
        "meta": {},
        "payload": {"text": "a"},
    }
    assert pub.render(events.render) is pub.render(events.render)  # cached
    assert events.render("ping", None, None) == b'{"event":"ping"}'
    assert canonical.render("PING", b'{"timestamp":1}', None) == (
        b'{"type":"PING","meta":{"timestamp":1}}'
    )


def test_the_events_dialect_decodes_client_frames() -> None:
    frame = events.decode('{"event":"join","data":{"rooms":["a"]},"id":"7"}')
    assert (frame.event, frame.data, frame.id) == ("join", {"rooms": ["a"]}, "7")
    assert events.decode(b'{"event":"heartbeat"}').data is None
    for bad in ("nope", "[]", "null", '{"data":1}', '{"event":5}', '{"event":""}'):
        with pytest.raises(events.BadEvent, match="Invalid message format"):
            events.decode(bad)
    assert events.encode("error", {"message": "x"}) == b'{"event":"error","data":{"message":"x"}}'
