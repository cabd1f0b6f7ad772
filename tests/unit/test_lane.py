"""The router's fast lane (crosswire.router.lane, the canonical dialect's typed decoder): what
it takes, it takes exactly as the usual path would; what it does not take goes that way.

The property: for any frame, when the typed decoder returns an envelope, ``decode`` accepts
the frame with the same type and meta, and the route's schema loads the same payload from it.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crosswire import message
from crosswire.errors import ValidationError
from crosswire.router.lane import Lane, payload_shape
from crosswire.schema import MessageSchema
from crosswire.wire import CANONICAL, EVENTS, ROVER, BadFrame, decode


class Point(msgspec.Struct, forbid_unknown_fields=True):
    x: int
    y: float = 0.0


class Loose(msgspec.Struct):  # lets unknown fields through: load refuses them itself
    x: int


SCHEMAS: dict[str, MessageSchema[Any]] = {
    s.type: s
    for s in (
        message("ECHO", {"text": str}),
        message("MOVE", Point),
        message("WHEN", {"at": datetime.datetime, "tags": list[str], "note": str | None}),
        message("LOOSE", Loose),
        message("PING"),
        message("TRACED", {"n": int}, meta={"traceId": str}),
    )
}


class _Route:
    def __init__(self, schema: MessageSchema[Any]) -> None:
        self.schema = schema


def lane() -> Lane:
    return Lane(CANONICAL, {kind: _Route(schema) for kind, schema in SCHEMAS.items()})


def test_a_struct_payload_comes_decoded_and_checked_with_its_envelope() -> None:
    decode_typed = lane().decode
    envelope = decode_typed(b'{"type":"MOVE","meta":{"correlationId":"c1"},"payload":{"x":1}}')
    assert envelope is not None and envelope.validated
    assert envelope.type == "MOVE" and envelope.payload == Point(1, 0.0)
    assert envelope.meta == {"correlationId": "c1"} and envelope.correlation_id == "c1"
    ping = decode_typed('{"type":"PING","meta":{"timeoutMs":50,"timestamp":1.5}}')
    assert ping is not None and ping.validated and ping.payload is None and not ping.has_payload


def test_what_the_lane_does_not_take_goes_the_usual_way() -> None:
    decode_typed = lane().decode
    frames: list[str | bytes] = [
        '{"type":"NOPE"}',  # no route
        '{"type":"$ws:abort","meta":{"correlationId":"c"}}',  # a control frame
        '{"type":"ECHO","payload":{"text":1}}',  # the payload does not fit
        '{"type":"ECHO","payload":{"text":"a","b":1}}',  # an unknown payload key
        '{"type":"ECHO"}',  # no payload
        '{"type":"PING","payload":null}',  # a payload on a type without one
        '{"type":"ECHO","payload":{"text":"a"},"extra":1}',  # an unknown root key
        '{"type":"ECHO","meta":null,"payload":{"text":"a"}}',
        '{"type":"ECHO","meta":{"clientId":"x"},"payload":{"text":"a"}}',  # stamped
        '{"type":"ECHO","meta":{"correlationId":""},"payload":{"text":"a"}}',
        '{"type":"ECHO","meta":{"correlationId":"c","timeoutMs":0},"payload":{"text":"a"}}',
        '{"type":"ECHO","meta":{"traceId":"t"},"payload":{"text":"a"}}',  # custom meta
        '{"type":"TRACED","payload":{"n":1}}',  # a route with a meta schema
        '{"type":"ECHO","payload":{"text":"a"}',  # not JSON
        b'{"type":"ECHO","payload":{"text":"\xff"}}',  # not UTF-8
    ]
    for frame in frames:
        assert decode_typed(frame) is None, frame


def test_a_struct_that_lets_unknown_fields_through_is_left_to_the_route() -> None:
    envelope = lane().decode('{"type":"LOOSE","payload":{"x":1,"y":2}}')
    assert envelope is not None and not envelope.validated  # the JSON, for the route to load
    assert envelope.payload == {"x": 1, "y": 2}
    assert payload_shape(SCHEMAS["LOOSE"]) is Any
    assert payload_shape(SCHEMAS["ECHO"]) is SCHEMAS["ECHO"].payload.decode_type  # type: ignore[union-attr]


@pytest.mark.parametrize("dialect", [EVENTS, ROVER])
def test_dialects_without_a_typed_decoder_take_nothing(dialect: Any) -> None:
    assert Lane(dialect, {"ECHO": _Route(SCHEMAS["ECHO"])}).decode('{"type":"ECHO"}') is None


def test_the_lane_is_rebuilt_when_the_routes_change() -> None:
    routes: dict[str, Any] = {"ECHO": _Route(SCHEMAS["ECHO"])}
    fast = Lane(CANONICAL, routes)
    assert fast.decode('{"type":"PING"}') is None
    routes["PING"] = _Route(SCHEMAS["PING"])
    assert fast.decode('{"type":"PING"}') is None  # built already
    fast.reset()
    assert fast.decode('{"type":"PING"}') is not None


# -- the property -----------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_payloads = st.one_of(
    _json,
    st.fixed_dictionaries({"text": st.one_of(st.text(max_size=5), _json)}, optional={"b": _json}),
    st.fixed_dictionaries(
        {"x": st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), _json)},
        optional={"y": st.one_of(st.integers(), st.floats(allow_nan=False), _json), "z": _json},
    ),
    st.fixed_dictionaries(
        {
            "at": st.one_of(st.sampled_from(["2026-12-07T10:00:00Z", "2026-12-07", "x"]), _json),
            "tags": st.one_of(st.lists(st.text(max_size=3), max_size=2), _json),
        },
        optional={"note": st.one_of(st.none(), st.text(max_size=3), _json)},
    ),
)
_metas = st.dictionaries(
    st.sampled_from(["correlationId", "timeoutMs", "timestamp", "clientId", "traceId", "x"]),
    st.one_of(st.text(max_size=3), st.integers(-2, 5), st.floats(allow_nan=False), _json),
    max_size=3,
)


#: Payloads that fit each route (so that a good share of the frames drawn are valid).
_fitting: dict[str, st.SearchStrategy[Any]] = {
    "ECHO": st.fixed_dictionaries({"text": st.text(max_size=5)}),
    "MOVE": st.fixed_dictionaries(
        {"x": st.integers()}, optional={"y": st.floats(allow_nan=False) | st.integers()}
    ),
    "WHEN": st.fixed_dictionaries(
        {"at": st.just("2026-12-07T10:00:00Z"), "tags": st.lists(st.text(max_size=3))},
        optional={"note": st.none() | st.text(max_size=3)},
    ),
    "LOOSE": st.fixed_dictionaries({"x": st.integers()}),
    "TRACED": st.fixed_dictionaries({"n": st.integers()}),
}
_standard_meta = st.fixed_dictionaries(
    {}, optional={"correlationId": st.text(min_size=1, max_size=4), "timeoutMs": st.integers(1)}
)


@st.composite
def frames(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from([*SCHEMAS, "OTHER", "", 1]))
    frame: dict[str, Any] = {"type": kind}
    if draw(st.booleans()):
        frame["meta"] = draw(st.one_of(_standard_meta, _standard_meta, _metas, _json))
    if draw(st.booleans()):
        fitting = _fitting.get(kind) if isinstance(kind, str) else None
        use_fitting = fitting is not None and draw(st.booleans())
        frame["payload"] = draw(fitting if use_fitting else _payloads)  # type: ignore[arg-type]
    if draw(st.integers(0, 9)) == 0:
        frame[draw(st.sampled_from(["extra", "data"]))] = 1
    return json.dumps(frame)


@settings(max_examples=600, deadline=None)
@given(frames())
def test_what_the_lane_takes_the_usual_path_takes_the_same(frame: str) -> None:
    typed = lane().decode(frame)
    if typed is None:
        return
    envelope = decode(frame)  # raises BadFrame if the lane took what it should not
    assert (envelope.type, envelope.meta) == (typed.type, typed.meta)
    schema = SCHEMAS[typed.type]
    assert schema.meta is None and schema.allowed_meta.issuperset(envelope.meta)
    if schema.payload is None:
        assert not envelope.has_payload and typed.payload is None
    elif typed.validated:
        assert schema.payload.load(envelope.payload) == typed.payload
    else:
        assert envelope.payload == typed.payload


@settings(max_examples=300, deadline=None)
@given(frames())
def test_a_frame_that_loads_on_the_usual_path_is_taken_by_the_lane(frame: str) -> None:
    """The other way (a miss would only cost speed): a frame of a Struct route whose meta
    holds only standard keys and whose payload loads is taken."""
    try:
        envelope = decode(frame)
    except BadFrame:
        return
    schema = SCHEMAS.get(envelope.type)
    if schema is None or schema.meta is not None or envelope.type == "LOOSE":
        return
    if not {"correlationId", "timeoutMs", "timestamp"}.issuperset(envelope.meta):
        return
    if schema.payload is None:
        if envelope.has_payload:
            return
    else:
        if not envelope.has_payload:
            return
        try:
            schema.payload.load(envelope.payload)
        except ValidationError:
            return
    assert lane().decode(frame) is not None
