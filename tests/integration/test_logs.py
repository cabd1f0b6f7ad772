"""No token, header value or message body reaches a log, at any level, on any server.

Every server is attacked the way a real client would leak secrets into logs (tokens in the
query, an offered subprotocol, the Authorization and Cookie headers; secret message bodies;
a malformed HTTP request and an invalid UTF-8 frame carrying them), with every logger of
crosswire and of the server libraries at DEBUG; no record may contain the secret. So are the
typed router in each dialect (a payload that fails validation, an unknown type, correlation
ids, RPCs that raise or never answer, malformed JSON, a frame past ``max_payload_bytes``),
in-band authentication (refused, and a check that raises), cookie authentication (a
cross-site Origin carrying the cookie), and ``crosswire run --log-level debug``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from logging import WARNING
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Origin, Subprotocol

import crosswire
from crosswire.server import SERVERS
from tests.apps import secret_router
from tests.apps.secret_router import MAX_PAYLOAD
from tests.integration.test_cookie_auth import SITE, cookie_app, status_of
from tests.support import TIMEOUT, RunCommand, Served, closed_with, recv

ROOT = Path(__file__).resolve().parents[2]
DIALECTS = ("canonical", "events", "rover")

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
    "hypercorn.error",
    "hypercorn.access",
    "starlette",
    "asyncio",
)

HANDSHAKE = (
    "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    f"Authorization: Bearer {SECRET}-raw\r\n\r\n"
)


def masked_text_frame(payload: bytes) -> bytes:
    """A client text frame (masked with a zero key, so the payload is as written)."""
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload


def debug_everywhere(caplog: pytest.LogCaptureFixture) -> None:
    """Every logger of :data:`LOGGERS`, and the root, at DEBUG into ``caplog``."""
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)


def server_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The records of the server side (the test's own websockets clients log too)."""
    return [r for r in caplog.records if not r.name.startswith("websockets.client")]


def leaks(records: list[logging.LogRecord]) -> list[str]:
    """The records whose message, exception or stack carries :data:`SECRET`."""
    found = []
    for record in records:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        if record.stack_info:
            text += record.stack_info
        if SECRET in text:
            found.append(f"{record.name} {record.levelname}: {text[:300]}")
    return found


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
    debug_everywhere(caplog)
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
    seen = server_records(caplog)
    assert any(r.name.startswith(("crosswire", "uvicorn", "aiohttp")) for r in seen), seen
    assert leaks(seen) == []
    # A client's bad input (too big, malformed, invalid UTF-8) is not worth a warning: one
    # line at DEBUG at most, so that a client cannot fill the logs.
    loud = [f"{r.name} {r.levelname}: {r.getMessage()}" for r in seen if r.levelno >= WARNING]
    assert loud == []


def frame(dialect: str, type: str, payload: Any, correlation_id: str | None = None) -> str:
    """A client frame of ``dialect`` (Rover's has no correlation id)."""
    if dialect == "canonical":
        meta = {"correlationId": correlation_id} if correlation_id else {}
        return json.dumps({"type": type, "meta": meta, "payload": payload})
    if dialect == "events":
        ids = {"id": correlation_id} if correlation_id else {}
        return json.dumps({"event": type, "data": payload, **ids})
    return json.dumps({"type": type, **payload})


AUTHENTICATE = {"canonical": "$ws:authenticate", "events": "authenticate", "rover": "authenticate"}


async def attack_the_router(ws_base: str, **secret_headers: Any) -> None:
    """Put :data:`SECRET` everywhere a client can reach the typed router of
    ``tests.apps.secret_router`` (at ``ws_base`` + ``/ws/...``), in each dialect: a payload
    that fails validation, an unknown type, a correlation id, the payload of an RPC whose
    handler raises and of one that never answers, malformed JSON, a frame past the router's
    ``max_payload_bytes``; credentials that in-band authentication refuses, and credentials
    whose check raises."""
    for dialect in DIALECTS:
        async with connect(
            f"{ws_base}/ws/?dialect={dialect}&token={SECRET}-query", **secret_headers
        ) as ws:
            # An RPC whose handler raises: an error frame without what it got (nor the text).
            await ws.send(frame(dialect, "FAIL", {"text": f"{SECRET}-rpc"}, "c1"))
            error = await recv(ws)
            assert isinstance(error, str) and "error" in error.lower()
            assert SECRET not in error and "the handler failed" not in error
            await ws.send(frame(dialect, "SILENT", {"text": f"{SECRET}-silent"}, f"{SECRET}-id"))
            await ws.send(frame(dialect, "ECHO", {"text": 1, f"{SECRET}-field": f"{SECRET}-v"}))
            await ws.send(frame(dialect, f"{SECRET}-type", {"text": f"{SECRET}-unknown"}))
            await ws.send(frame(dialect, "ECHO", {"text": "ok"}, f"{SECRET}-cid"))
            await ws.send('{"type": "ECHO", "payload": {"text": "' + SECRET + '-json"')
            await ws.send(frame(dialect, "ECHO", {"text": f"{SECRET}-big-" + "x" * MAX_PAYLOAD}))
            assert (await closed_with(ws))[0] == 1009
        for credentials in ({"token": f"{SECRET}-refused"}, {"token": f"{SECRET}-x", "raise": 1}):
            async with connect(f"{ws_base}/ws/auth?dialect={dialect}") as ws:
                await ws.send(frame(dialect, "ECHO", {"text": f"{SECRET}-early"}))
                await ws.send(frame(dialect, AUTHENTICATE[dialect], credentials))
                assert (await closed_with(ws))[0] == 4003


async def test_no_secret_from_the_router_or_authentication_reaches_any_log(
    kind: str, caplog: pytest.LogCaptureFixture, start_server: Any
) -> None:
    """The typed router and in-band authentication in each dialect, with every logger at
    DEBUG: the handlers' own exceptions are logged, but nothing the client sent."""
    served: Served = await start_server(secret_router.create_app(), kind)
    debug_everywhere(caplog)
    await attack_the_router(
        served.http_url.replace("http://", "ws://"),
        additional_headers={"Authorization": f"Bearer {SECRET}-header"},
    )
    seen = server_records(caplog)
    assert any("the handler failed" in str(r.exc_info) for r in seen)  # the app's own error
    assert any("the check failed" in str(r.exc_info) for r in seen)
    assert leaks(seen) == []


async def test_no_cookie_reaches_any_log(
    kind: str, caplog: pytest.LogCaptureFixture, start_server: Any
) -> None:
    """Cookie authentication: the session cookie of a cross-site page (403), of a session
    that does not exist (401), and of one that does (in the hooks' ``request``)."""
    served: Served = await start_server(cookie_app(), kind)
    debug_everywhere(caplog)
    cookie = f"theme={SECRET}-theme; sid={SECRET}-sid"
    assert await status_of(served.url, "https://example.com.evil.net", cookie) == 403
    assert await status_of(served.url, None, cookie) == 403
    assert await status_of(served.url, SITE, cookie) == 401
    async with connect(
        served.url,
        origin=Origin(SITE),
        additional_headers={"Cookie": f"other={SECRET}-other; sid=s3cret-ann"},
    ) as ws:
        await ws.send(f"{SECRET}-message")
        assert await recv(ws) == f"ann: {SECRET}-message"
    assert leaks(server_records(caplog)) == []


@pytest.mark.parametrize("server", SERVERS)
async def test_crosswire_run_at_debug_logs_no_secret(
    crosswire_cmd: RunCommand, server: str
) -> None:
    """``crosswire run --log-level debug``: every logger of the process writes to standard
    error at DEBUG (the command configures logging); none of it carries the secret."""
    cmd = await crosswire_cmd(
        "run",
        "tests.apps.secret_router:app",
        "--port",
        "0",
        "--server",
        server,
        "--log-level",
        "debug",
        cwd=ROOT,
    )
    await cmd.started()
    await attack_the_router(
        cmd.ws_url,
        subprotocols=[Subprotocol(f"bearer.{SECRET}-subprotocol")],
        additional_headers={
            "Authorization": f"Bearer {SECRET}-header",
            "Cookie": f"session={SECRET}-cookie",
        },
    )
    port = int(cmd.http_url.rsplit(":", 1)[1])
    bad_request = f"GET /ws/ HTTP/1.1\r\nX-Token: {SECRET}-bad\r\n\x01{SECRET}-line\r\n\r\n"
    await raw_exchange(port, bad_request.encode())
    invalid_utf8 = masked_text_frame(f"{SECRET}-utf8".encode() + b"\xff")
    await raw_exchange(port, HANDSHAKE.format(path="/ws/").encode(), invalid_utf8)
    cmd.proc.send_signal(signal.SIGTERM)
    assert await cmd.exit_code() == 0
    stderr = await cmd.stderr()
    assert " DEBUG " in stderr and "the handler failed" in stderr  # it logged, at DEBUG
    assert [line for line in stderr.splitlines() if SECRET in line] == []
