"""No token, header value or message body reaches a log, at any level, on any server.

Every server is attacked the way a real client would leak secrets into logs (tokens in the
query, an offered subprotocol, the Authorization and Cookie headers; secret message bodies;
a malformed HTTP request and an invalid UTF-8 frame carrying them), with every logger of
crosswire and of the server libraries at DEBUG; no record may contain the secret.
"""

from __future__ import annotations

import asyncio
import logging
from logging import WARNING
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

import crosswire
from tests.support import TIMEOUT, Served, closed_with, recv

SECRET = "S3CR3T"

#: Loggers set to DEBUG for the test, so that every line a library can write is written.
LOGGERS = (
    "crosswire",
    "websockets",
    "picows",
    "aiohttp",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "hypercorn",
)

HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    f"Authorization: Bearer {SECRET}-raw\r\n\r\n"
)


def masked_text_frame(payload: bytes) -> bytes:
    """A client text frame (masked with a zero key, so the payload is as written)."""
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload


async def raw_exchange(port: int, request: bytes, *frames: bytes) -> bytes:
    """Send ``request`` on a fresh TCP connection, then, once the server has answered it,
    ``frames``; return what the server sent, up to its close frame or the end."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    try:
        writer.write(request)
        while chunk := await asyncio.wait_for(reader.read(65536), TIMEOUT):
            received += chunk
            head, upgraded, rest = received.partition(b"\r\n\r\n")
            if not upgraded or not head.startswith(b"HTTP/1.1 101"):
                continue
            if frames:  # (a client sends frames only after the server's 101)
                writer.writelines(frames)
                frames = ()
            elif b"\x88" in rest:
                break  # the server's close frame: it now waits for ours, which never comes
        return received
    except ConnectionError:
        return received
    finally:
        writer.close()


async def test_no_secret_reaches_any_log(
    kind: str, caplog: pytest.LogCaptureFixture, start_server: Any
) -> None:
    def echo(peer: crosswire.Peer, message: crosswire.Message) -> None:
        peer.send(message.raw)

    app = crosswire.App(
        crosswire.define_hooks(message=echo), limits=crosswire.Limits(max_message_size=64)
    )
    served: Served = await start_server(app, kind)
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    port = int(served.http_url.rsplit(":", 1)[1])
    path = "/" + served.url.split("/", 3)[3]

    async with connect(
        f"{served.url}?access_token={SECRET}-query",
        subprotocols=[Subprotocol(f"bearer.{SECRET}-subprotocol")],  # offered, not served
        additional_headers={
            "Authorization": f"Bearer {SECRET}-header",
            "Cookie": f"session={SECRET}-cookie",
        },
    ) as ws:
        await ws.send(f"{SECRET}-text")
        assert await recv(ws) == f"{SECRET}-text"
        await ws.send(f"{SECRET}-binary".encode())
        assert await recv(ws) == f"{SECRET}-binary".encode()
        await ws.send(f"{SECRET}-too-big-" + "x" * 100)
        assert (await closed_with(ws))[0] == 1009

    bad_request = f"GET {path} HTTP/1.1\r\nX-Token: {SECRET}-bad\r\n\x01{SECRET}-line\r\n\r\n"
    answer = await raw_exchange(port, bad_request.encode())
    assert answer == b"" or answer.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4"))  # or just closed
    invalid_utf8 = masked_text_frame(f"{SECRET}-utf8".encode() + b"\xff")
    answer = await raw_exchange(port, HANDSHAKE.format(path=path).encode(), invalid_utf8)
    assert answer.startswith(b"HTTP/1.1 101")

    # The servers did log (the capture works), and none of it carries the secret.
    seen = [r for r in caplog.records if not r.name.startswith("websockets.client")]
    assert any(r.name.startswith(("crosswire", "uvicorn", "aiohttp")) for r in seen), seen
    leaks = []
    for record in seen:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        if record.stack_info:
            text += record.stack_info
        if SECRET in text:
            leaks.append(f"{record.name} {record.levelname}: {text[:300]}")
    assert leaks == []
    # A client's bad input (too big, malformed, invalid UTF-8) is not worth a warning: one
    # line at DEBUG at most, so that a client cannot fill the logs.
    loud = [f"{r.name} {r.levelname}: {r.getMessage()}" for r in seen if r.levelno >= WARNING]
    assert loud == []
