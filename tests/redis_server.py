"""A real ``redis-server`` per test, on a free port, that fault tests can kill and restart."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
from pathlib import Path

import redis.asyncio as aioredis

from tests.support import TIMEOUT

#: redis-server options that keep every write on disk before Redis answers it (an append-only
#: file in the server's working directory, fsynced at each write): ``start(*AOF)``.
AOF = ("--appendonly", "yes", "--appendfsync", "always")


class RedisServer:
    """A ``redis-server`` process on 127.0.0.1, keeping nothing on disk (unless started with
    :data:`AOF`).

    ``start(*options)`` starts it with more redis-server options for this run (``"--timeout",
    "1"``; ``"--requirepass", "pw"``; ``--user ...``; ``*AOF``: they override the defaults),
    on the same port every time: a restart after ``kill()`` (SIGKILL: clients see their
    connections reset) is a restart in place; one with ``*AOF`` again finds the data that an
    earlier run with ``*AOF`` acknowledged.
    ``pause()`` and ``resume()`` make it hang and come back. ``port`` chooses the port (a free
    one by default).
    """

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed: `python3 dev.py test` installs it "
                "(apt-get install -y redis-server)"
            )
        self._binary = binary
        self._workdir = workdir
        self.port = port if port is not None else free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._password: str | None = None
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self, *options: str) -> None:
        self._password = _option(options, "--requirepass")
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
                *options,
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

    def pause(self) -> None:
        """Stop the process (SIGSTOP): connections stay open, and nothing answers."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused process run again (SIGCONT): it answers what waited."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    @property
    def pid(self) -> int:
        """The process id of the running server."""
        assert self._proc is not None
        return self._proc.pid

    def client(self) -> aioredis.Redis:
        """A plain redis-py client of this server (for checks and raw publishes)."""
        return aioredis.Redis.from_url(self.url, password=self._password)

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


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _option(options: tuple[str, ...], name: str) -> str | None:
    """The value following ``name`` in ``options``, if any."""
    for i, option in enumerate(options[:-1]):
        if option == name:
            return options[i + 1]
    return None
