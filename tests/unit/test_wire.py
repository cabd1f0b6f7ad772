"""The canonical dialect's decoder and encoders, without a router."""

from __future__ import annotations

import orjson
import pytest

from crosswire import WsError
from crosswire.wire import canonical, events, rover


def test_decode_a_full_frame() -> None:
    env = canonical.decode(
        b'{"type":"ADD","meta":{"correlationId":"c1","timeoutMs":50,"timestamp":1.5},'
        b'"payload":{"a":1}}'
    )
    assert (env.type, env.correlation_id, env.payload, env.has_payload) == (
        "ADD",
        "c1",
        {"a": 1},
        True,
    )
    bare = canonical.decode('{"type":"PING"}')
    assert bare.meta == {} and not bare.has_payload and bare.correlation_id is None


@pytest.mark.parametrize(
    ("frame", "says", "cid"),
    [
        (b"{not json", "malformed JSON", None),
        (b"[1, 2]", "a frame is a JSON object", None),
        (b'{"payload": {}}', 'missing "type"', None),
        (b'{"type": ""}', 'missing "type"', None),
        (b'{"type": 7, "meta": {"correlationId": "c"}}', 'missing "type"', "c"),
        # (an integer past 64 bits is no reason to lose the correlation id: found by the fuzzer)
        (b'{"type": 1' + b"0" * 4299 + b', "meta": {"correlationId": "c"}}', 'missing "type"', "c"),
        (b'{"type": "A", "topic": "t"}', "unknown key(s) ['topic'] at the root", None),
        (b'{"type": "A", "meta": null}', "meta must be an object", None),
        (b'{"type": "A", "meta": [1]}', "meta must be an object", None),
        (b'{"type": "A", "meta": {"correlationId": 5}}', "meta.correlationId must be", None),
        (b'{"type": "A", "meta": {"correlationId": "c", "timeoutMs": 0}}', "timeoutMs", "c"),
        (b'{"type": "A", "meta": {"timeoutMs": true}}', "timeoutMs", None),
        (b'{"type": "A", "meta": {"timestamp": "now"}}', "timestamp", None),
        (b'{"type": "A", "meta": {"clientId": "me"}}', "stamped by the server", None),
        (b'{"type": "A", "meta": {"receivedAt": 1}}', "stamped by the server", None),
        # Well-formed JSON that cannot be read: the correlation id still can.
        (b'{"type": "A", "meta": {"correlationId": "c"}, "payload": 1e400}', "out of range", "c"),
        (b'{"type": "A", "payload": [' + b"1" * 4301 + b"]}", "at most 4300 digits", None),
        (b'{"type": "A", "meta": {"correlationId": 5}, "payload": 1e400}', "out of range", None),
        (b'{"meta": {"correlationId": "c"}, "payload": -1e400}', "out of range", None),
        (b'{"type": "A", "meta": {"correlationId": "c"}, "payload": "\xff"}', "UTF-8", "c"),
        (b'{"type": "A", "meta": {"correlationId": "c"}, "payload": [1e400,]}', "malformed", None),
        (b'{"type": "A", "payload": ' + b"[" * 1100 + b"]" * 1100 + b"}", "depth limit", None),
        (b"[" * 5000 + b"]" * 5000, "depth limit", None),
    ],
)
def test_bad_frames_say_what_is_wrong(frame: bytes, says: str, cid: str | None) -> None:
    with pytest.raises(canonical.BadFrame) as bad:
        canonical.decode(frame)
    assert says in bad.value.message
    assert bad.value.code == "INVALID_ARGUMENT"
    assert bad.value.correlation_id == cid


def test_encoders_emit_exactly_the_protocol_keys() -> None:
    assert orjson.loads(canonical.encode_message("PONG", None, None)) == {
        "type": "PONG",
        "meta": {},
    }
    assert orjson.loads(
        canonical.encode_message("R", {"correlationId": "c"}, orjson.Fragment(b'{"x":1}'))
    ) == {"type": "R", "meta": {"correlationId": "c"}, "payload": {"x": 1}}
    assert orjson.loads(canonical.encode_error(WsError("NOT_FOUND", "gone"), None)) == {
        "type": "ERROR",
        "meta": {},
        "payload": {"code": "NOT_FOUND", "message": "gone"},
    }
    assert orjson.loads(canonical.encode_error(WsError("CANCELLED"), "c9"))["meta"] == {
        "correlationId": "c9"
    }
    assert orjson.loads(canonical.encode_progress("c", {"n": 1})) == {
        "type": "$ws:rpc-progress",
        "meta": {"correlationId": "c"},
        "payload": {"n": 1},
        "data": {"n": 1},
    }
    assert orjson.loads(canonical.encode_heartbeat_ack(123)) == {
        "type": "__heartbeat_ack",
        "meta": {"ts": 123},
    }


def test_an_events_frame_id_is_kept_when_it_is_a_string() -> None:
    """docs/protocol-events.md: ``frame.id`` is the client's id when it is a string, else
    None, and ``frame.raw`` keeps what the client sent."""
    kept = events.decode('{"event":"say","data":1,"id":"m-1"}')
    assert (kept.event, kept.data, kept.id) == ("say", 1, "m-1")
    other = events.decode('{"event":"say","id":7}')
    assert other.id is None and other.raw["id"] == 7


@pytest.mark.parametrize("n", [2**64, -(2**80), 10**4299], ids=["2**64", "-2**80", "10**4299"])
def test_every_dialect_reads_integers_past_64_bits_exactly(n: int) -> None:
    """Found by tests/integration/test_fuzz_frames.py: the events and Rover dialects read an
    integer past 64 bits as a float (orjson's reading), or refused one past a double's range,
    where the canonical dialect reads it exactly, as docs/protocol.md says of every number."""
    digits = str(n).encode()
    envelopes = [
        canonical.decode(b'{"type":"A","payload":{"n":' + digits + b"}}"),
        events.EVENTS.decode(b'{"event":"A","data":{"n":' + digits + b"}}"),
        rover.decode(b'{"type":"A","n":' + digits + b"}"),
    ]
    read = [envelope.payload["n"] for envelope in envelopes]  # type: ignore[index]
    assert [(type(x), x) for x in read] == [(int, n)] * 3


@pytest.mark.parametrize("number", [b"1" * 4301, b"1e400"], ids=["4301 digits", "1e400"])
def test_every_dialect_refuses_numbers_out_of_range(number: bytes) -> None:
    with pytest.raises(canonical.BadFrame, match="out of range"):
        canonical.decode(b'{"type":"A","payload":' + number + b"}")
    with pytest.raises(canonical.BadFrame, match="Invalid message format"):
        events.EVENTS.decode(b'{"event":"A","data":' + number + b"}")
    with pytest.raises(canonical.BadFrame, match="out of range"):
        rover.decode(b'{"type":"A","n":' + number + b"}")


def test_a_lone_surrogate_in_a_str_frame_is_a_bad_frame_in_every_dialect() -> None:
    """Only in memory (a socket's text is checked UTF-8): canonical.decode raised
    UnicodeEncodeError instead of BadFrame."""
    for dialect in (canonical.CANONICAL, events.EVENTS, rover.ROVER):
        with pytest.raises(canonical.BadFrame):
            dialect.decode('{"type":"A","event":"A","payload":"\ud800"}')


def test_every_dialect_reads_1024_levels_of_nesting_and_no_more() -> None:
    deep, deeper = b"[" * 1023 + b"]" * 1023, b"[" * 1024 + b"]" * 1024  # (+1: the frame)
    assert canonical.decode(b'{"type":"A","payload":' + deep + b"}").has_payload
    assert events.EVENTS.decode(b'{"event":"A","data":' + deep + b"}").has_payload
    assert rover.decode(b'{"type":"A","data":' + deep + b"}").has_payload
    with pytest.raises(canonical.BadFrame, match="depth limit"):
        canonical.decode(b'{"type":"A","payload":' + deeper + b"}")
    with pytest.raises(canonical.BadFrame, match="Invalid message format"):
        events.EVENTS.decode(b'{"event":"A","data":' + deeper + b"}")
    with pytest.raises(canonical.BadFrame, match="depth limit"):
        rover.decode(b'{"type":"A","data":' + deeper + b"}")
