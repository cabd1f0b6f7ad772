"""A real ``redis-server`` per test, on a free port, that fault tests can kill and restart."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import redis.asyncio as aioredis

from tests.support import TIMEOUT


class RedisServer:
    """A ``redis-server`` process on 127.0.0.1, keeping nothing on disk.

    ``kill()`` stops it abruptly (SIGKILL: clients see their connections reset);
    ``start()`` starts it again on the same port.
    """

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: `python3 dev.py test` installs it "
                "(apt-get install -y redis-server)"
            )
        self._binary = binary
        self._workdir = workdir
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *[
                self._binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._workdir),
            ],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await self._wait_ready()

    async def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
            await asyncio.wait_for(self._proc.wait(), TIMEOUT)
        self._proc = None

    def client(self) -> aioredis.Redis:
        """A plain redis-py client of this server (for checks and raw publishes)."""
        return aioredis.Redis.from_url(self.url)

    async def _wait_ready(self) -> None:
        async def ping() -> None:
            while True:
                client = self.client()
                try:
                    if await client.ping():
                        return
                except (OSError, aioredis.ConnectionError):
                    await asyncio.sleep(0.02)
                finally:
                    await client.aclose()

        await asyncio.wait_for(ping(), TIMEOUT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
