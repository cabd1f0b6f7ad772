"""``crosswire run --workers 2`` as a user runs it: one port served by two processes sharing a
real redis-server. Rooms, users and RPC work whichever worker a client lands on; a worker
that is killed is replaced without disturbing the other's clients; SIGTERM closes every
client with 1001; a worker that keeps dying stops the server.

Each worker says which it is: its pid in the ``HELLO`` it greets a connection with, and in
what it answers and publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from crosswire.server import SERVERS, listen
from crosswire.workers import WorkerPool
from tests.redis_server import RedisServer
from tests.support import TIMEOUT, CanonicalClient, Command, RunCommand, closed_with

APP = """
import os

import crosswire
from crosswire import message, rpc
from crosswire.pubsub.memory import MemoryBackend, MemoryBus
from crosswire.pubsub.redis import RedisBackend

Hello = message("HELLO", {"pid": int})
Pid = rpc("PID", None, "PID_IS", {"pid": int})
Say = message("SAY", {"room": str, "text": str})
Said = message("SAID", {"text": str, "pid": int})
Tell = message("TELL", {"user": str, "text": str})
Told = message("TOLD", {"text": str, "pid": int})


def on_open(ctx):
    if ctx.peer.request.path == "/die":
        os._exit(3)  # a worker that crashes
    user = ctx.peer.request.query.get("user")
    if user:
        ctx.peer.identify(user)
    ctx.send(Hello, {"pid": os.getpid()})


def say(ctx):
    text = {"text": ctx.payload.text, "pid": os.getpid()}
    ctx.publish("room:" + ctx.payload.room, Said, text)


def tell(ctx):
    router.send_to_user(ctx.payload.user, Told, {"text": ctx.payload.text, "pid": os.getpid()})


router = crosswire.Router()
router.topic("room:{name}")
router.on_open(on_open)
router.on(Say, say)
router.on(Tell, tell)
router.rpc(Pid, lambda ctx: ctx.reply({"pid": os.getpid()}))

url = os.environ.get("CROSSWIRE_REDIS_URL")
shared = crosswire.App(router, hub=crosswire.Hub(RedisBackend(url))) if url else None
alone = crosswire.App(crosswire.Router())
in_process = crosswire.App(crosswire.Router(), hub=crosswire.Hub(MemoryBackend(MemoryBus())))
"""


class Member:
    """A canonical client and the pid of the worker serving it."""

    def __init__(self, ws: ClientConnection, pid: int) -> None:
        self.ws = ws
        self.client = CanonicalClient(ws)
        self.pid = pid

    async def call_pid(self) -> int:
        cid = self.client.correlation_id()
        await self.client.send("PID", correlationId=cid)
        reply = await self.client.receive()
        assert (reply["type"], reply["meta"]["correlationId"]) == ("PID_IS", cid)
        pid: int = reply["payload"]["pid"]
        return pid

    async def join(self, topic: str) -> None:
        await self.client.send("$ws:join", {"topic": topic}, correlationId="j")
        assert (await self.client.receive())["type"] == "$ws:join-ack"

    async def next_of(self, type: str, text: str) -> dict[str, Any]:
        """The next ``type`` frame whose text is ``text``, skipping earlier warm-ups."""
        while True:
            frame = await self.client.receive()
            assert frame["type"] == type
            if frame["payload"]["text"] == text:
                return frame


class Workers:
    """Clients of a ``crosswire run --workers 2`` process, by the worker that serves them."""

    def __init__(self, cmd: Command, stack: contextlib.AsyncExitStack) -> None:
        self.cmd = cmd
        self.stack = stack
        self.members: list[Member] = []

    async def member(self, query: str = "") -> Member:
        ws = await self.stack.enter_async_context(
            connect(f"{self.cmd.ws_url}/ws{query}", open_timeout=TIMEOUT)
        )
        hello = await CanonicalClient(ws).receive()
        assert hello["type"] == "HELLO"
        member = Member(ws, hello["payload"]["pid"])
        self.members.append(member)
        return member

    async def one_on_each(self, query: str = "") -> list[Member]:
        """Connect until two workers serve one of these connections each (the kernel spreads
        connections by a hash of the client's port: 40 on one worker would mean the other
        takes none)."""
        found: dict[int, Member] = {}
        for _ in range(40):
            member = await self.member(query)
            found.setdefault(member.pid, member)
            if len(found) == 2:
                return list(found.values())
        raise AssertionError(f"every connection went to worker {set(found)}")

    async def all_closed_with_1001(self) -> None:
        for member in self.members:
            if member.ws.protocol.close_rcvd is None and member.ws.close_code is None:
                assert await closed_with(member.ws) == (1001, "Server shutting down")


async def until_it_arrives(send: Callable[[int], Awaitable[None]], to: Member) -> None:
    """Send until ``to`` receives something: the other worker's subscription reaches Redis
    asynchronously. Bounded: 50 tries of 0.2 s."""
    for attempt in range(50):
        await send(attempt)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(to.ws.recv(), 0.2)
            return
    raise AssertionError("nothing arrived from the other worker")


async def start(
    crosswire_cmd: RunCommand, tmp_path: Path, redis: RedisServer, *args: str
) -> Command:
    (tmp_path / "workers.py").write_text(APP)
    cmd = await crosswire_cmd(
        *["run", "workers:shared", "--workers", "2", "--port", "0", *args],
        cwd=tmp_path,
        env={"CROSSWIRE_REDIS_URL": redis.url},
    )
    await cmd.started()
    return cmd


@pytest.mark.parametrize("server", SERVERS)
async def test_rooms_users_and_rpc_work_whichever_worker_serves_a_client(
    crosswire_cmd: RunCommand, tmp_path: Path, redis_server: RedisServer, server: str
) -> None:
    cmd = await start(crosswire_cmd, tmp_path, redis_server, "--server", server)
    assert cmd.start_line.endswith(f"with {server}, 2 workers (Ctrl+C to stop)")
    async with contextlib.AsyncExitStack() as stack:
        workers = Workers(cmd, stack)
        ada_here, ada_there = await workers.one_on_each("?user=ada")
        # RPC: answered by the worker the caller is on.
        for member in (ada_here, ada_there):
            assert await member.call_pid() == member.pid

        # Rooms: a member on one worker gets what is said on the other.
        await ada_here.join("room:lobby")

        async def say(attempt: int) -> None:
            await ada_there.client.send("SAY", {"room": "lobby", "text": f"warm-up {attempt}"})

        await until_it_arrives(say, ada_here)
        await ada_there.client.send("SAY", {"room": "lobby", "text": "hello"})
        said = await ada_here.next_of("SAID", "hello")
        assert said["payload"]["pid"] == ada_there.pid

        # Users: a message to ada reaches her connections on both workers.
        async def tell(attempt: int) -> None:
            await ada_there.client.send("TELL", {"user": "ada", "text": f"warm-up {attempt}"})

        await until_it_arrives(tell, ada_here)
        await ada_there.client.send("TELL", {"user": "ada", "text": "for ada"})
        for member in (ada_here, ada_there):
            told = await member.next_of("TOLD", "for ada")
            assert told["payload"]["pid"] == ada_there.pid

        cmd.proc.send_signal(signal.SIGTERM)
        await workers.all_closed_with_1001()
    assert await cmd.exit_code() == 0
    logged = await cmd.stderr()
    assert logged.count("shutting down: closing") == 2  # one line per worker
    assert logged.rstrip().endswith("INFO crosswire.server: stopped (2 workers)")


async def test_a_killed_worker_is_replaced_and_the_other_keeps_its_clients(
    crosswire_cmd: RunCommand, tmp_path: Path, redis_server: RedisServer
) -> None:
    cmd = await start(crosswire_cmd, tmp_path, redis_server)
    async with contextlib.AsyncExitStack() as stack:
        workers = Workers(cmd, stack)
        survivor, victim = await workers.one_on_each()
        await survivor.join("room:lobby")

        # The parent stopped, the dead worker cannot be replaced yet: connections the kernel
        # hands its socket meanwhile wait in that socket's queue, neither refused nor reset.
        cmd.proc.send_signal(signal.SIGSTOP)
        os.kill(victim.pid, signal.SIGKILL)
        assert await closed_with(victim.ws) == (None, None)  # it died: no close frame
        joining = [asyncio.ensure_future(workers.member()) for _ in range(16)]
        # One served by the survivor: every connection has reached the kernel by then.
        await asyncio.wait(joining, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
        cmd.proc.send_signal(signal.SIGCONT)
        pids = {member.pid for member in await asyncio.gather(*joining)}
        (newcomer,) = [m for m in workers.members if m.pid not in (survivor.pid, victim.pid)][:1]
        assert pids == {survivor.pid, newcomer.pid}

        # The survivor's client was not disturbed: its calls are answered, and it hears its
        # room from the new worker.
        assert await survivor.call_pid() == survivor.pid

        async def say(attempt: int) -> None:
            await newcomer.client.send("SAY", {"room": "lobby", "text": f"warm-up {attempt}"})

        await until_it_arrives(say, survivor)
        await newcomer.client.send("SAY", {"room": "lobby", "text": "I am new"})
        assert (await survivor.next_of("SAID", "I am new"))["payload"]["pid"] == newcomer.pid

        cmd.proc.send_signal(signal.SIGTERM)
        workers.members.remove(victim)
        await workers.all_closed_with_1001()
    assert await cmd.exit_code() == 0
    logged = await cmd.stderr()
    assert f"WARNING crosswire.server: worker {victim.pid} was killed by SIGKILL; " in logged
    assert f"worker {newcomer.pid} started in place of worker {victim.pid}" in logged


async def test_a_worker_that_keeps_dying_stops_the_server(
    crosswire_cmd: RunCommand, tmp_path: Path, redis_server: RedisServer
) -> None:
    """Each connection to ``/die`` crashes its worker: after five restarts of one worker in a
    minute the server stops every worker and exits with 1, saying why."""
    cmd = await start(crosswire_cmd, tmp_path, redis_server)
    for _ in range(60):
        if cmd.proc.returncode is not None:
            break
        with contextlib.suppress(OSError, InvalidHandshake, ConnectionClosed, TimeoutError):
            async with connect(cmd.ws_url + "/die", open_timeout=TIMEOUT) as ws:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert await cmd.exit_code() == 1
    stderr = await cmd.stderr()
    assert "exited with code 3; starting another" in stderr
    last = stderr.rstrip().splitlines()[-1]
    assert last.startswith("crosswire: worker ")
    assert last.endswith(
        "exited with code 3, and its place had already been restarted 5 times in 60 s: "
        "stopping every worker"
    )


@pytest.mark.parametrize("target", ["workers:alone", "workers:in_process"])
async def test_several_workers_without_a_bus_are_refused(
    crosswire_cmd: RunCommand, tmp_path: Path, target: str
) -> None:
    (tmp_path / "workers.py").write_text(APP)
    cmd = await crosswire_cmd("run", target, "--workers", "2", "--port", "0", cwd=tmp_path)
    assert await cmd.exit_code() == 1
    stderr = await cmd.stderr()
    assert "2 workers need a bus between them" in stderr
    assert "Traceback" not in stderr


async def test_a_port_in_use_is_refused_even_by_other_workers(
    crosswire_cmd: RunCommand, tmp_path: Path, redis_server: RedisServer
) -> None:
    """SO_REUSEPORT lets sockets share a port: a second server with workers on a port the
    first one's workers serve must still be refused, not join them."""
    first = await start(crosswire_cmd, tmp_path, redis_server)
    port = first.ws_url.rsplit(":", 1)[1]
    second = await crosswire_cmd(
        *["run", "workers:shared", "--workers", "2", "--port", port],
        cwd=tmp_path,
        env={"CROSSWIRE_REDIS_URL": redis_server.url},
    )
    assert await second.exit_code() == 1
    assert f"cannot listen on 127.0.0.1:{port}" in await second.stderr()
    with socket.create_connection(("127.0.0.1", int(port)), timeout=TIMEOUT):
        pass  # the first one still listens
    first.proc.send_signal(signal.SIGTERM)
    assert await first.exit_code() == 0


async def test_a_worker_that_cannot_start_stops_them_all_and_says_why(
    crosswire_cmd: RunCommand, tmp_path: Path
) -> None:
    """A worker's ConfigurationError (here, a server whose extra is missing) is said as one
    process would say it, once, without a traceback."""
    (tmp_path / "workers.py").write_text(APP)
    shadow = tmp_path / "shadow" / "picows"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'picows'\", name='picows')\n"
    )
    cmd = await crosswire_cmd(
        *["run", "workers:shared", "--workers", "2", "--port", "0", "--server", "picows"],
        cwd=tmp_path,
        # Nothing listens there: the server fails before the App connects its bus.
        env={
            "CROSSWIRE_REDIS_URL": "redis://127.0.0.1:1/0",
            "PYTHONPATH": f"{shadow.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        },
    )
    assert await cmd.exit_code() == 1
    assert await cmd.stdout() == ""  # never announced
    stderr = await cmd.stderr()
    assert stderr.count('pip install "crosswire[picows]"') == 1
    assert "Traceback" not in stderr and "WARNING" not in stderr


def test_a_worker_that_does_not_stop_is_killed_after_the_drain_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The pool itself, forked from this process: its worker, once listening, sends the
    parent SIGTERM and ignores its own, waiting for the parent to end; the parent kills it
    after the drain timeout, says so, and returns."""

    def stubborn(sock: socket.socket, lifeline: int, ready: Callable[[], None]) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        ready()
        os.kill(os.getppid(), signal.SIGTERM)
        select.select([lifeline], [], [])  # until the parent ends (it kills this first)

    pool = WorkerPool([listen("127.0.0.1", 0)], stubborn, drain_timeout=0.2)
    with caplog.at_level(logging.INFO, "crosswire.server"):
        pool.run(lambda: None)  # (announced or not: the SIGTERM may come with the ready)
    assert [r.getMessage().split(" ", 2)[2] for r in caplog.records] == [
        "still running 0.2 s after SIGTERM: killing it",
        "was killed by SIGKILL while stopping",
    ]
