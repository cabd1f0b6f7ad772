"""A WebSocket client written by hand, for tests that send what no library would: frames
with reserved bits, bad close codes, pings it never reads the answers to, half a handshake.

It is a test client crafting hostile input; the library itself never parses frames.
"""

from __future__ import annotations

import asyncio
import socket

from tests.support import TIMEOUT

HANDSHAKE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def port_of(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


async def open_websocket(
    url: str, *, receive_buffer: int | None = None, extensions: bytes | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket opened by hand. ``receive_buffer`` shrinks the socket's receive buffer, so
    that a client that stops reading stops the server's writes quickly; ``extensions`` is
    offered in ``Sec-WebSocket-Extensions`` (and must be accepted)."""
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port_of(url)))
    reader, writer = await asyncio.open_connection(sock=sock)
    request = HANDSHAKE
    if extensions is not None:
        request = request.replace(
            b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: %s\r\n\r\n" % extensions
        )
    writer.write(request)
    response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert response.startswith(b"HTTP/1.1 101"), response
    if extensions is not None:
        assert extensions.split(b";")[0] in response.lower(), response
    return reader, writer


def masked(first: int, payload: bytes) -> bytes:
    """A client frame (``first``: FIN, RSV and opcode bits) masked with the key 0, which
    leaves the payload as it is."""
    size = len(payload)
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 65536:
        header = bytes((first, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, 0x80 | 127)) + size.to_bytes(8, "big")
    return header + b"\0\0\0\0" + payload


def close_frame(code: int | None, reason: bytes = b"") -> bytes:
    """A client close frame; ``None``: without a code."""
    return masked(0x88, b"" if code is None else code.to_bytes(2, "big") + reason)


async def server_close(reader: asyncio.StreamReader) -> tuple[int | None, list[bytes]]:
    """Read the server's frames until its close frame: (its code, 1005 if it carried none,
    or None when the connection ended without one; the payloads of the data frames before
    it)."""
    data, payloads = b"", list[bytes]()
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), TIMEOUT)
            if not chunk:
                return None, payloads
            data += chunk
            while len(data) >= 2:
                size, start = data[1] & 0x7F, 2
                if size == 126:
                    size, start = int.from_bytes(data[2:4], "big"), 4
                elif size == 127:
                    size, start = int.from_bytes(data[2:10], "big"), 10
                if len(data) < start + size:
                    break
                payload = data[start : start + size]
                if data[0] & 0x0F == 0x8:
                    return (int.from_bytes(payload[:2], "big") if size >= 2 else 1005), payloads
                if data[0] & 0x0F in (0x1, 0x2):
                    payloads.append(payload)
                data = data[start + size :]
    except ConnectionResetError:
        return None, payloads
