"""Generated malformed frames (issue 17, point 4): at least 10,000 per dialect, on two servers.

Hypothesis draws batches of frames that break the protocol of one dialect: bad JSON, JSON
that is not an object, wrong types in every field, deep nesting, huge numbers and strings,
unknown and reserved types, odd correlation ids, binary frames, and (ending a batch) text
that is not UTF-8 or a frame past the router's size limit. Each strategy knows the answer
the docs give for what it draws (docs/protocol.md, protocol-events.md, protocol-rover.md,
close-codes.md), so each frame is checked against it: the error with its code (its message
in the events dialect, which has no codes) and its correlation id, or the close code.

Every frame is followed by a marker, ``ping`` with a number that the ``pong`` carries back,
on the same connection: the frames and markers of a batch go out in one write, then every
answer is read and checked in order. After a frame that closes the connection, the marker
goes to a fresh one. Both servers (``tests/apps/fuzz.py`` in processes of their own, on
websockets and picows) get the same frames. Their resident memory after a warm-up batch and
at the end may differ by at most :data:`MEMORY_GROWTH`, and a brand-new connection is
served at the end.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.apps.fuzz import MAX_PAYLOAD
from tests.support import COMMAND, TIMEOUT, Command, RawClient, reap

ROOT = Path(__file__).resolve().parents[2]

#: The servers every run attacks (each in a process of its own).
SERVERS = ("websockets", "picows")
#: Frames per batch (one Hypothesis example), and the batches of a run: at least 10,000
#: frames per dialect and server.
BATCH = 100
BATCHES = 101
FRAMES = 10_000
#: How much a server's resident memory may grow between the warm-up batch and the end.
MEMORY_GROWTH = 8 * 1024 * 1024

#: What the server synthesizes as the correlation id of an RPC that came without one.
SRV = "srv-"


@dataclass(frozen=True)
class Case:
    """One generated frame and its documented outcome: an error (``code``; ``why`` names the
    rule it breaks, which gives the message in the events dialect) with correlation id
    ``cid`` (:data:`SRV`: the server's next synthesized one), or a close with ``close``."""

    data: bytes
    code: str | None = None
    why: str = ""
    cid: str | None = None
    binary: bool = False
    close: int | None = None
    #: For frames that are valid after all (a huge integer): the ``n`` of the ``pong``.
    pong: int | None = None

    def __repr__(self) -> str:  # a frame may be 60 KiB: its start, and its size
        data = self.data if len(self.data) <= 300 else self.data[:300] + b"..."
        shown = {k: v for k, v in vars(self).items() if k != "data" and v not in (None, False, "")}
        return f"Case({data!r} ({len(self.data)} bytes), {shown})"


def dumps(value: Any) -> bytes:
    # json, not orjson: it writes integers of any size (orjson stops at 64 bits)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


# -- values ---------------------------------------------------------------------------------

#: JSON values of every type, the odd ones first: huge integers (up to Python's 4,300
#: digits), floats at a double's edges, empty and long strings, nested containers.
ODD = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    -(2**64) - 1,
    10**4299,
    1.5,
    -0.0,
    1.7976931348623157e308,
    5e-324,
    "",
    "x",
    "\u0000\u202e\U0001f600",
    [],
    {},
    [None],
    {"a": {"b": [1]}},
]
#: Odd strings: empty, control and invisible characters, the edges of Unicode, JSON's own
#: syntax, names close to the routes'.
ODD_TEXT = [
    "",
    "a",
    " ",
    "\u0000",
    "\u0014",
    "\n",
    "\\",
    '"',
    "\u202e",
    "\ufeff",
    "\ud7ff",
    "\ue000",
    "\uffff",
    "\U0010ffff",
    "\U0001f600",
    "é",
    "null",
    "{}",
    "ping ",
    "PING",
    "pong",
    "$ws",
    "_",
    "ws:",
    "\u0130",
]
#: Each value is drawn from a pool made once: a Hypothesis draw costs far more than a pick,
#: and 30,000 frames must be drawn within the run's minute.
SCALARS = [*ODD, *ODD_TEXT, 1, 2**31, -(2**53) - 1, 0.1, 1e-300, -1e300]
VALUES = [
    *SCALARS,
    *([v] for v in SCALARS),
    *({"k": v} for v in SCALARS),
    *({t: 1} for t in ODD_TEXT),
    *([v, w] for v in ODD for w in ODD),
]
values = st.one_of(
    st.sampled_from(VALUES), st.integers(), st.floats(allow_nan=False, allow_infinity=False)
)
not_objects = st.sampled_from([v for v in VALUES if type(v) is not dict])
not_strings = st.sampled_from([v for v in VALUES if type(v) is not str])
not_ints = st.sampled_from([v for v in VALUES if type(v) is not int])
#: A run of one character (drawing each character would take Hypothesis too long).
long_text = st.builds(
    lambda c, n: c * n, st.characters(exclude_categories=["Cs"]), st.integers(1, 8_000)
)
texts = st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=4), long_text)
#: Valid correlation ids, odd ones included: 1-256 characters of any kind.
odd_ids = st.one_of(
    st.sampled_from([t for t in ODD_TEXT if t]),
    st.text(min_size=1, max_size=4),
    st.builds(lambda c, n: c * n, st.characters(exclude_categories=["Cs"]), st.integers(1, 256)),
)
#: Correlation ids a canonical frame may not carry (not a string, empty, too long).
bad_ids = st.one_of(
    not_strings,
    st.just(""),
    st.builds(
        lambda c, n: c * n, st.characters(exclude_categories=["Cs"]), st.integers(257, 4_000)
    ),
)
small_dicts = st.sampled_from([{}, *({t: v} for t in ODD_TEXT[:8] for v in SCALARS[:12])])
ROUTES = frozenset({"ping", "note"})
RESERVED = ("$ws:", "__")


def names(excluded: frozenset[str]) -> st.SearchStrategy[str]:
    """Types no route or control frame of the dialect has, reserved prefixes left out."""
    return texts.filter(
        lambda t: bool(t) and t not in excluded and t not in ROUTES and not t.startswith(RESERVED)
    )


def reserved(excluded: frozenset[str]) -> st.SearchStrategy[str]:
    """Reserved types (``$ws:...``, ``__...``) that are not control frames of the dialect."""
    return st.builds(lambda p, t: p + t, st.sampled_from(RESERVED), texts).filter(
        lambda t: t not in excluded
    )


def nested(depth: int, inner: Any = None) -> str:
    return "[" * depth + json.dumps(inner) + "]" * depth


#: Not JSON at all: cut frames, syntax JSON forbids, text.
BROKEN = [
    b"",
    b" ",
    b"{",
    b"}",
    b"[1,2",
    b"nul",
    b"NaN",
    b"{'type':'ping'}",
    b'{"type":"ping",}',
    b'{"type":"ping"}}',
    b'{"type":"ping","payload":{"n":NaN}}',
    b'{"type":"ping","payload":{"n":Infinity}}',
    b'{"type":"ping","payload":{"n":01}}',
    b'{"type":"ping" "payload":1}',
    b'{"type":"\\ud800"}',  # an escaped lone surrogate
    b'{"type":"ping\x01"}',  # a control character in a string
    b"\xef\xbb\xbf{}",  # a byte order mark
]


def is_object(text: bytes) -> bool:
    try:
        return type(json.loads(text)) is dict
    except ValueError:
        return False


def _cut(frame: bytes, at: int) -> bytes:
    return frame[: max(1, at % len(frame))]


not_json = st.one_of(
    st.sampled_from(BROKEN),
    st.builds(
        _cut,
        st.sampled_from(
            [
                b'{"type":"ping","meta":{"correlationId":"c"},"payload":{"n":1}}',
                b'{"event":"ping","data":{"n":1},"id":"c"}',
                b'{"type":"ping","n":1}',
            ]
        ),
        st.integers(0, 100),
    ),
    st.text(max_size=12).map(str.encode).filter(lambda b: not is_object(b)),
    not_objects.map(dumps),
)

#: Numbers past what is read: a float past a double's range, an integer of 4,301+ digits.
out_of_range = st.one_of(
    st.sampled_from(["1e400", "-1e400", "1" + "0" * 4300, "-" + "9" * 5000]),
    st.integers(4301, 20_000).map(lambda n: "7" * n),
)
#: Nesting past the 1,024 levels JSON is read to.
too_deep = st.integers(1025, 30_000)
#: Nesting around that limit.
deep = st.integers(1000, 1030)
#: Bytes that are not UTF-8.
not_utf8 = st.sampled_from(
    [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80", b"caf\xe9"]
)

#: A JSON value that makes the whole frame unreadable, and whether the frame must then go as
#: a binary frame (bytes that are not UTF-8 cannot be a text frame).
unreadable_value = st.one_of(
    out_of_range.map(lambda n: (n.encode(), False)),
    too_deep.map(lambda d: (nested(d).encode(), False)),
    not_utf8.map(lambda b: (b'"' + b + b'"', True)),
)


def canonical_ping(meta: dict[str, Any], n: bytes) -> bytes:
    """A canonical ``ping`` with ``meta`` whose ``payload.n`` is the JSON text ``n``, joined
    after the meta (replacing a placeholder in the frame could hit the correlation id instead:
    an id ``"x"`` comes before a payload ``{"n": "x"}``)."""
    return dumps({"type": "ping", "meta": meta})[:-1] + b',"payload":{"n":' + n + b"}}"


# -- one strategy per dialect -----------------------------------------------------------------


@dataclass
class Dialect:
    name: str
    cases: st.SearchStrategy[Case]
    marker: Callable[[int], bytes]
    #: The frame's (kind, code or message, correlation id, n of a pong).
    read: Callable[[dict[str, Any]], tuple[str, str, str | None, Any]]
    #: Whether an error's text fits the rule ``why`` (the events dialect has no codes).
    message_fits: Callable[[str, str], bool] = lambda why, message: True


INVALID, UNIMPLEMENTED = "INVALID_ARGUMENT", "UNIMPLEMENTED"


def closing() -> st.SearchStrategy[Case]:
    """Text that is not UTF-8 (1007), a message past the router's limit (1009)."""
    bad_text = st.builds(
        lambda pre, bad: Case(pre + bad, close=1007), st.sampled_from([b"", b'{"type":"']), not_utf8
    )
    too_big = st.builds(
        lambda n, binary: Case(b'"' + b"x" * n + b'"', close=1009, binary=binary),
        st.integers(MAX_PAYLOAD - 1, MAX_PAYLOAD + 4096),
        st.booleans(),
    )
    return st.one_of(bad_text, too_big)


@st.composite
def canonical_case(draw: st.DrawFn) -> Case:
    controls = CANONICAL_CONTROLS
    cid = draw(st.one_of(st.none(), odd_ids))
    meta = {} if cid is None else {"correlationId": cid}
    kind = draw(st.integers(0, 13))
    if kind == 0:
        return Case(draw(not_json), INVALID, "frame")
    if kind == 1:  # type missing, not a string or empty
        frame: dict[str, Any] = {"meta": meta} if meta else {}
        if draw(st.booleans()):
            frame["type"] = draw(st.one_of(not_strings, st.just("")))
        return Case(dumps(frame), INVALID, "frame", cid)
    if kind == 2:  # an unknown type, any payload
        frame = {"type": draw(names(controls)), "meta": meta}
        if draw(st.booleans()):
            frame["payload"] = draw(values)
        return Case(dumps(frame), UNIMPLEMENTED, "unknown", cid)
    if kind == 3:
        return Case(
            dumps({"type": draw(reserved(controls)), "meta": meta}), INVALID, "reserved", cid
        )
    if kind == 4:  # a correlation id no frame may carry
        bad = {
            "type": draw(st.sampled_from(["ping", "note", "nope"])),
            "meta": {"correlationId": draw(bad_ids)},
        }
        return Case(dumps(bad), INVALID, "frame")
    if kind == 5:  # meta that is not an object (null included)
        return Case(
            dumps({"type": "ping", "meta": draw(not_objects), "payload": {"n": 1}}),
            INVALID,
            "frame",
        )
    if kind == 6:  # a standard meta key of the wrong type, a key the server stamps
        key, value = draw(
            st.one_of(
                st.tuples(st.just("timeoutMs"), st.one_of(not_ints, st.integers(max_value=0))),
                st.tuples(
                    st.just("timestamp"),
                    st.sampled_from([v for v in VALUES if type(v) not in (int, float)]),
                ),
                st.tuples(st.sampled_from(["clientId", "receivedAt"]), values),
            )
        )
        frame = {"type": draw(st.sampled_from(["ping", "note"])), "meta": meta | {key: value}}
        return Case(dumps(frame), INVALID, "frame", cid)
    if kind == 7:  # a root key that is not type, meta or payload
        key = draw(st.sampled_from(ODD_TEXT))
        frame = {"type": "ping", "meta": meta, "payload": {"n": 1}, key: draw(values)}
        return Case(dumps(frame), INVALID, "frame", cid)
    if kind == 8:  # an RPC whose payload or meta breaks its schema: RPC_ERROR, its id or one
        payload = draw(bad_ping_payloads)
        frame = {"type": "ping", "meta": meta}
        if payload is not MISSING:
            frame["payload"] = payload
        if draw(st.booleans()):
            frame["meta"] = meta | {
                draw(st.sampled_from(["traceId", "x", "correlationid"])): draw(values)
            }
        return Case(dumps(frame), INVALID, "payload", cid or SRV)
    if kind == 9:  # an event whose payload or custom meta breaks its schema: ERROR
        payload = draw(bad_note_payloads)
        frame = {
            "type": "note",
            "meta": meta
            | draw(st.sampled_from([{}, {"traceId": 1}, {"traceId": None}, {"other": "x"}])),
        }
        if payload is not MISSING:
            frame["payload"] = payload
        return Case(dumps(frame), INVALID, "payload")
    if kind == 10:  # a number out of range; the correlation id can still be read
        number = draw(out_of_range)
        return Case(canonical_ping(meta, number.encode()), INVALID, "range", cid)
    if kind == 11:  # nesting at the 1,024 levels read (the frame and payload are 2 of them)
        depth = draw(deep)
        text = canonical_ping(meta, nested(depth).encode())
        if depth + 2 <= 1024:  # read: the payload breaks the schema
            return Case(text, INVALID, "payload", cid or SRV)
        return Case(text, INVALID, "frame")  # not read at all: without its id
    if kind == 12:  # a binary frame with bytes that are not UTF-8 in a string
        not_text = b'"' + draw(not_utf8) + b'"'
        if draw(st.booleans()):  # in the payload: the correlation id can still be read
            return Case(canonical_ping(meta, not_text), INVALID, "frame", cid, binary=True)
        # in the correlation id itself: it cannot be read, so the error goes without it
        unreadable_id = (
            b'{"type":"ping","meta":{"correlationId":' + not_text + b'},"payload":{"n":1}}'
        )
        return Case(unreadable_id, INVALID, "frame", binary=True)
    # a huge integer is an integer: answered
    n = draw(st.one_of(st.sampled_from([2**64, -(2**80), 10**4299]), st.integers()))
    return Case(
        dumps({"type": "ping", "meta": {"correlationId": "big"}, "payload": {"n": n}}), pong=n
    )


#: Control frames of each dialect that a router serves: never drawn as unknown types.
CANONICAL_CONTROLS = frozenset(
    {"$ws:abort", "__heartbeat", "__heartbeat_ack", "$ws:join", "$ws:leave"}
)
MISSING: Any = object()
bad_ping_payloads = st.one_of(
    st.just(MISSING),
    not_objects,
    st.just({}),
    st.builds(lambda v: {"n": v}, not_ints),
    st.builds(
        lambda k, v: {"n": 1, k: v}, st.sampled_from([t for t in ODD_TEXT if t != "n"]), values
    ),
    st.integers(1, 200).map(lambda depth: {"n": json.loads(nested(depth))}),
)
bad_note_objects = st.one_of(
    st.just(MISSING),
    st.builds(lambda t, n: {"text": t, "n": n}, not_strings, st.integers()),
    st.builds(lambda t, n: {"text": t, "n": n}, texts, not_ints),
    st.builds(lambda t: {"text": t}, texts),
    st.builds(lambda t, v: {"text": t, "n": 1, "more": v}, texts, values),
)

bad_note_payloads = st.one_of(not_objects, bad_note_objects)


def read_canonical(frame: dict[str, Any]) -> tuple[str, str, str | None, Any]:
    cid = frame.get("meta", {}).get("correlationId")
    if frame["type"] in ("ERROR", "RPC_ERROR"):
        assert (frame["type"] == "RPC_ERROR") == (cid is not None), frame
        return "error", frame["payload"]["code"], cid, None
    return frame["type"], "", cid, frame.get("payload", {}).get("n")


def canonical_marker(n: int) -> bytes:
    return b'{"type":"ping","meta":{"correlationId":"m%d"},"payload":{"n":%d}}' % (n, n)


@st.composite
def events_case(draw: st.DrawFn) -> Case:
    controls = EVENTS_CONTROLS
    ident = draw(st.one_of(st.none(), odd_ids, st.just(""), not_strings))
    cid = ident if type(ident) is str else None  # an id that is not a string is ignored
    extra = {} if ident is None else {"id": ident}
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return Case(draw(not_json), INVALID, "frame")
    if kind == 1:  # event missing, not a string or empty
        frame: dict[str, Any] = dict(extra)
        if draw(st.booleans()):
            frame["event"] = draw(st.one_of(not_strings, st.just("")))
        return Case(dumps(frame), INVALID, "frame")
    if kind == 2:
        frame = {"event": draw(names(controls))} | extra
        if draw(st.booleans()):
            frame["data"] = draw(values)
        return Case(dumps(frame), UNIMPLEMENTED, "unknown", cid)
    if kind == 3:
        return Case(dumps({"event": draw(reserved(controls))} | extra), INVALID, "reserved", cid)
    if kind == 4:  # an RPC whose data breaks its schema
        frame = {"event": "ping"} | extra
        payload = draw(bad_ping_payloads)
        if payload is not MISSING:
            frame["data"] = payload
        return Case(dumps(frame), INVALID, "payload", SRV if cid is None else cid)
    if kind == 5:  # an event whose data breaks its schema: no id
        frame = {"event": "note"} | extra
        payload = draw(bad_note_payloads)
        if payload is not MISSING:
            frame["data"] = payload
        return Case(dumps(frame), INVALID, "payload")
    if kind == 6:  # join or leave without a list of room names
        rooms = draw(
            st.one_of(
                not_objects,
                st.builds(
                    lambda r: {"rooms": r},
                    st.sampled_from(
                        [
                            r
                            for r in VALUES
                            if type(r) is not list or not all(type(x) is str for x in r)
                        ]
                    ),
                ),
            )
        )
        return Case(
            dumps({"event": draw(st.sampled_from(["join", "leave"])), "data": rooms} | extra),
            INVALID,
            "rooms",
        )
    if kind == 7:  # out of range, too deep, not UTF-8 (binary): not JSON to this dialect
        frame_bytes = dumps({"event": "ping", "data": {"n": "x"}} | extra)
        depth = draw(deep)
        if depth + 2 <= 1024:  # read: the payload breaks the schema
            # (no id that is not a string: past about 1,000 levels frames are read by orjson,
            # which refuses a number past a double's range, as docs/protocol.md says)
            plain = {"event": "ping", "data": {"n": "x"}} | ({} if cid is None else {"id": cid})
            deep_frame = dumps(plain).replace(b'"x"', nested(depth).encode(), 1)
            return Case(deep_frame, INVALID, "payload", SRV if cid is None else cid)
        bad, binary = draw(unreadable_value)
        return Case(frame_bytes.replace(b'"x"', bad, 1), INVALID, "frame", binary=binary)
    n = draw(st.one_of(st.sampled_from([2**64, -(2**80), 10**4299]), st.integers()))
    return Case(dumps({"event": "ping", "data": {"n": n}, "id": "big"}), pong=n)


EVENTS_CONTROLS = frozenset({"authenticate", "heartbeat", "join", "leave", "presence"})


def read_events(frame: dict[str, Any]) -> tuple[str, str, str | None, Any]:
    if frame["event"] == "error":
        return "error", frame["data"]["message"], frame.get("id"), None
    return frame["event"], "", frame.get("id"), frame.get("data", {}).get("n")


def events_marker(n: int) -> bytes:
    return b'{"event":"ping","data":{"n":%d},"id":"m%d"}' % (n, n)


#: The message of an events error for each rule (the dialect sends no code).
EVENTS_MESSAGES: dict[str, Callable[[str], bool]] = {
    "frame": lambda m: m == "Invalid message format",
    "rooms": lambda m: m == "Invalid rooms",
    "unknown": lambda m: m.startswith("no handler for message type "),
    "reserved": lambda m: m.startswith("message type ") and "is reserved" in m,
    "payload": lambda m: m.startswith("invalid payload: ") or m.endswith(" needs a payload"),
}


@st.composite
def rover_case(draw: st.DrawFn) -> Case:
    controls = ROVER_CONTROLS
    kind = draw(st.integers(0, 8))
    if kind == 0:
        return Case(draw(not_json), INVALID, "frame")
    if kind == 1:
        frame: dict[str, Any] = dict(draw(small_dicts))
        if draw(st.booleans()):
            frame["type"] = draw(st.one_of(not_strings, st.just("")))
        return Case(dumps(frame), INVALID, "frame")
    if kind == 2:
        fields = draw(small_dicts)
        return Case(dumps({"type": draw(names(controls))} | fields), UNIMPLEMENTED, "unknown")
    if kind == 3:
        return Case(dumps({"type": draw(reserved(controls))}), INVALID, "reserved")
    if kind == 4:  # ping's fields break its schema
        payload = draw(bad_ping_payloads)
        if payload is MISSING:
            return Case(b'{"type":"ping"}', INVALID, "payload")
        if (
            type(payload) is not dict
            or "type" in payload
            or (len(payload) == 1 and "data" in payload)
        ):
            return Case(dumps({"type": "ping", "data": payload}), INVALID, "payload")
        return Case(dumps({"type": "ping"} | payload), INVALID, "payload")
    if kind == 5:
        payload = draw(bad_note_objects)
        return Case(
            dumps({"type": "note"} | ({} if payload is MISSING else payload)), INVALID, "payload"
        )
    if kind == 6:  # join or leave without a topic, or with a malformed $recover
        frame = {"type": draw(st.sampled_from(["join", "leave"]))}
        if draw(st.booleans()):
            frame["topic"] = draw(st.one_of(not_strings, st.just("")))
        else:
            frame["topic"] = "room"
            frame["$recover"] = draw(
                st.one_of(
                    st.sampled_from([v for v in VALUES if type(v) is not dict and v is not None]),
                    st.builds(lambda v: {"offset": v, "epoch": "e"}, not_ints),
                )
            )
        return Case(dumps(frame), INVALID, "frame")
    if kind == 7:
        frame_bytes = b'{"type":"ping","n":"x"}'
        depth = draw(deep)
        if depth + 1 <= 1024:  # read: the payload breaks the schema
            return Case(frame_bytes.replace(b'"x"', nested(depth).encode()), INVALID, "payload")
        bad, binary = draw(unreadable_value)
        return Case(frame_bytes.replace(b'"x"', bad, 1), INVALID, "frame", binary=binary)
    n = draw(st.one_of(st.sampled_from([2**64, -(2**80), 10**4299]), st.integers()))
    return Case(dumps({"type": "ping", "n": n}), pong=n)


ROVER_CONTROLS = frozenset({"join", "leave", "presence", "authenticate"})


def read_rover(frame: dict[str, Any]) -> tuple[str, str, str | None, Any]:
    if frame["type"] == "error":
        return "error", frame["code"], None, None
    return frame["type"], "", None, frame.get("n")


def rover_marker(n: int) -> bytes:
    return b'{"type":"ping","n":%d}' % n


DIALECTS = {
    "canonical": Dialect("canonical", canonical_case(), canonical_marker, read_canonical),
    "events": Dialect(
        "events",
        events_case(),
        events_marker,
        read_events,
        lambda why, m: EVENTS_MESSAGES[why](m),
    ),
    "rover": Dialect("rover", rover_case(), rover_marker, read_rover),
}


def batches(dialect: Dialect) -> st.SearchStrategy[tuple[list[Case], Case | None]]:
    """A batch: :data:`BATCH` frames the connection survives, then (sometimes) one that
    closes it."""
    ending = st.one_of(st.none(), st.none(), st.none(), st.none(), closing())
    # (a frame past the limit would close the connection: those come last, from closing())
    fits = dialect.cases.filter(lambda case: len(case.data) <= MAX_PAYLOAD)
    return st.tuples(st.lists(fits, min_size=BATCH, max_size=BATCH), ending)


# -- the clients ------------------------------------------------------------------------------


@dataclass
class Connection:
    """One raw connection to one server in one dialect, and what it has been sent."""

    url: str
    client: RawClient | None = None
    synthesized: int = 0  # the correlation ids the server made up on this connection
    sent: int = 0  # malformed frames sent to this server in this dialect
    markers: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    async def fresh(self) -> RawClient:
        if self.client is not None:
            self.client.close()
        self.client = await RawClient.connect(self.url)
        self.synthesized = 0
        return self.client


def send(client: RawClient, case_data: bytes, binary: bool) -> None:
    if binary:
        client.protocol.send_binary(case_data)
    else:
        client.protocol.send_text(case_data)


async def run_batch(
    dialect: Dialect, conn: Connection, cases: list[Case], ending: Case | None
) -> None:
    """Send each case and a marker after it in one write, then check every answer in order;
    a closing case last, then a marker on a fresh connection."""
    client = conn.client or await conn.fresh()
    markers = []
    for case in cases:
        send(client, case.data, case.binary)
        marker = next(conn.markers)
        markers.append(marker)
        client.protocol.send_text(dialect.marker(marker))
    if ending is not None:
        send(client, ending.data, ending.binary)
        client.protocol.send_text(dialect.marker(next(conn.markers)))  # never answered
    client.flush()
    for case, marker in zip(cases, markers, strict=True):
        answer = await receive(client, case)
        kind, said, cid, n = dialect.read(json.loads(answer))
        if case.pong is not None:
            assert (kind, cid if dialect.name != "rover" else "big", n) == (
                "pong",
                "big",
                case.pong,
            ), (case, answer)
        else:
            assert kind == "error", (case, answer)
            if dialect.name == "events":
                assert dialect.message_fits(case.why, said), (case, answer)
            else:
                assert said == case.code, (case, answer)
            expected = case.cid
            if expected == SRV:
                conn.synthesized += 1
                expected = f"srv-{conn.synthesized}"
            if dialect.name != "rover":
                assert cid == expected, (case, answer)
        answer = await receive(client, case)
        kind, _, cid, n = dialect.read(json.loads(answer))
        assert (kind, n) == ("pong", marker), (case, answer)
        conn.sent += 1
    client.flush()  # (pongs to the server's pings, if any came)
    if ending is not None:
        assert await client.close_code() == ending.close, ending
        conn.sent += 1
        client = await conn.fresh()
        marker = next(conn.markers)
        client.protocol.send_text(dialect.marker(marker))
        client.flush()
        kind, _, _, n = dialect.read(json.loads((await client.messages(1))[0]))
        assert (kind, n) == ("pong", marker)


async def receive(client: RawClient, case: Case) -> str | bytes:
    """The next message, which answers ``case`` or the marker after it."""
    try:
        return (await client.messages(1))[0]
    except (TimeoutError, AssertionError) as exc:
        raise AssertionError(f"no answer after {case!r}: {exc!r}") from None


def rss(pid: int) -> int:
    """A process's resident memory, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("dialect_name", list(DIALECTS))
def test_generated_malformed_frames_get_their_documented_answer(dialect_name: str) -> None:
    dialect = DIALECTS[dialect_name]
    with asyncio.Runner() as runner:
        commands: list[Command] = []

        async def start() -> None:
            for server in SERVERS:
                proc = await asyncio.create_subprocess_exec(
                    str(COMMAND),
                    "run",
                    "tests.apps.fuzz:app",
                    "--port",
                    "0",
                    "--server",
                    server,
                    cwd=ROOT,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                commands.append(Command(proc))
            await asyncio.gather(*(command.started() for command in commands))

        try:
            runner.run(start())
            conns = [Connection(f"{c.ws_url}/ws?dialect={dialect_name}") for c in commands]
            baseline: list[int] = []

            @settings(
                max_examples=BATCHES,
                deadline=None,
                database=None,
                print_blob=True,  # a failure can be replayed with @reproduce_failure
                suppress_health_check=list(HealthCheck),
                # No shrinking: each step would be a round trip to both servers, and the
                # assertion names the frame that failed already.
                phases=[Phase.explicit, Phase.generate],
            )
            @given(batches(dialect))
            def attack(batch: tuple[list[Case], Case | None]) -> None:
                cases, ending = batch

                async def both() -> None:
                    tasks = [
                        asyncio.ensure_future(run_batch(dialect, conn, cases, ending))
                        for conn in conns
                    ]
                    try:
                        await asyncio.wait_for(asyncio.gather(*tasks), 4 * TIMEOUT)
                    finally:
                        # When one server's batch fails, the other's must not run on: it
                        # would resume in the next runner.run (Hypothesis replays a failing
                        # example once more), reading its closed connection's answers and
                        # counting their synthesized ids into the fresh connection's count.
                        for task in tasks:
                            task.cancel()
                        await asyncio.gather(*tasks, return_exceptions=True)

                try:
                    runner.run(both())
                except BaseException:
                    for conn in conns:  # the next example starts on fresh connections
                        if conn.client is not None:
                            conn.client.close()
                        conn.client = None
                    raise
                if not baseline:  # after the warm-up batch
                    baseline.extend(rss(c.proc.pid) for c in commands)

            attack()
            for server, conn in zip(SERVERS, conns, strict=True):
                assert conn.sent >= FRAMES, (server, conn.sent)
            grown = [rss(c.proc.pid) - base for c, base in zip(commands, baseline, strict=True)]
            assert max(grown) < MEMORY_GROWTH, dict(zip(SERVERS, grown, strict=True))

            async def brand_new() -> None:
                for conn in conns:
                    client = await conn.fresh()
                    client.protocol.send_text(dialect.marker(0))
                    client.flush()
                    kind, _, _, n = dialect.read(json.loads((await client.messages(1))[0]))
                    assert (kind, n) == ("pong", 0)
                    client.close()

            runner.run(brand_new())
        finally:
            runner.run(reap([c.proc for c in commands]))
