"""The frames crosswire writes itself (picows' write batches, hypercorn's direct sends) are
what websockets' own parser reads as whole, unmasked frames, at every length encoding."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from crosswire.adapters._server_frames import FIN_BINARY, FIN_TEXT, server_frame


def parse(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)  # (a client reads unmasked frames)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
    else:
        raise AssertionError("the frame is incomplete")
    assert reader.at_eof()  # (nothing after it)
    return frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize(
    ("first", "opcode"), [(FIN_TEXT, Opcode.TEXT), (FIN_BINARY, Opcode.BINARY)]
)
def test_a_server_frame_is_one_whole_unmasked_frame(first: int, opcode: Opcode, size: int) -> None:
    payload = bytes(i % 251 for i in range(size)) if opcode is Opcode.BINARY else b"x" * size
    frame = parse(server_frame(first, payload))
    assert frame.opcode is opcode
    assert frame.fin
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert frame.data == payload
