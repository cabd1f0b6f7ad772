"""Message (what a peer receives) and encode (what a peer sends)."""

from __future__ import annotations

import orjson
import pytest

from crosswire import Message
from crosswire.peer import encode


def test_text_message() -> None:
    msg = Message('{"a": "é"}', False)
    assert not msg.is_binary
    assert msg.text() == '{"a": "é"}'
    assert msg.data == '{"a": "é"}'.encode()
    assert msg.json() == {"a": "é"}
    assert len(msg) == len('{"a": "é"}'.encode())


def test_binary_message() -> None:
    msg = Message(b"\x00\xff", True)
    assert msg.is_binary and msg.data == b"\x00\xff" and msg.raw == b"\x00\xff"
    assert Message("hé".encode(), True).text() == "hé"
    with pytest.raises(UnicodeDecodeError):
        msg.text()


def test_invalid_json_raises_value_error() -> None:
    with pytest.raises(ValueError):
        Message("{nope", False).json()


def test_repr_shows_kind_and_size_never_the_body() -> None:
    assert repr(Message("token=s3cret", False)) == "<Message text 12 bytes>"
    assert repr(Message(b"s3cret", True)) == "<Message binary 6 bytes>"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("hi", (b"hi", True)),
        ("é", ("é".encode(), True)),
        (b"\x01", (b"\x01", False)),
        (bytearray(b"\x02"), (b"\x02", False)),
        (memoryview(b"\x03"), (b"\x03", False)),
        ({"a": [1, None]}, (b'{"a":[1,null]}', True)),
        ([1, 2], (b"[1,2]", True)),
        (Message("again", False), (b"again", True)),
        (Message(b"\x04", True), (b"\x04", False)),
    ],
)
def test_encode_chooses_the_frame_type_and_gives_utf8_bytes(
    data: object, expected: tuple[object, bool]
) -> None:
    assert encode(data) == expected


def test_encode_refuses_what_json_cannot_carry() -> None:
    with pytest.raises(orjson.JSONEncodeError):
        encode({"when": object()})
