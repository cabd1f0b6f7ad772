"""crosswire.start / serve: the listening socket and the connections it accepts."""

from __future__ import annotations

import asyncio
import socket

import pytest

import crosswire
from crosswire.server import SERVERS
from tests.support import TIMEOUT


@pytest.mark.parametrize("server", SERVERS)
async def test_accepted_connections_have_nagle_off(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection crosswire accepts sends small frames at once (TCP_NODELAY): with
    Nagle's algorithm on, each message waited for the client's delayed ACK."""
    accepted: asyncio.Queue[socket.socket] = asyncio.Queue()
    real_accept = socket.socket.accept

    def accept(sock: socket.socket) -> tuple[socket.socket, object]:
        conn, address = real_accept(sock)
        accepted.put_nowait(conn)
        return conn, address

    running = await crosswire.start(crosswire.App(crosswire.define_hooks()), server=server)  # type: ignore[arg-type]
    try:
        with monkeypatch.context() as patch:
            patch.setattr(socket.socket, "accept", accept)
            _, writer = await asyncio.open_connection("127.0.0.1", running.port)
            conn = await asyncio.wait_for(accepted.get(), TIMEOUT)
        await asyncio.sleep(0)  # the server sets up its transport for the connection
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        writer.close()
    finally:
        await running.aclose()


async def test_running_server_reports_its_address() -> None:
    running = await crosswire.start(crosswire.App(crosswire.define_hooks()), port=0)
    try:
        assert running.host == "127.0.0.1" and running.port > 0
        assert running.url == f"ws://127.0.0.1:{running.port}"
    finally:
        await running.aclose()
        await running.aclose()  # closing twice is harmless


async def test_unknown_server_is_refused() -> None:
    with pytest.raises(crosswire.ConfigurationError, match="unknown server 'nginx'"):
        await crosswire.start(crosswire.App(crosswire.define_hooks()), server="nginx")  # type: ignore[arg-type]
